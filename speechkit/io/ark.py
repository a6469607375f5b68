"""Kaldi ark/scp storage of features (float32 matrices) and labels (int32 vectors).

Usage (one shard per job, merged afterwards)::

    from speechkit.io.ark import ArkWriter, read_scp, merge_scps
    with ArkWriter("dump/mfcc/train/feats.3.ark", "dump/mfcc/train/feats.3.scp") as w:
        w.write("spk1-utt1", feats)            # (frames, dim) float -> float32 matrix
    merge_scps([f"dump/.../feats.{j}.scp" for j in range(1, 5)], "dump/.../feats.scp")
    feats = read_scp("dump/mfcc/train/feats.scp")["spk1-utt1"]   # loaded lazily

The writer fills temp files and renames them on a clean exit, so a crashed job never
leaves a half-written shard behind that a re-run could mistake for a finished one.
"""
from __future__ import annotations

import collections.abc
import os
import pathlib
from typing import Iterator, Sequence

import kaldiio
import numpy as np

from speechkit.io.tables import DataDirError, PathLike, parse_table, write_lines_atomic, write_table

__all__ = ["ArkWriter", "read_scp", "merge_scps", "ScpReader", "ArkError", "check_finite"]


class ArkError(ValueError):
    """Bad data for, or a failure reading, an ark/scp entry (names the key and file)."""


def check_finite(arr: np.ndarray, key: str, where: str) -> None:
    """Raise ``ArkError`` naming ``key`` and its first frame (row) holding NaN or inf.

    An ark written by another tool (or damaged on disk) can hold non-finite floats; k-means
    would turn them into a NaN centroid and label 0, silently, so readers refuse them.
    """
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1)) if arr.ndim else np.zeros(1, np.int64)
    what = "frame" if arr.ndim == 2 else "element"
    raise ArkError(f"{where}: {key!r} has NaN or inf at {what} {int(rows[0])} "
                   f"({len(rows)} {what}(s) of {len(arr) if arr.ndim else 1}); expected finite values")


class ArkWriter:
    """Context manager writing ``key -> array`` pairs to an ark with a matching scp.

    Float arrays are stored as float32 (2-D: matrix, 1-D: vector); integer 1-D arrays as
    int32 vectors. Keys must be unique and whitespace-free; float data must be finite.
    """

    def __init__(self, ark_path: PathLike, scp_path: PathLike) -> None:
        self.ark_path = pathlib.Path(ark_path)
        self.scp_path = pathlib.Path(scp_path)
        self._tmp_ark = self.ark_path.with_name(f".{self.ark_path.name}.{os.getpid()}.tmp")
        self._f = None
        self._lines: list[str] = []
        self._keys: set[str] = set()

    def __enter__(self) -> "ArkWriter":
        self.ark_path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self._tmp_ark, "wb")
        return self

    def write(self, key: str, array) -> None:
        if self._f is None:
            raise RuntimeError("ArkWriter.write called outside its `with` block")
        if not key or any(c.isspace() for c in key):
            raise ArkError(f"{self.ark_path}: invalid key {key!r}; expected no whitespace")
        if key in self._keys:
            raise ArkError(f"{self.ark_path}: key {key!r} written twice")
        arr = np.asarray(array)
        if arr.dtype.kind == "f":
            if arr.ndim not in (1, 2):
                raise ArkError(f"{self.ark_path}: {key!r} has shape {arr.shape}; expected a 1-D or 2-D float array")
            if not np.isfinite(arr).all():
                raise ArkError(f"{self.ark_path}: {key!r} contains NaN or inf")
            arr = arr.astype(np.float32, copy=False)
        elif arr.dtype.kind in "iub":
            if arr.ndim != 1:
                raise ArkError(f"{self.ark_path}: {key!r} is an integer array of shape {arr.shape}; "
                               "Kaldi stores only 1-D integer vectors")
            if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
                raise ArkError(f"{self.ark_path}: {key!r} has values outside int32")
            arr = arr.astype(np.int32, copy=False)
        else:
            raise ArkError(f"{self.ark_path}: {key!r} has dtype {arr.dtype}; expected float or integer")
        # kaldiio writes "<key> " then the binary object; the scp offset points past the key.
        offset = self._f.tell() + len(key.encode("utf-8")) + 1
        kaldiio.save_ark(self._f, {key: arr})
        self._lines.append(f"{key} {self.ark_path}:{offset}")
        self._keys.add(key)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._f is not None
        self._f.close()
        self._f = None
        if exc_type is not None:
            self._tmp_ark.unlink(missing_ok=True)
            return
        os.replace(self._tmp_ark, self.ark_path)
        write_lines_atomic(self.scp_path, self._lines)


class ScpReader(collections.abc.Mapping):
    """Ordered, lazily loading ``key -> np.ndarray`` view of an scp file."""

    def __init__(self, scp_path: PathLike) -> None:
        self.scp_path = pathlib.Path(scp_path)
        self._entries = parse_table(self.scp_path).values()  # duplicates/empty keys: error with line

    def __getitem__(self, key: str) -> np.ndarray:
        spec = self._entries[key]
        try:
            arr = np.asarray(kaldiio.load_mat(spec))
        except (OSError, ValueError, EOFError) as e:
            raise ArkError(f"{self.scp_path}: cannot load {key!r} from {spec!r}: {e}") from e
        check_finite(arr, key, f"{self.scp_path} ({spec})")
        return arr

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def spec(self, key: str) -> str:
        """The ``file.ark:offset`` an entry points to."""
        return self._entries[key]


def read_scp(scp_path: PathLike) -> ScpReader:
    """Open an scp as an ordered mapping ``key -> array`` (each array loaded on access)."""
    return ScpReader(scp_path)


def merge_scps(scp_paths: Sequence[PathLike], out_scp: PathLike) -> pathlib.Path:
    """Concatenate shard scps into ``out_scp`` sorted by key; a key in two shards is an error."""
    merged: dict[str, str] = {}
    origin: dict[str, pathlib.Path] = {}
    for p in scp_paths:
        t = parse_table(p)
        for key, line in t.entries.items():
            if key in merged:
                raise DataDirError(f"{t.path}:{line.lineno}: key {key!r} is also in {origin[key]}; "
                                   "expected each key in exactly one shard")
            merged[key] = line.value
            origin[key] = t.path
    return write_table(out_scp, merged)
