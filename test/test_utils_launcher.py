"""utils/run.pl and utils/slurm.pl: parallel jobs, logs, failures, max-jobs-run, Slurm arrays."""
from __future__ import annotations

import os
import signal
import time
import pathlib
import re
import subprocess
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN_PL = str(ROOT / "utils" / "run.pl")
SLURM_PL = str(ROOT / "utils" / "slurm.pl")


def run(*args: str, cwd: pathlib.Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_parallel_jobs_write_logs(tmp_path):
    # Each job waits until all 3 have started: this only finishes if they really run in parallel.
    barrier = ("touch started.JOB; for i in $(seq 200); do [ $(ls started.* | wc -l) -ge 3 ] && break; "
               "sleep 0.05; done; [ $(ls started.* | wc -l) -ge 3 ] && echo job JOB done")
    r = run(RUN_PL, "--max-jobs-run", "3", "JOB=1:3", "exp/log/par.JOB.log", barrier, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        log = (tmp_path / "exp/log" / f"par.{j}.log").read_text().splitlines()
        assert log[0] == "# " + barrier.replace("JOB", str(j))  # header: the command
        assert f"job {j} done" in log
        assert re.match(r"# Ended \(code 0\) at .*, elapsed time \d+ seconds", log[-1])


def test_kaldi_argument_convention_with_escaped_pipe(tmp_path):
    r = run(RUN_PL, "JOB=2:3", "log/p.JOB.log", "echo", "a b", "JOB", "|", "tr", "a-z", "A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "A B 2" in (tmp_path / "log/p.2.log").read_text().splitlines()
    assert not (tmp_path / "log/p.1.log").exists()
    r = run(RUN_PL, "single.log", "echo", "hello", cwd=tmp_path)  # single-job form
    assert r.returncode == 0 and "hello" in (tmp_path / "single.log").read_text()


def test_one_failing_job_fails_the_array_and_names_its_log(tmp_path):
    r = run(RUN_PL, "JOB=1:4", "exp/log/f.JOB.log", "echo start JOB; [ JOB -ne 3 ] || { echo boom >&2; exit 7; }",
            cwd=tmp_path)
    assert r.returncode == 1
    assert "1 / 4 jobs failed" in r.stderr
    assert "job 3 (exit code 7), log is in exp/log/f.3.log" in r.stderr
    assert "boom" in r.stderr  # the tail of the failed log is shown
    assert "job 1 " not in r.stderr and "f.1.log" not in r.stderr
    assert "# Ended (code 7)" in (tmp_path / "exp/log/f.3.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "exp/log/f.4.log").read_text()
    r = run(RUN_PL, "one.log", "false", cwd=tmp_path)
    assert r.returncode == 1 and "job failed (exit code 1), log is in one.log" in r.stderr


def test_pipes_behave_as_in_kaldi(tmp_path):
    # No pipefail, as in Kaldi: the last command of a pipe decides, so `... | head -1` succeeds.
    r = run(RUN_PL, "JOB=1:2", "l.JOB.log", "yes | head -1; cat missing.JOB | cat", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "# Ended (code 0)" in (tmp_path / "l.1.log").read_text()
    r = run(RUN_PL, "JOB=1:2", "l.JOB.log", "set -o pipefail; cat missing.JOB | cat", cwd=tmp_path)
    assert r.returncode == 1 and "2 / 2 jobs failed" in r.stderr  # opt in, as the docs say


def test_kaldi_job_ranges_and_option_order(tmp_path):
    # options may follow JOB=a:b (Kaldi accepts both sides)
    r = run(RUN_PL, "JOB=1:2", "--max-jobs-run", "1", "log/o.JOB.log", "echo JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2" in (tmp_path / "log/o.2.log").read_text().splitlines()
    r = run(RUN_PL, "--max-jobs-run=1", "JOB=1:2", "--bogus", "1", "log/o.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr
    # job ids start at 1, as in Kaldi (GridEngine/Slurm array ids)
    r = run(RUN_PL, "JOB=0:2", "log/z.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "bad job range JOB=0:2" in r.stderr
    assert not (tmp_path / "log/z.0.log").exists()
    r = run(RUN_PL, "JOB=3", "log/s.JOB.log", "echo JOB", cwd=tmp_path)  # single job id
    assert r.returncode == 0 and "3" in (tmp_path / "log/s.3.log").read_text().splitlines()


def test_job_killed_by_a_signal_logs_it_as_kaldi_does(tmp_path):
    # bash itself killed by SIGKILL: Kaldi writes "code 0; signal 9" (not "code -9")
    r = run(RUN_PL, "JOB=1:2", "log/k.JOB.log", "[ JOB = 1 ] || kill -9 $$", cwd=tmp_path)
    assert r.returncode == 1
    assert "job 2 (killed by signal 9), log is in log/k.2.log" in r.stderr
    assert re.search(r"^# Ended \(code 0; signal 9\) at ", (tmp_path / "log/k.2.log").read_text(), re.M)
    # a command killed inside bash: bash's own exit status 128+9, as in Kaldi
    r = run(RUN_PL, "log/c.log", "sleep 5 & kill -9 $!; wait $!", cwd=tmp_path)
    assert r.returncode == 1 and "# Ended (code 137)" in (tmp_path / "log/c.log").read_text()


def test_max_jobs_run_is_respected(tmp_path):
    (tmp_path / "running").mkdir()
    job = ("touch running/JOB; ls running | wc -l > count.JOB; sleep 0.2; rm running/JOB")
    r = run(RUN_PL, "--max-jobs-run", "2", "JOB=1:6", "log/m.JOB.log", job, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = [int((tmp_path / f"count.{j}").read_text()) for j in range(1, 7)]
    assert max(counts) <= 2 and len(counts) == 6
    r = run(RUN_PL, "--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log", job, cwd=tmp_path)
    assert [int((tmp_path / f"count.{j}").read_text()) for j in range(1, 4)] == [1, 1, 1]


def test_usage_errors_and_help(tmp_path):
    r = run(RUN_PL, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "JOB=1:N" in r.stdout and "cmd.sh" in r.stdout
    r = run(RUN_PL, "--bogus", "1", "x.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr and "--max-jobs-run" in r.stderr
    r = run(RUN_PL, "JOB=1:2", "same.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "does not contain JOB" in r.stderr
    r = run(RUN_PL, "JOB=3:1", "x.JOB.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "bad job range" in r.stderr
    r = run(SLURM_PL, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "sbatch" in r.stdout


# ---- Slurm backend with a fake sbatch that runs the array tasks locally ----------------------------
FAKE_SBATCH = textwrap.dedent("""\
    #!/usr/bin/env bash
    # Minimal sbatch: records its arguments, runs each array task in turn, like `sbatch --wait`.
    echo "$@" >> "$FAKE_SBATCH_LOG"
    wait_flag=0 array="" out="" script=""
    for a in "$@"; do
      case "$a" in
        --wait) wait_flag=1 ;;
        --array=*) array=${a#--array=} ;;
        --output=*) out=${a#--output=} ;;
        --*) ;;
        *) script=$a ;;
      esac
    done
    [ $wait_flag = 1 ] || { echo "fake sbatch: expected --wait" >&2; exit 2; }
    range=${array%%%*}; first=${range%-*}; last=${range#*-}
    rc=0
    for id in $(seq "$first" "$last"); do
      SLURM_ARRAY_TASK_ID=$id bash "$script" > "${out//%a/$id}" 2>&1 || rc=1
    done
    echo 12345
    exit $rc
    """)


def fake_slurm(tmp_path: pathlib.Path) -> dict:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(tmp_path / "sbatch.args")}


def test_slurm_array_success_and_option_passthrough(tmp_path):
    env = fake_slurm(tmp_path)
    r = run(SLURM_PL, "--partition", "gpu", "--gpus", "1", "--time", "1:00:00", "--mem=4G",
            "--num-threads", "2", "--max-jobs-run", "2", "JOB=1:3", "exp/log/s.JOB.log",
            "echo task JOB | tr a-z A-Z", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "sbatch.args").read_text().split()
    for expected in ("--wait", "--array=1-3%2", "--partition=gpu", "--gpus=1", "--time=1:00:00",
                     "--mem=4G", "--cpus-per-task=2"):
        assert expected in args, (expected, args)
    assert len((tmp_path / "sbatch.args").read_text().splitlines()) == 1  # one array, not 3 jobs
    for j in (1, 2, 3):
        log = (tmp_path / "exp/log" / f"s.{j}.log").read_text()
        assert f"TASK {j}" in log and "# Ended (code 0)" in log


def test_slurm_failing_task_fails_and_names_its_log(tmp_path):
    env = fake_slurm(tmp_path)
    r = run(RUN_PL, "--backend", "slurm", "JOB=1:3", "exp/log/s.JOB.log", "[ JOB != 2 ] || exit 5",
            cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert "1 / 3 jobs failed" in r.stderr and "job 2 (exit code 5), log is in exp/log/s.2.log" in r.stderr


def test_slurm_task_that_never_reports_is_a_failure(tmp_path):
    env = fake_slurm(tmp_path)
    # an sbatch that "succeeds" without running anything (e.g. tasks killed before starting)
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\nexit 0\n")
    r = run(SLURM_PL, "JOB=1:2", "log/n.JOB.log", "true", cwd=tmp_path, env=env)
    assert r.returncode == 1 and "2 / 2 jobs failed" in r.stderr and "no exit status" in r.stderr


def test_slurm_without_sbatch_is_a_clear_error(tmp_path):
    r = run(SLURM_PL, "JOB=1:2", "log/n.JOB.log", "true", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "sbatch not found" in r.stderr


# ---- jobs end with run.pl ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _read_pids(tmp_path: pathlib.Path, names: list[str]) -> list[int] | None:
    try:
        return [int((tmp_path / n).read_text()) for n in names]
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_jobs_end_with_run_pl(tmp_path, sig):
    # Each job is a bash with a child; both must end when run.pl is killed, even by SIGKILL.
    job = "sleep 60 & echo $! > child.JOB.tmp; echo $$ > bash.JOB.tmp; mv child.JOB.tmp child.JOB; " \
          "mv bash.JOB.tmp bash.JOB; wait"
    names = ["bash.1", "bash.2", "child.1", "child.2"]
    p = subprocess.Popen([RUN_PL, "JOB=1:2", "log/w.JOB.log", job], cwd=tmp_path, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    pids: list[int] = []
    try:
        assert _wait_for(lambda: _read_pids(tmp_path, names) is not None), "jobs did not start"
        pids = _read_pids(tmp_path, names)
        assert all(_alive(x) for x in pids)
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=20)
        assert _wait_for(lambda: not any(_alive(x) for x in pids), 10), "jobs outlived run.pl"
        if sig == signal.SIGTERM:  # caught: run.pl stops the jobs itself and closes their logs
            assert p.returncode == 128 + signal.SIGTERM
            assert "got SIGTERM; stopped 2 running job(s)" in err
            for j in (1, 2):
                assert "# Ended (code 0; signal 15)" in (tmp_path / f"log/w.{j}.log").read_text()
    finally:
        p.kill()
        p.wait()
        for x in pids:
            if _alive(x):
                os.kill(x, signal.SIGKILL)


FAKE_BLOCKING_SBATCH = textwrap.dedent("""\
    #!/usr/bin/env python3
    # sbatch --wait --parsable: prints the job id at submission, then waits (here: forever).
    import fcntl, os, sys, termios, time, array
    print(4242, flush=True)
    n = array.array("i", [1])
    while n[0]:  # until run.pl has read the id
        fcntl.ioctl(1, termios.FIONREAD, n)
        time.sleep(0.01)
    open(os.environ["FAKE_SBATCH_LOG"] + ".read", "w").close()
    time.sleep(120)
    """)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_slurm_array_is_cancelled_when_run_pl_is_stopped(tmp_path, sig):
    env = fake_slurm(tmp_path)
    (tmp_path / "bin" / "sbatch").write_text(FAKE_BLOCKING_SBATCH)
    (tmp_path / "bin" / "scancel").write_text('#!/bin/sh\necho "$@" >> "$FAKE_SBATCH_LOG.scancel"\n')
    (tmp_path / "bin" / "scancel").chmod(0o755)
    p = subprocess.Popen([SLURM_PL, "JOB=1:2", "log/s.JOB.log", "true"], cwd=tmp_path, env={**os.environ, **env},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        assert _wait_for(lambda: (tmp_path / "sbatch.args.read").exists()), "sbatch was not run"
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=20)
        assert _wait_for(lambda: (tmp_path / "sbatch.args.scancel").exists(), 10), "array not cancelled"
        assert (tmp_path / "sbatch.args.scancel").read_text().split() == ["4242"]
        if sig == signal.SIGTERM:
            assert p.returncode == 128 + signal.SIGTERM and "cancelled Slurm job 4242" in err
    finally:
        p.kill()
        p.wait()


def test_launcher_args_reach_the_job_unchanged(tmp_path):
    # What speechkit's CLIs hand to a launcher: each argument one whitespace-free, quoted bash word.
    import json
    import sys

    from speechkit.launch import launcher_args

    weird = ["d$(touch${IFS}PWNED)", "dev(1)", "my data", "tab\there", "it's", '"q" x', "", "*", "a\nb",
             "nb\u00a0sp", "JOB", "out/JOB.ark"]
    code = "import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    argv = launcher_args([sys.executable, "-c", code, "res.JOB.json", *weird])
    assert not any(re.search(r"\s", a) for a in argv)  # Kaldi's launchers pass such words untouched
    r = run(RUN_PL, "JOB=1:2", "log/q.JOB.log", *argv, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "res.2.json").read_text())
    assert got == ["res.2.json", *weird[:-2], "2", "out/2.ark"]
    assert not (tmp_path / "PWNED").exists()
