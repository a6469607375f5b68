"""VoxCeleb2 -> Kaldi data dirs (unlabelled audio-visual pre-training data, speaker labels).

Usage::

    from speechkit.corpora.voxceleb2 import prepare_voxceleb2, convert_voxceleb1_trials
    prepare_voxceleb2("/data/voxceleb2", "data", audio_dir="dump/audio/vox2", id_list="vox-en.id")
    convert_voxceleb1_trials("/data/voxceleb1/veri_test.txt", "data/vox1_test/trials")

Layout (the official release)::

    voxceleb2/{dev,test}/mp4/<spk_id>/<youtube_id>/<nnnnn>.mp4     # video + AAC audio
    voxceleb2/{dev,test}/aac/<spk_id>/<youtube_id>/<nnnnn>.m4a     # the audio-only variant

With ``source="auto"`` the ``mp4`` folder is used when present (``video_src.scp`` is written for ROI
extraction), otherwise ``aac`` (audio only). Sets ``out_dir/dev`` and ``out_dir/test`` (those present).
Speaker = ``<spk_id>``; utterance id ``<spk_id>-<youtube_id>-<nnnnn>``; no ``text`` (unlabelled).

``id_list`` selects clips (av_hubert selects English ones with ``vox-en.id``): one id per line,
``dev/mp4/<spk>/<yt>/<nnnnn>``, ``<spk>/<yt>/<nnnnn>`` or either with an extension. Skips are counted
and logged as in :mod:`speechkit.corpora.lrs3` (``unreadable``, ``no_audio``, ``av_mismatch``).

VoxCeleb1 trial lists (``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``) become
``<enroll> <test> target|nontarget`` lines with the same utterance-id scheme
(:func:`convert_voxceleb1_trials`).
"""
from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass, field

from speechkit.corpora.av_common import AVRecord, SkipReport, extract_audio, write_av_set

log = logging.getLogger(__name__)

SUBSETS = ("dev", "test")


class VoxCelebError(RuntimeError):
    """A structural problem with a VoxCeleb folder or list (names the path/line)."""


def vox_utt_id(path_like: str) -> str:
    """``.../<spk>/<yt>/<nnnnn>[.ext]`` -> ``<spk>-<yt>-<nnnnn>``."""
    parts = path_like.strip().split("/")
    if len(parts) < 3:
        raise ValueError(f"expected '<spk>/<youtube_id>/<clip>', got {path_like!r}")
    spk, yt, clip = parts[-3:]
    return f"{spk}-{yt}-{clip.rsplit('.', 1)[0] if '.' in clip else clip}"


def read_id_list(path) -> set[str]:
    """Clip ids (see the module docstring) -> utterance ids."""
    p = pathlib.Path(path)
    out = set()
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.add(vox_utt_id(line))
        except ValueError as e:
            raise VoxCelebError(f"{p}:{i}: {e}") from None
    return out


@dataclass
class VoxCeleb2Report:
    sets: dict[str, pathlib.Path] = field(default_factory=dict)
    num_utts: dict[str, int] = field(default_factory=dict)
    num_not_selected: int = 0
    source: str = ""
    skipped: SkipReport = field(default_factory=SkipReport)


def prepare_voxceleb2(corpus_dir, out_dir, audio_dir=None, source: str = "auto", id_list=None,
                      subsets=SUBSETS, num_jobs: int = 1) -> VoxCeleb2Report:
    """Prepare VoxCeleb2 subsets (see the module docstring)."""
    corpus = pathlib.Path(corpus_dir)
    out = pathlib.Path(out_dir)
    audio_root = pathlib.Path(audio_dir) if audio_dir is not None else out / "audio"
    present = [s for s in subsets if (corpus / s).is_dir()]
    if not present:
        raise VoxCelebError(f"{corpus}: none of {list(subsets)} exists; expected {corpus}/dev/mp4/<spk>/<yt>/<n>.mp4 "
                            "or dev/aac/.../<n>.m4a")
    if source == "auto":
        source = "mp4" if any((corpus / s / "mp4").is_dir() for s in present) else "aac"
    if source not in ("mp4", "aac"):
        raise ValueError(f"source must be 'auto', 'mp4' or 'aac', got {source!r}")
    ext = ".mp4" if source == "mp4" else ".m4a"
    selected = read_id_list(id_list) if id_list is not None else None
    report = VoxCeleb2Report(source=source)
    scanned: dict[str, list[tuple[str, str, pathlib.Path, pathlib.Path]]] = {}
    for sub in present:
        root = corpus / sub / source
        if not root.is_dir():
            raise VoxCelebError(f"{root}: no such folder (source={source}); expected <spk>/<yt>/<n>{ext} under it")
        entries = []
        for f in sorted(root.glob(f"*/*/*{ext}")):
            rel = f.relative_to(root).as_posix()
            utt = vox_utt_id(rel)
            if selected is not None and utt not in selected:
                report.num_not_selected += 1
                continue
            wav = (audio_root / sub / rel).with_suffix(".wav").resolve()
            entries.append((utt, f.parent.parent.name, f.resolve(), wav))
        scanned[sub] = entries
    jobs = [(str(src), str(wav)) for sub in present for _, _, src, wav in scanned[sub]]
    audio = extract_audio(jobs, check_video=(source == "mp4"), num_jobs=num_jobs, desc="voxceleb2 audio")
    for sub in present:
        recs = []
        for utt, spk, src, wav in scanned[sub]:
            n, err = audio[str(src)]
            if err is not None:
                reason, msg = err.split(": ", 1)
                report.skipped.add(reason, msg)
                continue
            recs.append(AVRecord(utt=utt, rec=utt, spk=spk, source=str(src), wav=str(wav), num_samples=n))
        if not recs:
            raise VoxCelebError(f"{corpus / sub / source}: no usable clips ({report.skipped.summary()}; "
                                f"{report.num_not_selected} not in the id list)")
        report.sets[sub] = write_av_set(out / sub, recs, with_video=(source == "mp4"))
        report.num_utts[sub] = len(recs)
    out.mkdir(parents=True, exist_ok=True)
    report.skipped.write(out / "voxceleb2_skipped.txt")
    log.info("VoxCeleb2 (%s): %s; %d not selected; skipped: %s", source,
             ", ".join(f"{k} {v}" for k, v in report.num_utts.items()), report.num_not_selected, report.skipped.summary())
    return report


def convert_voxceleb1_trials(in_path, out_path) -> int:
    """VoxCeleb1 trial list -> ``<enroll> <test> target|nontarget``; returns the number of trials."""
    src = pathlib.Path(in_path)
    lines = []
    for i, line in enumerate(src.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise VoxCelebError(f"{src}:{i}: expected '<0|1> <spk>/<yt>/<n>.wav <spk>/<yt>/<n>.wav', got {line!r}")
        try:
            a, b = vox_utt_id(parts[1]), vox_utt_id(parts[2])
        except ValueError as e:
            raise VoxCelebError(f"{src}:{i}: {e}") from None
        lines.append(f"{a} {b} {'target' if parts[0] == '1' else 'nontarget'}\n")
    if not lines:
        raise VoxCelebError(f"{src}: no trials")
    dst = pathlib.Path(out_path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(lines))
    return len(lines)
