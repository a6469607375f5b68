"""Import whole HF transformers checkpoints (encoder + the heads speechkit has) as speechkit models.

Sources: a local folder (`config.json` + `model.safetensors` / `pytorch_model.bin`, sharded index
files included) or an in-memory model (anything with `.config` and `.state_dict()`). Nothing is
downloaded and transformers is not imported.

| HF model (config `model_type`)                     | speechkit arch | heads                               |
|----------------------------------------------------|----------------|-------------------------------------|
| Wav2Vec2Model / Wav2Vec2ForPreTraining / ...ForCTC | wav2vec2       | quantizer.*, project_q, project_hid -> final_proj |
| HubertModel / HubertForCTC                         | hubert         | (HF has no HuBERT pre-training head) |
| WavLMModel / WavLMForCTC                           | wavlm          | (none in HF)                        |

The encoder goes through `speechkit.models.import_hf` (the models' shared table); this module adds
WavLM's gated relative bias (same names in both) and the wav2vec 2.0 heads. Heads the source lacks are
freshly initialised and listed in `initialised`; weights with no place in a pre-training model (the
CTC head `lm_head`) are returned in `extra` as `ctc_head.weight` / `ctc_head.bias` and saved in the
checkpoint under "extra", so a fine-tuning recipe can pick them up.

Waveform normalisation (`EncoderConfig.normalize`) is not in HF's model config but in the folder's
`preprocessor_config.json` (`do_normalize`), which is what HF's pipelines feed the model (speechkit's
export copies it into config.json as well); without either it is inferred from `feat_extract_norm`
("layer": normalised, as fairseq's LV-60 / Large models were trained; "group": raw) and the log says so. HF's `mask_time_*` fine-tuning SpecAugment is not speechkit's
pre-training mask (see `speechkit.models.import_hf.HF_FINETUNE_SPEC_AUGMENT`).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .import_hf import (HF_PREFIXES, HF_PRETRAIN_MASK_KEY, PRETRAIN_MASK_FIELDS, convert_hf_state_dict,
                        encoder_config_from_hf)

logger = logging.getLogger(__name__)

# attribute holding the SSLEncoder in each speechkit pre-training model
ENCODER_ATTR = {"hubert": "hubert", "wav2vec2": "wav2vec2", "wavlm": "wavlm", "data2vec": "data2vec"}
HF_ARCH = {"wav2vec2": "wav2vec2", "hubert": "hubert", "wavlm": "wavlm"}  # HF model_type -> speechkit arch

# encoder-relative keys the shared table leaves over (WavLM), after the HF prefix is removed
HF_WAVLM_TABLE: list[tuple[str, str]] = [
    (r"^encoder\.layers\.(\d+)\.attention\.(gru_rel_pos_const|gru_rel_pos_linear\.(weight|bias)|rel_attn_embed\.weight)$",
     r"encoder.layers.\1.attention.\2"),
]
# model-level heads: HF key -> speechkit key (relative to the pre-training model)
HF_HEAD_TABLE: list[tuple[str, str]] = [
    (r"^quantizer\.(codevectors|weight_proj\.weight|weight_proj\.bias)$", r"quantizer.\1"),
    (r"^project_q\.(weight|bias)$", r"project_q.\1"),
    (r"^project_hid\.(weight|bias)$", r"final_proj.\1"),
]
HF_EXTRA_TABLE: list[tuple[str, str]] = [(r"^lm_head\.(weight|bias)$", r"ctc_head.\1")]


@dataclass
class ConvertedModel:
    """A speechkit model built from another toolkit's checkpoint."""
    model: nn.Module
    model_config: dict[str, Any]
    source: str
    initialised: list[str] = field(default_factory=list)  # speechkit keys not found in the source
    extra: dict[str, Tensor] = field(default_factory=dict)  # source weights outside the model (CTC head)

    def checkpoint(self) -> dict[str, Any]:
        """A speechkit checkpoint dict (what `speechkit.models.load_pretrained` reads)."""
        import speechkit

        return {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "model_config": self.model_config, "train_config": {}, "num_updates": 0, "epoch": 0,
                "converted_from": {"source": self.source, "initialised": list(self.initialised)},
                "extra": dict(self.extra), "speechkit_version": speechkit.__version__}

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.checkpoint(), tmp)
        os.replace(tmp, path)
        return path


