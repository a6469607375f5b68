"""TED-LIUM release 3 -> Kaldi data dirs.

Usage::

    from speechkit.corpora.tedlium3 import prepare_tedlium3
    reports = prepare_tedlium3("/data/TEDLIUM_release-3", "data", split="legacy")
    reports["train"].data_dir  # data/train with wav.scp, segments, text, utt2spk, spk2utt

Layout expected (as distributed on openslr.org/51)::

    TEDLIUM_release-3/legacy/{train,dev,test}/sph/<talk>.sph
    TEDLIUM_release-3/legacy/{train,dev,test}/stm/<talk>.stm
    TEDLIUM_release-3/speaker-adaptation/{train,dev,test}/{sph,stm}/...

``corpus_dir`` may be the ``TEDLIUM_release-3`` folder itself or its parent.

What the corpus says, and what we assume (from the release-3 README and the Kaldi/ESPnet
recipes built on it):

* Audio is NIST SPHERE, 16 kHz, 16-bit signed PCM, mono, uncompressed, so libsndfile
  (soundfile) reads it directly and ``wav.scp`` holds the plain path. ``sph2pipe=True``
  writes ``sph2pipe -f wav -p <path> |`` instead, for users who prefer Kaldi's reader or
  hold shorten-compressed copies (which libsndfile cannot read: those are a clear error
  without ``sph2pipe``).
* STM lines are ``talk channel speaker start end [<label>] word...`` with times in
  seconds; ``;;`` lines are comments. The label is ``<o,f0,male>``-style (``<F0_M>`` in
  the older dev set); we read past it. Speaker = talk (one talk, one speaker), as in the
  Kaldi recipe; the STM speaker field is not used.
* Lines whose text is ``ignore_time_segment_in_scoring`` are gaps between scored
  segments: skipped and counted (``ignored``).
* Text is lower-case and tokenised with clitics split off (``it 's``, ``we 're``);
  ``<unk>`` marks out-of-vocabulary words and is kept. Normalisation
  (:func:`normalize_words`): ``<sil>`` tokens are dropped (silence is modelled
  implicitly); pronunciation-variant suffixes ``word(2)`` become ``word``; a trailing
  ``(utterance-name)`` token (present in some train STMs) is dropped; brace markers such
  as ``{NOISE}``, ``{SMACK}``, ``{BREATH}``, ``{COUGH}`` are dropped (``noise="drop"``,
  the default, fit for character/BPE CTC) or mapped to Kaldi's ``[NOISE]`` form
  (``noise="map"``); clitics in :data:`CLITICS` are re-joined to the word before them
  (``it 's`` -> ``it's``), which is what Kaldi's ``join_suffix.py`` does for the words in
  the corpus dictionary. A segment left with no words is skipped and counted
  (``empty_text``).

Utterance ids are ``<talk>-<start>-<end>`` with times as ``%07d`` centiseconds (rounded,
not truncated as Kaldi's awk ``printf %d`` does, so ``1.13`` gives ``0000113`` even though
``1.13 * 100`` is ``112.99...`` in floating point); zero-padding makes C-locale order chronological.

Bad input is never lost silently. Counted, reported skips (WARNING log + the returned
:class:`Tedlium3SetReport`), or a :class:`Tedlium3Error` with ``strict=True``:

* ``missing_audio``: STM lines of a talk whose ``sph/<talk>.sph`` is absent;
* ``bad_audio``: STM lines of a talk whose SPHERE header cannot be read;
* ``beyond_audio``: a segment ending more than ``max_overshoot`` seconds past the end of
  the audio actually on disk (a truncated .sph, or a wrong STM time). Segments that
  overshoot by less are clipped to the audio end and counted as ``clipped`` -- the same
  rule as Kaldi's ``extract-segments --max-overshoot=0.5``.

Always counted skips, whatever ``strict``: ``ignored``, ``empty_duration`` (end <= start),
``empty_text``, ``duplicate`` (same talk/start/end twice). Structural problems (missing
set folder, an unparsable STM line, a set left with zero segments) always raise.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import pathlib
import re
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import soundfile as sf

from speechkit.io.datadir import validate_data_dir, write_data_dir
from speechkit.io.datadir_ops import fix_data_dir
from speechkit.log import progress

logger = logging.getLogger(__name__)

SPLITS = ("legacy", "speaker-adaptation")
SETS = ("train", "dev", "test")
IGNORE_TEXT = "ignore_time_segment_in_scoring"
# Contractions the corpus tokeniser split off the word before them.
CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "'t", "n't"})
# Kaldi extract-segments' default: an end this far past the audio is clipped, not rejected.
MAX_OVERSHOOT_S = 0.5
SKIP_KINDS = ("ignored", "empty_duration", "empty_text", "duplicate",
              "missing_audio", "bad_audio", "beyond_audio", "fix_data_dir")

_VARIANT = re.compile(r"\(\d+\)$")  # word(2) -> word
_LABEL = re.compile(r"^<[^>]*>$")
_NOT_LABELS = frozenset({"<unk>", "<sil>"})


class Tedlium3Error(ValueError):
    """A structural problem in a TED-LIUM 3 copy; the message names the file (and line)."""


@dataclass
class StmSegment:
    talk: str
    start: float
    end: float
    words: list[str]
    where: str  # "path:line", for messages

    @property
    def ignored(self) -> bool:
        return IGNORE_TEXT in self.words


@dataclass
class SphereHeader:
    path: pathlib.Path
    sample_rate: int
    sample_count: int
    channel_count: int
    sample_n_bytes: int
    sample_coding: str
    header_bytes: int
    data_bytes: int  # bytes after the header actually present on disk

    @property
    def compressed(self) -> bool:
        return self.sample_coding not in ("pcm", "")

    @property
    def duration(self) -> float:
        """Seconds of audio on disk (shorter than the header claims when truncated)."""
        return self.available_samples / self.sample_rate

    @property
    def available_samples(self) -> int:
        if self.compressed:  # size of a compressed stream says nothing about its length
            return self.sample_count
        frame_bytes = self.channel_count * self.sample_n_bytes
        return min(self.sample_count, self.data_bytes // frame_bytes)

    @property
    def truncated(self) -> bool:
        return self.available_samples < self.sample_count


@dataclass
class Tedlium3SetReport:
    """What one set's preparation kept and skipped (segment counts by reason)."""
    name: str
    data_dir: pathlib.Path
    num_stm_lines: int = 0  # = num_segments + sum(skipped.values()): every line accounted for
    num_talks: int = 0
    num_segments: int = 0
    num_clipped: int = 0
    truncated_talks: list[str] = field(default_factory=list)
    talks_without_stm: list[str] = field(default_factory=list)
    skipped: collections.Counter = field(default_factory=collections.Counter)

    def summary(self) -> str:
        skips = ", ".join(f"{k}={self.skipped[k]}" for k in SKIP_KINDS if self.skipped[k])
        return (f"{self.name}: {self.num_stm_lines} STM lines -> {self.num_talks} talks, "
                f"{self.num_segments} segments, "
                f"{self.num_clipped} clipped, skipped: {skips or 'none'}")


