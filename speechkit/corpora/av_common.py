"""Shared steps of the audio-visual corpus preparations (LRS3, VoxCeleb2).

* :func:`extract_audio` decodes each source container once (PyAV), writes 16 kHz mono 16-bit wav
  (``wav.scp`` then works with every audio tool: soundfile, segments, resampling), and compares
  the audio length with the video length from the headers: more than one 25 fps frame apart is a
  skipped clip whose reason names it. Existing wavs are reused (safe re-runs).
* :class:`SkipReport` counts what was skipped and why; every skip is also logged with the file.
* :func:`write_av_set` writes one data dir: ``wav.scp`` (recording -> wav), ``segments`` (when
  clips were split), ``text``, ``utt2spk``/``spk2utt``, ``utt2num_samples`` (16 kHz samples of the
  utterance) and ``video_src.scp`` (utterance -> source video container, for ROI extraction).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pathlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from speechkit.io.datadir import write_data_dir
from speechkit.io.video import AUDIO_RATE, VIDEO_FPS, VideoError, probe, read_audio
from speechkit.log import progress

log = logging.getLogger(__name__)


@dataclass
class AVRecord:
    """One utterance: a whole source clip or a [start, end) part of it (seconds)."""

    utt: str
    rec: str
    spk: str
    source: str  # the container (mp4/m4a) the audio (and video) come from
    wav: str = ""  # extracted 16 kHz wav
    text: str | None = None
    start: float | None = None  # None: the whole recording
    end: float | None = None
    num_samples: int = 0  # of the recording, at 16 kHz


@dataclass
class SkipReport:
    """Counts of skipped inputs per reason, with up to five examples each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, what: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(what)
        log.warning("skipped (%s): %s", reason, what)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "nothing skipped"
        return ", ".join(f"{n} {r}" for r, n in sorted(self.counts.items()))

    def write(self, path: pathlib.Path) -> None:
        lines = [f"{r} {n} {' '.join(self.examples[r])}" for r, n in sorted(self.counts.items())]
        path.write_text("".join(l + "\n" for l in lines))


def _extract_one(args: tuple[str, str, bool]) -> tuple[str, int, str | None]:
    """(source, num_samples, error) for one container; writes the wav unless it already exists."""
    import soundfile as sf

    source, wav_path, check_video = args
    try:
        info = probe(source)
        if not info.has_audio:
            return source, 0, f"no_audio: {source} has no audio stream"
        wav_p = pathlib.Path(wav_path)
        if wav_p.is_file() and wav_p.stat().st_mtime >= pathlib.Path(source).stat().st_mtime:
            n = sf.info(str(wav_p)).frames
        else:
            wav = read_audio(source, AUDIO_RATE)
            n = len(wav)
            wav_p.parent.mkdir(parents=True, exist_ok=True)
            tmp = wav_p.with_name(f".{wav_p.name}.tmp.wav")
            sf.write(str(tmp), np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16), AUDIO_RATE, subtype="PCM_16")
            os.replace(tmp, wav_p)
        if n == 0:
            return source, 0, f"no_audio: {source} has an empty audio stream"
        if check_video:
            if not info.has_video:
                return source, 0, f"no_video: {source} has no video stream"
            vdur = info.video_duration
            if vdur is not None:
                diff = n / AUDIO_RATE * VIDEO_FPS - vdur * VIDEO_FPS
                if abs(diff) > 1.0:
                    return source, 0, (f"av_mismatch: {source}: audio {n / AUDIO_RATE:.3f} s vs video "
                                       f"{vdur:.3f} s differ by {diff:+.1f} frames at 25 fps (more than 1)")
        return source, n, None
    except VideoError as e:
        return source, 0, f"unreadable: {e}"


def extract_audio(jobs: list[tuple[str, str]], check_video: bool, num_jobs: int = 1,
                  desc: str = "audio") -> dict[str, tuple[int, str | None]]:
    """Decode every (source, wav_path); returns source -> (num_samples, error or None)."""
    tasks = [(s, w, check_video) for s, w in jobs]
    results: dict[str, tuple[int, str | None]] = {}
    if num_jobs <= 1 or len(tasks) <= 1:
        it = map(_extract_one, tasks)
        for src, n, err in progress(it, desc=desc, total=len(tasks), unit="clip"):
            results[src] = (n, err)
        return results
    ctx = multiprocessing.get_context("spawn")  # no fork after torch/av threads exist
    with ctx.Pool(num_jobs) as pool:
        it = pool.imap_unordered(_extract_one, tasks, chunksize=4)
        for src, n, err in progress(it, desc=desc, total=len(tasks), unit="clip"):
            results[src] = (n, err)
    return results


def write_av_set(out_dir: pathlib.Path, records: list[AVRecord], with_video: bool = True) -> pathlib.Path:
    """Write one data dir from ``records`` (see the module docstring for the files)."""
    if not records:
        raise ValueError(f"{out_dir}: no utterances to write")
    seen: set[str] = set()
    for r in records:
        if r.utt in seen:
            raise ValueError(f"{out_dir}: utterance id {r.utt} occurs twice")
        seen.add(r.utt)
    split = any(r.start is not None for r in records)
    wav_scp = {r.rec: r.wav for r in records}
    segments = None
    num_samples = {}
    for r in records:
        if r.start is None:
            num_samples[r.utt] = r.num_samples
        else:
            num_samples[r.utt] = int(round(r.end * AUDIO_RATE)) - int(round(r.start * AUDIO_RATE))
    if split:
        segments = {r.utt: (r.rec, r.start if r.start is not None else 0.0,
                            r.end if r.end is not None else r.num_samples / AUDIO_RATE) for r in records}
    text = {r.utt: r.text for r in records} if any(r.text is not None for r in records) else None
    extra = {"video_src.scp": {r.utt: r.source for r in records}} if with_video else None
    return write_data_dir(out_dir, wav_scp=wav_scp, segments=segments, text=text,
                          utt2spk={r.utt: r.spk for r in records}, utt2num_samples=num_samples, extra=extra)
