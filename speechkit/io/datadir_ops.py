"""Operations on whole data dirs: fix, split, subset, combine.

``fix_data_dir`` is Kaldi's fix_data_dir.sh that tells you what it did: it keeps the
utterances every per-utterance file agrees on, rebuilds spk2utt, sorts every table and
returns a :class:`FixReport` saying how many entries were dropped from which file and why.
The original files are copied to ``<dir>/.backup/`` first.
"""
from __future__ import annotations

import logging
import pathlib
import random as _random
import shutil
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from speechkit.io.datadir import (
    _INT_TABLES,
    RECO_TABLES,
    SPK_TABLES,
    UTT_TABLES,
    DataDir,
    build_spk2utt,
    is_extra_name,
    validate_data_dir,
)
from speechkit.io.tables import DataDirError, ParsedTable, PathLike, first_unsorted, parse_table

logger = logging.getLogger(__name__)


@dataclass
class FixDrop:
    file: str
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)  # up to 3 keys or line numbers


@dataclass
class FixReport:
    """What ``fix_data_dir`` changed."""

    path: pathlib.Path
    num_utts_before: int
    num_utts_after: int
    drops: list[FixDrop] = field(default_factory=list)
    resorted: list[str] = field(default_factory=list)
    spk2utt_rebuilt: bool = False

    @property
    def dropped(self) -> dict[str, dict[str, int]]:
        """``{file: {reason: count}}``."""
        out: dict[str, dict[str, int]] = {}
        for d in self.drops:
            out.setdefault(d.file, {})[d.reason] = out.get(d.file, {}).get(d.reason, 0) + d.count
        return out

    def num_dropped(self, file: str) -> int:
        return sum(self.dropped.get(file, {}).values())

    @property
    def changed(self) -> bool:
        return bool(self.drops or self.resorted or self.spk2utt_rebuilt)

    def __str__(self) -> str:
        lines = [f"fix_data_dir {self.path}: kept {self.num_utts_after} of {self.num_utts_before} utterances"]
        for d in self.drops:
            eg = f" (e.g. {', '.join(d.examples)})" if d.examples else ""
            lines.append(f"  {d.file}: dropped {d.count} ({d.reason}){eg}")
        if self.resorted:
            lines.append(f"  re-sorted: {', '.join(self.resorted)}")
        if self.spk2utt_rebuilt:
            lines.append("  spk2utt: rebuilt from utt2spk")
        if not self.changed:
            lines.append("  nothing to fix")
        return "\n".join(lines)


class _Dropper:
    """Collects drops per (file, reason)."""

    def __init__(self) -> None:
        self.drops: dict[tuple[str, str], FixDrop] = {}

    def add(self, file: str, reason: str, example: str) -> None:
        d = self.drops.setdefault((file, reason), FixDrop(file, reason, 0))
        d.count += 1
        if len(d.examples) < 3:
            d.examples.append(example)


def _recognised_files(path: pathlib.Path) -> list[str]:
    names = ["wav.scp", "segments", "spk2utt", *UTT_TABLES, *SPK_TABLES, *RECO_TABLES]
    names += sorted(p.name for p in path.iterdir() if p.is_file() and is_extra_name(p.name))
    return [n for n in names if (path / n).is_file()]