# ---------------------------------------------------------------- STM parsing

def parse_stm_line(line: str, where: str) -> StmSegment | None:
    """One STM line -> segment; None for blank and ``;;`` comment lines."""
    fields = line.split()
    if not fields or fields[0].startswith(";;"):
        return None
    if len(fields) < 5:
        raise Tedlium3Error(f"{where}: expected 'talk channel speaker start end [<label>] "
                            f"text...', got {line.strip()!r}")
    try:
        start, end = float(fields[3]), float(fields[4])
    except ValueError:
        raise Tedlium3Error(f"{where}: start/end times {fields[3]!r} {fields[4]!r} are not "
                            f"numbers") from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise Tedlium3Error(f"{where}: bad times start={fields[3]} end={fields[4]}")
    words = fields[5:]
    if words and _LABEL.match(words[0]) and words[0] not in _NOT_LABELS:
        words = words[1:]
    return StmSegment(fields[0], start, end, words, where)


def read_stm(path: str | os.PathLike) -> list[StmSegment]:
    path = pathlib.Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            seg = parse_stm_line(line, f"{path}:{lineno}")
            if seg is not None:
                out.append(seg)
    return out


def normalize_words(words: list[str], noise: str = "drop", join_clitics: bool = True) -> str:
    """STM words -> transcript, following the rules in the module docstring."""
    if noise not in ("drop", "map"):
        raise ValueError(f"noise must be 'drop' or 'map', got {noise!r}")
    toks = list(words)
    if toks and toks[-1].startswith("(") and toks[-1].endswith(")"):
        toks = toks[:-1]  # trailing "(utterance-name)" of some train STMs
    out: list[str] = []
    for tok in toks:
        if tok == "<sil>":
            continue
        if tok.startswith("{") and tok.endswith("}"):
            if noise == "map":
                out.append("[" + tok[1:-1] + "]")
            continue
        tok = _VARIANT.sub("", tok)
        if not tok:
            continue
        if (join_clitics and tok in CLITICS and out
                and not out[-1].startswith(("[", "<"))):
            out[-1] += tok
        else:
            out.append(tok)
    return " ".join(out)


