"""Any folder of talking-face videos -> a Kaldi data dir (e.g. the GRID clips used in tests).

Usage::

    from speechkit.corpora.video_folder import prepare_video_folder
    prepare_video_folder("/data/grid/s1", "data/grid_s1", text="/data/grid/s1/text")

Every ``*.mp4``/``*.mpg``/``*.avi``/``*.mov``/``*.mkv`` below ``video_dir`` becomes an utterance
``<speaker>-<stem>``; the speaker is the name of the folder holding the file. ``text`` (optional) is a
``<stem> WORDS...`` file. Audio is extracted to 16 kHz wav as for LRS3 (``audio_dir``, default
``<out_dir>/audio``); ``video_src.scp`` points at the videos for mouth-ROI extraction. Unreadable
files and files without audio are skipped, logged and counted.
"""
from __future__ import annotations

import logging
import pathlib

from speechkit.corpora.av_common import AVRecord, SkipReport, extract_audio, write_av_set
from speechkit.text.normalize import normalize_text

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv")


def prepare_video_folder(video_dir, out_dir, audio_dir=None, text=None, num_jobs: int = 1) -> tuple[pathlib.Path, SkipReport]:
    """Write the data dir; returns (its path, what was skipped)."""
    root = pathlib.Path(video_dir)
    out = pathlib.Path(out_dir)
    audio_root = pathlib.Path(audio_dir) if audio_dir is not None else out / "audio"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    texts = {}
    if text is not None:
        for i, line in enumerate(pathlib.Path(text).read_text().splitlines(), 1):
            if line.strip():
                key, _, words = line.partition(" ")
                texts[key] = normalize_text(words)
    entries = []
    for f in files:
        spk = f.parent.name
        utt = f"{spk}-{f.stem}"
        entries.append((utt, spk, f.resolve(), (audio_root / f.relative_to(root)).with_suffix(".wav").resolve()))
    audio = extract_audio([(str(s), str(w)) for _, _, s, w in entries], check_video=True, num_jobs=num_jobs,
                          desc="video folder audio")
    skipped = SkipReport()
    recs = []
    for utt, spk, src, wav in entries:
        n, err = audio[str(src)]
        if err is not None:
            reason, msg = err.split(": ", 1)
            skipped.add(reason, msg)
            continue
        stem = src.stem
        if texts and stem not in texts:
            skipped.add("missing_text", f"{src} (no line '{stem} ...' in {text})")
            continue
        recs.append(AVRecord(utt=utt, rec=utt, spk=spk, source=str(src), wav=str(wav),
                             text=texts.get(stem) if texts else None, num_samples=n))
    if not recs:
        raise RuntimeError(f"{root}: no usable videos ({skipped.summary()})")
    path = write_av_set(out, recs)
    log.info("%s: %d utterances; skipped: %s", path, len(recs), skipped.summary())
    return path, skipped