def fix_data_dir(path: PathLike) -> FixReport:
    """Make a data dir consistent: keep the intersection of utterances, sort, rebuild spk2utt.

    Raises DataDirError when nothing is left or a problem cannot be fixed by dropping
    entries (e.g. utterance ids that do not start with their speaker id).
    """
    path = pathlib.Path(path)
    if not (path / "wav.scp").is_file():
        raise DataDirError(f"{path}/wav.scp: no such file; cannot fix a data dir without wav.scp")
    if not (path / "utt2spk").is_file():
        raise DataDirError(f"{path}/utt2spk: no such file; fix cannot invent speakers "
                           "(write utt2spk with each utterance as its own speaker if they are unknown)")
    files = _recognised_files(path)
    backup = path / ".backup"
    backup.mkdir(exist_ok=True)
    for name in files:
        shutil.copy2(path / name, backup / name)

    drop = _Dropper()
    parsed: dict[str, ParsedTable] = {name: parse_table(path / name, tolerant=True) for name in files}
    resorted = [n for n, t in parsed.items() if n != "spk2utt" and first_unsorted(list(t.entries)) is not None]
    for name, t in parsed.items():
        for lineno, key, reason in t.problems:
            if reason.startswith("duplicate key"):
                short = "duplicate key (first occurrence kept)"
            elif reason.startswith("empty line"):
                short = "empty line"
            else:
                short = "malformed line (empty key)"
            drop.add(name, short, f"{key} (line {lineno})" if key else f"line {lineno}")

    def values(name: str) -> dict[str, str]:
        return parsed[name].values()

    wav = {k: v for k, v in values("wav.scp").items() if v or drop.add("wav.scp", "no path or command", k)}
    segments: dict[str, tuple[str, float, float]] | None = None
    if "segments" in parsed:
        segments = {}
        for utt, value in values("segments").items():
            fields = value.split()
            try:
                rec, start, end = fields[0], float(fields[1]), float(fields[2])
                if len(fields) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                drop.add("segments", "malformed line (expected '<utt> <rec> <start> <end>')", utt)
                continue
            if rec not in wav:
                drop.add("segments", "recording not in wav.scp", utt)
            elif start < 0 or not end > start:
                drop.add("segments", "bad times (expected 0 <= start < end)", utt)
            else:
                segments[utt] = (rec, start, end)
    ref_name = "segments" if segments is not None else "wav.scp"
    ref = segments if segments is not None else wav
    num_before = len(parsed[ref_name].entries)

    utt_tables: dict[str, dict[str, str]] = {}
    for name in files:
        if name in UTT_TABLES or is_extra_name(name):
            table = values(name)
            if name == "utt2spk":
                table = {u: s for u, s in table.items()
                         if len(s.split()) == 1 or drop.add(name, "malformed speaker (expected one token)", u)}
            elif name in _INT_TABLES:
                table = {u: v for u, v in table.items()
                         if (v.isdigit() and int(v) > 0) or drop.add(name, "not a positive integer", u)}
            utt_tables[name] = table

    # An utterance survives only if every per-utterance table has it.
    order = [ref_name, *utt_tables]
    sets = {ref_name: set(ref), **{n: set(t) for n, t in utt_tables.items()}}
    keep = set.intersection(*sets.values())
    for name in order:
        for utt in sorted(sets[name] - keep):
            lacking = next(n for n in order if utt not in sets[n])
            drop.add(name, f"utterance missing from {lacking}", utt)

    d = DataDir(path=path)
    if segments is not None:
        d.segments = {u: segments[u] for u in keep}
        used = {r for r, _, _ in d.segments.values()}
        for rec in sorted(set(wav) - used):
            drop.add("wav.scp", "recording has no segments left", rec)
        d.wav_scp = {r: v for r, v in wav.items() if r in used}
    else:
        d.wav_scp = {u: wav[u] for u in keep}
    for name, table in utt_tables.items():
        kept = {u: v for u, v in table.items() if u in keep}
        if name in UTT_TABLES:
            setattr(d, UTT_TABLES[name], {u: int(v) for u, v in kept.items()} if name in _INT_TABLES else kept)
        else:
            d.extra[name] = kept
    d.spk2utt = build_spk2utt(d.utt2spk or {})
    old_spk2utt = {k: v.split() for k, v in values("spk2utt").items()} if "spk2utt" in parsed else None
    for names, keys, what in ((SPK_TABLES, set(d.spk2utt), "speaker"), (RECO_TABLES, set(d.wav_scp), "recording")):
        for name in names:
            if name in parsed:
                table = values(name)
                for k in sorted(set(table) - keys):
                    drop.add(name, f"{what} has no utterances left", k)
                kept = {k: v for k, v in table.items() if k in keys}
                (d.spk_extra if what == "speaker" else d.reco_extra)[name] = kept
    if not keep:
        raise DataDirError(
            f"{path}: no utterance is present in every file ({', '.join(order)}); nothing left after fixing. "
            f"The originals are in {backup}"
        )
    d.save(path)
    report = FixReport(
        path=path, num_utts_before=num_before, num_utts_after=len(keep),
        drops=list(drop.drops.values()), resorted=resorted, spk2utt_rebuilt=old_spk2utt != d.spk2utt,
    )
    logger.info("%s", report)
    validate_data_dir(path)
    return report


# ---- split / subset / combine -------------------------------------------------------------
def _even_bounds(total: int, n: int) -> list[int]:
    """Boundaries of n contiguous, near-equal parts of ``total`` items."""
    return [round(i * total / n) for i in range(n + 1)]


def split_data_dir(path: PathLike, n: int, out_root: PathLike | None = None, by_speaker: bool = False) -> list[pathlib.Path]:
    """Split into ``n`` parts ``out_root/split{n}/{1..n}`` (``out_root`` defaults to the dir).

    Parts are contiguous runs of the sorted utterances (so the split is stable: the same dir
    always splits the same way) of near-equal size. With ``by_speaker`` no speaker is split
    across parts, and parts are balanced by utterance count.
    """
    path = pathlib.Path(path)
    validate_data_dir(path)
    d = DataDir.load(path)
    utts = d.utt_ids
    if n < 1:
        raise DataDirError(f"{path}: cannot split into {n} parts; expected n >= 1")
    if by_speaker:
        spk2utt = build_spk2utt(d.utt2spk or {})
        spks = list(spk2utt)
        if n > len(spks):
            raise DataDirError(f"{path}: cannot split {len(spks)} speakers into {n} parts by speaker")
        # Greedy contiguous: cut after the speaker whose cumulative count is nearest each target,
        # keeping at least one speaker per remaining part.
        cum, c = [], 0
        for s in spks:
            c += len(spk2utt[s])
            cum.append(c)
        cuts, start = [0], 0
        for i in range(1, n):
            target = i * len(utts) / n
            lo, hi = start + 1, len(spks) - (n - i)
            best = min(range(lo, hi + 1), key=lambda j: (abs(cum[j - 1] - target), j))
            cuts.append(best)
            start = best
        cuts.append(len(spks))
        parts = [[u for s in spks[cuts[i]:cuts[i + 1]] for u in spk2utt[s]] for i in range(n)]
    else:
        if n > len(utts):
            raise DataDirError(f"{path}: cannot split {len(utts)} utterances into {n} parts")
        b = _even_bounds(len(utts), n)
        parts = [utts[b[i]:b[i + 1]] for i in range(n)]
    root = pathlib.Path(out_root) if out_root is not None else path
    out = []
    for i, part in enumerate(parts, start=1):
        p = d.subset(part).save(root / f"split{n}" / str(i))
        out.append(p)
    return out