def utt_id(talk: str, start: float, end: float) -> str:
    return f"{talk}-{round(start * 100):07d}-{round(end * 100):07d}"


# ---------------------------------------------------------------- SPHERE header

def read_sphere_header(path: str | os.PathLike) -> SphereHeader:
    """Parse a NIST SPHERE header without decoding audio.

    Raises :class:`Tedlium3Error` naming the file when the header is unreadable.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        head = f.read(1024)
        size = os.fstat(f.fileno()).st_size
    lines = head.split(b"\n")
    if len(lines) < 3 or lines[0].strip() != b"NIST_1A":
        raise Tedlium3Error(f"{path}: not a NIST SPHERE file (first line {lines[0][:16]!r}, "
                            f"expected b'NIST_1A')")
    try:
        header_bytes = int(lines[1])
    except ValueError:
        raise Tedlium3Error(f"{path}: bad SPHERE header size {lines[1][:16]!r}") from None
    if header_bytes > len(head):  # headers are 1024 bytes in practice; read the rest
        with open(path, "rb") as f:
            head = f.read(header_bytes)
        lines = head.split(b"\n")
    fields: dict[str, str] = {}
    ended = False
    for raw in lines[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_head":
            ended = True
            break
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2]
    if not ended or size < header_bytes:
        raise Tedlium3Error(f"{path}: truncated SPHERE header (no 'end_head' within "
                            f"{header_bytes} bytes, file is {size} bytes)")
    try:
        hdr = SphereHeader(
            path=path,
            sample_rate=int(fields["sample_rate"]),
            sample_count=int(fields["sample_count"]),
            channel_count=int(fields.get("channel_count", "1")),
            sample_n_bytes=int(fields.get("sample_n_bytes", "2")),
            sample_coding=fields.get("sample_coding", "pcm").strip(),
            header_bytes=header_bytes,
            data_bytes=size - header_bytes,
        )
    except KeyError as e:
        raise Tedlium3Error(f"{path}: SPHERE header lacks field {e.args[0]!r}") from None
    except ValueError as e:
        raise Tedlium3Error(f"{path}: bad SPHERE header value ({e})") from None
    if hdr.sample_rate <= 0 or hdr.channel_count <= 0 or hdr.sample_n_bytes <= 0:
        raise Tedlium3Error(f"{path}: SPHERE header has non-positive rate/channels/width")
    return hdr


# ---------------------------------------------------------------- preparation

def _find_root(corpus_dir: pathlib.Path) -> pathlib.Path:
    for cand in (corpus_dir, corpus_dir / "TEDLIUM_release-3"):
        if any((cand / s).is_dir() for s in SPLITS):
            return cand
    raise Tedlium3Error(f"{corpus_dir}: no TED-LIUM 3 layout here (expected "
                        f"{corpus_dir}/[TEDLIUM_release-3/]{{{','.join(SPLITS)}}}/)")


def _resolve_sph2pipe(sph2pipe: bool | str) -> str | None:
    if sph2pipe is False or sph2pipe is None:
        return None
    exe = shutil.which("sph2pipe") if sph2pipe is True else shutil.which(str(sph2pipe))
    if exe is None:
        raise Tedlium3Error(f"sph2pipe was asked for ({sph2pipe!r}) but is not on PATH; "
                            f"install it (Kaldi tools/) or drop --sph2pipe to read .sph "
                            f"files directly with soundfile")
    return exe


def _check_talk(sph: pathlib.Path, sph2pipe: str | None) -> tuple[SphereHeader | None, str, str]:
    """Header of one talk's audio, checked to be readable the way wav.scp will read it.

    Returns ``(header, "", "")``, or ``(None, "missing_audio" | "bad_audio", why)`` for a
    skip. A compressed file without sph2pipe raises: the whole copy needs --sph2pipe.
    """
    if not sph.is_file():
        return None, "missing_audio", f"{sph}: missing audio (no such file)"
    try:
        hdr = read_sphere_header(sph)
    except Tedlium3Error as e:
        return None, "bad_audio", str(e)
    if sph2pipe is None:
        if hdr.compressed:
            raise Tedlium3Error(f"{sph}: SPHERE sample_coding {hdr.sample_coding!r} is "
                                f"compressed; soundfile cannot read it -- use --sph2pipe")
        try:
            sf.info(str(sph))
        except sf.LibsndfileError as e:
            return None, "bad_audio", f"{sph}: soundfile cannot open it ({e})"
    return hdr, "", ""


def prepare_tedlium3(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "legacy",
    sets: tuple[str, ...] | list[str] = SETS,
    num_jobs: int = 1,
    *,
    sph2pipe: bool | str = False,
    noise: str = "drop",
    join_clitics: bool = True,
    max_overshoot: float = MAX_OVERSHOOT_S,
    strict: bool = False,
) -> dict[str, Tedlium3SetReport]:
    """Write ``out_dir/<set>/{wav.scp,segments,text,utt2spk,spk2utt}`` for each set.

    See the module docstring for the layout, normalisation and skip rules. ``strict=True``
    turns missing, unreadable and truncated audio into a :class:`Tedlium3Error` instead of
    counted skips. Returns one :class:`Tedlium3SetReport` per set.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(sets, str):
        sets = (sets,)
    root = _find_root(pathlib.Path(corpus_dir).absolute())  # wav.scp paths work from anywhere
    exe = _resolve_sph2pipe(sph2pipe)
    out_dir = pathlib.Path(out_dir)
    reports = {}
    for name in sets:
        reports[name] = _prepare_set(root / split / name, out_dir / name, name, num_jobs,
                                     exe, noise, join_clitics, max_overshoot, strict)
    return reports


