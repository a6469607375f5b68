"""AV-HuBERT sizes as data (Shi et al., 2022; fairseq configs conf/pretrain/{base,large}_*_iter5.yaml).

- base:  12 x 768, FFN 3072, 12 heads, pre-LN, ResNet-18 frontend (width 1), final_dim 256,
         dropout 0.1 (input, features, attention, residual), layerdrop 0.05, feature_grad_mult 0.1,
         input masking (audio 0.8 / 10, video 0.3 / 5), modality dropout 0.5 / audio 0.5, feature penalty 10
- large: 24 x 1024, FFN 4096, 16 heads, otherwise as base; predicts unmasked frames too (weight 1)
- tiny:  2 x 64, FFN 128, 4 heads, pos conv 16 / 4 groups, ResNet width 0.125 (8..64 channels), final_dim 32,
         for tests and CPU demos

The objective settings are those of the last iteration; recipes set earlier iterations' (feature masking,
no modality dropout, 100 Hz labels) in their configs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .avhubert import AVHubertConfig, AVHubertPretrainModel
from .encoder import EncoderConfig
from .registry import register_model

_REG = dict(dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.1, dropout_features=0.1,
            layerdrop=0.05, feature_grad_mult=0.1, mask_prob=0.8, mask_length=10, layer_norm_first=True)
_OBJECTIVE = dict(masking_type="input", mask_prob_video=0.3, mask_length_video=5, modality_dropout=0.5,
                  audio_dropout=0.5, final_dim=256, feature_pen_weight=10.0)

AV_ENCODER_PRESETS: dict[str, EncoderConfig] = {
    "base": EncoderConfig(embed_dim=768, num_layers=12, num_heads=12, ffn_dim=3072, **_REG),
    "large": EncoderConfig(embed_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096, **_REG),
    "tiny": EncoderConfig(embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16,
                          pos_conv_groups=4, **dict(_REG, layerdrop=0.0, feature_grad_mult=1.0)),
}

AVHUBERT_PRESETS: dict[str, AVHubertConfig] = {
    "base": AVHubertConfig(encoder=AV_ENCODER_PRESETS["base"], num_classes=100, **_OBJECTIVE),
    "large": AVHubertConfig(encoder=AV_ENCODER_PRESETS["large"], num_classes=500, pred_nomask_weight=1.0,
                            **_OBJECTIVE),
    "tiny": AVHubertConfig(encoder=AV_ENCODER_PRESETS["tiny"], num_classes=100, resnet_width=0.125,
                           **dict(_OBJECTIVE, final_dim=32)),
}


def avhubert_preset(name: str, encoder: dict[str, Any] | None = None, **overrides: Any) -> AVHubertConfig:
    """A copy of AVHUBERT_PRESETS[name] with head fields in `overrides` and encoder fields in `encoder`."""
    if name not in AVHUBERT_PRESETS:
        raise KeyError(f"unknown AV-HuBERT preset {name!r}; known: {sorted(AVHUBERT_PRESETS)}")
    base = AVHUBERT_PRESETS[name]
    enc = dataclasses.replace(base.encoder, **(encoder or {}))
    return dataclasses.replace(base, encoder=enc, **overrides)


register_model("avhubert", AVHubertConfig, AVHubertPretrainModel, AVHUBERT_PRESETS)
