"""Length-bucketed dynamic batching and collation to the trainer's batch contract.

Batches are made by total audio samples, as fairseq does: utterances are sorted by (cropped)
length, with ties broken by a seeded shuffle, then cut greedily so that
``batch_size * longest_length <= max_tokens``; the batch order is then shuffled. Everything depends
only on ``(seed, epoch)``, so a resumed run sees exactly the batches an uninterrupted run would,
and the trainer can skip to "batch k of epoch e".

Under DistributedDataParallel every rank takes a disjoint slice of the epoch's batches
(``batches[rank::world_size]``). All ranks must run the same number of steps, so when the batch
count is not a multiple of the world size the list is topped up by repeating its first batches.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch

LABEL_PAD = -100  # ignore_index of torch's cross-entropy; the batch contract's label padding


def make_batches(
    lengths: Sequence[int], max_tokens: int, *, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """All batches (lists of dataset indices) of one epoch, before splitting across ranks."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0:
        return []
    if lengths.max() > max_tokens:
        i = int(lengths.argmax())
        raise ValueError(
            f"utterance index {i} has {lengths[i]} samples (after cropping) > max_tokens {max_tokens}; "
            "raise data.max_tokens or lower data.max_sample_size"
        )
    rng = np.random.default_rng([seed, epoch])
    # Shuffle first, then a stable sort: equal lengths come out in a fresh order each epoch.
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    order = order[np.argsort(lengths[order], kind="stable")]
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for idx in order.tolist():
        n = int(lengths[idx])
        # Sorted ascending, so the newcomer is the longest: the padded size is len * n.
        if cur and (len(cur) + 1) * max(cur_max, n) > max_tokens:
            batches.append(cur)
            cur, cur_max = [], 0
        cur.append(idx)
        cur_max = max(cur_max, n)
    if cur:
        batches.append(cur)
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


class BucketBatchSampler:
    """Deterministic per-(seed, epoch) dynamic batches; this rank's slice of them.

    ``lengths`` should already be capped at the crop length (``max_sample_size``): that is the
    size an utterance occupies in a batch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        *,
        seed: int = 1,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.lengths = list(lengths)
        self.max_tokens = int(max_tokens)
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        batches = make_batches(self.lengths, self.max_tokens, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        if self.world_size > 1 and batches:
            total = math.ceil(len(batches) / self.world_size) * self.world_size
            batches = batches + batches[: total - len(batches)]
            batches = batches[self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def crop_start(length: int, target: int, hop: int, rng: np.random.Generator | None) -> int:
    """Sample offset of a ``target``-long crop of a ``length``-long clip, a multiple of ``hop``.

    Starting on a multiple of the label hop (160 samples at 100 Hz, 320 at 50 Hz) keeps the crop's
    frames exactly on the original frame grid, so label ``k + i`` belongs to cropped frame ``i``.
    """
    if target >= length:
        return 0
    last = (length - target) // hop
    return int(rng.integers(0, last + 1)) * hop if rng is not None else 0


class Collater:
    """Turns dataset items into the batch contract: ``wav`` (B, T) zero-padded, ``wav_lens``,
    optional ``labels`` (B, L) padded with -100 and ``label_lens``, ``utt_ids``.

    Items are dicts with ``index``, ``utt``, ``wav`` (1-D float32 numpy) and ``labels`` (a list of
    1-D int arrays, one per label stream; may be empty). Crops are drawn from an RNG seeded by
    ``(seed, epoch, index)``: reproducible regardless of worker count or resume point.
    With several label streams, ``labels_list`` / ``label_lens_list`` hold all of them and
    ``labels`` / ``label_lens`` the first.
    """

    def __init__(
        self,
        sample_rate: int,
        max_sample_size: int,
        *,
        label_rates: Sequence[int] = (),
        pad_audio: bool = False,
        random_crop: bool = True,
        seed: int = 1,
    ):
        self.sample_rate = sample_rate
        self.max_sample_size = max_sample_size
        self.label_rates = list(label_rates)
        for r in self.label_rates:
            if sample_rate % r:
                raise ValueError(f"label rate {r} Hz does not divide the sample rate {sample_rate}")
        self.hops = [sample_rate // r for r in self.label_rates]
        self.hop = math.lcm(*self.hops) if self.hops else 1
        self.pad_audio = pad_audio
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lens = [len(it["wav"]) for it in items]
        target = max(lens) if self.pad_audio else min(lens)
        target = min(target, self.max_sample_size)
        B = len(items)
        wav = torch.zeros(B, target, dtype=torch.float32)
        wav_lens = torch.zeros(B, dtype=torch.long)
        streams: list[list[np.ndarray]] = [[] for _ in self.label_rates]
        for b, it in enumerate(items):
            x = it["wav"]
            n = len(x)
            rng = np.random.default_rng([self.seed, self.epoch, int(it["index"])]) if self.random_crop else None
            start = crop_start(n, target, self.hop, rng)
            seg = x[start : start + target]
            wav[b, : len(seg)] = torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32))
            wav_lens[b] = len(seg)
            for s, (lab, hop) in enumerate(zip(it.get("labels", []), self.hops)):
                streams[s].append(crop_labels(lab, n, start, len(seg), hop))
        batch: dict[str, Any] = {"wav": wav, "wav_lens": wav_lens, "utt_ids": [it["utt"] for it in items]}
        if streams:
            padded = [pad_labels(s) for s in streams]
            batch["labels"], batch["label_lens"] = padded[0]
            if len(padded) > 1:
                batch["labels_list"] = [p[0] for p in padded]
                batch["label_lens_list"] = [p[1] for p in padded]
        return batch


def crop_labels(labels: np.ndarray, num_samples: int, start: int, size: int, hop: int) -> np.ndarray:
    """Labels of the audio crop ``[start, start + size)`` of a ``num_samples`` clip.

    ``start`` is a multiple of ``hop``, so the crop's first frame is original frame ``start/hop``.
    Cutting ``e`` samples off the end removes ``e // hop`` or one more frames (it depends on the
    analysis window); we remove ``e // hop``, so the labels are never shorter than the model's
    frames and at most one longer, which the model trims (fairseq's label_rate semantics).
    """
    first = start // hop
    cut_end = num_samples - start - size
    count = len(labels) - first - cut_end // hop
    return labels[first : first + max(0, count)]


def pad_labels(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lens.max()) if len(seqs) else 0), LABEL_PAD, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
    return out, lens
