"""Model sizes as data. `ENCODER_PRESETS` are shared by every SSL objective; `HUBERT_PRESETS` add the head.

Sizes follow the HuBERT / wav2vec 2.0 papers and fairseq's configs:
- base:   12 x 768, FFN 3072, 12 heads, post-LN, group-norm extractor, no conv bias (95M with head)
- large:  24 x 1024, FFN 4096, 16 heads, pre-LN, layer-norm extractor, conv bias (as the released
          HuBERT Large checkpoints), no dropout / layerdrop, final_dim 768
- xlarge: 48 x 1280, FFN 5120, 16 heads, otherwise as large, final_dim 1024
- tiny / tiny_prenorm: 2 x 64, FFN 128, 4 heads, 32 conv channels with the same seven kernels and
          strides (stride 320, 50 Hz), for tests and CPU demos; the two differ as base and large do.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .conv_extractor import DEFAULT_CONV_LAYERS
from .encoder import EncoderConfig
from .hubert import HubertConfig, HubertPretrainModel
from .registry import register_model

_TINY_CONV = [(32, k, s) for _, k, s in DEFAULT_CONV_LAYERS]

ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "base": EncoderConfig(),
    "large": EncoderConfig(
        extractor_mode="layer", conv_bias=True, feature_grad_mult=1.0,
        embed_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096, layer_norm_first=True,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0,
        dropout_features=0.0, layerdrop=0.0,
    ),
    "xlarge": EncoderConfig(
        extractor_mode="layer", conv_bias=True, feature_grad_mult=1.0,
        embed_dim=1280, num_layers=48, num_heads=16, ffn_dim=5120, layer_norm_first=True,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0,
        dropout_features=0.0, layerdrop=0.0,
    ),
    "tiny": EncoderConfig(
        conv_layers=list(_TINY_CONV), embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128,
        pos_conv_kernel=16, pos_conv_groups=4, layerdrop=0.0,
    ),
    "tiny_prenorm": EncoderConfig(
        conv_layers=list(_TINY_CONV), extractor_mode="layer", conv_bias=True, feature_grad_mult=1.0,
        embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, layer_norm_first=True,
        pos_conv_kernel=16, pos_conv_groups=4, layerdrop=0.0,
    ),
}

_HUBERT_HEADS: dict[str, dict[str, Any]] = {
    "base": dict(final_dim=256, num_classes=100),
    "large": dict(final_dim=768, num_classes=500),
    "xlarge": dict(final_dim=1024, num_classes=500),
    "tiny": dict(final_dim=32, num_classes=100),
    "tiny_prenorm": dict(final_dim=32, num_classes=100),
}

HUBERT_PRESETS: dict[str, HubertConfig] = {
    name: HubertConfig(encoder=ENCODER_PRESETS[name], **head) for name, head in _HUBERT_HEADS.items()
}
register_model("hubert", HubertConfig, HubertPretrainModel, HUBERT_PRESETS)


def encoder_preset(name: str, **overrides: Any) -> EncoderConfig:
    if name not in ENCODER_PRESETS:
        raise KeyError(f"unknown encoder preset {name!r}; known: {sorted(ENCODER_PRESETS)}")
    return dataclasses.replace(ENCODER_PRESETS[name], **overrides)


def hubert_preset(name: str, encoder: dict[str, Any] | None = None, **overrides: Any) -> HubertConfig:
    """A copy of HUBERT_PRESETS[name] with head fields in `overrides` and encoder fields in `encoder`."""
    if name not in HUBERT_PRESETS:
        raise KeyError(f"unknown HuBERT preset {name!r}; known: {sorted(HUBERT_PRESETS)}")
    base = HUBERT_PRESETS[name]
    enc = dataclasses.replace(base.encoder, **(encoder or {}))
    return dataclasses.replace(base, encoder=enc, **overrides)
