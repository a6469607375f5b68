"""Import fairseq AV-HuBERT checkpoints (facebookresearch/av_hubert) as speechkit `avhubert` models.

Pre-trained files (`av_hubert`) hold the model's state dict at the top level; fine-tuned ones wrap it:
`av_hubert_seq2seq` as `encoder.w2v_model.*` beside a transformer `decoder.*`, the CTC model (`av_hubert_ctc`)
as `w2v_encoder.w2v_model.*` beside `w2v_encoder.proj`. Their pre-training config sits in
`cfg.model.w2v_args`. Fine-tuned files have no `final_proj` / `label_embs_concat` (fairseq drops them for
fine-tuning): those are freshly initialised and listed; the decoder and CTC weights are kept under the
checkpoint's "extra" (`decoder.*` as is, `ctc_head.{weight,bias}`) for a fine-tuning recipe to pick up.

Key table (fairseq -> speechkit; the AV parts keep their names under `avhubert.`):
    feature_extractor_audio.proj.*                       -> avhubert.feature_extractor_audio.proj.*
    feature_extractor_video.resnet.{frontend3D,trunk}.*  -> avhubert.feature_extractor_video.resnet.*
    feature_extractor_video.proj.*                       -> avhubert.feature_extractor_video.proj.*
    layer_norm / post_extract_proj / mask_emb            -> avhubert.layer_norm / .post_extract_proj / .mask_emb
    encoder.* (pos_conv.0, layers.N.self_attn..., fc1...) -> avhubert.encoder.* by the wav2vec 2.0 table
                                                            (speechkit.models.import_fairseq)
    final_proj / label_embs_concat                       -> final_proj / label_embs_concat

Shapes decide what the config may leave open: the ResNet width (stem channels / 64), the audio input
dimension, the masking type (`mask_emb` of 104 dims: input masking; of D: feature masking), the number of
classes. What speechkit does not implement is an error naming the file: modality_fuse other than concat,
per-modality sub-encoders, ReLU instead of PReLU in the ResNet, dot-product logits, several label sets.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from torch import Tensor

from .config_utils import config_to_dict
from .import_fairseq import FAIRSEQ_ENCODER_TABLE, IGNORED, encoder_config_from_fairseq, fairseq_model_config
from .import_hf_models import ConvertedModel

AV_PREFIXES = ("encoder.w2v_model.", "w2v_encoder.w2v_model.")

AVHUBERT_TABLE: list[tuple[str, str]] = [
    (r"^feature_extractor_audio\.proj\.(weight|bias)$", r"avhubert.feature_extractor_audio.proj.\1"),
    (r"^feature_extractor_video\.proj\.(weight|bias)$", r"avhubert.feature_extractor_video.proj.\1"),
    (r"^feature_extractor_video\.resnet\.((?:frontend3D|trunk)\..+)$", r"avhubert.feature_extractor_video.resnet.\1"),
    (r"^(layer_norm|post_extract_proj)\.(weight|bias)$", r"avhubert.\1.\2"),
    (r"^mask_emb$", "avhubert.mask_emb"),
    (r"^final_proj\.(weight|bias)$", r"final_proj.\1"),
    (r"^label_embs_concat$", "label_embs_concat"),
] + [(p, "avhubert." + r) for p, r in FAIRSEQ_ENCODER_TABLE if p.startswith(r"^encoder\.")]

AVHUBERT_EXTRA_TABLE: list[tuple[str, str]] = [
    (r"^w2v_encoder\.proj\.(weight|bias)$", r"ctc_head.\1"),
    (r"^(decoder\..+)$", r"\1"),
]

# AV-HuBERT's own defaults (avhubert/hubert.py AVHubertConfig) for keys a checkpoint's config may lack
AV_FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "encoder_layerdrop": 0.0,
    "dropout_input": 0.0, "dropout_features": 0.0, "layer_norm_first": False, "feature_grad_mult": 1.0,
    "conv_pos": 128, "conv_pos_groups": 16, "mask_prob_audio": 0.65, "mask_length_audio": 10,
    "mask_prob_image": 0.65, "mask_length_image": 10, "modality_dropout": 0.0, "audio_dropout": 0.0,
    "masking_type": "input", "final_dim": 0, "logit_temp": 0.1, "modality_fuse": "concat",
    "sub_encoder_layers": 0, "resnet_relu_type": "prelu", "sim_type": "cosine", "target_glu": False,
}


def is_avhubert_state(state: Mapping[str, Any]) -> bool:
    return any(k.split("w2v_model.", 1)[-1].startswith("feature_extractor_video.") for k in state)


def _strip(key: str) -> str:
    for prefix in AV_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _label_rate(value: Any, ckpt: Mapping[str, Any]) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # an unresolved "${task.label_rate}" interpolation
        task = (ckpt.get("cfg") or {}).get("task") or {}
        return float(task.get("label_rate", 100.0)) if isinstance(task, Mapping) else 100.0


def avhubert_config_from_fairseq(ckpt: Mapping[str, Any], state: Mapping[str, Tensor], name: str,
                                 num_classes: int | None = None) -> dict[str, Any]:
    """A speechkit model_config dict for the checkpoint (fairseq config + weight shapes)."""
    raw = fairseq_model_config(ckpt, name)
    m = dict(AV_FAIRSEQ_DEFAULTS)
    m.update({k: v for k, v in raw.items() if v is not None})
    for key, want in (("modality_fuse", "concat"), ("sub_encoder_layers", 0), ("resnet_relu_type", "prelu"),
                      ("sim_type", "cosine"), ("target_glu", False)):
        if m[key] != want:
            raise ValueError(f"{name}: {key}={m[key]!r} is not supported (speechkit's AV-HuBERT has {want!r})")
    m["mask_prob"], m["mask_length"] = m["mask_prob_audio"], m["mask_length_audio"]
    enc = encoder_config_from_fairseq(m, name)
    d = enc.embed_dim
    stem = state.get("feature_extractor_video.resnet.frontend3D.0.weight")
    audio = state.get("feature_extractor_audio.proj.weight")
    if stem is None or audio is None:
        raise ValueError(f"{name}: not an AV-HuBERT state dict (no feature_extractor_video.resnet.frontend3D.0 "
                         "or feature_extractor_audio.proj weights)")
    audio_dim = int(audio.shape[1])
    masking = m["masking_type"]
    if "mask_emb" in state:
        size = int(state["mask_emb"].shape[0])
        masking = "input" if size == audio_dim and size != d else "feature" if size == d else None
        if masking is None:
            raise ValueError(f"{name}: mask_emb has {size} dims; expected {audio_dim} (input masking) or {d}")
    embs = state.get("label_embs_concat")
    proj = state.get("final_proj.weight")
    final_dim = int(m["final_dim"]) or (int(embs.shape[1]) if embs is not None else d)
    if proj is not None and int(proj.shape[0]) != final_dim:
        raise ValueError(f"{name}: final_proj has {int(proj.shape[0])} outputs for final_dim {final_dim}: "
                         "several label sets (untie_final_proj with more than one target) are not supported")
    return {
        "arch": "avhubert", "encoder": config_to_dict(enc), "audio_feat_dim": audio_dim,
        "resnet_width": int(stem.shape[0]) / 64.0, "masking_type": masking,
        "mask_prob_video": float(m["mask_prob_image"]), "mask_length_video": int(m["mask_length_image"]),
        "modality_dropout": float(m["modality_dropout"]), "audio_dropout": float(m["audio_dropout"]),
        "num_classes": int(embs.shape[0]) if embs is not None else (num_classes or 500),
        "final_dim": final_dim, "logit_temp": float(m["logit_temp"]),
        "label_rate": _label_rate(m.get("label_rate", 100.0), ckpt),
    }


def import_avhubert(ckpt: Mapping[str, Any], name: str, num_classes: int | None = None) -> ConvertedModel:
    """A loaded fairseq AV-HuBERT checkpoint dict -> ConvertedModel (eval mode)."""
    from .registry import build_model

    weights: dict[str, Tensor] = {}
    extra: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in ckpt["model"].items():
        if IGNORED.search(key):
            continue
        if key.startswith(("decoder.", "w2v_encoder.proj.")):  # fine-tuning heads: kept outside the model
            hit = next((re.sub(p, r, key) for p, r in AVHUBERT_EXTRA_TABLE if re.match(p, key)), None)
            dest = extra
        else:
            k = _strip(key)
            hit = next((re.sub(p, r, k) for p, r in AVHUBERT_TABLE if re.match(p, k)), None)
            dest = weights
        if hit is None:
            unknown.append(key)
        else:
            dest[hit] = value
    if unknown:
        raise ValueError(f"{name}: AV-HuBERT weights speechkit does not know: {unknown[:8]} ({len(unknown)} in all)")
    stripped = {_strip(k): v for k, v in ckpt["model"].items() if not k.startswith(("decoder.", "w2v_encoder.proj"))}
    cfg = avhubert_config_from_fairseq(ckpt, stripped, name, num_classes)
    model = build_model(cfg)
    own = model.state_dict()
    bad = [f"{k}: source {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in weights.items()
           if k in own and tuple(v.shape) != tuple(own[k].shape)]
    homeless = sorted(k for k in weights if k not in own)
    if homeless:
        raise ValueError(f"{name}: {len(homeless)} weight(s) have no place in the speechkit avhubert model, "
                         f"e.g. {homeless[:5]}")
    if bad:
        raise ValueError(f"{name}: shape mismatch for {len(bad)} weight(s): {'; '.join(bad[:5])}")
    merged = dict(own)
    merged.update({k: v.to(own[k].dtype) for k, v in weights.items()})
    model.load_state_dict(merged)
    model.eval()
    initialised = sorted(k for k in own if k not in weights)
    return ConvertedModel(model=model, model_config=model.model_config(), source=name,
                          initialised=initialised, extra=extra)

