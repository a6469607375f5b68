"""Downstream tasks on the shared Trainer: CTC fine-tuning, CTC probing, speaker ID; checkpoint loading.

``build_task`` turns a task name, a :class:`~speechkit.train.config.TrainConfig` and data dirs into
a model and datasets; ``train_task`` runs :class:`~speechkit.train.trainer.Trainer` on them and
leaves in the exp dir, next to the checkpoints, what decoding and RESULTS.md need:
``tokenizer/`` (CTC tasks), ``downstream_info.json`` (task, init, labeled utterances, updates) and,
for models with a weighted-sum featurizer, ``layer_weights.json``.

The config's ``model`` section holds the task's own options:

- ``ctc``: ``freeze_finetune_updates``, ``final_dropout``, ``encoder: {mask_prob, mask_channel_prob,
  dropout, ...}`` (fine-tuning overrides of the pre-trained encoder) and, only when there is no
  ``--init`` checkpoint, the architecture (``preset: tiny`` + encoder fields) to train from scratch;
- ``probe_ctc``: ``head`` (linear | lstm), ``hidden_dim``, ``num_layers``, ``dropout``, ``layer_norm``;
- ``sid``: ``freeze_upstream``, ``embed_dim``, ``dropout``, ``layer_norm``, ``speaker_key``
  (prefix | utt2spk).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import pathlib
import shutil
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from speechkit.models import PretrainedLoadError, load_pretrained, resolve_config
from speechkit.models.encoder import EncoderConfig
from speechkit.models.registry import read_checkpoint
from speechkit.train.config import ConfigError, TrainConfig

from .ctc_model import CTCConfig, ProbeCTCConfig, ProbeCTCModel, build_ctc_model
from .data import TargetCollater, TargetDataset, speaker_of, speaker_targets, text_targets
from .featurizer import Upstream, find_encoder
from .speaker import SpeakerIDConfig, SpeakerIDModel

logger = logging.getLogger(__name__)

TASKS = ("ctc", "probe_ctc", "sid")
INFO_FILE = "downstream_info.json"
LAYER_WEIGHTS_FILE = "layer_weights.json"


def load_upstream(path: str | os.PathLike) -> nn.Module:
    """A module exposing ``extract_features`` from a checkpoint (pre-trained, imported or fine-tuned)."""
    return upstream_of(load_pretrained(path), path)


def upstream_of(model: nn.Module, where: Any = "model") -> nn.Module:
    """``model`` itself when it exposes ``extract_features``; for a downstream model over a wrapped upstream
    (probe, speaker ID), that upstream."""
    upstream = getattr(model, "upstream", None)
    if isinstance(upstream, Upstream):
        return upstream.model
    if not hasattr(model, "extract_features"):
        raise PretrainedLoadError(f"{where}: {type(model).__name__} does not expose extract_features")
    return model


@dataclass
class TaskSetup:
    model: nn.Module
    train_set: TargetDataset
    valid_set: TargetDataset | None
    info: dict[str, Any]
    tokenizer: Any = None


def _pop_arch(model_sec: dict[str, Any], task: str, source: str) -> dict[str, Any]:
    sec = dict(model_sec)
    arch = sec.pop("arch", task)
    if arch != task:
        raise ConfigError(f"{source}: model.arch is {arch!r} but the task is {task!r}")
    return sec


# Fields of each task's model config that the task fills itself (not settable in the YAML model section).
_SET_BY_TASK = {"ctc": (CTCConfig, {"arch", "encoder", "vocab_size", "encoder_kind"}),
                "probe_ctc": (ProbeCTCConfig, {"arch", "upstream", "vocab_size"}),
                "sid": (SpeakerIDConfig, {"arch", "upstream", "speakers"})}


def _check_options(sec: dict[str, Any], task: str, source: str) -> None:
    """An unknown key in the model section is an error naming the file and the key (not a TypeError)."""
    cls, fixed = _SET_BY_TASK[task]
    known = sorted({f.name for f in dataclasses.fields(cls)} - fixed)
    unknown = [k for k in sec if k not in known]
    if unknown:
        raise ConfigError(f"{source}: model.{unknown[0]}: unknown option for task {task!r}"
                          f"{f' (also unknown: {unknown[1:]})' if unknown[1:] else ''}; known: {known}")


def _datasets(cfg: TrainConfig, train_dir: str, valid_dir: str | None, targets_of, no_crop: bool):
    dc = cfg.data
    kw = dict(sample_rate=dc.sample_rate, min_sample_size=dc.min_sample_size, max_sample_size=dc.max_sample_size,
              no_crop=no_crop)
    train = TargetDataset(train_dir, targets_of(train_dir), **kw)
    valid = TargetDataset(valid_dir, targets_of(valid_dir), **kw) if valid_dir else None
    return train, valid


def build_task(task: str, cfg: TrainConfig, train_dir: str, valid_dir: str | None, *, init: str | None = None,
               from_scratch: bool = False, tokenizer_dir: str | None = None, source: str = "config") -> TaskSetup:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    sec = _pop_arch(cfg.model, task, source)
    info: dict[str, Any] = {"task": task}
    if task in ("ctc", "probe_ctc"):
        if tokenizer_dir is None:
            raise ValueError(f"task {task} needs a tokenizer (--tokenizer DIR from speechkit.bin.train_tokenizer)")
        from speechkit.text.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_dir)
        if not cfg.data.pad_audio:
            raise ConfigError(f"{source}: data.pad_audio must be true for CTC (a transcript cannot be cropped)")
        unknown: collections.Counter[str] = collections.Counter()  # of the training text

        def targets_of(d: str) -> dict[str, list[int]]:
            return text_targets(d, tok, unknown if d == train_dir else None)

        train, valid = _datasets(cfg, train_dir, valid_dir, targets_of, no_crop=True)
        info["unknown characters"] = {"count": sum(unknown.values()), "chars": "".join(sorted(unknown))}
        if task == "ctc":
            enc_over = dict(sec.pop("encoder", None) or {})
            if init is not None:
                arch_keys = [k for k in sec if k in {f.name for f in dataclasses.fields(EncoderConfig)} or k == "preset"]
                if arch_keys:
                    raise ConfigError(f"{source}: model.{arch_keys[0]}: the architecture comes from the --init "
                                      "checkpoint; put fine-tuning overrides under model.encoder")
                _check_options(sec, task, source)
                upstream = load_upstream(init)
                try:
                    model = build_ctc_model(tok.vocab_size, init=upstream, from_scratch=from_scratch,
                                            encoder_overrides=enc_over, **sec)
                except ValueError as e:  # a bad value or encoder override: name the config file
                    raise ConfigError(f"{source}: {e}") from e
            else:  # no checkpoint: the architecture from the config (a preset + overrides), random init
                cls, fixed = _SET_BY_TASK[task]
                head_keys = {f.name for f in dataclasses.fields(cls)} - fixed
                head = {k: sec.pop(k) for k in list(sec) if k in head_keys}
                try:
                    arch_cfg = resolve_config({"arch": "hubert", **sec, "encoder": {}})
                    model = build_ctc_model(tok.vocab_size, encoder_config=arch_cfg.encoder,
                                            encoder_overrides=enc_over, from_scratch=True, **head)
                except ValueError as e:  # unknown architecture keys, bad values: name the config file
                    raise ConfigError(f"{source}: model: {e} (CTC head options: {sorted(head_keys)})") from e
                from_scratch = True
            info["init"] = "scratch" if from_scratch else str(init)
        else:
            if init is None:
                raise ValueError("task probe_ctc needs --init (the frozen upstream checkpoint)")
            _check_options(sec, task, source)
            model = ProbeCTCModel.from_upstream(load_upstream(init), tok.vocab_size, **sec)
            info["init"] = str(init)
        setup = TaskSetup(model, train, valid, info, tok)
    else:  # sid
        if init is None:
            raise ValueError("task sid needs --init (the upstream checkpoint)")
        key = sec.pop("speaker_key", "prefix")
        _check_options(sec, task, source)
        spk_train = speaker_of(train_dir, key)
        speakers = sorted(set(spk_train.values()))
        targets_of = lambda d: speaker_targets(speaker_of(d, key), speakers, str(d))  # noqa: E731
        train, valid = _datasets(cfg, train_dir, valid_dir, targets_of, no_crop=False)
        model = SpeakerIDModel.from_upstream(load_upstream(init), speakers, **sec)
        info.update({"init": str(init), "speakers": len(speakers), "speaker_key": key})
        setup = TaskSetup(model, train, valid, info)
    enc = find_encoder(setup.model)
    if enc is not None:  # drop, with a counted log, what the encoder cannot make one frame of
        for ds in (setup.train_set, setup.valid_set):
            if ds is not None:
                ds.drop_shorter_than(enc.min_samples(), "less than one frame of the conv feature extractor")
    setup.info["labeled utts"] = len(setup.train_set)
    setup.info["trainable params"] = sum(p.numel() for p in setup.model.parameters() if p.requires_grad)
    return setup


def train_task(setup: TaskSetup, cfg: TrainConfig, exp_dir: str | os.PathLike, *, resume: str | None = None,
               dist_info=None, tokenizer_dir: str | None = None) -> dict[str, Any]:
    """Train with the shared Trainer; returns the info written to ``downstream_info.json``."""
    from speechkit.train.trainer import Trainer, make_collater

    exp = pathlib.Path(exp_dir)
    model = setup.model
    no_crop = setup.train_set.no_crop
    trainer = Trainer(model, cfg, exp, setup.train_set, setup.valid_set, dist_info=dist_info,
                      model_config=model.model_config(),
                      collater=TargetCollater(make_collater(cfg, setup.train_set), no_crop),
                      valid_collater=TargetCollater(make_collater(cfg, setup.train_set), no_crop))
    trainer.maybe_resume(resume)
    is_main = trainer.info.is_main
    if is_main and tokenizer_dir is not None:
        dst = exp / "tokenizer"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(tokenizer_dir, dst)
    trainer.train()
    info = {**setup.info, "updates": trainer.num_updates, "peak lr": cfg.optim.lr}
    featurizer = getattr(model, "featurizer", None)
    if featurizer is not None:
        info["layer_weights"] = featurizer.layer_weights()
        if is_main:
            featurizer.save_weights(exp / LAYER_WEIGHTS_FILE, {"task": info["task"], "updates": trainer.num_updates})
            logger.info("learned layer weights (softmax): %s", featurizer.format_weights())
    if is_main:
        tmp = exp / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, exp / INFO_FILE)
    return info


def read_info(model_path: str | os.PathLike) -> dict[str, Any]:
    """``downstream_info.json`` next to a checkpoint ({} when absent)."""
    p = pathlib.Path(model_path).parent / INFO_FILE
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


# Audio samples per inference batch when none are given: large batches keep a GPU busy; on a CPU they only
# grow the activations past the caches (the mini recipe's CTC model, dev set, one thread: 5.2 s with 240 s
# batches, 3.1 s with 30 s batches).
INFERENCE_BATCH_SAMPLES = {"cuda": 16000 * 240, "cpu": 16000 * 30}


def audio_batches(data_dir: str | os.PathLike, max_tokens: int | None = None, num_workers: int = 0,
                  sample_rate: int = 16000, device: str | torch.device | None = None,
                  ) -> tuple[Iterator[dict[str, Any]], int, Any]:
    """Whole utterances of a data dir in length-sorted, zero-padded batches of up to ``max_tokens`` samples
    (default: :data:`INFERENCE_BATCH_SAMPLES` of ``device``'s kind; a longer utterance gets a batch of its
    own), for inference. Returns (iterator of batches, number of batches, the dataset)."""
    from speechkit.train.batching import BucketBatchSampler, Collater
    from speechkit.train.dataset import AudioLabelDataset

    if max_tokens is None:
        kind = torch.device(device).type if device is not None else "cpu"
        max_tokens = INFERENCE_BATCH_SAMPLES["cpu" if kind == "cpu" else "cuda"]
    elif max_tokens <= 0:
        raise ValueError(f"max_tokens (--max-tokens) must be positive, got {max_tokens}")

    ds = AudioLabelDataset(data_dir, (), (), sample_rate=sample_rate)
    longest = int(ds.sizes.max())
    batches = BucketBatchSampler(ds.sizes, max(max_tokens, longest), shuffle=False).batches(0)
    collate = Collater(sample_rate, longest, pad_audio=True, random_crop=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    return iter(loader), len(batches), ds
