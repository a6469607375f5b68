"""Model registry: every architecture, pre-training and downstream, is built and loaded through here.

`register_model(arch, config_cls, model_cls, presets)` makes `arch` buildable from a `model_config` dict
(dispatch on "arch"): `build_model(model_config)`, and `load_pretrained(checkpoint)` for any speechkit
checkpoint (its `model_config` names the arch). The built-in archs register themselves when their module
is imported; `_BUILTIN` says which module that is, and the registry imports it the first time the arch is
asked for. So loading a fine-tuned `ctc` checkpoint needs nothing imported beforehand, and speechkit.models
never imports speechkit.downstream at module import time. A new objective adds one line to `_BUILTIN`
(or calls `register_model` from code that is imported anyway).

Encoders that downstream models embed are described by an "upstream spec" `{"type": kind, "encoder":
{...EncoderConfig...}, ...}`; `register_encoder(kind, from_spec)` makes a kind rebuildable with
`build_upstream(spec)` (`{"type": "model", "model_config": ...}` builds a whole registered model).

A model_config is either resolved (`HubertConfig.to_dict()`, what models save) or the short form used in
`conf/*.yaml`: `{arch: hubert, preset: tiny, num_classes: 100, encoder: {mask_prob: 0.65}}`. Encoder
fields may also be given at the top level (`mask_prob: 0.65`); unknown keys are errors naming the key.
"""
from __future__ import annotations

import importlib
import logging
import os
import pathlib
import pickle
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
from torch import nn

from .config_utils import config_from_dict, config_to_dict
from .encoder import EncoderConfig, SSLEncoder

logger = logging.getLogger(__name__)


class PretrainedLoadError(RuntimeError):
    """A missing, corrupt or incompatible model checkpoint; the message names the file."""


@dataclass
class ModelEntry:
    config_cls: type
    model_cls: Callable[[Any], nn.Module]
    presets: dict[str, Any]


_REGISTRY: dict[str, ModelEntry] = {}
_ENCODERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}

# arch (or encoder kind) -> the module whose import registers it
_BUILTIN: dict[str, str] = {
    "hubert": "speechkit.models.presets",
    "avhubert": "speechkit.models.av_presets",
    "wav2vec2": "speechkit.models.ssl_presets",
    "wavlm": "speechkit.models.ssl_presets",
    "data2vec": "speechkit.models.ssl_presets",
    "ctc": "speechkit.downstream.ctc_model",
    "probe_ctc": "speechkit.downstream.ctc_model",
    "sid": "speechkit.downstream.speaker",
}
_BUILTIN_ENCODERS: dict[str, str] = {
    "wavlm_encoder": "speechkit.models.wavlm",
    "fbank": "speechkit.downstream.baseline_upstream",  # parameter-free baseline upstreams
    "mfcc": "speechkit.downstream.baseline_upstream",
}


def register_model(arch: str, config_cls: type, model_cls: Callable[[Any], nn.Module],
                   presets: dict[str, Any] | None = None) -> None:
    """`model_cls(config_cls instance)` builds the model; `presets` are named config instances."""
    _REGISTRY[arch] = ModelEntry(config_cls, model_cls, dict(presets or {}))


def register_encoder(kind: str, from_spec: Callable[[dict[str, Any]], nn.Module]) -> None:
    """`from_spec(spec)` rebuilds an encoder from the dict its `upstream_spec()` returned."""
    _ENCODERS[kind] = from_spec


def _lookup(table: dict[str, Any], builtin: dict[str, str], name: Any) -> Any:
    if name not in table and name in builtin:
        importlib.import_module(builtin[name])  # registers `name` as a side effect
    return table.get(name)


def known_archs() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def _entry(arch: Any) -> ModelEntry:
    entry = _lookup(_REGISTRY, _BUILTIN, arch)
    if entry is None:
        raise ValueError(f"model_config: unknown or missing arch {arch!r}; known: {known_archs()}")
    return entry


def build_upstream(spec: dict[str, Any]) -> nn.Module:
    """An upstream spec (see the module docstring) -> a freshly initialised module of that architecture."""
    kind = spec.get("type")
    if kind == "model":
        return build_model(spec["model_config"])
    from_spec = _lookup(_ENCODERS, _BUILTIN_ENCODERS, kind)
    if from_spec is None:
        raise ValueError(f"upstream spec: unknown type {kind!r}; known: {sorted({'model', *_ENCODERS, *_BUILTIN_ENCODERS})}")
    return from_spec(spec)


