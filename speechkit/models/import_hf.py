"""Import HF transformers `HubertModel` / `Wav2Vec2Model` weights into `SSLEncoder` (a renaming table).

speechkit's encoder uses HF's module names, so most keys map to themselves; the table handles the
wrapper prefixes of the task models (`hubert.`, `wav2vec2.`), the two spellings of the weight-normalised
positional conv (old `weight_g`/`weight_v` attributes vs `parametrizations.weight.original0/1`), and
config fields. Objective-specific heads (quantizer, CTC head, ...) are reported as left over so a
caller can map them (issue 6 builds on this).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import Tensor

from .encoder import EncoderConfig, SSLEncoder

# (regex on the HF key, replacement) applied in order; first match wins
HF_KEY_TABLE: list[tuple[str, str]] = [
    (r"^encoder\.pos_conv_embed\.conv\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv_embed\.conv\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^(feature_extractor\.conv_layers\.\d+\.(conv|layer_norm)\.(weight|bias))$", r"\1"),
    (r"^(feature_projection\.(layer_norm|projection)\.(weight|bias))$", r"\1"),
    (r"^masked_spec_embed$", "masked_spec_embed"),
    (r"^(encoder\.pos_conv_embed\.conv\.(bias|parametrizations\.weight\.original[01]))$", r"\1"),
    (r"^(encoder\.layer_norm\.(weight|bias))$", r"\1"),
    (r"^(encoder\.layers\.\d+\.attention\.(q|k|v|out)_proj\.(weight|bias))$", r"\1"),
    (r"^(encoder\.layers\.\d+\.(layer_norm|final_layer_norm)\.(weight|bias))$", r"\1"),
    (r"^(encoder\.layers\.\d+\.feed_forward\.(intermediate_dense|output_dense)\.(weight|bias))$", r"\1"),
]
HF_PREFIXES = ("hubert.", "wav2vec2.", "wavlm.", "data2vec_audio.")

# HF config field -> EncoderConfig field (conv_layers and the checks are handled in code)
HF_CONFIG_TABLE: dict[str, str] = {
    "feat_extract_norm": "extractor_mode", "conv_bias": "conv_bias", "hidden_size": "embed_dim",
    "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads", "intermediate_size": "ffn_dim",
    "do_stable_layer_norm": "layer_norm_first", "num_conv_pos_embeddings": "pos_conv_kernel",
    "num_conv_pos_embedding_groups": "pos_conv_groups", "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout", "feat_proj_dropout": "dropout_input", "layerdrop": "layerdrop",
}

# Masking is deliberately absent from the table. HF's `mask_time_*` / `mask_feature_*` are the SpecAugment
# its models apply while *fine-tuning* (`apply_spec_augment`; published configs and HF's defaults: 5 % of
# frames, spans of 10, no channel masks), while speechkit's encoder `mask_*` fields are the *pre-training*
# span masks (65-80 % of frames). Mapping one onto the other made a HF model fine-tune with 65-80 %
# SpecAugment after an export, and made an imported model continue pre-training at 5 %. So: export writes
# HF's fine-tuning values and keeps the pre-training ones under HF_PRETRAIN_MASK_KEY (a key HF keeps but
# never reads); import restores them from there, else from the arch's pre-training preset. Fine-tuning
# SpecAugment in speechkit is the CTC config's `model.encoder` mask overrides.
HF_FINETUNE_SPEC_AUGMENT: dict[str, Any] = {
    "mask_time_prob": 0.05, "mask_time_length": 10, "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0, "mask_feature_length": 10, "mask_feature_min_masks": 0,
}
PRETRAIN_MASK_FIELDS = ("mask_prob", "mask_length", "mask_min_masks", "mask_require_same", "mask_channel_prob",
                        "mask_channel_length", "mask_channel_min_masks")
HF_PRETRAIN_MASK_KEY = "speechkit_pretraining_masks"


def encoder_config_from_hf(hf_config: Any) -> EncoderConfig:
    """HF `HubertConfig` / `Wav2Vec2Config` (object or dict) -> EncoderConfig; unsupported variants are errors."""
    c = hf_config if isinstance(hf_config, Mapping) else hf_config.to_dict()
    for key, want in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu"),
                      ("feat_proj_layer_norm", True), ("conv_pos_batch_norm", False)):
        if key in c and c[key] != want:
            raise ValueError(f"HF config {key}={c[key]!r} is not supported (speechkit implements {want!r})")
    kwargs = {ours: c[theirs] for theirs, ours in HF_CONFIG_TABLE.items() if theirs in c}
    kwargs["conv_layers"] = list(zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"]))
    saved = c.get(HF_PRETRAIN_MASK_KEY) or {}  # written by speechkit's export
    kwargs.update({k: saved[k] for k in PRETRAIN_MASK_FIELDS if k in saved})
    # HF has no separate dropout for the local target features; fairseq uses the input dropout value
    kwargs["dropout_features"] = c.get("feat_proj_dropout", 0.0)
    return EncoderConfig(**kwargs)


def convert_hf_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """HF state dict -> (SSLEncoder state dict, HF keys that are not part of the encoder)."""
    out: dict[str, Tensor] = {}
    leftover: list[str] = []
    for key, value in state.items():
        k = key
        for prefix in HF_PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        for pattern, repl in HF_KEY_TABLE:
            if re.match(pattern, k):
                out[re.sub(pattern, repl, k)] = value
                break
        else:
            leftover.append(key)
    return out, leftover


def load_hf_encoder(hf_model: torch.nn.Module) -> SSLEncoder:
    """Build an SSLEncoder equal to a HF `HubertModel` / `Wav2Vec2Model` (or a task model around one)."""
    enc = SSLEncoder(encoder_config_from_hf(hf_model.config))
    weights, _ = convert_hf_state_dict(hf_model.state_dict())
    own = enc.state_dict()
    # HF omits masked_spec_embed when its config disables masking; keep ours (only used when masking)
    missing = [k for k in own if k not in weights and k != "masked_spec_embed"]
    if missing:
        raise ValueError(f"HF model lacks encoder weights {missing[:5]} ({len(missing)} in all)")
    shapes = [k for k in weights if k in own and weights[k].shape != own[k].shape]
    if shapes:
        raise ValueError(f"HF weights have unexpected shapes for {shapes[:5]}")
    enc.load_state_dict(weights, strict=False)
    return enc
