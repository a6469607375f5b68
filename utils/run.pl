#!/usr/bin/env python3
"""run.pl — run a command as N parallel jobs, locally or as a Slurm job array.

Kaldi's calling convention (a Python rewrite; no Perl needed):

    utils/run.pl [options] JOB=1:N exp/log/x.JOB.log cmd args ... JOB ...
    utils/run.pl [options] exp/log/x.log cmd args ...          (a single job)

Every occurrence of the job variable (JOB, or any NAME in NAME=a:b, a >= 1) in the log path
and the command is replaced by the job's number. The command runs through `bash -c`, so pipes
work; as in Kaldi, arguments without whitespace are passed unquoted (escape a pipe as \\| to
use it), arguments with whitespace are quoted. The command line is shell code: `$(...)`,
backquotes, `;` or `(` in an unquoted argument are run or parsed by bash, so a program that
passes file names must quote them itself (speechkit's CLIs do: speechkit.launch). A command
given as a single argument is used as a shell command line as it is:
run.pl JOB=1:4 x.JOB.log 'a JOB | b'. Each job's stdout and stderr go to its log file, which
starts with a header (the command, start time) and ends with a footer (`# Ended (code N)`, or
`# Ended (code 0; signal S)` when bash itself was killed by signal S; elapsed seconds); the log
directory is created.

If any job fails, run.pl exits with status 1 and prints which jobs failed and their logs.
Jobs end with run.pl: on SIGINT/SIGTERM/SIGHUP it stops them (SIGTERM to each job's process
group) and writes their footers; if run.pl itself is killed (even by SIGKILL), a watchdog
process it started sends the same SIGTERM (then SIGKILL after 2 s) and cancels a Slurm array,
so a re-run never runs beside orphans of an earlier one.

Options (before or after JOB=...; `--name value` or `--name=value`):
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
On SIGINT/SIGTERM (or a SIGKILL of run.pl, through the watchdog) the array is `scancel`ed.

Where this differs from Kaldi's run.pl, on purpose:
  - an unknown option is an error (Kaldi ignores options it does not know, so a typo in cmd.sh
    goes unnoticed); queue options it knows are accepted and ignored locally, as in Kaldi;
  - a command given as one argument is a shell command line (Kaldi quotes it as one word);
  - a failure prints the failed jobs and the last lines of the first failed log.
As in Kaldi: no `pipefail` (`a | head -1` succeeds; write `set -o pipefail; ...` in the
command to get it), and JOB=0:N is rejected (array ids start at 1 on GridEngine and Slurm).
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
    """Options and JOB=a:b may come in any order before the log file, as in Kaldi."""
    opts: dict[str, str] = {}
    var, first, last = None, 1, 1
    while argv:
        a = argv[0]
        if a in ("--help", "-h"):
            print(__doc__.replace("run.pl —", f"{PROG} —", 1))
            sys.exit(0)
        if a.startswith("--"):
            argv.pop(0)
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
            continue
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?", a)
        if m is None or var is not None:
            break
        argv.pop(0)
        var, first = m.group(1), int(m.group(2))
        last = int(m.group(3)) if m.group(3) else first
        if m.group(3) is not None and not 1 <= first <= last:
            die(f"bad job range {a}: expected {var}=first:last with 1 <= first <= last")
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


class Stop(Exception):
    """Raised in the main loop by SIGINT/SIGTERM/SIGHUP: stop the jobs, then exit 128+signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame) -> None:
    raise Stop(signum)


