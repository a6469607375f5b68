#!/usr/bin/env python3
"""run.pl — run a command as N parallel jobs, locally or as a Slurm job array.

Kaldi's calling convention (a Python rewrite; no Perl needed):

    utils/run.pl [options] JOB=1:N exp/log/x.JOB.log cmd args ... JOB ...
    utils/run.pl [options] exp/log/x.log cmd args ...          (a single job)

Every occurrence of the job variable (JOB, or any NAME in NAME=a:b) in the log path and
the command is replaced by the job's number. The command runs through `bash -o pipefail -c`,
so pipes work; as in Kaldi, arguments without whitespace are passed unquoted (escape a
pipe as \\| to use it), arguments with whitespace are quoted. A command given as a single
argument is used as a shell command line as it is: run.pl JOB=1:4 x.JOB.log 'a JOB | b'. Each job's stdout and stderr go
to its log file, which starts with a header (the command, start time) and ends with a footer
(exit code, elapsed seconds); the log directory is created.

If any job fails, run.pl exits with status 1 and prints which jobs failed and their logs.

Options (before JOB=...; `--name value` or `--name=value`):
  --max-jobs-run N    at most N jobs at a time (default: number of CPUs locally, all on Slurm)
  --backend B         local (default) or slurm; utils/slurm.pl is run.pl --backend slurm
  --num-threads N     Slurm: --cpus-per-task N (local: ignored)
  --partition P, --time T, --mem M, --gpus N (or --gpu N), --account A, --qos Q,
  --constraint C, --exclude NODES
                      passed to sbatch (local: ignored, so one cmd.sh line can switch backends)
  --sbatch-opts "..." extra raw sbatch options
  --help              this message

Choosing the backend in a recipe's cmd.sh:
    export train_cmd="utils/run.pl"                                   # this machine
    export train_cmd="utils/run.pl --max-jobs-run 4"
    export train_cmd="utils/slurm.pl --partition gpu --gpus 1 --time 24:00:00"
    export decode_cmd="utils/slurm.pl --partition cpu --mem 8G --max-jobs-run 50"
and in run.sh:  ${train_cmd} JOB=1:${nj} ${dir}/log/feats.JOB.log python -m ... --job JOB

Slurm backend: writes <logdir>/q/<name>.sh and submits it once with
`sbatch --wait --array=1-N[%M]`; each array task runs its job through this script (same
header/footer) and records its exit code in <logdir>/q/<name>.<job>.status, so failures are
reported exactly as locally. Slurm's own output is in <logdir>/q/<name>.<job>.slurm.out.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

LOCAL_IGNORED = ("num-threads", "partition", "time", "mem", "gpus", "gpu", "account", "qos",
                 "constraint", "exclude", "sbatch-opts")
SBATCH_MAP = {"partition": "--partition", "time": "--time", "mem": "--mem", "gpus": "--gpus",
              "gpu": "--gpus", "account": "--account", "qos": "--qos", "constraint": "--constraint",
              "exclude": "--exclude", "num-threads": "--cpus-per-task"}
KNOWN = ("max-jobs-run", "backend", *LOCAL_IGNORED)
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run.pl"


def die(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(1)


def join_command(args: list[str]) -> str:
    """Kaldi's quoting: plain words as-is (so \\| stays a pipe), others quoted.

    A command given as one single argument is taken as a shell command line as it is
    (`run.pl JOB=1:4 log 'a JOB | b'`), since a program name never contains spaces."""
    if len(args) == 1:
        return args[0]
    out = []
    for a in args:
        if a and not re.search(r"\s", a):
            out.append(a)
        elif '"' in a:
            out.append("'" + a.replace("'", "'\\''") + "'")
        else:
            out.append('"' + a + '"')
    return " ".join(out)


def parse_args(argv: list[str]) -> tuple[dict[str, str], str | None, int, int, str, str]:
    opts: dict[str, str] = {}
    while argv and argv[0].startswith("--"):
        a = argv.pop(0)
        if a in ("--help", "-h"):
            print(__doc__.replace("run.pl —", f"{PROG} —", 1))
            sys.exit(0)
        if "=" in a:
            name, value = a[2:].split("=", 1)
        else:
            if not argv:
                die(f"option {a} needs a value")
            name, value = a[2:], argv.pop(0)
        name = name.replace("_", "-")
        if name not in KNOWN:
            die(f"unknown option --{name}; known options: " + " ".join(f"--{k}" for k in KNOWN))
        opts[name] = value
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    var, first, last = None, 1, 1
    if argv:
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?", argv[0])
        if m:
            argv.pop(0)
            var, first = m.group(1), int(m.group(2))
            last = int(m.group(3)) if m.group(3) else first
            if last < first:
                die(f"bad job range {m.group(0)}: expected {var}=first:last with first <= last")
    if len(argv) < 2:
        die("expected [options] [JOB=1:N] <log-file> <command> [args...]; see --help")
    log_tmpl, cmd_tmpl = argv[0], join_command(argv[1:])
    if var is not None and last > first and var not in log_tmpl:
        die(f"log file {log_tmpl} does not contain {var}: every job would write the same log")
    return opts, var, first, last, log_tmpl, cmd_tmpl


def subst(text: str, var: str | None, job: int) -> str:
    return text.replace(var, str(job)) if var else text


def _now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Z %Y").replace("  ", " ")


def start_job(cmd: str, log: str) -> tuple[subprocess.Popen, object, float]:
    """Start one job writing to ``log``; return (process, open log file, start time)."""
    d = os.path.dirname(log)
    if d:
        os.makedirs(d, exist_ok=True)
    f = open(log, "w")
    f.write(f"# {cmd}\n# Started at {_now()}\n#\n")
    f.flush()
    p = subprocess.Popen(["bash", "-o", "pipefail", "-c", cmd], stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    return p, f, time.time()


def finish_job(f, code: int, t0: float) -> None:
    elapsed = int(round(time.time() - t0))
    f.write(f"# Accounting: time={elapsed} threads=1\n# Ended (code {code}) at {_now()}, "
            f"elapsed time {elapsed} seconds\n")
    f.close()


def run_one(cmd: str, log: str) -> int:
    p, f, t0 = start_job(cmd, log)
    code = p.wait()
    finish_job(f, code, t0)
    return code


def report(failed: list[tuple[int, int, str]], total: int) -> None:
    """Print which jobs failed, their logs, and the tail of the first log."""
    if total == 1:
        job, code, log = failed[0]
        print(f"{PROG}: job failed (exit code {code}), log is in {log}", file=sys.stderr)
    else:
        print(f"{PROG}: {len(failed)} / {total} jobs failed:", file=sys.stderr)
        for job, code, log in failed:
            print(f"{PROG}:   job {job} (exit code {code}), log is in {log}", file=sys.stderr)
    log = failed[0][2]
    if os.path.isfile(log):
        with open(log, errors="replace") as fh:
            tail = fh.read().splitlines()[-8:]
        print(f"{PROG}: last lines of {log}:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)


def run_local(opts: dict[str, str], var, first: int, last: int, log_tmpl: str, cmd_tmpl: str) -> int:
    max_jobs = int(opts.get("max-jobs-run", os.cpu_count() or 1))
    pending = list(range(first, last + 1))
    running: dict[int, tuple[subprocess.Popen, object, float, str]] = {}
    failed: list[tuple[int, int, str]] = []
    try:
        while pending or running:
            while pending and len(running) < max_jobs:
                job = pending.pop(0)
                log = subst(log_tmpl, var, job)
                p, f, t0 = start_job(subst(cmd_tmpl, var, job), log)
                running[job] = (p, f, t0, log)
            # Poll rather than os.wait(): only our own children, and portable.
            done = [j for j, (p, *_rest) in running.items() if p.poll() is not None]
            if not done:
                time.sleep(0.02)
                continue
            for job in done:
                p, f, t0, log = running.pop(job)
                finish_job(f, p.returncode, t0)
                if p.returncode != 0:
                    failed.append((job, p.returncode, log))
    except KeyboardInterrupt:
        for p, f, t0, log in running.values():
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
            finish_job(f, p.returncode, t0)
        print(f"{PROG}: interrupted; killed {len(running)} running job(s)", file=sys.stderr)
        return 130
    if failed:
        report(sorted(failed), last - first + 1)
        return 1
    return 0


def run_slurm(opts: dict[str, str], var, first: int, last: int, log_tmpl: str, cmd_tmpl: str) -> int:
    log0 = subst(log_tmpl, var, first)
    logdir = os.path.dirname(os.path.abspath(log0))
    base = os.path.basename(log_tmpl)
    if var:
        base = base.replace("." + var, "").replace(var, "")
    name = re.sub(r"[^\w.-]", "_", base.removesuffix(".log")) or "job"
    qdir = os.path.join(logdir, "q")
    os.makedirs(qdir, exist_ok=True)
    spec = os.path.join(qdir, f"{name}.json")
    with open(spec, "w") as fh:
        json.dump({"var": var, "log": log_tmpl, "cmd": cmd_tmpl, "cwd": os.getcwd(), "qdir": qdir,
                   "name": name}, fh)
    for job in range(first, last + 1):  # stale statuses would hide a task that never ran
        st = os.path.join(qdir, f"{name}.{job}.status")
        if os.path.exists(st):
            os.unlink(st)
    script = os.path.join(qdir, f"{name}.sh")
    with open(script, "w") as fh:
        fh.write("#!/bin/bash\n")
        fh.write(f"cd {shlex.quote(os.getcwd())}\n")
        fh.write(f"exec {shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))} "
                 f"--run-task {shlex.quote(spec)} \"${{SLURM_ARRAY_TASK_ID:-{first}}}\"\n")
    os.chmod(script, 0o755)
    array = f"{first}-{last}"
    if "max-jobs-run" in opts:
        array += f"%{int(opts['max-jobs-run'])}"
    cmd = ["sbatch", "--wait", "--parsable", f"--array={array}", f"--job-name={name}",
           f"--output={os.path.join(qdir, name)}.%a.slurm.out"]
    for key, flag in SBATCH_MAP.items():
        if key in opts:
            cmd.append(f"{flag}={opts[key]}")
    cmd += shlex.split(opts.get("sbatch-opts", ""))
    cmd.append(script)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        die("sbatch not found on PATH; use utils/run.pl (local backend) on a machine without Slurm")
    failed = []
    for job in range(first, last + 1):
        log = subst(log_tmpl, var, job)
        st = os.path.join(qdir, f"{name}.{job}.status")
        if os.path.isfile(st):
            with open(st) as fh:
                code = int(fh.read().strip() or 1)
        else:  # never ran, or killed by Slurm (time/memory limit): its slurm.out says why
            code = -1
            log = f"{log} (no exit status; see {os.path.join(qdir, name)}.{job}.slurm.out)"
        if code != 0:
            failed.append((job, code, log))
    if failed:
        report(failed, last - first + 1)
        return 1
    if proc.returncode != 0:
        print(f"{PROG}: sbatch exited with {proc.returncode} although every task succeeded", file=sys.stderr)
        return 1
    return 0


def run_task(spec_path: str, job: int) -> int:
    """Inside a Slurm array task: run job ``job`` of the spec and record its exit code."""
    with open(spec_path) as fh:
        spec = json.load(fh)
    os.chdir(spec["cwd"])
    code = run_one(subst(spec["cmd"], spec["var"], job), subst(spec["log"], spec["var"], job))
    tmp = os.path.join(spec["qdir"], f".{spec['name']}.{job}.status.tmp")
    with open(tmp, "w") as fh:
        fh.write(f"{code}\n")
    os.replace(tmp, os.path.join(spec["qdir"], f"{spec['name']}.{job}.status"))
    return code


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `run.pl --help | head` must not trace back
    if argv[:1] == ["--run-task"]:
        if len(argv) != 3:
            die("--run-task needs <spec.json> <job>")
        return run_task(argv[1], int(argv[2]))
    opts, var, first, last, log_tmpl, cmd_tmpl = parse_args(list(argv))
    backend = opts.get("backend", "local")
    if "max-jobs-run" in opts and not (opts["max-jobs-run"].isdigit() and int(opts["max-jobs-run"]) >= 1):
        die(f"--max-jobs-run expects a positive integer, got {opts['max-jobs-run']!r}")
    if backend == "local":
        if var is None or first == last:
            job = first
            code = run_one(subst(cmd_tmpl, var, job), subst(log_tmpl, var, job))
            if code != 0:
                report([(job, code, subst(log_tmpl, var, job))], 1)
                return 1
            return 0
        return run_local(opts, var, first, last, log_tmpl, cmd_tmpl)
    if backend == "slurm":
        return run_slurm(opts, var, first, last, log_tmpl, cmd_tmpl)
    die(f"unknown --backend {backend!r}; expected local or slurm")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
