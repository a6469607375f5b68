"""Dataclass configs <-> plain dicts (YAML, checkpoints), with errors that name the offending key."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dataclass -> plain dict of builtins (tuples become lists, so YAML stays plain)."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def config_from_dict(cls: type[T], data: dict[str, Any] | T, where: str = "config") -> T:
    """Build dataclass `cls` from `data`; nested dataclass fields accept dicts. Unknown keys are an error
    naming them (a typo in a YAML file must not be silently ignored)."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints.get(name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            value = config_from_dict(hint, value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


class ModelConfig:
    """Base of the model config dataclasses: plain-dict round trip and the checks every one repeats.

    Subclass it with ``@dataclass`` and give the config an ``arch: str = "<name>"`` field: a value other
    than that default is an error (a checkpoint of one arch read as another), and fields whose type is a
    dataclass accept plain dicts (YAML, checkpoints). A subclass with checks of its own defines
    ``__post_init__`` and calls ``super().__post_init__()`` first.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            hint = hints.get(f.name)
            value = getattr(self, f.name)
            if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
                setattr(self, f.name, config_from_dict(hint, value, f"model_config.{f.name}"))
        arch = next((f for f in dataclasses.fields(self) if f.name == "arch"), None)  # type: ignore[arg-type]
        if arch is not None and getattr(self, "arch") != arch.default:
            raise ValueError(f"{type(self).__name__}.arch must be {arch.default!r}, got {getattr(self, 'arch')!r}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        return config_from_dict(cls, data, "model_config")
