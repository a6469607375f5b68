"""Data for AV-HuBERT pre-training on the shared Trainer: AVDataset + AVCollater from a TrainConfig.

``speechkit.bin.pretrain`` calls :func:`build_av_pretrain_data` when ``model.arch`` is ``avhubert``. The
AV-specific data options sit in the model section's ``av_data`` (as in seq2seq fine-tuning), and are
removed from it before the model is built::

    model:
      arch: avhubert
      preset: base
      av_data:
        crop_size: 88          # random 88x88 crop + flip in training, centre crop in validation
        max_frames: 2000       # crop length in 25 Hz frames (the anchor's max_sample_size for pre-training)
        min_frames: 0          # shorter clips are skipped (counted)
        audio_features: speechkit.features.av_audio:AVFbank
        av_tolerance: 1.0      # audio/video length mismatch allowed, in video frames

``data.max_tokens`` counts 25 Hz frames (the anchor's ``max_tokens: 1000`` per GPU); ``data.pad_audio`` and
``data.random_crop`` keep their meaning (false: every clip of a batch is cropped to the shortest, at a
random offset when random_crop). Labels ``km.<tag>`` are read at ``data.label_rate`` Hz: 100 for MFCC k-means
of the audio (iteration 1; the model takes every 4th), 25 for units of a previous AV model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from speechkit.models.config_utils import config_from_dict

from .config import ConfigError, TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_AUDIO_FEATURES = "speechkit.features.av_audio:AVFbank"


@dataclass
class AVPretrainDataConfig:
    crop_size: int = 88
    max_frames: int = 2000
    min_frames: int = 0
    audio_features: str = DEFAULT_AUDIO_FEATURES
    av_tolerance: float = 1.0


def split_av_data(model: dict[str, Any], source: str) -> tuple[dict[str, Any], AVPretrainDataConfig]:
    """(model section without ``av_data``, the parsed ``av_data``)."""
    model = dict(model)
    try:
        av = config_from_dict(AVPretrainDataConfig, dict(model.pop("av_data", None) or {}), f"{source}: model.av_data")
    except ValueError as e:  # unknown keys, wrong types: a config error like the others
        raise ConfigError(str(e)) from e
    if av.max_frames <= 0 or av.min_frames < 0 or av.min_frames > av.max_frames:
        raise ConfigError(f"{source}: model.av_data: need 0 <= min_frames <= max_frames and max_frames > 0, got "
                          f"min_frames={av.min_frames} max_frames={av.max_frames}")
    return model, av


def _audio_features(spec: str):
    import importlib

    if ":" not in spec:
        raise ConfigError(f"model.av_data.audio_features {spec!r}: expected 'package.module:name'")
    mod, name = spec.split(":", 1)
    try:
        obj = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"model.av_data.audio_features {spec!r}: cannot import it ({e})") from e
    return obj() if isinstance(obj, type) else obj


def build_av_pretrain_data(cfg: TrainConfig, av: AVPretrainDataConfig, train_dir: str, valid_dir: str | None,
                           label_tags: list[str]):
    """(train set, valid set or None, train collater, valid collater) for the AV pre-training batch contract."""
    from .av_dataset import AVCollater, AVDataset

    if not label_tags:
        raise ConfigError("AV-HuBERT pre-training needs k-means labels: pass --label-tag")
    dc = cfg.data
    rates = [int(dc.label_rate)] * len(label_tags)
    kw = dict(modalities="audiovisual", sample_rate=dc.sample_rate, min_frames=av.min_frames,
              max_frames=av.max_frames, av_tolerance=av.av_tolerance)
    train = AVDataset(train_dir, label_tags, rates, **kw)
    valid = AVDataset(valid_dir, label_tags, rates, **kw) if valid_dir else None
    feats = _audio_features(av.audio_features)
    common = dict(label_rates=rates, crop_size=av.crop_size, max_frames=av.max_frames, pad=dc.pad_audio,
                  av_tolerance=av.av_tolerance, seed=cfg.trainer.seed)
    train_col = AVCollater("audiovisual", feats, train=True, random_crop=dc.random_crop, **common)
    # validation: centre crops, clips cut at the start (the same frames every time)
    valid_col = AVCollater("audiovisual", feats, train=False, random_crop=False, **common)
    return train, valid, train_col, valid_col
