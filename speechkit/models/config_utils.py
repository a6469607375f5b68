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
