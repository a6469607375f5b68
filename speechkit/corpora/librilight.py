"""Libri-light limited-resource fine-tuning sets -> Kaldi data dirs.

Usage::

    from speechkit.corpora.librilight import prepare_librilight_finetuning
    dirs = prepare_librilight_finetuning("/data/librispeech_finetuning", "data")
    dirs["train_10h"]  # data/train_10h with wav.scp, text, utt2spk, spk2utt, utt2num_samples

Layout read (``librispeech_finetuning.tgz`` from the Libri-light release)::

    librispeech_finetuning/1h/{0,1,2,3,4,5}/{clean,other}/<speaker>/<chapter>/
        <speaker>-<chapter>-<utt>.flac, <speaker>-<chapter>.trans.txt
    librispeech_finetuning/9h/{clean,other}/<speaker>/<chapter>/...

``corpus_dir`` may be ``librispeech_finetuning`` itself or its parent. Other folders in it
(e.g. phone transcriptions) are not read. Sets written, as the Libri-light paper defines them:

* ``train_10min`` = ``1h/0`` (one of the six 10-minute splits, the one fairseq and the
  HuBERT/wav2vec 2.0 papers use);
* ``train_1h`` = ``1h/0`` ... ``1h/5``;
* ``train_10h`` = ``1h`` + ``9h``.

Each chapter folder is parsed by :func:`speechkit.corpora.librispeech.scan_chapter` (the
LibriSpeech preparation's own parser), so ids, text and speaker = reader-chapter
(``<speaker>-<chapter>``) agree with the LibriSpeech data dirs. Transcript lines without a
flac and flac files without a transcript line are counted and warned about (we have not
seen whether the release's ``trans.txt`` files list only the chapter's selected utterances,
so extra lines are reported rather than treated as errors). A missing ``1h/<k>`` or ``9h``
folder, or its ``clean``/``other`` half, an utterance id present in two folders, or a set
with zero utterances is an error.
"""
from __future__ import annotations

import logging
import os
import pathlib
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from speechkit.corpora.librispeech import ChapterScan, scan_chapter, warn_other_rates
from speechkit.io.datadir import validate_data_dir, write_data_dir
from speechkit.io.datadir_ops import fix_data_dir
from speechkit.log import progress

logger = logging.getLogger(__name__)

KINDS = ("clean", "other")
ONE_HOUR_SPLITS = tuple(f"1h/{k}" for k in range(6))
FINETUNING_SETS: dict[str, tuple[str, ...]] = {
    "train_10min": ("1h/0",),
    "train_1h": ONE_HOUR_SPLITS,
    "train_10h": ONE_HOUR_SPLITS + ("9h",),
}
_LAYOUT = ("librispeech_finetuning/{1h/{0..5},9h}/{clean,other}/<speaker>/<chapter>/"
           "<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt")


class LibrilightError(ValueError):
    """The folder does not have Libri-light's fine-tuning layout; the message says what."""


def _find_root(corpus_dir: pathlib.Path) -> pathlib.Path:
    for cand in (corpus_dir, corpus_dir / "librispeech_finetuning"):
        if (cand / "1h").is_dir() or (cand / "9h").is_dir():
            return cand
    raise LibrilightError(f"{corpus_dir}: no Libri-light fine-tuning data here (no 1h/ or 9h/ "
                          f"folder in it or in librispeech_finetuning/); expected {_LAYOUT}")


def _chapters(root: pathlib.Path, folder: str) -> list[pathlib.Path]:
    chapters = []
    for kind in KINDS:
        d = root / folder / kind
        if not d.is_dir():
            raise LibrilightError(f"{d}: folder missing; expected {_LAYOUT}")
        found = sorted(c for s in d.iterdir() if s.is_dir() for c in s.iterdir() if c.is_dir())
        if not found:
            raise LibrilightError(f"{d}: no <speaker>/<chapter> folders; expected {_LAYOUT}")
        chapters += found
    return chapters


