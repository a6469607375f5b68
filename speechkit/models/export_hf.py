"""Export a speechkit model to a HF transformers folder (`config.json` + `model.safetensors`), so that
`transformers.AutoModel.from_pretrained(folder)` (or the class named in `architectures`) loads it.

| speechkit arch | HF class written          | what is dropped                                     |
|----------------|---------------------------|-----------------------------------------------------|
| wav2vec2       | Wav2Vec2ForPreTraining    | nothing (final_proj -> project_hid)                 |
| hubert         | HubertModel               | final_proj, label_embs_concat (no HF counterpart)   |
| wavlm          | WavLMModel                | final_proj, label_embs_concat                       |
| data2vec       | Wav2Vec2Model             | final_proj, the EMA teacher; speechkit's data2vec encoder is wav2vec 2.0's (one positional conv), not HF's Data2VecAudio (five) |

Also written: `preprocessor_config.json`, the `Wav2Vec2FeatureExtractor` settings HF's pipelines and
`AutoFeatureExtractor` read: `do_normalize` is the encoder's `normalize` (an HF user then feeds the model
the normalised audio it was trained on; speechkit's model normalises inside, HF's does not), and
`return_attention_mask` is HF's convention (only for layer-norm extractors). `do_normalize` is copied
into config.json too, which HF ignores, so a folder that lost its preprocessor file still imports right.

Masking. HF's `mask_time_*` / `mask_feature_*` are fine-tuning SpecAugment, so the export writes the
values HF's defaults and published checkpoints use (5 % of frames in spans of 10, no channel masks;
`import_hf.HF_FINETUNE_SPEC_AUGMENT`), not the 65-80 % pre-training masks, which would wipe out most of
the input while fine-tuning in HF. The pre-training masks go under `speechkit_pretraining_masks`, a key
HF keeps in the config but never reads, so an export -> import round trip restores them.

Written without importing transformers (the config is plain JSON, the weights use the safetensors
format through `speechkit.models.safetensors_io`).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from torch import Tensor, nn

from .encoder import EncoderConfig
from .import_hf import HF_CONFIG_TABLE, HF_FINETUNE_SPEC_AUGMENT, HF_PRETRAIN_MASK_KEY, PRETRAIN_MASK_FIELDS
from .import_hf_models import ENCODER_ATTR
from .safetensors_io import save_safetensors

HF_TARGET = {  # arch -> (model_type, architecture class, key prefix of the encoder in that class)
    "wav2vec2": ("wav2vec2", "Wav2Vec2ForPreTraining", "wav2vec2."),
    "hubert": ("hubert", "HubertModel", ""),
    "wavlm": ("wavlm", "WavLMModel", ""),
    "data2vec": ("wav2vec2", "Wav2Vec2Model", ""),
}
# speechkit head key -> HF key (wav2vec2 only)
HEAD_EXPORT = {"quantizer.codevectors": "quantizer.codevectors", "quantizer.weight_proj.weight": "quantizer.weight_proj.weight",
               "quantizer.weight_proj.bias": "quantizer.weight_proj.bias", "project_q.weight": "project_q.weight",
               "project_q.bias": "project_q.bias", "final_proj.weight": "project_hid.weight",
               "final_proj.bias": "project_hid.bias"}


def hf_config_dict(model_cfg: Any) -> dict[str, Any]:
    """speechkit config dataclass -> HF config.json contents."""
    arch = model_cfg.arch
    if arch not in HF_TARGET:
        raise ValueError(f"cannot export arch {arch!r} to HF; supported: {sorted(HF_TARGET)}")
    model_type, cls, _ = HF_TARGET[arch]
    enc: EncoderConfig = model_cfg.encoder
    out: dict[str, Any] = {"model_type": model_type, "architectures": [cls]}
    for theirs, ours in HF_CONFIG_TABLE.items():
        out[theirs] = getattr(enc, ours)
    out.update(
        conv_dim=[c for c, _, _ in enc.conv_layers], conv_kernel=[k for _, k, _ in enc.conv_layers],
        conv_stride=[s for _, _, s in enc.conv_layers], num_feat_extract_layers=len(enc.conv_layers),
        hidden_act="gelu", feat_extract_activation="gelu",
        # HF's other dropouts have no speechkit counterpart at pre-training; keep its defaults explicit
        final_dropout=0.0, feat_quantizer_dropout=0.0,
        apply_spec_augment=True, **HF_FINETUNE_SPEC_AUGMENT,
    )
    out[HF_PRETRAIN_MASK_KEY] = {name: getattr(enc, name) for name in PRETRAIN_MASK_FIELDS}
    # also here (HF's model ignores it), so config.json alone still says what the model was trained on
    out["do_normalize"] = bool(enc.normalize)
    if arch == "wav2vec2":
        out.update(num_codevector_groups=model_cfg.num_groups, num_codevectors_per_group=model_cfg.num_vars,
                   codevector_dim=model_cfg.codevector_dim, proj_codevector_dim=model_cfg.final_dim,
                   num_negatives=model_cfg.num_negatives, contrastive_logits_temperature=model_cfg.logit_temp,
                   diversity_loss_weight=model_cfg.diversity_weight)
    if arch == "wavlm":
        out.update(num_buckets=model_cfg.num_buckets, max_bucket_distance=model_cfg.max_distance)
    return out


def hf_preprocessor_dict(model_cfg: Any) -> dict[str, Any]:
    """speechkit config dataclass -> HF `preprocessor_config.json` contents (a Wav2Vec2FeatureExtractor)."""
    enc: EncoderConfig = model_cfg.encoder
    return {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
            "sampling_rate": int(getattr(model_cfg, "sample_rate", 16000)), "padding_value": 0.0,
            "padding_side": "right", "do_normalize": bool(enc.normalize),
            "return_attention_mask": enc.extractor_mode == "layer"}


def hf_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """speechkit model -> state dict in the layout of the HF class of HF_TARGET."""
    arch = model.config.arch  # type: ignore[attr-defined]
    _, _, prefix = HF_TARGET[arch]
    encoder = getattr(model, ENCODER_ATTR[arch])
    out = {prefix + k: v for k, v in encoder.state_dict().items()}
    if arch == "wav2vec2":
        own = model.state_dict()
        out.update({theirs: own[ours] for ours, theirs in HEAD_EXPORT.items()})
    return out


def export_hf(model: nn.Module, out_dir: str | os.PathLike) -> pathlib.Path:
    """Write `out_dir/config.json`, `preprocessor_config.json` and `model.safetensors`; returns out_dir."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config  # type: ignore[attr-defined]
    config = hf_config_dict(cfg)
    weights = {k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous()
               for k, v in hf_state_dict(model).items()}
    save_safetensors(weights, out / "model.safetensors", metadata={"format": "pt"})
    for name, data in (("preprocessor_config.json", hf_preprocessor_dict(cfg)), ("config.json", config)):
        tmp = out / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out / name)
    return out