def resolve_config(model_config: dict[str, Any]) -> Any:
    """model_config dict -> the arch's config dataclass (preset + overrides applied)."""
    if not isinstance(model_config, dict):
        raise TypeError(f"model_config must be a mapping, got {type(model_config).__name__}")
    cfg = dict(model_config)
    arch = cfg.get("arch")
    entry = _entry(arch)
    preset_name = cfg.pop("preset", None)
    if preset_name is not None:
        if preset_name not in entry.presets:
            raise ValueError(f"model_config: unknown {arch} preset {preset_name!r}; known: {sorted(entry.presets)}")
        base = config_to_dict(entry.presets[preset_name])
    else:
        base = {"arch": arch}
    head_fields = {f.name for f in fields(entry.config_cls)}
    if "encoder" in head_fields:  # an arch built on the shared encoder: encoder overrides merge into the preset's
        enc_overrides = dict(cfg.pop("encoder", None) or {})
        enc_fields = {f.name for f in fields(EncoderConfig)}
        for key in list(cfg):  # flat encoder keys, e.g. mask_prob at the top level
            if key in enc_fields and key not in head_fields:
                enc_overrides[key] = cfg.pop(key)
        base_enc = dict(base.pop("encoder", {}) or {})
        base_enc.update(enc_overrides)
        base["encoder"] = config_from_dict(EncoderConfig, base_enc, "model_config.encoder")
    base.update(cfg)
    return config_from_dict(entry.config_cls, base, "model_config")


def build_model(model_config: dict[str, Any]) -> nn.Module:
    cfg = resolve_config(model_config)
    return _entry(cfg.arch).model_cls(cfg)


def read_checkpoint(path: pathlib.Path, map_location: str | torch.device) -> dict[str, Any]:
    """The checkpoint dict at ``path``; any unreadable, truncated or foreign file is a PretrainedLoadError naming it."""
    if not path.is_file():
        raise PretrainedLoadError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise PretrainedLoadError(
            f"{path}: not a plain tensor/dict checkpoint ({e}); speechkit checkpoints hold only tensors and "
            "plain values, so this file is damaged or from another tool") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:  # truncated zip, bad magic number, ...
        raise PretrainedLoadError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); "
                                  "the file is truncated or not a torch checkpoint") from e
    if not isinstance(state, dict):
        raise PretrainedLoadError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    for key in ("model", "model_config"):
        if key not in state:
            raise PretrainedLoadError(f"{path}: checkpoint lacks {key!r} (has {sorted(state)}); expected a "
                                      "speechkit checkpoint with 'model' (state_dict) and 'model_config'")
    return state


def load_pretrained(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    strict: bool = True) -> nn.Module:
    """Build the model described by the checkpoint's `model_config` and load its weights (eval mode)."""
    return load_pretrained_with_state(path, map_location, strict)[0]


def load_pretrained_with_state(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                               strict: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_pretrained` that also returns the checkpoint dict (num_updates, model_config, ...)."""
    path = pathlib.Path(path)
    state = read_checkpoint(path, map_location)
    try:
        model = build_model(state["model_config"])
    except (ValueError, TypeError, KeyError) as e:
        raise PretrainedLoadError(f"{path}: model_config cannot build a model: {e}") from e
    weights = state["model"]
    if not isinstance(weights, dict):
        raise PretrainedLoadError(f"{path}: 'model' must be a state_dict, got {type(weights).__name__}")
    # checkpoints written from DDP or torch.compile wrappers carry a prefix
    for prefix in ("module.", "_orig_mod."):
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix):]: v for k, v in weights.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    problems = []
    if missing and strict:
        problems.append(f"{len(missing)} missing parameter(s), e.g. {missing[:5]}")
    if unexpected and strict:
        problems.append(f"{len(unexpected)} unexpected parameter(s), e.g. {unexpected[:5]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:5])}")
    if problems:
        raise PretrainedLoadError(f"{path}: weights do not fit the model built from its model_config "
                                  f"(arch {state['model_config'].get('arch')!r}): " + "; ".join(problems))
    model.load_state_dict(weights, strict=strict)
    model.eval()
    logger.info("loaded %s (arch %s, %d parameters)", path, state["model_config"].get("arch"),
                sum(p.numel() for p in model.parameters()))
    return model, state


register_encoder("encoder", SSLEncoder.from_upstream_spec)
