"""Helpers for the recipe tests: run a recipe's run.sh from a scratch copy (outputs stay out of the checkout)."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def copy_recipe(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    """The recipe's own files (run.sh, path.sh, cmd.sh, db.sh, conf/) and a ``utils`` link in ``dst``."""
    dst.mkdir(parents=True)
    for name in ("run.sh", "path.sh", "cmd.sh", "db.sh"):
        if (src / name).exists():  # db.sh only where the recipe reads a corpus from disk
            shutil.copy2(src / name, dst / name)
    shutil.copytree(src / "conf", dst / "conf")
    (dst / "utils").symlink_to(ROOT / "utils")
    return dst


def run_recipe(recipe: pathlib.Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``bash run.sh ARGS`` in ``recipe`` with this checkout's package and interpreter; corpus variables
    of db.sh are unset so that only the command line says where the data is."""
    env = dict(os.environ, SPEECHKIT_ROOT=str(ROOT),
               PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("LIBRISPEECH", "LIBRILIGHT_FT", "LIBRISPEECH_LM", "TEDLIUM3"):
        env.pop(var, None)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # parallel test workers share the machine: each recipe gets its share of the cores
        env["SPEECHKIT_CORES"] = str(max(1, (os.cpu_count() or 1) // workers))
    return subprocess.run(["bash", "run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True,
                          timeout=timeout)


def training_outputs(recipe: pathlib.Path) -> dict[str, tuple[int, int]]:
    """``{path: (mtime_ns, size)}`` of every checkpoint and train.log under ``exp/``.

    Training logs go to files, not to the recipe's stderr, so a re-run that must not train again
    is checked here: any training stage that ran would rewrite checkpoint_last.pt and its log.
    """
    files = [*recipe.glob("exp/**/checkpoint*.pt"), *recipe.glob("exp/**/train.log")]
    return {str(p.relative_to(recipe)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(files)}
