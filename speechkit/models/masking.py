"""Span masking with fairseq's `compute_mask_indices` semantics ("static" spans, overlap allowed).

Per utterance of `sz` valid frames:
    num_mask = max(min_masks, int(mask_prob * sz / mask_length + U[0, 1)))
    starts   = num_mask distinct draws from range(sz - mask_length)      (no replacement)
    masked   = union of [s, s + mask_length) for each start, clipped to < sz
When `sz - mask_length <= num_mask` the start range is widened to `num_mask + 1` positions, as fairseq
does, and the spans that would run off the end are clipped. Padding is never masked. With
`require_same_masks` every utterance keeps (a random subset of) the smallest masked count in the batch,
which is what fairseq's HuBERT/wav2vec 2.0 do by default.

Randomness comes from a `torch.Generator` (or torch's global CPU generator when None), so a trainer that
saves torch's RNG state resumes with identical masks. Masks are computed on the CPU (cheap, data
dependent shapes) and moved to the caller's device.
"""
from __future__ import annotations

import torch
from torch import Tensor


def compute_mask_indices(
    shape: tuple[int, int],
    padding_mask: Tensor | None,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    require_same_masks: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Returns a (B, T) bool CPU tensor, True at masked frames.

    shape: (B, T); padding_mask: (B, T) bool, True at padding (or None: all frames valid).
    """
    bsz, all_sz = shape
    mask = torch.zeros(bsz, all_sz, dtype=torch.bool)
    if mask_prob <= 0.0 or mask_length <= 0 or all_sz == 0:
        return mask
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if padding_mask is not None:
        if tuple(padding_mask.shape) != (bsz, all_sz):
            raise ValueError(f"padding_mask shape {tuple(padding_mask.shape)} != {(bsz, all_sz)}")
        sizes = (all_sz - padding_mask.long().sum(dim=1)).cpu().tolist()
    else:
        sizes = [all_sz] * bsz

    offsets = torch.arange(mask_length)
    chosen: list[Tensor] = []
    for sz in sizes:
        draw = float(torch.rand((), generator=generator))
        num_mask = max(min_masks, int(mask_prob * sz / float(mask_length) + draw))
        if sz <= 0 or num_mask <= 0:
            chosen.append(torch.empty(0, dtype=torch.long))
            continue
        min_len = mask_length
        if sz - min_len <= num_mask:
            min_len = sz - num_mask - 1  # fairseq: keep num_mask + 1 candidate starts
        n_starts = sz - min_len
        starts = torch.randperm(n_starts, generator=generator)[:num_mask]  # distinct starts
        idx = (starts[:, None] + offsets[None, :]).reshape(-1)
        idx = idx[idx < sz]  # clip spans that run past the utterance
        chosen.append(torch.unique(idx))

    if require_same_masks:
        min_count = min(len(c) for c in chosen)
        for i, c in enumerate(chosen):
            if len(c) > min_count:
                keep = torch.randperm(len(c), generator=generator)[:min_count]
                chosen[i] = c[keep]
    for i, c in enumerate(chosen):
        mask[i, c] = True
    return mask


def compute_channel_mask(
    bsz: int,
    num_channels: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, C) bool mask over feature channels (fairseq's mask_channel_*), one draw per utterance."""
    return compute_mask_indices((bsz, num_channels), None, mask_prob, mask_length, min_masks,
                                require_same_masks=False, generator=generator)