class Watchdog:
    """A process that outlives run.pl to end its jobs if run.pl dies without doing so itself.

    A SIGKILL cannot be caught, so run.pl cannot clean up after it. The watchdog holds the read
    end of a pipe whose only writer is run.pl; the kernel closes that end when run.pl dies in any
    way, and the watchdog then sees end-of-file. run.pl tells it each job's process group as it
    starts ("+pg N", written by the job itself before it execs, so no job escapes the list) and
    ends ("-pg N"), and the Slurm array it submitted ("+slurm ID"). At end-of-file the watchdog
    sends SIGTERM to the groups still listed, SIGKILL 2 s later to what is left, and scancels the
    array. It has its own session, so a signal to run.pl's process group does not end it early.
    """

    GRACE_S = 2.0

    def __init__(self) -> None:
        r, w = os.pipe()  # both close-on-exec: jobs do not inherit them
        pid = os.fork()
        if pid == 0:
            os.close(w)
            try:
                self._serve(r)
            finally:
                os._exit(0)
        os.close(r)
        self.pid, self.fd = pid, w

    def tell(self, message: str) -> None:
        try:
            os.write(self.fd, f"{message}\n".encode())  # < PIPE_BUF: atomic, never interleaved
        except BrokenPipeError:  # the watchdog was killed: nothing to tell
            pass

    def register_self(self) -> None:
        """In a job's child process between fork and exec (it is its own group leader by then)."""
        os.write(self.fd, f"+pg {os.getpid()}\n".encode())

    def close(self) -> None:
        """run.pl is done with its jobs: the watchdog finds nothing left to end, and exits."""
        os.close(self.fd)
        os.waitpid(self.pid, 0)

    @classmethod
    def _serve(cls, r: int) -> None:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # hold no pipe of run.pl's caller open (it may be reading to EOF)
            os.dup2(null, fd)
        os.closerange(3, r)
        os.closerange(r + 1, 1 << 16)
        groups: set[int] = set()
        arrays: list[str] = []
        buf = b""
        while chunk := os.read(r, 4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                what, _, ident = line.decode().partition(" ")
                if what == "+pg":
                    groups.add(int(ident))
                elif what == "-pg":
                    groups.discard(int(ident))
                elif what == "+slurm":
                    arrays.append(ident)
                elif what == "-slurm" and ident in arrays:
                    arrays.remove(ident)
        for ident in arrays:
            try:
                subprocess.run(["scancel", ident], stdin=subprocess.DEVNULL, timeout=60)
            except (OSError, subprocess.SubprocessError):
                pass
        live = _signal_groups(groups, signal.SIGTERM)
        deadline = time.monotonic() + cls.GRACE_S
        while live and time.monotonic() < deadline:
            time.sleep(0.05)
            live = _signal_groups(live, 0)
        _signal_groups(live, signal.SIGKILL)


def _signal_groups(groups, sig: int) -> set[int]:
    """Send ``sig`` to each process group; return the groups that still exist."""
    live = set()
    for pg in groups:
        try:
            os.killpg(pg, sig)
            live.add(pg)
        except ProcessLookupError:
            pass
    return live


_watchdog: Watchdog | None = None


def watchdog() -> Watchdog:
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog()
    return _watchdog


def start_job(cmd: str, log: str) -> tuple[subprocess.Popen, object, float]:
    """Start one job writing to ``log``; return (process, open log file, start time).

    The job is the leader of its own process group, so stopping it reaches every process it
    started; it is listed with the watchdog before it runs anything."""
    d = os.path.dirname(log)
    if d:
        os.makedirs(d, exist_ok=True)
    f = open(log, "w")
    f.write(f"# {cmd}\n# Started at {_now()}\n#\n")
    f.flush()
    p = subprocess.Popen(["bash", "-c", cmd], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, preexec_fn=watchdog().register_self)
    return p, f, time.time()


def finish_job(f, code: int, t0: float) -> None:
    """Footer as Kaldi writes it: `code N`, or `code 0; signal S` when bash was killed by S."""
    elapsed = int(round(time.time() - t0))
    status = f"code 0; signal {-code}" if code < 0 else f"code {code}"
    f.write(f"# Accounting: time={elapsed} threads=1\n# Ended ({status}) at {_now()}, "
            f"elapsed time {elapsed} seconds\n")
    f.close()


def describe(code: int | None) -> str:
    if code is None:
        return "no exit status"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def report(failed: list[tuple[int, int, str]], total: int) -> None:
    """Print which jobs failed, their logs, and the tail of the first log."""
    if total == 1:
        job, code, log = failed[0]
        print(f"{PROG}: job failed ({describe(code)}), log is in {log}", file=sys.stderr)
    else:
        print(f"{PROG}: {len(failed)} / {total} jobs failed:", file=sys.stderr)
        for job, code, log in failed:
            print(f"{PROG}:   job {job} ({describe(code)}), log is in {log}", file=sys.stderr)
    log = failed[0][2]
    if os.path.isfile(log):
        with open(log, errors="replace") as fh:
            tail = fh.read().splitlines()[-8:]
        print(f"{PROG}: last lines of {log}:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)


def run_jobs(jobs: list[tuple[int, str, str]], max_jobs: int) -> tuple[list[tuple[int, int, str]], int]:
    """Run (job, command, log) with at most ``max_jobs`` at a time.

    Returns (failed jobs as (job, code, log), signal that stopped run.pl or 0)."""
    pending = list(jobs)
    running: dict[int, tuple[subprocess.Popen, object, float, str]] = {}
    failed: list[tuple[int, int, str]] = []

    def reap(job: int) -> None:
        p, f, t0, log = running.pop(job)
        finish_job(f, p.returncode, t0)
        watchdog().tell(f"-pg {p.pid}")
        if p.returncode != 0:
            failed.append((job, p.returncode, log))

    try:
        while pending or running:
            while pending and len(running) < max_jobs:
                job, cmd, log = pending.pop(0)
                p, f, t0 = start_job(cmd, log)
                running[job] = (p, f, t0, log)
            # Poll rather than os.wait(): only our own children, and portable.
            done = [j for j, (p, *_rest) in running.items() if p.poll() is not None]
            if not done:
                time.sleep(0.02)
                continue
            for job in done:
                reap(job)
    except Stop as stop:
        # Ignore further signals while cleaning up: a second Ctrl-C must not leave jobs behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for p, *_rest in running.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        n = len(running)
        for job in list(running):
            running[job][0].wait()
            reap(job)
        print(f"{PROG}: got {signal.Signals(stop.signum).name}; stopped {n} running job(s)", file=sys.stderr)
        return sorted(failed), stop.signum
    return sorted(failed), 0


def run_one(cmd: str, log: str) -> int:
    """A single job (the Slurm array task's body): its exit code, or 128+signal if stopped."""
    failed, stopped = run_jobs([(1, cmd, log)], 1)
    return 128 + stopped if stopped else (failed[0][1] if failed else 0)


def run_local(opts: dict[str, str], var, first: int, last: int, log_tmpl: str, cmd_tmpl: str) -> int:
    max_jobs = int(opts.get("max-jobs-run", os.cpu_count() or 1))
    jobs = [(j, subst(cmd_tmpl, var, j), subst(log_tmpl, var, j)) for j in range(first, last + 1)]
    failed, stopped = run_jobs(jobs, max_jobs)
    if stopped:
        return 128 + stopped
    if failed:
        report(failed, len(jobs))
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
    returncode, stopped = submit_and_wait(cmd)
    if stopped:
        return 128 + stopped
    failed = []
    for job in range(first, last + 1):
        log = subst(log_tmpl, var, job)
        st = os.path.join(qdir, f"{name}.{job}.status")
        if os.path.isfile(st):
            with open(st) as fh:
                code = int(fh.read().strip() or 1)
        else:  # never ran, or killed by Slurm (time/memory limit): its slurm.out says why
            code = None
            log = f"{log} (see {os.path.join(qdir, name)}.{job}.slurm.out)"
        if code != 0:
            failed.append((job, code, log))
    if failed:
        report(failed, last - first + 1)
        return 1
    if returncode != 0:
        print(f"{PROG}: sbatch exited with {returncode} although every task succeeded", file=sys.stderr)
        return 1
    return 0


def submit_and_wait(cmd: list[str]) -> tuple[int, int]:
    """Run `sbatch --wait --parsable ...`; on SIGINT/SIGTERM/SIGHUP scancel the array (as Kaldi's
    slurm.pl does), since ending sbatch alone leaves the tasks queued and running.

    Returns (sbatch's exit code, the signal that stopped us or 0)."""
    try:  # its own process group, listed with the watchdog like a local job
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=watchdog().register_self)
    except FileNotFoundError:
        die("sbatch not found on PATH; use utils/run.pl (local backend) on a machine without Slurm")
    job_id = None
    try:
        # --parsable prints "<id>[;cluster]" once the array is queued, then --wait waits.
        first = proc.stdout.readline()
        if first.strip():
            job_id = first.strip().split(";")[0]
            watchdog().tell(f"+slurm {job_id}")
        code = proc.wait()  # --parsable prints nothing more: the pipe cannot fill up
        rest = proc.stdout.read()
        if rest:
            sys.stdout.write(rest)
    except Stop as stop:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if job_id is not None:
            subprocess.run(["scancel", job_id], stdin=subprocess.DEVNULL)
        proc.terminate()
        proc.wait()
        watchdog().tell(f"-pg {proc.pid}")
        if job_id is not None:
            watchdog().tell(f"-slurm {job_id}")
        print(f"{PROG}: got {signal.Signals(stop.signum).name}; cancelled Slurm job "
              f"{job_id or '(not submitted yet)'}", file=sys.stderr)
        return 1, stop.signum
    watchdog().tell(f"-pg {proc.pid}")
    if job_id is not None:
        watchdog().tell(f"-slurm {job_id}")
    return code, 0


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
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    try:
        return _main(argv)
    finally:
        if _watchdog is not None:
            _watchdog.close()


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--run-task"]:
        if len(argv) != 3:
            die("--run-task needs <spec.json> <job>")
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        watchdog()
        return run_task(argv[1], int(argv[2]))
    opts, var, first, last, log_tmpl, cmd_tmpl = parse_args(list(argv))
    backend = opts.get("backend", "local")
    if "max-jobs-run" in opts and not (opts["max-jobs-run"].isdigit() and int(opts["max-jobs-run"]) >= 1):
        die(f"--max-jobs-run expects a positive integer, got {opts['max-jobs-run']!r}")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a gone watchdog must not kill us (jobs get SIG_DFL)
    watchdog()  # before any file is opened, so it inherits none
    if backend == "local":
        return run_local(opts, var, first, last, log_tmpl, cmd_tmpl)
    if backend == "slurm":
        return run_slurm(opts, var, first, last, log_tmpl, cmd_tmpl)
    die(f"unknown --backend {backend!r}; expected local or slurm")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