def read_hf_folder(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config dict, state dict) of a HF model folder, without transformers."""
    from .safetensors_io import load_safetensors

    path = pathlib.Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: no config.json (expected a HF transformers model folder)")
    config = json.loads(cfg_file.read_text())
    state: dict[str, Tensor] = {}
    for index_name, loader in (("model.safetensors.index.json", load_safetensors),
                               ("pytorch_model.bin.index.json", _load_bin)):
        index = path / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            for shard in shards:
                state.update(loader(path / shard))
            return config, state
    if (path / "model.safetensors").is_file():
        return config, load_safetensors(path / "model.safetensors")
    if (path / "pytorch_model.bin").is_file():
        return config, _load_bin(path / "pytorch_model.bin")
    raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin next to config.json")


def read_hf_preprocessor(path: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's `preprocessor_config.json` (HF feature extractor settings), or None when absent."""
    f = pathlib.Path(path) / "preprocessor_config.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{f}: expected a JSON object, got {type(data).__name__}")
    return data


def hf_normalize(hf_config: Mapping[str, Any], preprocessor: Mapping[str, Any] | None) -> tuple[bool, str, bool]:
    """(normalise the waveform?, where that came from, whether it was only inferred) for a HF model."""
    if preprocessor is not None and "do_normalize" in preprocessor:
        return (bool(preprocessor["do_normalize"]), f"preprocessor_config.json do_normalize={preprocessor['do_normalize']}",
                False)
    if "do_normalize" in hf_config:  # speechkit's export writes it into config.json as well
        return bool(hf_config["do_normalize"]), f"config.json do_normalize={hf_config['do_normalize']}", False
    mode = hf_config.get("feat_extract_norm", "group")
    # fairseq trained its layer-norm-extractor models (LV-60, Large) on normalised audio, its group-norm ones
    # on raw audio; the latter hardly care (their GroupNorm after the first conv removes scale and offset)
    return mode == "layer", f"no do_normalize given: inferred from feat_extract_norm={mode!r}", True


def log_normalization(normalize: bool, how: str, source: str, inferred: bool) -> None:
    """Say loudly when an imported model expects normalised audio, or when nobody told us."""
    if normalize:
        logger.warning("%s expects every utterance normalised to zero mean and unit variance (%s); the imported "
                       "model does it itself (encoder.normalize: true), so give it raw waveforms", source, how)
    elif inferred:
        logger.warning("%s: waveform normalisation off (%s); set it explicitly (normalize=True / --normalize on) "
                       "if the model was trained on normalised audio", source, how)
    else:
        logger.info("%s: raw waveforms, no normalisation (%s)", source, how)


