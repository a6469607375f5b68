"""What several bench scripts share: their options and the malloc setting, and real recordings from the shared fixtures.

``bench/`` is on ``sys.path`` when a script runs as ``python bench/<name>.py``, so they ``import _common``.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np

from speechkit import runtime

AN4_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "an4"


def parse_kernel_bench_args(doc: str, reps: int) -> argparse.Namespace:
    """--reps, --threads (1 and 2) and --system-malloc of a kernel bench; applies the malloc setting of
    speechkit's command-line processes unless --system-malloc, and says which."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=reps)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--system-malloc", action="store_true", help="keep glibc's malloc defaults")
    args = p.parse_args()
    use_cli_malloc(not args.system_malloc)
    return args


def use_cli_malloc(keep: bool = True) -> None:
    """Apply the malloc setting of speechkit's command-line processes (freed memory kept for reuse) when
    ``keep``, and print which setting the process runs with."""
    if keep:
        runtime.keep_freed_memory()
    print(runtime.describe())


def an4_waveforms() -> list[np.ndarray]:
    """The real AN4 recordings of shared/fixtures (16 kHz, 0.7-2.9 s), longest first; [] when absent."""
    from speechkit.io.audio import load_audio

    files = sorted(AN4_DIR.glob("wav/**/*.sph"))
    if not files:
        print(f"({AN4_DIR} not found: the real-recording rows are skipped)")
    return sorted((load_audio(str(f), sample_rate=16000) for f in files), key=len, reverse=True)
