"""Import fairseq (and unilm WavLM) checkpoints of wav2vec 2.0, HuBERT and WavLM as speechkit models.

A fairseq checkpoint is a `torch.save` dict with `model` (the state dict) and `cfg` (hydra, with
`cfg["model"]`) or `args` (an argparse Namespace, older files); unilm's WavLM files have a flat `cfg`.
Fine-tuned models (`wav2vec_ctc`, `hubert_ctc`) wrap the pre-trained one: keys start with
`w2v_encoder.w2v_model.` and its config sits in `cfg["model"]["w2v_args"]`; their output layer
`w2v_encoder.proj` becomes `extra["ctc_head.*"]`.

Key names, as the public conversion scripts (HF's convert_*_original_*_checkpoint) map them:
    feature_extractor.conv_layers.N.0          -> feature_extractor.conv_layers.N.conv
    feature_extractor.conv_layers.N.2(.1)      -> feature_extractor.conv_layers.N.layer_norm
    layer_norm / post_extract_proj / mask_emb  -> feature_projection.layer_norm / .projection / masked_spec_embed
    encoder.pos_conv.0.{weight_g,weight_v,bias} -> encoder.pos_conv_embed.conv.{parametrizations...,bias}
    encoder.layers.N.self_attn.{q,k,v,out}_proj -> encoder.layers.N.attention.*
    encoder.layers.N.{self_attn_layer_norm,fc1,fc2,final_layer_norm} -> layer_norm, feed_forward.*, final_layer_norm
    encoder.layers.N.self_attn.{relative_attention_bias,grep_linear,grep_a} -> attention.{rel_attn_embed,
        gru_rel_pos_linear,gru_rel_pos_const}   (WavLM)
    quantizer.vars / quantizer.weight_proj / project_q / final_proj / label_embs_concat (heads)

Waveform normalisation is a *task* setting in fairseq (`cfg.task.normalize`, `args.normalize`; the
fine-tuned model's pre-training task in `w2v_args.task`; unilm WavLM: `cfg.normalize`); it becomes the
encoder's `normalize`, so the imported model normalises its input itself, and the import says so loudly.
A checkpoint that records none gets fairseq's default (raw audio), with a warning.

Loading: `torch.load(weights_only=True)` with argparse.Namespace allowed, so files with `args` load
without running pickled code. Hydra-era files also pickle omegaconf objects: those need
`trust_pickle=True` (and omegaconf installed), which unpickles arbitrary objects - only for files you trust.
"""
from __future__ import annotations

import argparse
import ast
import os
import pathlib
import pickle
import re
from typing import Any, Mapping

import torch
from torch import Tensor

from .config_utils import config_to_dict
from .encoder import EncoderConfig
from .import_hf_models import ConvertedModel, fill_model, log_normalization

FINETUNE_PREFIX = "w2v_encoder.w2v_model."

FAIRSEQ_ENCODER_TABLE: list[tuple[str, str]] = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.(?:1\.)?(weight|bias)$", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"^layer_norm\.(weight|bias)$", r"feature_projection.layer_norm.\1"),
    (r"^post_extract_proj\.(weight|bias)$", r"feature_projection.projection.\1"),
    (r"^mask_emb$", "masked_spec_embed"),
    (r"^encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)$",
     "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)$",
     "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)$", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$", r"encoder.layers.\1.layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$",
     r"encoder.layers.\1.attention.rel_attn_embed.weight"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)$", r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$", r"encoder.layers.\1.attention.gru_rel_pos_const"),
]
FAIRSEQ_HEAD_TABLE: list[tuple[str, str]] = [
    (r"^quantizer\.vars$", "quantizer.codevectors"),
    (r"^quantizer\.weight_proj\.(weight|bias)$", r"quantizer.weight_proj.\1"),
    (r"^project_q\.(weight|bias)$", r"project_q.\1"),
    (r"^final_proj\.(weight|bias)$", r"final_proj.\1"),
    (r"^label_embs_concat$", "label_embs_concat"),
]
FAIRSEQ_EXTRA_TABLE: list[tuple[str, str]] = [(r"^w2v_encoder\.proj\.(weight|bias)$", r"ctc_head.\1")]
IGNORED = re.compile(r"(^|\.)(_float_tensor|version)$")

# fairseq model config -> EncoderConfig (extractor_mode, conv_feature_layers handled in code)
FAIRSEQ_CONFIG_TABLE: dict[str, str] = {
    "conv_bias": "conv_bias", "feature_grad_mult": "feature_grad_mult", "encoder_embed_dim": "embed_dim",
    "encoder_layers": "num_layers", "encoder_attention_heads": "num_heads", "encoder_ffn_embed_dim": "ffn_dim",
    "layer_norm_first": "layer_norm_first", "conv_pos": "pos_conv_kernel", "conv_pos_groups": "pos_conv_groups",
    "dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
    "dropout_input": "dropout_input", "dropout_features": "dropout_features", "encoder_layerdrop": "layerdrop",
    "mask_prob": "mask_prob", "mask_length": "mask_length", "mask_channel_prob": "mask_channel_prob",
    "mask_channel_length": "mask_channel_length", "require_same_masks": "mask_require_same",
}