def _load_bin(path: pathlib.Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _match(table: list[tuple[str, str]], key: str) -> str | None:
    for pattern, repl in table:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def config_from_hf(hf_config: Mapping[str, Any], num_classes: int | None = None,
                   final_dim: int | None = None, normalize: bool = False) -> dict[str, Any]:
    """HF config dict -> speechkit model_config (resolved dict, `arch` included).

    The pre-training masks come from speechkit's export key when present, else from the arch's Base preset
    (HF's own mask_time_* is fine-tuning SpecAugment, see import_hf.HF_FINETUNE_SPEC_AUGMENT)."""
    model_type = hf_config.get("model_type")
    if model_type not in HF_ARCH:
        raise ValueError(f"HF model_type {model_type!r} is not supported; supported: {sorted(HF_ARCH)} "
                         "(data2vec-audio uses a 5-layer positional conv that speechkit's encoder does not have)")
    arch = HF_ARCH[model_type]
    enc = encoder_config_from_hf(dict(hf_config))
    from .config_utils import config_to_dict
    from .registry import resolve_config

    saved = hf_config.get(HF_PRETRAIN_MASK_KEY) or {}
    preset = resolve_config({"arch": arch, "preset": "base"}).encoder
    for name in PRETRAIN_MASK_FIELDS:
        if name not in saved:
            setattr(enc, name, getattr(preset, name))
    enc.normalize = bool(normalize)
    cfg: dict[str, Any] = {"arch": arch, "encoder": config_to_dict(enc)}
    if arch == "wav2vec2":
        cfg.update(final_dim=hf_config.get("proj_codevector_dim", 256), codevector_dim=hf_config.get("codevector_dim", 256),
                   num_groups=hf_config.get("num_codevector_groups", 2),
                   num_vars=hf_config.get("num_codevectors_per_group", 320),
                   num_negatives=hf_config.get("num_negatives", 100),
                   logit_temp=hf_config.get("contrastive_logits_temperature", 0.1),
                   diversity_weight=hf_config.get("diversity_loss_weight", 0.1))
    else:  # HuBERT-style head: not in HF, sizes as the papers (256 for Base, 768 for Large)
        cfg.update(final_dim=final_dim or (256 if enc.embed_dim < 1024 else 768), num_classes=num_classes or 500)
        if arch == "wavlm":
            cfg.update(num_buckets=hf_config.get("num_buckets", 320),
                       max_distance=hf_config.get("max_bucket_distance", 800))
    if final_dim is not None:
        cfg["final_dim"] = final_dim
    return cfg


def fill_model(model: nn.Module, arch: str, encoder_weights: dict[str, Tensor], head_weights: dict[str, Tensor],
               source: str) -> list[str]:
    """Load encoder-relative and model-relative weights into `model`; returns the keys left initialised.
    Shape mismatches and weights without a place are errors naming the source."""
    prefix = ENCODER_ATTR[arch] + "."
    own = model.state_dict()
    merged = dict(own)
    given = {prefix + k: v for k, v in encoder_weights.items()}
    given.update(head_weights)
    unknown = sorted(k for k in given if k not in own)
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} weight(s) have no place in the speechkit {arch} model, "
                         f"e.g. {unknown[:5]}")
    bad = [f"{k}: source {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in given.items()
           if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{source}: shape mismatch for {len(bad)} weight(s): {'; '.join(bad[:5])}")
    merged.update({k: v.to(own[k].dtype) for k, v in given.items()})
    model.load_state_dict(merged)
    if hasattr(model, "reset_teacher"):  # data2vec: the teacher starts as the imported student
        model.reset_teacher()
    return sorted(k for k in own if k not in given and not k.startswith("ema_encoder.") and k != "num_updates")


def import_hf(source: str | os.PathLike | Any, num_classes: int | None = None,
              final_dim: int | None = None, normalize: bool | None = None) -> ConvertedModel:
    """HF model folder or in-memory HF model -> ConvertedModel (eval mode).

    `normalize`: waveform normalisation of the imported model; None reads the folder's
    preprocessor_config.json (`do_normalize`), or infers it from `feat_extract_norm` when there is none."""
    from .registry import build_model

    preprocessor = None
    if isinstance(source, (str, os.PathLike)):
        cfg_file = pathlib.Path(source) / "config.json"
        if cfg_file.is_file():  # an unsupported model fails before its weights are read
            config_from_hf(json.loads(cfg_file.read_text()), num_classes, final_dim)
        hf_config, state = read_hf_folder(source)
        preprocessor = read_hf_preprocessor(source)
        name = str(source)
    else:
        hf_config, state = source.config.to_dict(), source.state_dict()
        name = f"<in-memory {type(source).__name__}>"
    if normalize is None:
        normalize, how, inferred = hf_normalize(hf_config, preprocessor)
        log_normalization(normalize, how, name, inferred)
    else:
        log_normalization(normalize, "set by the caller", name, inferred=False)
    cfg = config_from_hf(hf_config, num_classes, final_dim, normalize)
    arch = cfg["arch"]
    encoder_weights, leftover = convert_hf_state_dict(state)
    heads: dict[str, Tensor] = {}
    extra: dict[str, Tensor] = {}
    unknown = []
    for key in leftover:
        k = key
        for p in HF_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        if (ours := _match(HF_WAVLM_TABLE, k)) is not None:
            encoder_weights[ours] = state[key]
        elif (ours := _match(HF_HEAD_TABLE, key)) is not None:
            heads[ours] = state[key]
        elif (ours := _match(HF_EXTRA_TABLE, key)) is not None:
            extra[ours] = state[key]
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{name}: HF weights speechkit does not know: {unknown[:8]} ({len(unknown)} in all)")
    model = build_model(cfg)
    initialised = fill_model(model, arch, encoder_weights, heads, name)
    model.eval()
    return ConvertedModel(model=model, model_config=model.model_config(), source=name,
                          initialised=initialised, extra=extra)
