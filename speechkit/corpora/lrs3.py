"""LRS3-TED -> Kaldi data dirs for audio-visual speech recognition and pre-training.

Usage::

    from speechkit.corpora.lrs3 import prepare_lrs3, train_unit_model
    report = prepare_lrs3("/data/lrs3", "data", audio_dir="dump/audio/lrs3", valid_ids="lrs3-valid.id")
    train_unit_model(["data/train_433h/text"], "data/lang_unigram1000", vocab_size=1000)

Layout (the official release)::

    lrs3/{pretrain,trainval,test}/<speaker>/<clip>.mp4     # 25 fps face track + 16 kHz AAC
    lrs3/{pretrain,trainval,test}/<speaker>/<clip>.txt     # "Text:  ..." / "Conf:  ..." lines,
                                                           # then "WORD START END ASDSCORE" timings

Sets written under ``out_dir``: ``pretrain``, ``trainval``, ``valid``, ``train_30h`` (trainval minus
valid), ``train_433h`` (pretrain + trainval minus valid, as AV-HuBERT's 433 h set) and ``test``.
Each has ``wav.scp`` (16 kHz wav extracted into ``audio_dir``), ``text``, ``utt2spk``/``spk2utt``,
``utt2num_samples``, ``video_src.scp`` (utterance -> mp4, for mouth-ROI extraction) and, where clips
were split, ``segments``.

* **Utterance ids** are ``<speaker>-<set>-<clip>`` (``<speaker>-pretrain-<clip>_<k>`` for pieces of
  split clips): the speaker id first (Kaldi), the set in the id because pretrain and trainval reuse
  speakers and clip numbers could collide in ``train_433h``.
* **Pretrain splitting** (AV-HuBERT's rule): a pretrain clip longer than ``max_duration`` (15 s) is
  cut at every gap of more than ``min_gap`` (0.4 s) between consecutive words of its timing list;
  a cut sits in the middle of the gap, the first piece starts at 0 and the last ends at the clip end.
* **Valid**: ids from a user list in av_hubert's ``lrs3-valid.id`` format (``trainval/<spk>/<clip>``
  per line), or a seeded random choice of ``num_valid`` trainval clips (at most 10 % of them).
* **Text** is normalised with :func:`speechkit.text.normalize.normalize_text` (upper case, no
  punctuation except in-word apostrophes, ``{LG}``-style markers removed).
* **Bad input** is skipped, logged with the file and counted in the returned report (and in
  ``out_dir/lrs3_skipped.txt``): a ``.txt`` without its ``.mp4`` (``missing_mp4``), an ``.mp4``
  without a ``.txt`` (``missing_txt``), an unreadable container (``unreadable``), no audio stream
  (``no_audio``), audio and video lengths more than a frame apart (``av_mismatch``), empty text
  (``empty_text``). A missing set folder or a set left empty raises :class:`Lrs3Error`.
"""
from __future__ import annotations

import logging
import pathlib
import random
import re
from dataclasses import dataclass, field

from speechkit.corpora.av_common import AVRecord, SkipReport, extract_audio, write_av_set
from speechkit.io.video import AUDIO_RATE
from speechkit.text.normalize import NormalizerConfig, normalize_text

log = logging.getLogger(__name__)

PARTS = ("pretrain", "trainval", "test")
# LRS3 marks non-speech as {LG}, {NS}...; drop them with the other noise markers.
LRS3_NORMALIZER = NormalizerConfig(noise_pattern=r"<[^<>\s]*>|\[[^\[\]\s]*\]|\{[^{}\s]*\}")


class Lrs3Error(RuntimeError):
    """A structural problem with the LRS3 folder (names the path and what was expected)."""


@dataclass
class Lrs3Txt:
    """A parsed LRS3 ``.txt``: transcript, confidence and (optional) word timings."""

    text: str
    conf: str | None
    words: list[tuple[str, float, float]]