def _plain(obj: Any) -> Any:
    """omegaconf DictConfig / Namespace / nested mappings -> plain dicts and lists."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, Mapping) or (hasattr(obj, "items") and hasattr(obj, "keys")):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def parse_conv_layers(spec: str | list[Any]) -> list[tuple[int, int, int]]:
    """fairseq's `conv_feature_layers` string, e.g. "[(512,10,5)] + [(512,3,2)] * 4", evaluated safely
    (literals, +, * only)."""
    if not isinstance(spec, str):
        return [tuple(int(v) for v in s) for s in spec]  # type: ignore[misc]

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [ev(e) for e in node.elts]
            return vals if isinstance(node, ast.List) else tuple(vals)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"conv_feature_layers: unsupported expression {ast.dump(node)[:80]}")

    return [tuple(int(v) for v in s) for s in ev(ast.parse(spec, mode="eval"))]  # type: ignore[misc]


def read_fairseq_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, Any]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: fairseq checkpoint not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: the checkpoint pickles objects other than tensors and argparse.Namespace "
                         f"(hydra/omegaconf configs, likely): pass trust_pickle=True (CLI --trust-pickle) if "
                         f"you trust the file; detail: {str(e)[:300]}") from e
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a fairseq checkpoint (expected a dict with 'model' and 'cfg'/'args')")
    return state


def fairseq_model_config(ckpt: Mapping[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """The pre-training model's config (fine-tuned wrappers unwrapped), as a plain dict with `_name`."""
    if ckpt.get("cfg") is not None:
        cfg = _plain(ckpt["cfg"])
        model = cfg.get("model", cfg)  # unilm WavLM: flat
        if model is cfg and "_name" not in model:
            model = dict(model, _name="wavlm" if model.get("relative_position_embedding") else "wav2vec2")
    elif ckpt.get("args") is not None:
        model = _plain(ckpt["args"])
        model.setdefault("_name", model.get("arch"))
    else:
        raise ValueError(f"{where}: no 'cfg' or 'args': cannot tell the model's architecture")
    if "w2v_args" in model and model["w2v_args"] is not None:  # fine-tuned: the wrapped pre-trained config
        inner = _plain(model["w2v_args"])
        inner = inner.get("model", inner)
        inner.setdefault("_name", inner.get("arch"))
        model = inner
    return model


def fairseq_normalize(ckpt: Mapping[str, Any]) -> tuple[bool | None, str]:
    """(task.normalize of the checkpoint, where it was found); (None, ...) when it records none."""
    def task_of(container: Any) -> Any:
        c = _plain(container)
        return c.get("task") if isinstance(c, dict) else None

    found: list[tuple[Any, str]] = []
    if ckpt.get("cfg") is not None:
        cfg = _plain(ckpt["cfg"])
        found.append(((task_of(cfg) or {}).get("normalize"), "cfg.task.normalize"))
        if "model" not in cfg:  # unilm WavLM: one flat config
            found.append((cfg.get("normalize"), "cfg.normalize"))
        w2v = (cfg.get("model") or {}).get("w2v_args")
        if w2v is not None:
            found.append(((task_of(w2v) or {}).get("normalize"), "cfg.model.w2v_args.task.normalize"))
            found.append((_plain(w2v).get("normalize"), "cfg.model.w2v_args.normalize"))
    elif ckpt.get("args") is not None:
        args = _plain(ckpt["args"])
        found.append((args.get("normalize"), "args.normalize"))
        if args.get("w2v_args") is not None:
            found.append((_plain(args["w2v_args"]).get("normalize"), "args.w2v_args.normalize"))
    for value, where in found:
        if value is not None:
            return bool(value), f"{where}={value}"
    return None, "the checkpoint records no task.normalize; fairseq's default, raw audio, assumed"


def encoder_config_from_fairseq(m: Mapping[str, Any], where: str = "checkpoint") -> EncoderConfig:
    if m.get("activation_fn", "gelu") != "gelu":
        raise ValueError(f"{where}: activation_fn={m['activation_fn']!r} is not supported (gelu only)")
    if int(m.get("pos_conv_depth", 1) or 1) != 1:
        raise ValueError(f"{where}: pos_conv_depth={m['pos_conv_depth']} (data2vec's stacked positional convs) "
                         "is not supported; speechkit's encoder has one positional conv")
    kwargs = {ours: m[theirs] for theirs, ours in FAIRSEQ_CONFIG_TABLE.items() if m.get(theirs) is not None}
    mode = m.get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise ValueError(f"{where}: extractor_mode={mode!r}; expected 'default' or 'layer_norm'")
    kwargs["extractor_mode"] = "group" if mode == "default" else "layer"
    if m.get("conv_feature_layers") is not None:
        kwargs["conv_layers"] = parse_conv_layers(m["conv_feature_layers"])
    return EncoderConfig(**kwargs)


