"""speechkit.runtime: CLI processes keep freed memory for reuse (glibc), and leave a tuned malloc alone."""
import os
import subprocess
import sys

import pytest

from speechkit.runtime import _glibc

pytestmark = pytest.mark.skipif(not _glibc(), reason="the malloc settings apply to glibc only")

# A 64 MiB tensor freed again: with the memory kept the process's resident set stays up; with glibc's
# defaults the block was its own mmap and goes back to the system on free.
PROBE = """
import speechkit.bin, speechkit.runtime as r, torch
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) // 1024
base = rss()
x = torch.ones(16 * 1024 * 1024)
held = rss()
del x
print(r.state is True, held - base, rss() - base)
"""


def _probe(**env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SPEECHKIT_MALLOC"}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=e, capture_output=True, text=True, check=True)
    state, held, after = out.stdout.split()
    return state, int(held), int(after)


def test_cli_processes_keep_freed_blocks():
    state, held, after = _probe()
    assert state == "True"
    assert held >= 60 and after >= 60, (held, after)  # still resident after the free


@pytest.mark.parametrize("env", [{"SPEECHKIT_MALLOC": "system"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_system_malloc_on_request_or_when_tuned_already(env):
    state, held, after = _probe(**env)
    assert state != "True"
    assert held >= 60 and after < 20, (held, after)  # given back: glibc's default