def parse_lrs3_txt(path: pathlib.Path) -> Lrs3Txt:
    """Parse one LRS3 transcript file; errors name ``path:line``."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or not lines[0].startswith("Text:"):
        raise Lrs3Error(f"{path}:1: expected a first line 'Text:  <transcript>'")
    text = lines[0].split(":", 1)[1].strip()
    conf = None
    words: list[tuple[str, float, float]] = []
    in_words = False
    for i, line in enumerate(lines[1:], 2):
        s = line.strip()
        if s.startswith("Conf:"):
            conf = s.split(":", 1)[1].strip()
        elif s.startswith("WORD"):
            in_words = True
        elif in_words and s:
            parts = s.split()
            if len(parts) < 3:
                raise Lrs3Error(f"{path}:{i}: expected 'WORD START END [SCORE]', got {s!r}")
            try:
                words.append((parts[0], float(parts[1]), float(parts[2])))
            except ValueError:
                raise Lrs3Error(f"{path}:{i}: word times must be numbers, got {s!r}") from None
    return Lrs3Txt(text, conf, words)


def split_at_word_gaps(words: list[tuple[str, float, float]], duration: float, max_duration: float = 15.0,
                       min_gap: float = 0.4) -> list[tuple[float, float, list[str]]]:
    """Pieces (start, end, words) of a clip: unsplit when ``duration <= max_duration`` or no timings;
    else cut in the middle of every gap longer than ``min_gap``."""
    if duration <= max_duration or not words:
        return [(0.0, duration, [w for w, _, _ in words])]
    groups: list[list[tuple[str, float, float]]] = [[words[0]]]
    for w in words[1:]:
        if w[1] - groups[-1][-1][2] > min_gap:
            groups.append([w])
        else:
            groups[-1].append(w)
    pieces = []
    for k, g in enumerate(groups):
        start = 0.0 if k == 0 else (groups[k - 1][-1][2] + g[0][1]) / 2
        end = duration if k == len(groups) - 1 else (g[-1][2] + groups[k + 1][0][1]) / 2
        pieces.append((round(start, 3), round(end, 3), [w for w, _, _ in g]))
    return pieces


def read_valid_ids(path: str | pathlib.Path) -> set[str]:
    """av_hubert ``lrs3-valid.id``: ``trainval/<spk>/<clip>`` per line -> our utterance ids."""
    out = set()
    p = pathlib.Path(path)
    for i, line in enumerate(p.read_text().splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        parts = s.split("/")
        if len(parts) != 3 or parts[0] != "trainval":
            raise Lrs3Error(f"{p}:{i}: expected 'trainval/<speaker>/<clip>', got {s!r}")
        out.add(utt_id(parts[1], "trainval", parts[2]))
    return out


def utt_id(spk: str, part: str, clip: str) -> str:
    return f"{spk}-{part}-{clip}"


@dataclass
class Lrs3Report:
    """What :func:`prepare_lrs3` wrote and skipped."""

    sets: dict[str, pathlib.Path] = field(default_factory=dict)
    num_utts: dict[str, int] = field(default_factory=dict)
    num_split_clips: int = 0
    skipped: SkipReport = field(default_factory=SkipReport)


def _scan_part(part_dir: pathlib.Path, part: str, audio_dir: pathlib.Path, skipped: SkipReport):
    """(clip entries, txt) for one set folder; pairs .mp4 with .txt, counting orphans."""
    entries = []
    for spk_dir in sorted(p for p in part_dir.iterdir() if p.is_dir()):
        stems_mp4 = {p.stem for p in spk_dir.glob("*.mp4")}
        stems_txt = {p.stem for p in spk_dir.glob("*.txt")}
        for stem in sorted(stems_txt - stems_mp4):
            skipped.add("missing_mp4", str(spk_dir / f"{stem}.txt"))
        for stem in sorted(stems_mp4 - stems_txt):
            skipped.add("missing_txt", str(spk_dir / f"{stem}.mp4"))
        for stem in sorted(stems_mp4 & stems_txt):
            src = (spk_dir / f"{stem}.mp4").resolve()
            wav = (audio_dir / part / spk_dir.name / f"{stem}.wav").resolve()
            entries.append((spk_dir.name, stem, src, wav, spk_dir / f"{stem}.txt"))
    return entries


def prepare_lrs3(corpus_dir, out_dir, audio_dir=None, valid_ids=None, num_valid: int = 1200, seed: int = 0,
                 max_duration: float = 15.0, min_gap: float = 0.4, num_jobs: int = 1) -> Lrs3Report:
    """Prepare the LRS3 sets (see the module docstring); returns a :class:`Lrs3Report`."""
    corpus = pathlib.Path(corpus_dir)
    out = pathlib.Path(out_dir)
    audio_root = pathlib.Path(audio_dir) if audio_dir is not None else out / "audio"
    for part in PARTS:
        if not (corpus / part).is_dir():
            raise Lrs3Error(f"{corpus / part}: no such folder; expected the LRS3 layout "
                            f"{{pretrain,trainval,test}}/<speaker>/<clip>.mp4 + .txt under {corpus}")
    report = Lrs3Report()
    scanned = {part: _scan_part(corpus / part, part, audio_root, report.skipped) for part in PARTS}
    jobs = [(str(src), str(wav)) for part in PARTS for _, _, src, wav, _ in scanned[part]]
    audio = extract_audio(jobs, check_video=True, num_jobs=num_jobs, desc="lrs3 audio")

    records: dict[str, list[AVRecord]] = {part: [] for part in PARTS}
    for part in PARTS:
        for spk, clip, src, wav, txt_path in scanned[part]:
            n, err = audio[str(src)]
            if err is not None:
                reason, msg = err.split(": ", 1)
                report.skipped.add(reason, msg)
                continue
            try:
                txt = parse_lrs3_txt(txt_path)
            except Lrs3Error as e:
                report.skipped.add("bad_txt", str(e))
                continue
            rec = utt_id(spk, part, clip)
            duration = n / AUDIO_RATE
            pieces = [(0.0, duration, None)]
            if part == "pretrain":
                pieces = split_at_word_gaps(txt.words, duration, max_duration, min_gap)
            if len(pieces) > 1:
                report.num_split_clips += 1
            for k, (start, end, piece_words) in enumerate(pieces):
                raw = txt.text if piece_words is None or len(pieces) == 1 else " ".join(piece_words)
                text = normalize_text(raw, LRS3_NORMALIZER)
                utt = rec if len(pieces) == 1 else f"{rec}_{k:02d}"
                if not text:
                    report.skipped.add("empty_text", f"{txt_path} ({utt})")
                    continue
                r = AVRecord(utt=utt, rec=rec, spk=spk, source=str(src), wav=str(wav), text=text, num_samples=n)
                if len(pieces) > 1:
                    r.start, r.end = start, min(end, duration)
                records[part].append(r)
    for part in PARTS:
        if not records[part]:
            raise Lrs3Error(f"{corpus / part}: no usable clips ({report.skipped.summary()})")

    trainval_ids = [r.utt for r in records["trainval"]]
    if valid_ids is not None:
        valid = read_valid_ids(valid_ids)
        unknown = valid - set(trainval_ids)
        if unknown:
            log.warning("%d of %d valid ids are not in trainval (e.g. %s)", len(unknown), len(valid), sorted(unknown)[0])
    else:
        k = min(num_valid, max(1, len(trainval_ids) // 10))
        if k < num_valid:
            log.warning("trainval has %d clips: using %d (10%%) for valid instead of %d", len(trainval_ids), k, num_valid)
        valid = set(random.Random(seed).sample(sorted(trainval_ids), k))
    sets = {
        "pretrain": records["pretrain"],
        "trainval": records["trainval"],
        "valid": [r for r in records["trainval"] if r.utt in valid],
        "train_30h": [r for r in records["trainval"] if r.utt not in valid],
        "train_433h": records["pretrain"] + [r for r in records["trainval"] if r.utt not in valid],
        "test": records["test"],
    }
    if not sets["valid"]:
        raise Lrs3Error(f"{valid_ids}: none of its ids is a trainval clip of {corpus}")
    for name, recs in sets.items():
        report.sets[name] = write_av_set(out / name, recs)
        report.num_utts[name] = len(recs)
    report.skipped.write(out / "lrs3_skipped.txt")
    log.info("LRS3: %s; %d pretrain clips split; skipped: %s",
             ", ".join(f"{k} {v}" for k, v in report.num_utts.items()), report.num_split_clips, report.skipped.summary())
    return report


def train_unit_model(text_files, out_dir, vocab_size: int = 1000, model_type: str = "unigram",
                     allow_smaller: bool = True) -> pathlib.Path:
    """Train the sentencepiece unit model (AV-HuBERT: unigram, 1000 units) on Kaldi ``text`` files.

    With ``allow_smaller`` a vocabulary too large for the text (tiny corpora) is lowered to the
    largest size sentencepiece accepts, with a warning. Saves a speechkit tokenizer folder.
    """
    from speechkit.text.normalize import read_text_file
    from speechkit.text.tokenizer import train_tokenizer

    sentences = [t for f in text_files for t in read_text_file(f).values()]
    if not sentences:
        raise ValueError(f"no sentences in {list(map(str, text_files))}")
    try:
        tok = train_tokenizer(sentences, kind=model_type, vocab_size=vocab_size, normalizer=LRS3_NORMALIZER)
    except ValueError as e:
        m = re.search(r"<=\s*(\d+)", str(e))
        if not (allow_smaller and m):
            raise
        smaller = int(m.group(1))
        log.warning("vocab_size %d is too large for %d sentences; using %d", vocab_size, len(sentences), smaller)
        tok = train_tokenizer(sentences, kind=model_type, vocab_size=smaller, normalizer=LRS3_NORMALIZER)
    return tok.save(out_dir)
