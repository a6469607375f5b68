"""Training/evaluation transforms for mouth-ROI clips (AV-HuBERT's recipe, as functions).

Clips are (T, H, W) uint8 or float arrays, or torch tensors with the same layout; the same spatial
crop and flip apply to every frame of a clip (a per-frame crop would look like head motion).

* training: :func:`random_crop` 88x88 + :func:`horizontal_flip` with probability 0.5;
* evaluation: :func:`center_crop` 88x88;
* both: :func:`normalize` to [0, 1] then ``(x - 0.421) / 0.165`` (AV-HuBERT's LRS3 mean/std).
"""
from __future__ import annotations

import numpy as np

ROI_MEAN = 0.421
ROI_STD = 0.165
CROP_SIZE = 88


def _check(clip, size: int):
    if clip.ndim != 3:
        raise ValueError(f"expected a clip (T, H, W), got shape {tuple(clip.shape)}")
    _, h, w = clip.shape
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w} frames")
    return h, w


def center_crop(clip, size: int = CROP_SIZE):
    """The central ``size`` x ``size`` window of every frame."""
    h, w = _check(clip, size)
    y, x = (h - size) // 2, (w - size) // 2
    return clip[:, y:y + size, x:x + size]


def random_crop(clip, size: int = CROP_SIZE, rng: np.random.Generator | None = None):
    """One random ``size`` x ``size`` window, the same for all frames."""
    h, w = _check(clip, size)
    rng = rng if rng is not None else np.random.default_rng()
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return clip[:, y:y + size, x:x + size]


def horizontal_flip(clip, p: float = 0.5, rng: np.random.Generator | None = None):
    """Mirror the whole clip left-right with probability ``p``."""
    rng = rng if rng is not None else np.random.default_rng()
    if rng.random() >= p:
        return clip
    if isinstance(clip, np.ndarray):
        return clip[:, :, ::-1]
    return clip.flip(-1)  # torch.Tensor


def normalize(clip, mean: float = ROI_MEAN, std: float = ROI_STD):
    """uint8 [0, 255] (or float [0, 1]) -> float32 ``(x / 255 - mean) / std``."""
    if isinstance(clip, np.ndarray):
        x = clip.astype(np.float32)
        if clip.dtype == np.uint8:
            x /= 255.0
        return (x - mean) / std
    import torch

    x = clip.float()
    if clip.dtype == torch.uint8:
        x = x / 255.0
    return (x - mean) / std


def train_transform(clip, rng: np.random.Generator | None = None, size: int = CROP_SIZE):
    """Random crop + random flip + normalise (float32)."""
    rng = rng if rng is not None else np.random.default_rng()
    return normalize(horizontal_flip(random_crop(clip, size, rng), 0.5, rng))


def eval_transform(clip, size: int = CROP_SIZE):
    """Centre crop + normalise (float32)."""
    return normalize(center_crop(clip, size))
