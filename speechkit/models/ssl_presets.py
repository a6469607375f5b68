"""Presets (as data) of the wav2vec 2.0, WavLM and data2vec objectives; importing this registers them.

Encoders come from `ENCODER_PRESETS` (shared with HuBERT); only the objective's settings differ:
- wav2vec 2.0 Base: mask_prob 0.65 / length 10, final_dim 256, G=2 x V=320 codewords of 128 dims
  (95,044,608 parameters with the pre-training heads, as HF's Wav2Vec2ForPreTraining); Large: final_dim and
  codewords 768 (fairseq's latent_dim 0 means final_dim). The tiny presets drop the feature penalty: with
  weight 10 (or 1) it drives the 32-channel extractor's output below the LayerNorm epsilon within ~100
  updates, the quantizer then sees no content, codes are noise and the contrastive loss stays at log(1 + K)
  (measured on the mini corpus: flat at 3.04 = log 21 for 2000 updates; without it 2.78 after 300).
- WavLM: HuBERT's head on the relative-bias encoder (320 buckets, max distance 800).
- data2vec: mask_prob 0.65 / length 10, top-8 layer targets; tiny models average their top 2 layers.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .data2vec import Data2VecConfig, Data2VecPretrainModel
from .presets import ENCODER_PRESETS
from .registry import register_model
from .wav2vec2 import Wav2Vec2Config, Wav2Vec2PretrainModel
from .wavlm import WavLMConfig, WavLMPretrainModel


def _enc(name: str, **overrides: Any):  # type: ignore[no-untyped-def]
    return dataclasses.replace(ENCODER_PRESETS[name], **overrides)


_W2V_MASK = dict(mask_prob=0.65, mask_length=10)

WAV2VEC2_PRESETS: dict[str, Wav2Vec2Config] = {
    "base": Wav2Vec2Config(encoder=_enc("base", **_W2V_MASK)),
    "large": Wav2Vec2Config(encoder=_enc("large", **_W2V_MASK), final_dim=768, codevector_dim=768,
                            latent_temp=[2.0, 0.1, 0.999995]),
    "tiny": Wav2Vec2Config(encoder=_enc("tiny", **_W2V_MASK), final_dim=32, codevector_dim=32, num_vars=32,
                           num_negatives=20, feature_pen_weight=0.0),
    "tiny_prenorm": Wav2Vec2Config(encoder=_enc("tiny_prenorm", **_W2V_MASK), final_dim=32, codevector_dim=32,
                                   num_vars=32, num_negatives=20, feature_pen_weight=0.0),
}

WAVLM_PRESETS: dict[str, WavLMConfig] = {
    "base": WavLMConfig(encoder=_enc("base"), final_dim=256, num_classes=500),
    "large": WavLMConfig(encoder=_enc("large"), final_dim=768, num_classes=500),
    "tiny": WavLMConfig(encoder=_enc("tiny"), final_dim=32, num_classes=100, num_buckets=32, max_distance=64),
    "tiny_prenorm": WavLMConfig(encoder=_enc("tiny_prenorm"), final_dim=32, num_classes=100, num_buckets=32,
                                max_distance=64),
}

DATA2VEC_PRESETS: dict[str, Data2VecConfig] = {
    "base": Data2VecConfig(encoder=_enc("base", **_W2V_MASK)),
    "large": Data2VecConfig(encoder=_enc("large", **_W2V_MASK)),
    "tiny": Data2VecConfig(encoder=_enc("tiny", **_W2V_MASK), average_top_k_layers=2, ema_anneal_end_step=1000),
    "tiny_prenorm": Data2VecConfig(encoder=_enc("tiny_prenorm", **_W2V_MASK), average_top_k_layers=2,
                                   ema_anneal_end_step=1000),
}


# `arch: wav2vec2 | wavlm | data2vec` in a model_config (the registry imports this module for them)
register_model("wav2vec2", Wav2Vec2Config, Wav2Vec2PretrainModel, WAV2VEC2_PRESETS)
register_model("wavlm", WavLMConfig, WavLMPretrainModel, WAVLM_PRESETS)
register_model("data2vec", Data2VecConfig, Data2VecPretrainModel, DATA2VEC_PRESETS)
