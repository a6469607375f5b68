"""LibriSpeech (official on-disk layout) -> Kaldi data dirs.

Layout read (as distributed at openslr.org/12, and as the synthetic corpus writes it)::

    <corpus_dir>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <corpus_dir>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

``corpus_dir`` may be the folder holding ``LibriSpeech/`` or ``LibriSpeech/`` itself. Each part
becomes ``<out_dir>/<part with - as _>`` (``train-clean-100`` -> ``train_clean_100``) with
``wav.scp`` (absolute flac path), ``text``, ``utt2spk``/``spk2utt`` (speaker = reader-chapter,
``<speaker>-<chapter>``, as Kaldi's and ESPnet's recipes do, so per-speaker CMVN is per chapter)
and ``utt2num_samples`` (samples at 16 kHz, the rate every reader resamples to: a file at another
rate is counted as its resampled length, and warned about). Combined sets: ``train_960`` when the three training parts are there,
``dev`` (dev-clean + dev-other) when both are.

Single missing files are warned about and counted; structural problems (no LibriSpeech parts
at all, an empty part, a transcript line whose id does not match its folder) are errors.
"""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from speechkit.io.audio import resampled_length
from speechkit.io.datadir import validate_data_dir, write_data_dir
from speechkit.io.datadir_ops import combine_data_dirs, fix_data_dir

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # LibriSpeech's rate; utt2num_samples counts samples at this rate

LIBRISPEECH_PARTS = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)
COMBINED_SETS = {
    "train_960": ("train-clean-100", "train-clean-360", "train-other-500"),
    "dev": ("dev-clean", "dev-other"),
}
_PART_RE = re.compile(r"^(train|dev|test)-[A-Za-z0-9-]+$")
_LAYOUT = ("<corpus_dir>/LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac plus "
           "<speaker>-<chapter>.trans.txt in each chapter folder (parts: " + ", ".join(LIBRISPEECH_PARTS) + ")")


class LibriSpeechError(ValueError):
    """The corpus folder does not have LibriSpeech's layout; the message says what was expected."""


@dataclass
class ChapterScan:
    """One chapter folder, parsed (also used by the Libri-light preparation)."""

    utts: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # utt -> (flac, text, 16 kHz samples)
    other_rate: dict[str, int] = field(default_factory=dict)  # utt -> native rate, for files not at 16 kHz
    missing_flac: list[str] = field(default_factory=list)  # utt ids with a transcript, no flac
    orphan_flac: list[str] = field(default_factory=list)  # flac files with no transcript line


def _find_root(corpus_dir: Path) -> Path:
    if not corpus_dir.is_dir():
        raise LibriSpeechError(f"{corpus_dir}: no such folder; expected {_LAYOUT}")
    if (corpus_dir / "LibriSpeech").is_dir():
        return corpus_dir / "LibriSpeech"
    if corpus_dir.name == "LibriSpeech" or any((corpus_dir / p).is_dir() for p in LIBRISPEECH_PARTS):
        return corpus_dir
    found = sorted(p.name for p in corpus_dir.iterdir())[:10]
    raise LibriSpeechError(f"{corpus_dir}: neither a LibriSpeech/ folder nor any LibriSpeech part in it "
                           f"(found: {', '.join(found) or 'nothing'}); expected {_LAYOUT}")


def scan_chapter(chapter_dir: Path) -> ChapterScan:
    """Parse ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` and pair its lines with flac files.
    Lines without a flac and flacs without a line are collected, not raised; a malformed line is
    an error naming file:line."""
    import soundfile as sf

    spk, chapter = chapter_dir.parent.name, chapter_dir.name
    scan = ChapterScan()
    flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
    trans = chapter_dir / f"{spk}-{chapter}.trans.txt"
    transcribed: set[str] = set()
    if trans.is_file():
        id_re = re.compile(rf"^{re.escape(spk)}-{re.escape(chapter)}-\d+$")
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt, _, text = line.strip().partition(" ")
            if not id_re.match(utt):
                raise LibriSpeechError(f"{trans}:{lineno}: utterance id {utt!r} does not match its folder; "
                                       f"expected '{spk}-{chapter}-<number> <TEXT>'")
            if not text.strip():
                raise LibriSpeechError(f"{trans}:{lineno}: utterance {utt!r} has no text; "
                                       "expected '<utt> <TRANSCRIPT>'")
            if utt in transcribed:
                raise LibriSpeechError(f"{trans}:{lineno}: utterance {utt!r} appears twice")
            transcribed.add(utt)
            flac = flacs.get(utt)
            if flac is None:
                scan.missing_flac.append(utt)
                continue
            try:
                info = sf.info(str(flac))
            except RuntimeError as e:  # libsndfile cannot parse the header
                raise LibriSpeechError(f"{flac}: cannot read the audio header of {utt!r}: {e}") from e
            # Counted at 16 kHz, the rate the audio is read at: a native-rate count of an 8 kHz file
            # would be half the samples the features and labels are later computed from.
            frames = info.frames
            if info.samplerate != SAMPLE_RATE:
                scan.other_rate[utt] = info.samplerate
                frames = resampled_length(frames, info.samplerate, SAMPLE_RATE)
            scan.utts[utt] = (str(flac.resolve()), " ".join(text.split()), frames)
    scan.orphan_flac = sorted(str(flacs[u]) for u in set(flacs) - transcribed)
    return scan


