"""Kaldi-style data directories: load, save, write and validate.

A data dir holds tables keyed by utterance (``text``, ``utt2spk``, ``utt2num_samples``,
``utt2num_frames``, ``feats.scp``, extras such as ``km.<tag>``, ``utt2dur``, ``<name>.scp``),
by recording (``wav.scp``; with ``segments`` an utterance is a slice of a recording;
optional ``reco2dur``, ``reco2file_and_channel``) and by speaker (``spk2utt``; optional
``spk2gender``, ``cmvn.scp``). Without ``segments``, recording ids are utterance ids.

Usage::

    from speechkit.io.datadir import DataDir, write_data_dir, validate_data_dir
    from speechkit.io.datadir_ops import fix_data_dir, split_data_dir
    write_data_dir("data/train", wav_scp={...}, text={...}, utt2spk={...})
    d = DataDir.load("data/train"); d.utt_ids; d.text["spk1-utt1"]
    validate_data_dir("data/train")        # raises DataDirError naming file:line

fix / split / subset / combine live in :mod:`speechkit.io.datadir_ops`, which builds on this module
(never the other way round); :mod:`speechkit.io` exports both.
"""
from __future__ import annotations

import fnmatch
import pathlib
from dataclasses import dataclass, field
from typing import Mapping

from speechkit.io.tables import (
    DataDirError,
    ParsedTable,
    PathLike,
    first_unsorted,
    parse_int_value,
    parse_segment,
    parse_table,
    read_segments,
    read_table,
    write_table,
)

__all__ = [
    "DataDirError", "DataDir", "read_table", "write_table", "read_segments", "write_data_dir",
    "validate_data_dir", "build_spk2utt",
]

# Per-utterance tables with a dedicated attribute (file name -> attribute name).
UTT_TABLES = {
    "text": "text",
    "utt2spk": "utt2spk",
    "utt2num_samples": "utt2num_samples",
    "utt2num_frames": "utt2num_frames",
    "feats.scp": "feats_scp",
}
# Optional per-speaker and per-recording tables: kept consistent by fix/split/subset.
SPK_TABLES = ("spk2gender", "cmvn.scp")
RECO_TABLES = ("reco2dur", "reco2file_and_channel", "reco2num_samples")
# Any other file matching these patterns is a per-utterance "extra" table.
EXTRA_PATTERNS = ("km.*", "utt2*", "text.*", "*.scp")
_NOT_EXTRA = {"wav.scp", "segments", "spk2utt", *UTT_TABLES, *SPK_TABLES, *RECO_TABLES}
_INT_TABLES = ("utt2num_samples", "utt2num_frames")


def is_extra_name(name: str) -> bool:
    """True when ``name`` is recognised as an extra per-utterance table on load."""
    if name in _NOT_EXTRA or name.startswith(".") or name.endswith((".tmp", ".ark")):
        return False
    return any(fnmatch.fnmatchcase(name, p) for p in EXTRA_PATTERNS)


