"""utils/threads.sh: threads per job in every recipe (nj x threads <= cores), passed to each job."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

RUN_SH = """\
#!/usr/bin/env bash
set -euo pipefail
nj=2
threads_per_job=""
cores=""
help_message="Usage: $0 [options]"
. utils/parse_options.sh
. utils/threads.sh
echo "threads_per_job=$threads_per_job cores=$cores train_threads=$train_threads omp=$OMP_NUM_THREADS"
utils/run.pl JOB=1:$nj log/job.JOB.log 'echo "job JOB omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS"'
nthreads $train_threads bash -c 'echo "train omp=$OMP_NUM_THREADS"'
"""


@pytest.fixture
def recipe(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "utils").symlink_to(ROOT / "utils")
    (tmp_path / "run.sh").write_text(RUN_SH)
    (tmp_path / "run.sh").chmod(0o755)
    return tmp_path


def sh(recipe: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def parse(r: subprocess.CompletedProcess) -> dict[str, str]:
    assert r.returncode == 0, r.stderr
    return dict(kv.split("=") for kv in r.stdout.splitlines()[0].split())


def test_default_is_cores_over_jobs_and_every_job_gets_it(recipe):
    r = sh(recipe, "--nj", "2", "--cores", "6")
    assert parse(r) == {"threads_per_job": "3", "cores": "6", "train_threads": "6", "omp": "3"}
    for j in (1, 2):
        assert f"job {j} omp=3 mkl=3" in (recipe / f"log/job.{j}.log").read_text()
    assert "train omp=6" in r.stdout  # a step that runs alone gets all cores
    # more jobs than cores: one thread each, never zero
    assert parse(sh(recipe, "--nj", "8", "--cores", "2"))["threads_per_job"] == "1"


def test_option_overrides_and_oversubscription_warns(recipe):
    assert parse(sh(recipe, "--nj", "2", "--cores", "8", "--threads-per-job", "1"))["omp"] == "1"
    r = sh(recipe, "--nj", "2", "--cores", "4", "--threads-per-job", "3")
    assert r.returncode == 0 and "--nj 2 x --threads-per-job 3 exceeds the 4 cores" in r.stderr
    r = sh(recipe, "--threads-per-job", "two")
    assert r.returncode == 1 and "--threads-per-job must be a positive integer, got 'two'" in r.stderr


def test_cores_default_is_nproc_not_an_inherited_omp_setting(recipe):
    n = int(subprocess.run(["env", "-u", "OMP_NUM_THREADS", "nproc"], capture_output=True, text=True).stdout)
    v = parse(sh(recipe, "--nj", "1", OMP_NUM_THREADS="1"))
    assert v["cores"] == str(n) and v["threads_per_job"] == str(n)


def pooled_functions(text: str) -> set[str]:
    """Shell functions that the script only ever starts through `side_by_side $nj - <function>`."""
    out = set()
    for f in re.findall(r"^(\w+)\(\) \{", text, re.M):
        calls = [ln for ln in text.splitlines() if re.search(rf"\b{f}\b", ln) and not ln.lstrip().startswith(f"{f}()")]
        if calls and all(f"side_by_side $nj - {f}" in ln for ln in calls):
            out.add(f)
    return out


def enclosing_function(text: str, pos: int) -> str | None:
    """The shell function whose body (`f() {` up to the next line that is `}`) holds position `pos`."""
    for m in re.finditer(r"^(\w+)\(\) \{", text, re.M):
        if m.start() < pos < text.find("\n}", m.end()):
            return m.group(1)
    return None


@pytest.mark.parametrize("run_sh", sorted(ROOT.glob("egs/*/*/run.sh")), ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_every_recipe_sets_threads_per_job(run_sh):
    text = run_sh.read_text()
    assert re.search(r"^threads_per_job=", text, re.M), f"{run_sh}: no threads_per_job option"
    parse_at, threads_at = text.index(". utils/parse_options.sh"), text.find(". utils/threads.sh")
    assert threads_at > parse_at, f"{run_sh}: must source utils/threads.sh after parse_options.sh"
    # parallel dump jobs get it as a flag, training processes through nthreads
    text = re.sub(r"(^|\s)#.*$", "", text.replace("\\\n", " "), flags=re.M)  # one line per command, no comments
    for m in re.finditer(r"speechkit\.bin\.(dump_features|dump_layer_features)\b.*$", text, re.M):
        assert "--num-threads $threads_per_job" in m.group(0), f"{run_sh}: {m.group(1)} without --num-threads"
    # a training run alone gets every core; runs side by side (utils/stage_log.sh) a job's share, also when
    # the run is inside a shell function that the recipe only ever starts side by side
    pooled = pooled_functions(text)
    for m in re.finditer(r"^.*speechkit\.bin\.(pretrain|finetune_ctc|train_downstream|train_sid_cached)\b.*$",
                         text, re.M):
        line = m.group(0)
        ok = ("side_by_side $nj" in line and "nthreads $threads_per_job" in line) or (
            "side_by_side" not in line and "nthreads $train_threads" in line) or (
            enclosing_function(text, m.start()) in pooled and "nthreads $threads_per_job" in line)
        assert ok, f"{run_sh}: {line.strip()}"


def test_trainer_logs_its_thread_count(tmp_path):
    import torch
    from train_toy import build, make_data_dir, toy_config

    data = make_data_dir(tmp_path / "train", [0.5, 0.6])
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build(toy_config(max_updates=3, valid_interval=0), data, tmp_path / "exp").train()
    finally:
        torch.set_num_threads(old)
    log = (tmp_path / "exp" / "train.log").read_text()
    assert re.search(r"threads: 1 torch threads per process \(OMP_NUM_THREADS=\S+\)", log), log