def _prepare_set(set_dir, data_dir, name, num_jobs, sph2pipe, noise, join_clitics,
                 max_overshoot, strict) -> Tedlium3SetReport:
    stm_dir, sph_dir = set_dir / "stm", set_dir / "sph"
    for d in (stm_dir, sph_dir):
        if not d.is_dir():
            raise Tedlium3Error(f"{d}: folder missing (expected the TED-LIUM 3 layout "
                                f"<split>/<set>/{{sph,stm}}/)")
    stms = sorted(stm_dir.glob("*.stm"))
    if not stms:
        raise Tedlium3Error(f"{stm_dir}: no .stm files")
    report = Tedlium3SetReport(name=name, data_dir=data_dir)

    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        parsed = list(progress(ex.map(read_stm, stms), desc=f"stm {name}", total=len(stms),
                               unit="talk"))
    by_talk: dict[str, list[StmSegment]] = collections.defaultdict(list)
    for segs in parsed:
        report.num_stm_lines += len(segs)
        for seg in segs:
            by_talk[seg.talk].append(seg)

    # Audio headers, one per talk named in an STM (STM lines carry the talk id).
    talks = sorted(by_talk)
    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        checked = list(progress(
            ex.map(lambda t: (t, *_check_talk(sph_dir / f"{t}.sph", sph2pipe)), talks),
            desc=f"sph {name}", total=len(talks), unit="talk"))

    wav_scp, segments, text, utt2spk = {}, {}, {}, {}
    for talk, hdr, problem, why in checked:
        segs = by_talk[talk]
        if hdr is None:
            n = sum(not s.ignored for s in segs)
            if strict:
                raise Tedlium3Error(f"{why}; needed by STM {segs[0].where}")
            logger.warning("%s -- skipping %d segments of talk %s (STM %s)", why, n, talk,
                           segs[0].where)
            report.skipped[problem] += n
            report.skipped["ignored"] += len(segs) - n
            continue
        if hdr.truncated:
            msg = (f"{hdr.path}: truncated, header says {hdr.sample_count} samples, file "
                   f"holds {hdr.available_samples} ({hdr.duration:.2f} s)")
            if strict:
                raise Tedlium3Error(msg)
            logger.warning("%s; segments past the end are skipped", msg)
            report.truncated_talks.append(talk)
        kept = _talk_segments(talk, segs, hdr, noise, join_clitics, max_overshoot,
                              strict, report, segments, text, utt2spk)
        if kept:
            report.num_talks += 1
            # A `cmd |` entry is shell code: quote the paths, or `$(...)`, `(` or a space in a
            # corpus path would be run or break the command.
            wav_scp[talk] = (f"{shlex.quote(sph2pipe)} -f wav -p {shlex.quote(str(hdr.path))} |"
                             if sph2pipe else str(hdr.path))

    with_stm = set(by_talk)
    report.talks_without_stm = sorted(p.stem for p in sph_dir.glob("*.sph")
                                      if p.stem not in with_stm)
    if report.talks_without_stm:
        logger.warning("%s: %d .sph files have no STM and are left out (e.g. %s)", sph_dir,
                       len(report.talks_without_stm), report.talks_without_stm[0])
    report.num_segments = len(segments)
    if not segments:
        raise Tedlium3Error(f"{set_dir}: zero usable segments ({report.summary()})")

    write_data_dir(data_dir, wav_scp=wav_scp, text=text, utt2spk=utt2spk, segments=segments)
    fixed = fix_data_dir(data_dir)
    validate_data_dir(data_dir)
    if fixed.changed:  # our tables are consistent by construction: say so loudly if not
        logger.warning("fix_data_dir changed %s: %s", data_dir, fixed)
        report.skipped["fix_data_dir"] += fixed.num_utts_before - fixed.num_utts_after
        report.num_segments = fixed.num_utts_after
    problems = [k for k in ("missing_audio", "bad_audio", "beyond_audio", "duplicate",
                            "fix_data_dir") if report.skipped[k]]
    (logger.warning if problems else logger.info)("%s", report.summary())
    return report