def build_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert utt2spk: speaker -> sorted utterance list, speakers sorted."""
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in sorted(out)}


@dataclass
class DataDir:
    """An in-memory data directory. Tables absent on disk are ``None``."""

    path: pathlib.Path | None = None
    wav_scp: dict[str, str] = field(default_factory=dict)
    segments: dict[str, tuple[str, float, float]] | None = None
    text: dict[str, str] | None = None
    utt2spk: dict[str, str] | None = None
    spk2utt: dict[str, list[str]] | None = None
    utt2num_samples: dict[str, int] | None = None
    utt2num_frames: dict[str, int] | None = None
    feats_scp: dict[str, str] | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    spk_extra: dict[str, dict[str, str]] = field(default_factory=dict)
    reco_extra: dict[str, dict[str, str]] = field(default_factory=dict)

    # ---- loading / saving ---------------------------------------------------------------
    @classmethod
    def load(cls, path: PathLike) -> "DataDir":
        """Read every recognised table of ``path`` (no consistency checks; see validate)."""
        path = pathlib.Path(path)
        if not (path / "wav.scp").is_file():
            raise DataDirError(f"{path}/wav.scp: no such file; expected a Kaldi data dir with wav.scp")
        d = cls(path=path, wav_scp=read_table(path / "wav.scp"))
        if (path / "segments").is_file():
            d.segments = read_segments(path / "segments")
        for name, attr in UTT_TABLES.items():
            if not (path / name).is_file():
                continue
            if name in _INT_TABLES:
                t = parse_table(path / name)
                setattr(d, attr, {k: parse_int_value(t.path, e) for k, e in t.entries.items()})
            else:
                setattr(d, attr, read_table(path / name))
        if (path / "spk2utt").is_file():
            d.spk2utt = {k: v.split() for k, v in read_table(path / "spk2utt").items()}
        for name in SPK_TABLES:
            if (path / name).is_file():
                d.spk_extra[name] = read_table(path / name)
        for name in RECO_TABLES:
            if (path / name).is_file():
                d.reco_extra[name] = read_table(path / name)
        for p in sorted(path.iterdir()):
            if p.is_file() and is_extra_name(p.name):
                d.extra[p.name] = read_table(p)
        return d

    def tables(self) -> dict[str, Mapping[str, object]]:
        """All present tables as ``{file name: mapping}`` (spk2utt as lists)."""
        out: dict[str, Mapping[str, object]] = {"wav.scp": self.wav_scp}
        if self.segments is not None:
            out["segments"] = {u: list(v) for u, v in self.segments.items()}
        for name, attr in UTT_TABLES.items():
            value = getattr(self, attr)
            if value is not None:
                out[name] = value
        if self.spk2utt is not None:
            out["spk2utt"] = self.spk2utt
        out.update(self.spk_extra)
        out.update(self.reco_extra)
        out.update(self.extra)
        return out

    def save(self, path: PathLike | None = None) -> pathlib.Path:
        """Write every table sorted and atomically; recognised table files the object
        does not hold are removed from ``path`` so the directory matches the object."""
        path = pathlib.Path(path if path is not None else self.path)  # type: ignore[arg-type]
        for name in self.extra:
            if not is_extra_name(name):
                raise DataDirError(
                    f"{path}: extra table name {name!r} would not be recognised on load; "
                    f"expected a name matching one of {', '.join(EXTRA_PATTERNS)}"
                )
        path.mkdir(parents=True, exist_ok=True)
        tables = self.tables()
        for name, mapping in tables.items():
            write_table(path / name, mapping)
        for p in path.iterdir():
            if p.is_file() and p.name not in tables and (p.name in _NOT_EXTRA or is_extra_name(p.name)):
                p.unlink()
        self.path = path
        return path

    # ---- views --------------------------------------------------------------------------
    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids in data-dir (C-locale sorted) order."""
        return sorted(self.segments if self.segments is not None else self.wav_scp)

    @property
    def rec_ids(self) -> list[str]:
        return sorted(self.wav_scp)

    def __len__(self) -> int:
        return len(self.segments if self.segments is not None else self.wav_scp)

    def subset(self, utt_ids) -> "DataDir":
        """A new DataDir restricted to ``utt_ids`` (recordings, speakers follow)."""
        keep = set(utt_ids)

        def f(m):
            return None if m is None else {k: v for k, v in m.items() if k in keep}

        segments = f(self.segments)
        recs = {r for r, _, _ in segments.values()} if segments is not None else keep
        utt2spk = f(self.utt2spk)
        spk2utt = build_spk2utt(utt2spk) if utt2spk is not None else None
        spks = set(spk2utt or ())
        return DataDir(
            path=None,
            wav_scp={k: v for k, v in self.wav_scp.items() if k in recs},
            segments=segments,
            text=f(self.text),
            utt2spk=utt2spk,
            spk2utt=spk2utt,
            utt2num_samples=f(self.utt2num_samples),
            utt2num_frames=f(self.utt2num_frames),
            feats_scp=f(self.feats_scp),
            extra={n: f(t) for n, t in self.extra.items()},
            spk_extra={n: {k: v for k, v in t.items() if k in spks} for n, t in self.spk_extra.items()},
            reco_extra={n: {k: v for k, v in t.items() if k in recs} for n, t in self.reco_extra.items()},
        )


