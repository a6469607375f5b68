"""Kaldi "key value..." text tables: parsing with line numbers, sorted atomic writing.

A table is one entry per line, ``<key> <value...>``, the key being the first
whitespace-free token. Kaldi tools require tables sorted in C-locale (byte) order;
Python's ``str`` ordering compares code points, which for UTF-8 text is the same
order as comparing bytes, so ``sorted()`` gives C-locale order directly.
"""
from __future__ import annotations

import os
import pathlib
import re
import tempfile
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

PathLike = str | os.PathLike

# key = first run of non-whitespace; value = the rest, with surrounding whitespace removed.
_LINE_RE = re.compile(r"(\S+)(?:\s+(.*?))?\s*$")


class DataDirError(ValueError):
    """A problem in a data directory or table; the message names the file (and line)."""


@dataclass
class TableLine:
    """One parsed line of a table (1-based ``lineno``)."""

    lineno: int
    key: str
    value: str


@dataclass
class ParsedTable:
    """A table parsed tolerantly: good entries in file order, plus the problems found."""

    path: pathlib.Path
    entries: dict[str, TableLine]
    problems: list[tuple[int, str, str]]  # (lineno, key or "", reason)

    def values(self) -> dict[str, str]:
        return {k: e.value for k, e in self.entries.items()}


def parse_table(path: PathLike, tolerant: bool = False) -> ParsedTable:
    """Parse ``path``; raise DataDirError on the first bad line unless ``tolerant``.

    Bad lines are empty lines, lines starting with whitespace (an empty key) and
    repeated keys (the first occurrence is kept when tolerant).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such file")
    entries: dict[str, TableLine] = {}
    problems: list[tuple[int, str, str]] = []

    def bad(lineno: int, key: str, reason: str) -> None:
        if not tolerant:
            raise DataDirError(f"{path}:{lineno}: {reason}")
        problems.append((lineno, key, reason))

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                bad(lineno, "", "empty line; expected '<key> <value>'")
                continue
            if line[0].isspace():
                bad(lineno, "", f"line starts with whitespace (empty key): {line.strip()[:60]!r}; "
                                "expected '<key> <value>'")
                continue
            m = _LINE_RE.match(line)
            assert m is not None  # a non-blank line not starting with whitespace always matches
            key, value = m.group(1), m.group(2) or ""
            if key in entries:
                bad(lineno, key, f"duplicate key {key!r} (first seen on line {entries[key].lineno}); "
                                 "expected each key once")
                continue
            entries[key] = TableLine(lineno, key, value)
    return ParsedTable(path, entries, problems)


def iter_token_lines(path: PathLike, what: str = "table") -> Iterator[tuple[int, str, list[str]]]:
    """``(lineno, key, tokens)`` for each line of a ``<utt> tok tok ...`` file (frame labels, alignments).

    A missing file, an empty line or a repeated utterance is a DataDirError naming ``path:line``;
    ``what`` names the kind of file in the first message.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise DataDirError(f"{p}: no such {what}")
    seen: set[str] = set()
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                raise DataDirError(f"{p}:{lineno}: empty line")
            if parts[0] in seen:
                raise DataDirError(f"{p}:{lineno}: utterance {parts[0]!r} appears twice")
            seen.add(parts[0])
            yield lineno, parts[0], parts[1:]


def read_table(path: PathLike) -> dict[str, str]:
    """Read a Kaldi table into ``{key: value}`` in file order.

    Duplicate keys, empty keys and empty lines raise DataDirError naming ``path:line``.
    """
    return parse_table(path).values()


def format_value(value: object) -> str:
    """Render a table value: lists/tuples joined by spaces, floats in shortest round-trip form."""
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return format_value(value.item())
    return str(value)


def write_lines_atomic(path: PathLike, lines: Iterable[str]) -> pathlib.Path:
    """Write ``lines`` (without newlines) to ``path`` via a temp file + rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_table(path: PathLike, mapping: Mapping[str, object]) -> pathlib.Path:
    """Write ``mapping`` as a table sorted by key in C-locale order, atomically.

    Values may be str/int/float or lists of those (joined with spaces). Keys must be
    non-empty and contain no whitespace.
    """
    path = pathlib.Path(path)
    for key in mapping:
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise DataDirError(f"{path}: invalid key {key!r}; expected a non-empty string without whitespace")

    def lines() -> Iterable[str]:
        for key in sorted(mapping):
            value = format_value(mapping[key])
            if "\n" in value:
                raise DataDirError(f"{path}: value for key {key!r} contains a newline")
            yield f"{key} {value}" if value else key

    return write_lines_atomic(path, list(lines()))


def parse_segment(path: pathlib.Path, line: TableLine) -> tuple[str, float, float]:
    """Parse one ``segments`` line value ``<recording> <start> <end>``."""
    fields = line.value.split()
    if len(fields) != 3:
        raise DataDirError(
            f"{path}:{line.lineno}: expected '<utt> <recording> <start> <end>', got {len(fields) + 1} fields"
        )
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise DataDirError(
            f"{path}:{line.lineno}: start/end times {fields[1]!r} {fields[2]!r} are not numbers "
            "(expected seconds)"
        ) from None
    return fields[0], start, end


def read_segments(path: PathLike) -> dict[str, tuple[str, float, float]]:
    """Read a Kaldi ``segments`` file: ``{utt: (recording, start_s, end_s)}`` in file order."""
    table = parse_table(path)
    return {k: parse_segment(table.path, line) for k, line in table.entries.items()}


def parse_int_value(path: pathlib.Path, line: TableLine) -> int:
    """Parse a positive-integer value (utt2num_samples / utt2num_frames)."""
    try:
        n = int(line.value)
    except ValueError:
        n = -1
    if n <= 0:
        raise DataDirError(
            f"{path}:{line.lineno}: value {line.value!r} for {line.key!r} is not a positive integer"
        )
    return n


def first_unsorted(keys: Sequence[str]) -> int | None:
    """Index of the first key that is not strictly after its predecessor, or None."""
    for i in range(1, len(keys)):
        if not keys[i - 1] < keys[i]:
            return i
    return None