def _talk_segments(talk, segs, hdr, noise, join_clitics, max_overshoot, strict, report,
                   segments, text, utt2spk) -> int:
    """Add one talk's usable segments to the tables; count the rest in ``report``."""
    kept = 0
    audio_end = hdr.duration
    for seg in segs:
        if seg.ignored:
            report.skipped["ignored"] += 1
            continue
        if seg.end <= seg.start:
            logger.debug("%s: end %.2f <= start %.2f, skipped", seg.where, seg.end, seg.start)
            report.skipped["empty_duration"] += 1
            continue
        end = seg.end
        if end > audio_end:
            if end - audio_end > max_overshoot or seg.start >= audio_end:
                msg = (f"{seg.where}: segment ends at {seg.end:.2f} s, past the end of "
                       f"{hdr.path} ({audio_end:.2f} s)")
                if strict:
                    raise Tedlium3Error(msg)
                logger.warning("%s; skipped", msg)
                report.skipped["beyond_audio"] += 1
                continue
            end = math.floor(audio_end * 1000) / 1000  # clip, never past the last sample
            if end <= seg.start:
                report.skipped["beyond_audio"] += 1
                continue
            report.num_clipped += 1
        words = normalize_words(seg.words, noise=noise, join_clitics=join_clitics)
        if not words:
            report.skipped["empty_text"] += 1
            continue
        utt = utt_id(talk, seg.start, seg.end)
        if utt in segments:
            logger.warning("%s: duplicate segment %s, skipped", seg.where, utt)
            report.skipped["duplicate"] += 1
            continue
        segments[utt] = (talk, seg.start, end)
        text[utt] = words
        utt2spk[utt] = talk
        kept += 1
    return kept
