"""Seq2seq fine-tuning on the shared Trainer: datasets, collaters, noise, and the train / decode glue.

``build_seq2seq_task`` takes a :class:`~speechkit.train.config.TrainConfig` whose ``model`` section holds::

    model:
      arch: seq2seq                  # optional
      decoder: {preset: base}        # base | large | tiny, plus DecoderConfig overrides (dropout, ...)
      modalities: video              # video (VSR) | audio (ASR) | audiovisual (AVSR); audio for audio encoders
      label_smoothing: 0.1
      ctc_weight: 0.0                # > 0 adds the CTC head
      freeze_finetune_updates: 0     # encoder frozen for this many updates
      apply_mask: false
      modality_dropout: false        # AVSR: apply the pre-trained model's modality dropout (the anchor does not)
      final_dropout: 0.0
      encoder_overrides: {}          # AV encoders: e.g. {dropout: 0.1, mask_prob: 0.3, feature_grad_mult: 0.0}
      av_data:                       # AV encoders only (AVDataConfig)
        crop_size: 88
        max_frames: 500              # longer utterances are dropped (a transcript cannot be cropped)
        audio_features: speechkit.features.av_audio:AVFbank   # module:callable, called with no argument
        noise_prob: 0.0              # training noise (sources given on the command line)
        snrs: [0.0]

``data.max_tokens`` counts 25 Hz frames for AV encoders (the anchor's ``max_tokens: 1000``) and samples
for audio encoders, as everywhere else in speechkit. Audio encoders use the CTC tasks' data path
(``TargetDataset``: ``wav.scp`` + ``text``); noise, when asked for, is added to their waveforms the same way.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import pathlib
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from speechkit.models.config_utils import config_from_dict
from speechkit.train.config import ConfigError, TrainConfig

from .seq2seq import Seq2SeqModel, build_seq2seq_model

logger = logging.getLogger(__name__)

INFO_FILE = "downstream_info.json"
DEFAULT_AUDIO_FEATURES = "speechkit.features.av_audio:AVFbank"


@dataclass
class AVDataConfig:
    crop_size: int = 88
    max_frames: int = 500  # the anchor's max_sample_size (frames) for fine-tuning
    audio_features: str = DEFAULT_AUDIO_FEATURES
    noise_prob: float = 0.0
    snrs: list[float] = field(default_factory=lambda: [0.0])
    av_tolerance: float = 1.0


def resolve_callable(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """``package.module:name`` -> ``name()`` if it is a class (an extractor object), else the function itself."""
    if ":" not in spec:
        raise ValueError(f"audio_features {spec!r}: expected 'package.module:name'")
    mod, name = spec.split(":", 1)
    try:
        obj = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"audio_features {spec!r}: cannot import it ({e})") from e
    return obj() if isinstance(obj, type) else obj


def build_noise(noise_dirs: Sequence[str] = (), babble_dir: str | None = None, *, prob: float = 1.0,
                snrs: Sequence[float] = (0.0,), babble_speakers: int = 30, babble_clips: int = 4, seed: int = 0,
                sample_rate: int = 16000):
    """A NoiseAugment over noise folders and/or babble made from a data dir; None when there is no source."""
    from speechkit.features.noise import NoiseAugment, NoiseSource, babble_from_data_dir

    sources = [NoiseSource.from_dir(d, sample_rate) for d in noise_dirs]
    if babble_dir is not None:
        clips = babble_from_data_dir(babble_dir, num_clips=babble_clips, num_speakers=babble_speakers, seed=seed,
                                     sample_rate=sample_rate)
        sources.append(NoiseSource(clips, name=f"babble({babble_dir})", sample_rate=sample_rate))
    if not sources:
        return None
    return NoiseAugment(sources, prob=prob, snrs=list(snrs))


class NoisyWavCollater:
    """Adds noise to item waveforms (rng from (seed, epoch, index), or (seed, index) in eval) before ``inner``."""

    def __init__(self, inner: Any, noise: Any, seed: int, train: bool) -> None:
        self.inner, self.noise, self.seed, self.train, self.epoch = inner, noise, seed, train, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out = []
        for it in items:
            key = [self.seed, self.epoch, int(it["index"])] if self.train else [self.seed, int(it["index"])]
            wav, _ = self.noise(it["wav"], np.random.default_rng(key))
            out.append({**it, "wav": wav})
        return self.inner(out)


@dataclass
class Seq2SeqSetup:
    model: Seq2SeqModel
    train_set: Any
    valid_set: Any
    train_collater: Any
    valid_collater: Any
    info: dict[str, Any]


def _split_model_section(sec: dict[str, Any], source: str) -> tuple[dict[str, Any], AVDataConfig]:
    sec = dict(sec)
    arch = sec.pop("arch", "seq2seq")
    if arch != "seq2seq":
        raise ConfigError(f"{source}: model.arch is {arch!r} but the task is 'seq2seq'")
    av = config_from_dict(AVDataConfig, dict(sec.pop("av_data", None) or {}), f"{source}: model.av_data")
    allowed = {"decoder", "modalities", "label_smoothing", "ctc_weight", "freeze_finetune_updates", "apply_mask",
               "final_dropout", "encoder_overrides", "modality_dropout"}
    bad = sorted(set(sec) - allowed)
    if bad:
        raise ConfigError(f"{source}: model.{bad[0]}: not a seq2seq option; expected one of {sorted(allowed)} "
                          "or av_data")
    return sec, av


def av_collaters(modalities: str, av: AVDataConfig, seed: int, noise: Any, audio_features=None):
    from speechkit.train.av_dataset import AVCollater, needs

    feats = audio_features
    if feats is None and needs(modalities)[0]:
        feats = resolve_callable(av.audio_features)
    common = dict(crop_size=av.crop_size, max_frames=av.max_frames, no_crop=True, av_tolerance=av.av_tolerance,
                  seed=seed)
    return (AVCollater(modalities, feats, train=True, noise=noise, **common),
            AVCollater(modalities, feats, train=False, **common))


def build_seq2seq_task(cfg: TrainConfig, train_dir: str, valid_dir: str | None, *, init: nn.Module,
                       tokenizer, from_scratch: bool = False, noise_dirs: Sequence[str] = (),
                       babble_dir: str | None = None, source: str = "config", audio_features=None) -> Seq2SeqSetup:
    """Model + datasets + collaters for fine-tuning ``init``'s encoder with an attention decoder."""
    from .data import TargetDataset, TargetCollater, text_targets

    head, av = _split_model_section(cfg.model, source)
    model = build_seq2seq_model(tokenizer.vocab_size, init, from_scratch=from_scratch,
                                eos=tokenizer.blank_id, **head)
    kind = model.encoder.kind
    seed = cfg.trainer.seed
    noise = build_noise(noise_dirs, babble_dir, prob=av.noise_prob, snrs=av.snrs, seed=seed,
                        sample_rate=cfg.data.sample_rate) if av.noise_prob > 0 else None
    if (noise_dirs or babble_dir) and noise is None:
        raise ConfigError(f"{source}: noise sources given but model.av_data.noise_prob is 0")
    targets = lambda d: text_targets(d, tokenizer)  # noqa: E731
    if kind == "av":
        from speechkit.train.av_dataset import AVDataset

        kw = dict(modalities=model.config.modalities, sample_rate=cfg.data.sample_rate, max_frames=av.max_frames,
                  drop_longer=True, av_tolerance=av.av_tolerance)
        train = AVDataset(train_dir, targets=targets(train_dir), **kw)
        valid = AVDataset(valid_dir, targets=targets(valid_dir), **kw) if valid_dir else None
        tc, vc = av_collaters(model.config.modalities, av, seed, noise, audio_features)
    else:
        from speechkit.train.batching import Collater

        if not cfg.data.pad_audio:
            raise ConfigError(f"{source}: data.pad_audio must be true for seq2seq (a transcript cannot be cropped)")
        dc = cfg.data
        kw = dict(sample_rate=dc.sample_rate, min_sample_size=dc.min_sample_size, max_sample_size=dc.max_sample_size,
                  no_crop=True)
        train = TargetDataset(train_dir, targets(train_dir), **kw)
        valid = TargetDataset(valid_dir, targets(valid_dir), **kw) if valid_dir else None

        def wav_col(train_mode: bool):
            inner = TargetCollater(Collater(dc.sample_rate, dc.max_sample_size, pad_audio=True, random_crop=False,
                                            seed=seed), no_crop=True)
            return NoisyWavCollater(inner, noise, seed, True) if (train_mode and noise is not None) else inner
        tc, vc = wav_col(True), wav_col(False)
    info = {"task": "seq2seq", "encoder": kind, "modalities": model.config.modalities,
            "labeled utts": len(train), "init": "scratch" if from_scratch else None,
            "trainable params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return Seq2SeqSetup(model, train, valid, tc, vc, info)


def train_seq2seq(setup: Seq2SeqSetup, cfg: TrainConfig, exp_dir: str | os.PathLike, *, resume: str | None = None,
                  dist_info=None, tokenizer_dir: str | None = None) -> dict[str, Any]:
    """Run the shared Trainer with the task's collaters; writes tokenizer/ and downstream_info.json."""
    from speechkit.train.trainer import Trainer

    exp = pathlib.Path(exp_dir)
    model = setup.model
    if model.config.freeze_finetune_updates >= cfg.trainer.max_updates > 0:
        raise ConfigError(f"model.freeze_finetune_updates {model.config.freeze_finetune_updates} >= trainer.max_updates "
                          f"{cfg.trainer.max_updates}: the encoder would never be fine-tuned")
    # the task's own collaters: the AV batch contract, targets, noise
    trainer = Trainer(model, cfg, exp, setup.train_set, setup.valid_set, dist_info=dist_info,
                      model_config=model.model_config(), collater=setup.train_collater,
                      valid_collater=setup.valid_collater)
    trainer.maybe_resume(resume)
    if trainer.info.is_main and tokenizer_dir is not None:
        dst = exp / "tokenizer"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(tokenizer_dir, dst)
    trainer.train()
    info = {**setup.info, "updates": trainer.num_updates, "peak lr": cfg.optim.lr}
    if trainer.info.is_main:
        tmp = exp / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, exp / INFO_FILE)
    return info