def _read_utt_list(utt_list: PathLike | Iterable[str]) -> list[str]:
    if isinstance(utt_list, (str, pathlib.Path)):
        with open(utt_list, encoding="utf-8") as f:
            return [line.split()[0] for line in f if line.strip()]
    return list(utt_list)


def subset_data_dir(
    path: PathLike,
    out: PathLike,
    first: int | None = None,
    random: int | None = None,
    seed: int = 0,
    utt_list: PathLike | Sequence[str] | None = None,
) -> pathlib.Path:
    """Write a subset of ``path`` to ``out``: the first N utterances, N at random (seeded),
    or those in ``utt_list`` (ids, or a file whose first column is an id). Exactly one."""
    path = pathlib.Path(path)
    if sum(x is not None for x in (first, random, utt_list)) != 1:
        raise DataDirError(f"{path}: subset needs exactly one of first=, random=, utt_list=")
    d = DataDir.load(path)
    utts = d.utt_ids
    if utt_list is not None:
        wanted = _read_utt_list(utt_list)
        have = set(utts)
        missing = [u for u in wanted if u not in have]
        if missing:
            logger.warning("subset %s: %d of %d listed utterances are not in the dir (e.g. %s)",
                           path, len(missing), len(wanted), ", ".join(missing[:3]))
        chosen = [u for u in wanted if u in have]
    else:
        k = first if first is not None else random
        assert k is not None
        if not 0 < k <= len(utts):
            raise DataDirError(f"{path}: cannot take {k} of {len(utts)} utterances; expected 1..{len(utts)}")
        chosen = utts[:k] if first is not None else _random.Random(seed).sample(utts, k)
    if not chosen:
        raise DataDirError(f"{path}: the subset is empty")
    out_path = d.subset(chosen).save(out)
    validate_data_dir(out_path)
    return out_path


def combine_data_dirs(dirs: Sequence[PathLike], out: PathLike) -> pathlib.Path:
    """Concatenate data dirs into ``out``. Utterance ids must be unique across dirs; a table
    present in only some dirs is left out (with a warning), as in Kaldi's combine_data.sh."""
    if not dirs:
        raise DataDirError(f"{out}: nothing to combine")
    loaded = [DataDir.load(p) for p in dirs]
    has_seg = [x.segments is not None for x in loaded]
    if any(has_seg) and not all(has_seg):
        raise DataDirError(
            f"{out}: cannot combine dirs with segments ({', '.join(str(x.path) for x in loaded if x.segments is not None)}) "
            f"and without ({', '.join(str(x.path) for x in loaded if x.segments is None)})"
        )
    names: set[str] = set.intersection(*(set(x.tables()) for x in loaded))
    for x in loaded:
        for name in sorted(set(x.tables()) - names):
            logger.warning("combine: %s/%s is not in every input dir; leaving it out", x.path, name)
    if "utt2spk" not in names:
        raise DataDirError(f"{out}: every input dir needs utt2spk")
    combined: dict[str, dict[str, object]] = {}
    owner: dict[tuple[str, str], pathlib.Path] = {}
    for x in loaded:
        for name, table in x.tables().items():
            if name not in names or name == "spk2utt":
                continue
            dst = combined.setdefault(name, {})
            for key, value in table.items():
                if key in dst and (name not in ("wav.scp", *RECO_TABLES, *SPK_TABLES) or dst[key] != value):
                    raise DataDirError(
                        f"{x.path}/{name}: key {key!r} also in {owner[(name, key)]}/{name}"
                        + ("" if name not in ("wav.scp", *RECO_TABLES, *SPK_TABLES) else " with a different value")
                        + "; expected unique ids across the combined dirs"
                    )
                dst[key] = value
                owner[(name, key)] = x.path  # type: ignore[assignment]
    d = DataDir(
        wav_scp=combined.pop("wav.scp"),  # type: ignore[arg-type]
        segments={u: tuple(v) for u, v in combined.pop("segments").items()} if "segments" in combined else None,  # type: ignore[misc]
    )
    for name, attr in UTT_TABLES.items():
        if name in combined:
            setattr(d, attr, combined.pop(name))
    d.spk2utt = build_spk2utt(d.utt2spk or {})
    for name, table in combined.items():
        group = d.spk_extra if name in SPK_TABLES else d.reco_extra if name in RECO_TABLES else d.extra
        group[name] = table  # type: ignore[assignment]
    out_path = d.save(out)
    validate_data_dir(out_path)
    return out_path