def _warn_files(part: str, files: list[str], what: str) -> None:
    if files:
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        logger.warning("%s: %d %s (first: %s)", part, len(files), what, shown)


def warn_other_rates(part: str, other_rate: dict[str, int]) -> None:
    """Say plainly that files not at 16 kHz will be resampled (and are counted at 16 kHz)."""
    _warn_files(part, [f"{u} at {r} Hz" for u, r in sorted(other_rate.items())],
                f"flac files are not at {SAMPLE_RATE} Hz: they will be resampled to {SAMPLE_RATE} Hz when "
                f"read, and utt2num_samples counts their {SAMPLE_RATE} Hz samples")


def _prepare_part(root: Path, part: str, out_dir: Path, num_jobs: int) -> Path:
    part_dir = root / part
    chapters = sorted(c for s in part_dir.iterdir() if s.is_dir() for c in s.iterdir() if c.is_dir())
    if not chapters:
        raise LibriSpeechError(f"{part_dir}: empty part (no <speaker>/<chapter> folders); expected {_LAYOUT}")
    from speechkit.log import progress

    with ThreadPoolExecutor(max_workers=max(1, num_jobs)) as pool:  # soundfile releases the GIL
        scans = list(progress(pool.map(scan_chapter, chapters), desc=f"scan {part}", total=len(chapters),
                              unit="chapter"))
    wav_scp, text, utt2spk, num_samples = {}, {}, {}, {}
    missing, orphans, other_rate = [], [], {}
    for chapter_dir, scan in zip(chapters, scans):
        missing += scan.missing_flac
        orphans += scan.orphan_flac
        other_rate.update(scan.other_rate)
        spk = f"{chapter_dir.parent.name}-{chapter_dir.name}"
        for utt, (flac, words, frames) in scan.utts.items():
            wav_scp[utt], text[utt], utt2spk[utt], num_samples[utt] = flac, words, spk, frames
    _warn_files(part, missing, "transcript lines have no flac file and were skipped")
    _warn_files(part, orphans, "flac files have no transcript line and were ignored")
    warn_other_rates(part, other_rate)
    if not wav_scp:
        raise LibriSpeechError(f"{part_dir}: no utterance with both a transcript line and a flac file "
                               f"({len(chapters)} chapter folders); expected {_LAYOUT}")
    out = out_dir / part.replace("-", "_")
    write_data_dir(out, wav_scp=wav_scp, text=text, utt2spk=utt2spk, utt2num_samples=num_samples)
    report = fix_data_dir(out)
    if report.changed:
        logger.warning("%s", report)
    validate_data_dir(out)
    hours = sum(num_samples.values()) / 16000 / 3600
    logger.info("%s: %d utterances, %d speakers (reader-chapter), %.2f h -> %s",
                part, len(wav_scp), len(set(utt2spk.values())), hours, out)
    return out


def prepare_librispeech(corpus_dir, out_dir, parts: Sequence[str] | None = None,
                        num_jobs: int = 1) -> dict[str, Path]:
    """Make one Kaldi data dir per LibriSpeech part (plus train_960 / dev when complete).

    ``parts=None`` takes every part present (the seven official ones are looked for, and any other
    ``train-*``/``dev-*``/``test-*`` folder such as mini LibriSpeech's ``dev-clean-2``); absent
    official parts are listed in a warning. Parts named explicitly must exist. Returns
    ``{set name: data dir}``, e.g. ``{"dev_clean": Path(".../dev_clean"), ...}``.
    """
    root = _find_root(Path(corpus_dir).resolve())
    out_root = Path(out_dir)
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and _PART_RE.match(p.name))
    if parts is None:
        todo = present
        absent = [p for p in LIBRISPEECH_PARTS if p not in present]
        if absent:
            logger.warning("%s: %d LibriSpeech parts are absent and skipped: %s", root, len(absent),
                           ", ".join(absent))
    else:
        todo = list(dict.fromkeys(parts))
        absent = [p for p in todo if not (root / p).is_dir()]
        if absent:
            raise LibriSpeechError(f"{root}: requested parts {', '.join(absent)} are absent (present: "
                                   f"{', '.join(present) or 'none'}); expected {_LAYOUT}")
    if not todo:
        raise LibriSpeechError(f"{root}: no LibriSpeech part folders in it; expected {_LAYOUT}")

    logger.info("preparing LibriSpeech parts %s from %s into %s", ", ".join(todo), root, out_root)
    made = {part.replace("-", "_"): _prepare_part(root, part, out_root, num_jobs) for part in todo}
    for name, members in COMBINED_SETS.items():
        if all(m in todo for m in members):
            made[name] = combine_data_dirs([made[m.replace("-", "_")] for m in members], out_root / name)
            validate_data_dir(made[name])
            logger.info("combined %s -> %s", " + ".join(members), made[name])
    return made