def _warn(folder: str, items: list[str], what: str) -> None:
    if items:
        shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
        logger.warning("%s: %d %s (first: %s)", folder, len(items), what, shown)


def prepare_librilight_finetuning(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sets: Sequence[str] = tuple(FINETUNING_SETS),
    num_jobs: int = 1,
) -> dict[str, pathlib.Path]:
    """Write ``out_dir/{train_10min,train_1h,train_10h}``; returns ``{set: data dir}``.

    Only the folders the requested ``sets`` need must exist (``train_10min`` needs just
    ``1h/0``). See the module docstring for the layout and the rules.
    """
    unknown = [s for s in sets if s not in FINETUNING_SETS]
    if unknown:
        raise ValueError(f"unknown Libri-light sets {unknown}; expected some of "
                         f"{list(FINETUNING_SETS)}")
    root = _find_root(pathlib.Path(corpus_dir).resolve())
    out_root = pathlib.Path(out_dir)
    folders = list(dict.fromkeys(f for s in sets for f in FINETUNING_SETS[s]))
    missing = [str(root / f / k) for f in folders for k in KINDS if not (root / f / k).is_dir()]
    if missing:  # name every missing folder at once, not one per run
        raise LibrilightError(f"{len(missing)} folder(s) missing: {', '.join(missing)}; "
                              f"sets {list(sets)} need {', '.join(folders)}; expected {_LAYOUT}")
    chapters = {f: _chapters(root, f) for f in folders}  # all structural checks first

    # Each folder is scanned once, then shared by the sets that contain it.
    scanned: dict[str, dict[str, tuple[str, str, int, str]]] = {}
    with ThreadPoolExecutor(max_workers=max(1, num_jobs)) as pool:
        for folder in folders:
            scans: list[ChapterScan] = list(progress(
                pool.map(scan_chapter, chapters[folder]), desc=f"scan {folder}",
                total=len(chapters[folder]), unit="chapter"))
            utts: dict[str, tuple[str, str, int, str]] = {}
            missing, orphans, other_rate = [], [], {}
            for chapter_dir, scan in zip(chapters[folder], scans):
                spk = f"{chapter_dir.parent.name}-{chapter_dir.name}"
                missing += scan.missing_flac
                orphans += scan.orphan_flac
                other_rate.update(scan.other_rate)
                for utt, (flac, text, frames) in scan.utts.items():
                    utts[utt] = (flac, text, frames, spk)
            _warn(folder, missing, "transcript lines have no flac file and were skipped")
            _warn(folder, orphans, "flac files have no transcript line and were ignored")
            warn_other_rates(folder, other_rate)
            if not utts:
                raise LibrilightError(f"{root / folder}: no utterance with both a transcript "
                                      f"line and a flac file; expected {_LAYOUT}")
            scanned[folder] = utts

    made = {}
    for name in sets:
        owner: dict[str, str] = {}
        wav_scp, text, utt2spk, num_samples = {}, {}, {}, {}
        for folder in FINETUNING_SETS[name]:
            for utt, (flac, words, frames, spk) in scanned[folder].items():
                if utt in owner:  # the official splits are disjoint
                    raise LibrilightError(f"{root / folder}: utterance {utt} is also in "
                                          f"{root / owner[utt]}; expected disjoint folders")
                owner[utt] = folder
                wav_scp[utt], text[utt], utt2spk[utt], num_samples[utt] = \
                    flac, words, spk, frames
        out = out_root / name
        write_data_dir(out, wav_scp=wav_scp, text=text, utt2spk=utt2spk,
                       utt2num_samples=num_samples)
        fixed = fix_data_dir(out)
        if fixed.changed:  # consistent by construction: a change means lost utterances
            logger.warning("%s", fixed)
        validate_data_dir(out)
        minutes = sum(num_samples.values()) / 16000 / 60
        logger.info("%s (%s): %d utterances, %d speakers (reader-chapter), %.1f min -> %s",
                    name, " + ".join(FINETUNING_SETS[name]), len(wav_scp),
                    len(set(utt2spk.values())), minutes, out)
        made[name] = out
    return made