def _detect_arch(name: str | None, keys: set[str]) -> str:
    if any("relative_attention_bias" in k or "grep_linear" in k for k in keys):
        return "wavlm"
    if "label_embs_concat" in keys or (name or "").startswith("hubert"):
        return "hubert"
    if (name or "").startswith("data2vec"):
        raise ValueError("data2vec fairseq checkpoints are not supported (stacked positional convs)")
    return "wav2vec2"


def _temp(v: Any) -> list[float]:
    return [float(x) for x in (ast.literal_eval(v) if isinstance(v, str) else v)]


def import_fairseq(source: str | os.PathLike | Mapping[str, Any], num_classes: int | None = None,
                   trust_pickle: bool = False, normalize: bool | None = None) -> ConvertedModel:
    """fairseq checkpoint file (or its loaded dict) -> ConvertedModel (eval mode). `normalize`: the
    imported model's waveform normalisation; None reads the checkpoint's task.normalize."""
    from .registry import build_model

    if isinstance(source, Mapping):
        ckpt, name = source, "<fairseq checkpoint dict>"
    else:
        ckpt, name = read_fairseq_checkpoint(source, trust_pickle), str(source)
    from .import_avhubert import import_avhubert, is_avhubert_state

    if is_avhubert_state(ckpt["model"]):  # audio-visual: its own table (speechkit.models.import_avhubert)
        return import_avhubert(ckpt, name, num_classes)
    m = fairseq_model_config(ckpt, name)
    state = {k[len(FINETUNE_PREFIX):] if k.startswith(FINETUNE_PREFIX) else k: v for k, v in ckpt["model"].items()}
    arch = _detect_arch(m.get("_name"), set(state))
    enc = encoder_config_from_fairseq(m, name)
    if normalize is None:
        recorded, how = fairseq_normalize(ckpt)
        enc.normalize = bool(recorded)
        log_normalization(enc.normalize, how, name, inferred=recorded is None)
    else:
        enc.normalize = bool(normalize)
        log_normalization(enc.normalize, "set by the caller", name, inferred=False)
    cfg: dict[str, Any] = {"arch": arch, "encoder": config_to_dict(enc)}
    if arch == "wav2vec2":
        # fairseq: final_dim 0 means encoder_embed_dim; the head's shape, when present, decides
        proj = state.get("final_proj.weight")
        final_dim = int(proj.shape[0]) if proj is not None else int(m.get("final_dim") or 0) or enc.embed_dim
        cfg.update(final_dim=final_dim, codevector_dim=int(m.get("latent_dim") or 0) or final_dim,
                   num_groups=int(m.get("latent_groups", 2)), num_vars=int(m.get("latent_vars", 320)),
                   num_negatives=int(m.get("num_negatives", 100)), logit_temp=float(m.get("logit_temp", 0.1)))
        if m.get("latent_temp") is not None:
            cfg["latent_temp"] = _temp(m["latent_temp"])
    else:
        embs = state.get("label_embs_concat")
        dim = int(m.get("final_dim") or (embs.shape[1] if embs is not None else 0) or
                  (256 if enc.embed_dim < 1024 else 768))
        cfg.update(final_dim=dim, logit_temp=float(m.get("logit_temp", 0.1)),
                   num_classes=int(embs.shape[0]) if embs is not None else (num_classes or 500))
        if m.get("label_rate") is not None:
            cfg["label_rate"] = float(m["label_rate"])
        if arch == "wavlm":
            if not m.get("gru_rel_pos", True):
                raise ValueError(f"{name}: WavLM without gated relative position bias (gru_rel_pos=False) "
                                 "is not supported")
            cfg.update(num_buckets=int(m.get("num_buckets", 320)), max_distance=int(m.get("max_distance", 800)))

    encoder_w: dict[str, Tensor] = {}
    heads: dict[str, Tensor] = {}
    extra: dict[str, Tensor] = {}
    unknown = []
    for key, value in ckpt["model"].items():
        k = key[len(FINETUNE_PREFIX):] if key.startswith(FINETUNE_PREFIX) else key
        if IGNORED.search(k):
            continue
        for table, dest in ((FAIRSEQ_ENCODER_TABLE, encoder_w), (FAIRSEQ_HEAD_TABLE, heads),
                            (FAIRSEQ_EXTRA_TABLE, extra)):
            hit = next((re.sub(p, r, k) for p, r in table if re.match(p, k)), None)
            if hit is None and table is FAIRSEQ_EXTRA_TABLE:  # the CTC head keeps its full name
                hit = next((re.sub(p, r, key) for p, r in table if re.match(p, key)), None)
            if hit is not None:
                dest[hit] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{name}: fairseq weights speechkit does not know: {unknown[:8]} ({len(unknown)} in all)")
    model = build_model(cfg)
    initialised = fill_model(model, arch, encoder_w, heads, name)
    model.eval()
    return ConvertedModel(model=model, model_config=model.model_config(), source=name,
                          initialised=initialised, extra=extra)