def decode_batches_for(model: Seq2SeqModel, data_dir: str, *, modalities: str, max_tokens: int, noise=None,
                       seed: int = 0, av: AVDataConfig | None = None, audio_features=None, num_workers: int = 0):
    """(iterator over eval batches of every utterance of ``data_dir``, number of batches, dataset)."""
    import torch

    from speechkit.train.batching import BucketBatchSampler

    if model.encoder.kind == "av":
        from speechkit.train.av_dataset import AVDataset

        av = av or AVDataConfig()
        ds = AVDataset(data_dir, modalities=modalities, av_tolerance=av.av_tolerance)
        _, col = av_collaters(modalities, dataclasses.replace(av, max_frames=None), seed, None, audio_features)  # type: ignore[arg-type]
        col.noise = noise
        lengths = ds.sizes
    else:
        from speechkit.train.batching import Collater
        from speechkit.train.dataset import AudioLabelDataset

        ds = AudioLabelDataset(data_dir, (), ())
        col = Collater(ds.sample_rate, int(ds.sizes.max()), pad_audio=True, random_crop=False)
        if noise is not None:
            col = NoisyWavCollater(col, noise, seed, train=False)
        lengths = ds.sizes
    batches = BucketBatchSampler(lengths, max(max_tokens, int(max(lengths))), shuffle=False).batches(0)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=batches, collate_fn=col, num_workers=num_workers)
    return iter(loader), len(batches), ds