def write_data_dir(
    out_dir: PathLike,
    *,
    wav_scp: Mapping[str, str],
    text: Mapping[str, str] | None = None,
    utt2spk: Mapping[str, str] | None = None,
    segments: Mapping[str, tuple[str, float, float]] | None = None,
    utt2num_samples: Mapping[str, int] | None = None,
    extra: Mapping[str, Mapping[str, object]] | None = None,
    utt2num_frames: Mapping[str, int] | None = None,
    feats_scp: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Write a data dir (all tables sorted), build spk2utt, then validate it.

    Without ``utt2spk`` each utterance is its own speaker (Kaldi's convention when
    speakers are unknown).
    """
    utts = segments if segments is not None else wav_scp
    if utt2spk is None:
        utt2spk = {u: u for u in utts}
    d = DataDir(
        wav_scp=dict(wav_scp),
        segments={u: (r, float(s), float(e)) for u, (r, s, e) in segments.items()} if segments is not None else None,
        text=dict(text) if text is not None else None,
        utt2spk=dict(utt2spk),
        spk2utt=build_spk2utt(utt2spk),
        utt2num_samples={k: int(v) for k, v in utt2num_samples.items()} if utt2num_samples is not None else None,
        utt2num_frames={k: int(v) for k, v in utt2num_frames.items()} if utt2num_frames is not None else None,
        feats_scp=dict(feats_scp) if feats_scp is not None else None,
        extra={k: dict(v) for k, v in (extra or {}).items()},  # type: ignore[misc]
    )
    path = d.save(out_dir)
    validate_data_dir(path)
    return path


# ---- validation -------------------------------------------------------------------------
_FIX_HINT = "run utils/fix_data_dir.sh (or python -m speechkit.bin.data_dir fix) on the dir"


def _check_sorted(t: ParsedTable) -> None:
    keys = list(t.entries)
    i = first_unsorted(keys)
    if i is not None:
        line = t.entries[keys[i]]
        raise DataDirError(
            f"{t.path}:{line.lineno}: key {keys[i]!r} comes after {keys[i - 1]!r}; expected keys "
            f"sorted in C-locale (byte) order ({_FIX_HINT})"
        )


def _check_coverage(t: ParsedTable, ref: ParsedTable, what: str) -> None:
    """``t`` must have exactly the keys of ``ref`` (utterances, speakers or recordings)."""
    for key, line in t.entries.items():
        if key not in ref.entries:
            raise DataDirError(
                f"{t.path}:{line.lineno}: {what} {key!r} is not in {ref.path.name}; expected the same "
                f"{what}s as {ref.path.name} ({_FIX_HINT})"
            )
    missing = [k for k in ref.entries if k not in t.entries]
    if missing:
        first = ref.entries[missing[0]]
        raise DataDirError(
            f"{t.path}: {len(missing)} of {len(ref.entries)} {what}s of {ref.path.name} are missing "
            f"(first: {missing[0]!r}, {ref.path.name} line {first.lineno}); expected the same {what}s "
            f"as {ref.path.name} ({_FIX_HINT})"
        )


def validate_data_dir(path: PathLike) -> None:
    """Check a data dir; raise DataDirError naming the file, the line and what was expected.

    Checks: required files exist; no empty lines, empty or duplicate keys; keys sorted in
    C-locale order; every per-utterance file covers the same utterances; spk2utt agrees with
    utt2spk; utterance ids sort the same way by speaker and by utterance (speaker-id prefixes);
    segment times are numbers with 0 <= start < end and recordings in wav.scp; counts in
    utt2num_samples/utt2num_frames are positive integers.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: no such data directory")
    for required in ("wav.scp", "utt2spk", "spk2utt"):
        if not (path / required).is_file():
            raise DataDirError(f"{path}/{required}: no such file; every data dir needs wav.scp, utt2spk, spk2utt")
    wav = parse_table(path / "wav.scp")
    if not wav.entries:
        raise DataDirError(f"{wav.path}: empty; expected at least one recording")
    _check_sorted(wav)
    for key, line in wav.entries.items():
        if not line.value:
            raise DataDirError(f"{wav.path}:{line.lineno}: recording {key!r} has no path or command")

    ref = wav  # the table that defines the utterance set
    if (path / "segments").is_file():
        seg = parse_table(path / "segments")
        _check_sorted(seg)
        for utt, line in seg.entries.items():
            rec, start, end = parse_segment(seg.path, line)
            if rec not in wav.entries:
                raise DataDirError(
                    f"{seg.path}:{line.lineno}: recording {rec!r} of utterance {utt!r} is not in wav.scp"
                )
            if start < 0:
                raise DataDirError(f"{seg.path}:{line.lineno}: start {start} of {utt!r} is negative; expected >= 0")
            if not end > start:
                raise DataDirError(
                    f"{seg.path}:{line.lineno}: end {end} of {utt!r} is not after start {start}; expected start < end"
                )
        if not seg.entries:
            raise DataDirError(f"{seg.path}: empty; expected at least one utterance")
        ref = seg

    tables: dict[str, ParsedTable] = {}
    names = list(UTT_TABLES) + sorted(p.name for p in path.iterdir() if p.is_file() and is_extra_name(p.name))
    for name in names:
        if (path / name).is_file():
            t = tables[name] = parse_table(path / name)
            _check_sorted(t)
            _check_coverage(t, ref, "utterance")
            if name in _INT_TABLES:
                for line in t.entries.values():
                    parse_int_value(t.path, line)

    # speakers
    u2s = tables["utt2spk"]
    for utt, line in u2s.entries.items():
        if len(line.value.split()) != 1:
            raise DataDirError(f"{u2s.path}:{line.lineno}: expected '<utt> <speaker>', got {line.value!r} for {utt!r}")
    s2u = parse_table(path / "spk2utt")
    _check_sorted(s2u)
    seen: dict[str, int] = {}
    for spk, line in s2u.entries.items():
        utts = line.value.split()
        if not utts:
            raise DataDirError(f"{s2u.path}:{line.lineno}: speaker {spk!r} lists no utterances")
        for utt in utts:
            if utt not in u2s.entries:
                raise DataDirError(f"{s2u.path}:{line.lineno}: utterance {utt!r} of speaker {spk!r} is not in utt2spk")
            if u2s.entries[utt].value != spk:
                raise DataDirError(
                    f"{s2u.path}:{line.lineno}: utterance {utt!r} is listed under speaker {spk!r} but "
                    f"utt2spk line {u2s.entries[utt].lineno} says {u2s.entries[utt].value!r}"
                )
            if utt in seen:
                raise DataDirError(f"{s2u.path}:{line.lineno}: utterance {utt!r} also listed on line {seen[utt]}")
            seen[utt] = line.lineno
    for utt, line in u2s.entries.items():
        if utt not in seen:
            raise DataDirError(
                f"{s2u.path}: utterance {utt!r} (utt2spk line {line.lineno}) is not listed under its "
                f"speaker {line.value!r}; expected spk2utt to be the inverse of utt2spk ({_FIX_HINT})"
            )
    by_utt = list(u2s.entries)  # already checked sorted
    by_spk = sorted(by_utt, key=lambda u: (u2s.entries[u].value, u))
    for a, b in zip(by_utt, by_spk):
        if a != b:
            line = u2s.entries[b]
            raise DataDirError(
                f"{u2s.path}:{line.lineno}: utterance {b!r} of speaker {line.value!r} sorts differently by "
                f"speaker than by utterance id; expected utterance ids to start with their speaker id"
            )

    for names_, ref_t, what in ((SPK_TABLES, s2u, "speaker"), (RECO_TABLES, wav, "recording")):
        for name in names_:
            if (path / name).is_file():
                t = parse_table(path / name)
                _check_sorted(t)
                _check_coverage(t, ref_t, what)

