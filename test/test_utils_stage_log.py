"""utils/stage_log.sh: side_by_side / wait_side_by_side (independent runs of a stage, one per core)."""
from __future__ import annotations

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(tmp_path: pathlib.Path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n. utils/stage_log.sh\n" + body)
    (tmp_path / "utils").symlink_to(ROOT / "utils")
    return subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_runs_side_by_side_and_marks_only_successes(tmp_path):
    # two jobs that each wait for the other's file can only finish if they run at the same time
    res = _run(tmp_path, """
mkdir -p a b
side_by_side 2 a/.done bash -c 'touch a/started; for i in $(seq 100); do [ -f b/started ] && exit 0; sleep 0.05; done; exit 1'
side_by_side 2 b/.done bash -c 'touch b/started; for i in $(seq 100); do [ -f a/started ] && exit 0; sleep 0.05; done; exit 1'
wait_side_by_side
side_by_side 1 - true
echo ok
""")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("ok")
    assert (tmp_path / "a/.done").is_file() and (tmp_path / "b/.done").is_file()
    assert not (tmp_path / "-").exists()


def test_a_failed_job_fails_the_stage_naming_it_and_leaves_no_marker(tmp_path):
    res = _run(tmp_path, """
mkdir -p good bad
side_by_side 2 good/.done true
side_by_side 2 bad/.done false
wait_side_by_side
echo not reached
""")
    assert res.returncode == 1
    assert "not reached" not in res.stdout
    assert "ERROR: failed: bad (" in res.stderr and "good" not in res.stderr.split("failed:")[1]
    assert (tmp_path / "good/.done").is_file() and not (tmp_path / "bad/.done").exists()


def test_the_next_run_starts_when_any_one_ends(tmp_path):
    """A pool of 2: a short run's slot goes to the third run while the long first one is still running (the
    third creates the file the first waits for, so a group-of-2 scheduler would never finish)."""
    res = _run(tmp_path, """
mkdir -p a b c
side_by_side 2 a/.done bash -c 'for i in $(seq 200); do [ -f c/started ] && exit 0; sleep 0.05; done; exit 1'
side_by_side 2 b/.done true
side_by_side 2 c/.done bash -c 'touch c/started'
wait_side_by_side
echo ok
""")
    assert res.returncode == 0, res.stderr
    assert all((tmp_path / d / ".done").is_file() for d in "abc")


def test_no_new_run_starts_after_a_failure(tmp_path):
    res = _run(tmp_path, """
mkdir -p a b c
side_by_side 2 a/.done false
side_by_side 2 b/.done bash -c 'sleep 0.3'
side_by_side 2 c/.done true
echo not reached
""")
    assert res.returncode == 1 and "not reached" not in res.stdout
    assert "ERROR: failed: a (" in res.stderr
    assert (tmp_path / "b/.done").is_file() and not (tmp_path / "c/.done").exists()


def test_a_function_job_stops_at_its_first_failing_command(tmp_path):
    """A shell function run in the pool keeps the recipe's set -e: it stops where it fails (the old
    `"$@" && touch` form ran it in an && list, where bash ignores set -e, so it went on past the failure and,
    ending with a success, was marked done); a nested pool of one inside it runs its steps in order."""
    res = _run(tmp_path, """
mkdir -p f g
fails() { echo step1 > f/log; false; echo step2 >> f/log; }
nested() { _sbs_pids=(); _sbs_marks=(); _sbs_failed=""; side_by_side 1 - bash -c 'echo a >> g/log'
  side_by_side 1 - bash -c 'echo b >> g/log'; wait_side_by_side; }
side_by_side 2 g/.done nested
side_by_side 2 f/.done fails
wait_side_by_side
""")
    assert res.returncode == 1
    assert (tmp_path / "f/log").read_text() == "step1\n" and not (tmp_path / "f/.done").exists()
    assert (tmp_path / "g/log").read_text() == "a\nb\n" and (tmp_path / "g/.done").is_file()
    assert "ERROR: failed: f (" in res.stderr
