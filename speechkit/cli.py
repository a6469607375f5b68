"""Options and set-up shared by the ``speechkit.bin`` CLIs, so that one option is spelled, documented and
checked the same way in every step.

- :func:`add_job_args` / :func:`check_job_args`: Kaldi-style parallel jobs, ``--nj N --job J --cmd LAUNCHER``
  (without ``--job`` a CLI launches jobs 1..N through ``--cmd``; with it, it is worker J of N).
- :func:`add_inference_args` / :func:`pick_device` / :func:`load_model`: ``--model CKPT --data-dir DIR --out
  DIR --max-tokens N --device D`` for the CLIs that run a trained model over a data dir, and loading that
  model through the registry (any arch, downstream ones included) onto the device, with an error naming
  the file instead of a traceback.

Heavy imports (torch, the models) happen inside the functions that need them, so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import pathlib
from typing import Any, Callable

DEFAULT_CMD = "utils/run.pl"


def add_job_args(p: argparse.ArgumentParser, what: str = "job") -> None:
    """``--nj``, ``--job``, ``--cmd`` (the launcher convention of utils/run.pl and Kaldi's run.pl/slurm.pl)."""
    p.add_argument("--nj", type=int, default=1, help=f"number of parallel {what}s (default 1: in this process)")
    p.add_argument("--job", type=int, default=None,
                   help=f"run only {what} J of --nj (1-based) and do not merge; set by the launcher")
    p.add_argument("--cmd", default=DEFAULT_CMD,
                   help=f"launcher, Kaldi's 'cmd JOB=1:N log command' convention (default {DEFAULT_CMD}; "
                        "recipes take it from cmd.sh)")


def check_job_args(args: argparse.Namespace) -> None:
    """``--nj`` >= 1 and ``--job`` within 1..nj, or a usage error."""
    if args.nj < 1:
        raise SystemExit(f"--nj must be >= 1, got {args.nj}")
    if args.job is not None and not 1 <= args.job <= args.nj:
        raise SystemExit(f"--job {args.job} is outside 1..{args.nj} (--nj)")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (a usage error otherwise)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_inference_args(p: argparse.ArgumentParser, model_help: str) -> None:
    """``--model``, ``--data-dir``, ``--out``, ``--max-tokens``, ``--device``."""
    p.add_argument("--model", required=True, type=pathlib.Path, help=model_help)
    p.add_argument("--data-dir", required=True, type=pathlib.Path, help="data dir to run on (wav.scp, ...)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output dir")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="audio samples per batch (default: 240 s of 16 kHz audio on a GPU, 30 s on a CPU; "
                        "speechkit.downstream.tasks.INFERENCE_BATCH_SAMPLES)")
    add_device_arg(p)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if "
                                                  "available, else cpu)")


def pick_device(name: str | None) -> Any:
    """``--device`` -> torch.device (cuda when available and nothing was asked for)."""
    from speechkit.train.distributed import pick_device as _pick

    try:
        return _pick(0, name)
    except RuntimeError as e:  # torch.device("gpu"): "Expected one of cpu, cuda, ..."
        raise SystemExit(f"--device {name!r}: {e}") from e


def load_model(path: str | pathlib.Path, device: Any, accept: Callable[[Any], bool] | None = None,
               expected: str = "") -> tuple[Any, dict[str, Any]]:
    """Any speechkit checkpoint -> (model in eval mode on ``device``, checkpoint dict).

    ``accept(model)`` False (e.g. a speaker-ID model given to the CTC decoder) is a usage error saying
    that ``path`` holds an ``arch`` model, not ``expected``.
    """
    from speechkit.models import PretrainedLoadError, load_pretrained_with_state

    try:
        model, state = load_pretrained_with_state(path)
    except PretrainedLoadError as e:
        raise SystemExit(f"error: {e}") from e
    if accept is not None and not accept(model):
        raise SystemExit(f"{path}: holds a {state['model_config'].get('arch')!r} model, not {expected}")
    return model.to(device).eval(), state
