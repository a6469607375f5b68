"""Frame sources for k-means: in-memory arrays or streamed ark/scp shards.

A source yields its frames as float32 blocks; k-means never needs all of them at
once. ``ScpSource`` reads utterances from kaldiio shards (``feats.scp`` of a
dump dir, or several), shuffles them at utterance level every pass and mixes
frames in a bounded shuffle buffer, so memory is O(buffer_frames), not O(data).
"""
from __future__ import annotations

import os
import pathlib
from typing import Iterator, Protocol, Sequence

import kaldiio
import numpy as np
import torch

from speechkit.io.ark import ArkError, check_finite, read_scp
from speechkit.io.datadir import DataDirError, read_table


class FrameSource(Protocol):
    """What k-means reads: ``dim``, ``num_frames`` and passes over the frames."""

    dim: int
    num_frames: int
    peak_rows: int  # largest number of frame rows this source held at once (memory bound check)

    def blocks(self, rng: np.random.Generator | None, buffer_frames: int) -> Iterator[np.ndarray]:
        """One pass over every frame: in file order when ``rng`` is None, else shuffled.

        A yielded block may be a view of the source's memory: copy what must
        outlive the next step of the iterator.
        """
        ...


class ArraySource:
    """Frames already in memory, shape (N, D) (the caller chose to hold them)."""

    def __init__(self, x: np.ndarray):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty (frames, dim) array, got shape {x.shape}")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(self.x).all(axis=1))
        if len(bad):
            raise ValueError(f"frame {int(bad[0])} ({len(bad)} frame(s) of {len(self.x)}) "
                             "holds NaN or inf; expected finite features")
        self.num_frames, self.dim = self.x.shape
        self.peak_rows = self.num_frames

    def blocks(self, rng: np.random.Generator | None, buffer_frames: int) -> Iterator[np.ndarray]:
        # frames are shuffled globally below, so small blocks lose nothing and keep copies small
        step = max(1, min(buffer_frames, 16384))
        if rng is None:
            for i in range(0, self.num_frames, step):
                yield self.x[i : i + step]
            return
        perm = rng.permutation(self.num_frames)  # frame-level shuffle: the ideal mini-batch order
        for i in range(0, self.num_frames, step):
            yield np.take(self.x, perm[i : i + step], axis=0)  # ~3x faster than fancy indexing


    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless mini-batches of shuffled passes (epochs), each gathered straight from the array.

        The same frame order as ``blocks`` cut into batches, without the block copies: one
        random-row gather per batch. A batch that straddles two passes takes the tail of one
        permutation and the head of the next.
        """
        # torch's randperm is ~2x numpy's permutation for a million rows
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))  # seeded by rng: deterministic
        carry = np.zeros(0, np.int64)
        while True:
            perm = torch.randperm(self.num_frames, generator=gen).numpy()
            i = 0
            if len(carry):
                i = batch_size - len(carry)
                if i > len(perm):
                    carry = np.concatenate([carry, perm])
                    continue
                yield np.take(self.x, np.concatenate([carry, perm[:i]]), axis=0)
            while i + batch_size <= len(perm):
                yield np.take(self.x, perm[i : i + batch_size], axis=0)
                i += batch_size
            carry = perm[i:]


class ScpSource:
    """Frames streamed from one or more ``feats.scp`` files (kaldiio ark shards).

    Frame counts come from ``utt2num_frames`` beside each scp (written by the dump);
    without it, one extra pass reads the shapes. ``portion`` < 1 keeps a random
    subset of the utterances (fixed by ``seed``).
    """

    def __init__(self, scps: str | os.PathLike | Sequence[str | os.PathLike],
                 portion: float | None = None, seed: int = 0):
        paths = [scps] if isinstance(scps, (str, os.PathLike)) else list(scps)
        if not paths:
            raise ValueError("no scp files given")
        self.keys: list[str] = []
        self.specs: list[str] = []
        self.lengths: list[int] = []
        for p in paths:
            p = pathlib.Path(p)
            reader = read_scp(p)
            counts_path = p.parent / "utt2num_frames"
            counts = read_table(counts_path) if counts_path.is_file() else None
            for key in reader:
                self.keys.append(key)
                self.specs.append(reader.spec(key))
                if counts is not None:
                    if key not in counts:
                        raise DataDirError(f"{counts_path}: no entry for {key!r} (it is in {p})")
                    self.lengths.append(int(counts[key]))
                else:
                    self.lengths.append(int(self._load(len(self.keys) - 1, check=False).shape[0]))
        if not self.keys:
            raise ValueError(f"{paths}: no utterances")
        if portion is not None and portion < 1.0:
            if not 0.0 < portion:
                raise ValueError(f"portion must be in (0, 1], got {portion}")
            n = max(1, int(round(portion * len(self.keys))))
            keep = sorted(np.random.default_rng(seed).choice(len(self.keys), n, replace=False))
            self.keys = [self.keys[i] for i in keep]
            self.specs = [self.specs[i] for i in keep]
            self.lengths = [self.lengths[i] for i in keep]
        self.num_frames = int(sum(self.lengths))
        self.dim = int(self._load(0).shape[1])
        self.peak_rows = 0

    def _load(self, i: int, check: bool = True) -> np.ndarray:
        try:
            m = np.asarray(kaldiio.load_mat(self.specs[i]), dtype=np.float32)
        except (OSError, ValueError, EOFError) as e:
            raise ArkError(f"cannot load {self.keys[i]!r} from {self.specs[i]!r}: {e}") from e
        if m.ndim != 2 or (check and m.shape[0] != self.lengths[i]):
            raise ArkError(f"{self.specs[i]}: {self.keys[i]!r} has shape {m.shape}; "
                           f"expected ({self.lengths[i]}, dim) from utt2num_frames")
        check_finite(m, self.keys[i], self.specs[i])
        return m

    def blocks(self, rng: np.random.Generator | None, buffer_frames: int) -> Iterator[np.ndarray]:
        if rng is None:
            for i in range(len(self.keys)):
                m = self._load(i)
                self.peak_rows = max(self.peak_rows, len(m))
                yield m
            return
        # Utterances in random order fill one reused buffer; it is then read out in a
        # random row order, in small gathered pieces, so a mini-batch mixes many
        # utterances/speakers while the memory held is about buffer_frames + one
        # utterance + one piece, whatever the data size.
        buf = np.empty((buffer_frames + max(self.lengths), self.dim), np.float32)
        piece = max(1, min(16384, buffer_frames // 4))
        self.peak_rows = max(self.peak_rows, len(buf) + piece)
        n = 0
        for i in rng.permutation(len(self.keys)):
            m = self._load(int(i))
            buf[n : n + len(m)] = m
            n += len(m)
            if n >= buffer_frames:
                yield from self._read_out(buf[:n], rng, piece)
                n = 0
        if n:
            yield from self._read_out(buf[:n], rng, piece)

    @staticmethod
    def _read_out(buf: np.ndarray, rng: np.random.Generator, piece: int) -> Iterator[np.ndarray]:
        perm = rng.permutation(len(buf))
        for j in range(0, len(buf), piece):
            yield np.take(buf, perm[j : j + piece], axis=0)  # a fresh array: the buffer is refilled later


def sample_frames(source: FrameSource, n: int, rng: np.random.Generator, buffer_frames: int) -> np.ndarray:
    """``n`` frames drawn uniformly without replacement, in one streaming pass (n rows of memory)."""
    n = min(n, source.num_frames)
    if isinstance(source, ArraySource):
        return source.x[np.sort(rng.choice(source.num_frames, n, replace=False))]
    want = np.sort(rng.choice(source.num_frames, n, replace=False))
    out = np.empty((n, source.dim), np.float32)
    start = filled = 0
    for block in source.blocks(None, buffer_frames):
        end = start + len(block)
        lo, hi = np.searchsorted(want, [start, end])
        if hi > lo:
            out[filled : filled + hi - lo] = block[want[lo:hi] - start]
            filled += hi - lo
        start = end
        if filled == n:
            break
    return out[rng.permutation(n)]


def batch_stream(
    source: FrameSource, batch_size: int, rng: np.random.Generator, buffer_frames: int
) -> Iterator[np.ndarray]:
    """Endless (batch_size, D) mini-batches: shuffled passes, carried over across epochs.

    Every yielded batch is a fresh array the caller may keep.
    """
    if isinstance(source, ArraySource):
        yield from source.batches(batch_size, rng)
        return
    carry: np.ndarray | None = None
    while True:
        for block in source.blocks(rng, buffer_frames):
            # batches are copies: a block may be a view of memory the source reuses
            i = 0
            if carry is not None and len(carry):
                need = batch_size - len(carry)
                if len(block) < need:
                    carry = np.concatenate([carry, block])
                    continue
                yield np.concatenate([carry, block[:need]])
                i = need
            while i + batch_size <= len(block):
                yield block[i : i + batch_size].copy()
                i += batch_size
            carry = block[i:].copy()
