"""Checkpoint files: atomic writes, validated loads, RNG state capture, rotation.

A checkpoint is a ``torch.save`` dict (see CONTRACT.md)::

    {"model", "model_config", "train_config", "optimizer", "scheduler", "scaler", "num_updates",
     "epoch", "batch_in_epoch", "best_valid_loss", "rng", "world_size", "speechkit_version"}

It holds only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.
Writes go to a temporary file in the same directory, are flushed to disk, then ``os.replace``-d
over the target: a crash (or SIGKILL) mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import logging
import os
import pathlib
import random
import re
from typing import Any

import numpy as np
import torch

import speechkit

logger = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "model", "model_config", "train_config", "optimizer", "scheduler", "scaler", "num_updates",
    "epoch", "batch_in_epoch", "rng",
)
_NUMBERED = re.compile(r"checkpoint_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A missing, corrupt or incompatible checkpoint; the message names the file."""


def save_atomic(obj: Any, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", required: tuple[str, ...] = REQUIRED_KEYS
) -> dict[str, Any]:
    """Load a checkpoint dict, raising :class:`CheckpointError` naming ``path`` on any problem."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/EOFError/UnpicklingError for damaged files
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); the file is truncated or not a "
            "speechkit checkpoint"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; expected keys {', '.join(required)}")
    return state


_ABSENT = "<absent>"


def config_diff(saved: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted.key, saved, current)`` for every leaf that differs, descending into nested dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(saved) | set(current), key=str):
            out += config_diff(saved.get(k, _ABSENT), current.get(k, _ABSENT), f"{prefix}{k}.")
        return out
    return [] if saved == current else [(prefix.rstrip("."), saved, current)]


def check_model_config(path: str | os.PathLike, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume into a model built from a different config, naming the differing fields."""
    diff = config_diff(saved, current)
    if diff:
        shown = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, a, b in diff[:5])
        more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
        raise CheckpointError(f"{path}: checkpoint was made with a different model config ({shown}{more})")


# ---- RNG state ----------------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors / plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    # weights_only loading turns the inner tuple into a list; random.setstate wants tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- files in an experiment directory -------------------------------------------------------
def numbered_checkpoints(exp_dir: str | os.PathLike) -> list[tuple[int, pathlib.Path]]:
    """``checkpoint_<updates>.pt`` files, oldest first."""
    out = []
    for p in pathlib.Path(exp_dir).glob("checkpoint_*.pt"):
        m = _NUMBERED.search(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def rotate(exp_dir: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` numbered checkpoints (0 keeps none)."""
    ckpts = numbered_checkpoints(exp_dir)
    for _, p in ckpts[: max(0, len(ckpts) - keep_last)]:
        p.unlink()
        logger.debug("removed old checkpoint %s", p)


def remove_stale_temporaries(exp_dir: str | os.PathLike) -> None:
    """Temporary files left by a process killed mid-write are never valid checkpoints."""
    for p in pathlib.Path(exp_dir).glob(".checkpoint*.pt.tmp*"):
        logger.info("removing %s (left by an interrupted write)", p)
        p.unlink()


def version() -> str:
    return getattr(speechkit, "__version__", "unknown")
