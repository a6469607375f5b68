"""Full-batch Lloyd passes as chunked matrix products, over memory or streamed blocks.

One pass assigns every frame to its nearest centre and accumulates per-centre sums,
counts and the inertia; the next centres are the means. Work is cut into chunks of
``chunk`` rows: each chunk is one (chunk, D + 1) x (D + 1, Kp) matmul whose (chunk, Kp)
distance block stays in cache for numpy's SIMD argmin, then an index_add of the chunk
into per-centre sums. Memory is O(threads x chunk x Kp + K x D) whatever the data size.
The chunk is 8192 rows (3.3 MiB of distances for K=100): a fit on 1 M MFCC frames (K=100,
the speechkit defaults, median of 4) took 0.89 s on 2 threads and 1.07 s on one, against
1.00 and 1.10 s with 4096-row chunks (fewer Python-level calls hold the GIL between the
threads' matmuls and argmins) and 1.05 / 1.10 s with 12288 (2026-12-05). On the three data
kinds of bench/kmeans.py (1 M x 39, K=100, median of 3, a later run) 8192 against 4096 rows
was 1.10 / 1.10 / 1.16x faster on 2 threads and 1.08 / 1.05 / 1.05x on one (bench, gmm, mfcc).

Threads: ``threads`` > 1 runs chunks in a pool of Python threads (the matmul, argmin and
index_add release the GIL), each with one torch thread, instead of splitting each small
matmul over threads (numpy's argmin is single-threaded, so that would leave half the
work serial). Chunk results are combined in chunk order in float64, so a pass gives
bit-identical centres for any thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np
import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to n, then restore it."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


class LloydPass:
    """Accumulate one Lloyd pass of ``centers`` (K, D) over float32 blocks; ``finish`` gives the means.

    Usage: ``p = LloydPass(centers, threads); for b in blocks: p.add(b); new, inertia = p.finish()``.
    """

    def __init__(self, centers: torch.Tensor, threads: int = 1, chunk: int = 8192):
        self.k, self.d = centers.shape
        self.chunk, self.threads = chunk, max(1, threads)
        kp = -(-self.k // 8) * 8  # matmul kernel width; padded centres sit at "infinity"
        c = centers.float()
        dev = self.device = centers.device
        self.c_aug = torch.zeros(self.d + 1, kp, device=dev)
        self.c_aug[: self.d, : self.k] = c.t() * -2.0
        self.c_aug[self.d, : self.k] = (c * c).sum(1)
        self.c_aug[self.d, self.k :] = torch.finfo(torch.float32).max
        self.old = centers
        self.sums = np.zeros((self.k, self.d), np.float64)
        self.counts = np.zeros(self.k, np.int64)
        self.inertia = 0.0  # float64 sum over frames of the squared distance to the current centres
        self.frames = 0
        # per-worker buffers: rows [x, 1] and the distance block
        self._bufs = [(torch.ones(chunk, self.d + 1, device=dev), torch.empty(chunk, kp, device=dev),
                       torch.zeros(self.k, self.d, device=dev)) for _ in range(self.threads)]
        self._offsets = np.arange(chunk, dtype=np.int64) * kp
        self._pending: list[torch.Tensor] = []  # rows waiting for a whole chunk (< chunk x threads)
        self._pending_rows = 0
        # each worker runs its matmuls on one thread: OpenMP's thread count is per calling
        # thread, so a fresh thread would otherwise start OMP_NUM_THREADS of its own
        self._pool = (ThreadPoolExecutor(self.threads, initializer=torch.set_num_threads, initargs=(1,))
                      if self.threads > 1 else None)

    def _chunk(self, w: int, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
        xa, dbuf, sums = self._bufs[w]
        n = len(x)
        xa[:n, : self.d] = x
        if x.is_cuda:
            d = torch.mm(xa[:n], self.c_aug, out=dbuf[:n])
            dmin, lab_t = d.min(dim=1)
            inertia = float((dmin + (x * x).sum(1)).clamp_(min=0.0).double().sum())
            sums.zero_().index_add_(0, lab_t, x)
            cnt = torch.bincount(lab_t, minlength=self.k).cpu().numpy()
            return sums.double().cpu().numpy(), cnt, inertia
        d = torch.mm(xa[:n], self.c_aug, out=dbuf[:n]).numpy()  # ||c||^2 - 2 x.c
        lab = d.argmin(axis=1)
        dmin = d.reshape(-1)[self._offsets[:n] + lab]
        xx = np.einsum("ij,ij->i", x.numpy(), x.numpy())  # ||x||^2 per row, one pass
        inertia = float(np.maximum(dmin + xx, 0.0).sum(dtype=np.float64))
        lab_t = torch.from_numpy(lab)
        sums.zero_().index_add_(0, lab_t, x)
        cnt = np.bincount(lab, minlength=self.k)
        return sums.numpy().astype(np.float64), cnt, inertia

    def add(self, block: np.ndarray | torch.Tensor) -> None:
        """Frames (n, D) of the pass; small blocks (one utterance each when streamed) are
        gathered into whole chunks first, so the per-chunk work is never spent on a few rows.
        Chunks are the stream cut every ``chunk`` rows, whatever the block sizes and threads."""
        x = block if isinstance(block, torch.Tensor) else torch.from_numpy(np.require(block, np.float32, ["C"]))
        x = x.to(self.device)
        if self._pending_rows or len(x) < self.chunk:
            self._pending.append(x.clone())  # a block may be a view of memory its source reuses
            self._pending_rows += len(x)
            if self._pending_rows < self.chunk * self.threads:
                return
            x = torch.cat(self._pending)
            self._pending, self._pending_rows = [], 0
        whole = len(x) - len(x) % self.chunk
        if whole < len(x):  # the tail waits for the next block (or finish)
            self._pending, self._pending_rows = [x[whole:].clone()], len(x) - whole
            x = x[:whole]
        if len(x):
            self._run(x)

    def _run(self, x: torch.Tensor) -> None:
        pieces = [x[i : i + self.chunk] for i in range(0, len(x), self.chunk)]
        if self._pool is None:
            results: Iterable = (self._chunk(0, p) for p in pieces)
        else:
            # worker slot w owns buffer w; pieces w, w + T, ... go to slot w, results come back in order
            results = self._map(pieces)
        for s, c, e in results:  # chunk order: the same float64 sums for any thread count
            self.sums += s
            self.counts += c
            self.inertia += e
        self.frames += len(x)

    def _map(self, pieces: list[torch.Tensor]) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        t = self.threads
        for i in range(0, len(pieces), t):
            futs = [self._pool.submit(self._chunk, w, p) for w, p in enumerate(pieces[i : i + t])]
            for f in futs:
                yield f.result()

    def finish(self) -> tuple[torch.Tensor, float]:
        """(new centres (K, D) float32: means, a centre with no frame keeps its place; mean inertia)."""
        if self._pending_rows:
            self._run(torch.cat(self._pending))
            self._pending, self._pending_rows = [], 0
        if self._pool is not None:
            self._pool.shutdown()
        new = self.old.clone()
        hit = self.counts > 0
        if hit.any():
            means = torch.from_numpy((self.sums[hit] / self.counts[hit, None]).astype(np.float32))
            new[torch.from_numpy(hit).to(new.device)] = means.to(new.device)
        return new, self.inertia / max(self.frames, 1)


def lloyd_pass(blocks: Iterable[np.ndarray | torch.Tensor], centers: torch.Tensor,
               threads: int = 1) -> tuple[torch.Tensor, float]:
    """One full Lloyd pass: (new centres, mean squared distance of the frames to ``centers``)."""
    p = LloydPass(centers, threads)
    with torch_threads(1 if threads > 1 else torch.get_num_threads()):
        for b in blocks:
            p.add(b)
        return p.finish()
