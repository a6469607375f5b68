"""Training configuration: dataclasses loaded from a YAML file in ``conf/``.

A config has five sections::

    model:     {arch: hubert, preset: tiny, ...}   # free-form; the model registry checks it
    data:      DataConfig      (crop, length filter, batching)
    optim:     OptimConfig     (optimizer, lr, clipping)
    schedule:  ScheduleConfig  (warmup + decay shape)
    trainer:   TrainerConfig   (updates, accumulation, AMP, intervals, seed)

Unknown keys and wrongly typed values are errors naming the file and the key, because a typo in
a config (``warmup_update: 32000``) would otherwise silently train with the default. Run state
(update count, best loss) is not config; it lives in the checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

import yaml


class ConfigError(ValueError):
    """A problem in a training config; the message names the file and the key."""


@dataclass
class DataConfig:
    sample_rate: int = 16000
    # Hz of the label frames: 100 for MFCC k-means labels, 50 for labels from model layers.
    label_rate: int = 50
    # Utterances longer than this are randomly cropped (fairseq's max_sample_size).
    max_sample_size: int = 250000
    # Utterances shorter than this are dropped (and the drop is logged).
    min_sample_size: int = 32000
    # Dynamic batching: batch size x longest (cropped) length <= max_tokens samples.
    max_tokens: int = 1400000
    # False: crop every utterance of a batch to the shortest one (HuBERT's pre-training default,
    # no padding); True: zero-pad to the longest.
    pad_audio: bool = False
    random_crop: bool = True
    num_workers: int = 2
    # Validation batches; defaults to max_tokens.
    valid_max_tokens: int | None = None


@dataclass
class OptimConfig:
    # "adamw" (decoupled weight decay: what fairseq's "adam" does) or "adam" (L2 in the gradient).
    name: str = "adamw"
    lr: float = 5.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-6
    weight_decay: float = 0.01
    # Max global gradient norm; 0 disables clipping (the norm is still computed and logged).
    clip_norm: float = 10.0


@dataclass
class ScheduleConfig:
    # polynomial_decay | linear | cosine | tri_stage | constant
    name: str = "polynomial_decay"
    warmup_updates: int = 0
    # Length of the schedule; defaults to trainer.max_updates.
    total_updates: int | None = None
    end_lr: float = 0.0
    power: float = 1.0
    # tri_stage only: (warmup, hold, decay) fractions of total_updates, or explicit counts
    # (warmup_updates/hold_updates/decay_updates) when phase_ratio is null.
    phase_ratio: list[float] | None = None
    hold_updates: int = 0
    decay_updates: int = 0
    init_lr_scale: float = 0.01
    final_lr_scale: float = 0.05


@dataclass
class TrainerConfig:
    max_updates: int = 400000
    # 0: no limit on epochs (max_updates ends training).
    max_epochs: int = 0
    # Gradient accumulation: batches per optimizer update.
    update_freq: int = 1
    # none | fp16 | bf16 (CUDA only; ignored with a log line on CPU)
    amp: str = "none"
    seed: int = 1
    log_interval: int = 100
    valid_interval: int = 10000
    save_interval: int = 10000
    # How many checkpoint_<updates>.pt to keep (checkpoint_last/best are kept regardless).
    keep_last: int = 5
    # DDP: look for parameters without gradient every step. The trainer turns it on by itself for
    # LayerDrop and for models that declare it (has_unused_parameters); true forces it.
    find_unused_parameters: bool = False


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> "TrainConfig":
        """Load ``path``; ``overrides`` are ``section.key=value`` strings (value parsed as YAML)."""
        path = pathlib.Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        for ov in overrides or []:
            apply_override(raw, ov, source=str(path))
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "TrainConfig":
        return _build(cls, raw, source, prefix="")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | os.PathLike) -> None:
        """Write the resolved config atomically (temp file + rename)."""
        path = pathlib.Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))
        os.replace(tmp, path)


def apply_override(raw: dict[str, Any], override: str, source: str = "<overrides>") -> None:
    """Set ``a.b.c=value`` in the nested dict ``raw`` (value parsed with yaml.safe_load)."""
    if "=" not in override:
        raise ConfigError(f"{source}: override {override!r} is not of the form section.key=value")
    key, value = override.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: override {override!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; expected one of {', '.join(names)}"
        )
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _check(hints[name], value, source, f"{prefix}{name}")
    return cls(**kwargs)


def _check(tp: Any, value: Any, source: str, key: str) -> Any:
    """Return ``value`` if it fits the annotation ``tp`` (ints widen to floats); else raise."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, prefix=f"{key}.")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(inner[0], value, source, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            _type_error(source, key, "a list", value)
        return [_check(args[0], v, source, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            _type_error(source, key, "a mapping", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            _type_error(source, key, "true/false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _type_error(source, key, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _type_error(source, key, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _type_error(source, key, "a string", value)
        return value
    return value


def _type_error(source: str, key: str, expected: str, value: Any) -> None:
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            # PyYAML follows YAML 1.1: 5e-4 (no dot) is a string; 5.0e-4 is a float.
            hint = " (YAML reads exponents without a dot as text: write e.g. 5.0e-4)"
        except ValueError:
            pass
    raise ConfigError(f"{source}: {key}: expected {expected}, got {value!r}{hint}")
