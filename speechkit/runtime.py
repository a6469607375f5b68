"""Process-wide settings of speechkit's command-line processes (``speechkit.bin`` applies them on import).

glibc's malloc hands every large block (from 128 KiB, raised dynamically up to 32 MiB) to a fresh
``mmap`` and unmaps it again on free, and trims the heap top back to the system. A training or
inference step allocates and frees the same large activations over and over, so each of them
page-faults in anew: on this project's 2-core machine ``x * 2`` on a 64 MiB tensor took 48 ms that
way and 7.4 ms with the memory kept, and the mini recipe's CTC fine-tuning step went from 128 to 93 ms
(fixed batch shape, one process; with the recipe's varying batches and two runs side by side, ~5 %).
:func:`keep_freed_memory` raises both thresholds to 1 GiB (``mallopt``), the effect jemalloc or
tcmalloc give through ``LD_PRELOAD``. The cost: a process keeps the heap it has used until it exits
(its peak is the same).

It does nothing on other C libraries, when ``SPEECHKIT_MALLOC=system`` is set, or when the user tuned
malloc already (a ``MALLOC_*_`` variable, ``glibc.malloc`` tunables, or an allocator in ``LD_PRELOAD``).
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30

#: what :func:`keep_freed_memory` did in this process: None (not called), True (set), or why not
state: bool | str | None = None


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


def keep_freed_memory(threshold: int = KEEP_BYTES) -> bool | str:
    """Make glibc's malloc keep freed blocks below ``threshold`` bytes for reuse; True, or why not."""
    global state
    if os.environ.get("SPEECHKIT_MALLOC", "") == "system":
        state = "SPEECHKIT_MALLOC=system"
    elif any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or \
            "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        state = "malloc tuned in the environment"
    elif "malloc" in os.environ.get("LD_PRELOAD", ""):
        state = "an allocator in LD_PRELOAD"
    elif not _glibc():
        state = "not glibc"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            state = "no mallopt"
        else:
            ok = mallopt(M_MMAP_THRESHOLD, threshold) == 1 and mallopt(M_TRIM_THRESHOLD, threshold) == 1
            state = True if ok else "mallopt refused the thresholds"
    return state


def describe() -> str:
    """One phrase for the logs."""
    if state is True:
        return f"malloc keeps freed blocks < {KEEP_BYTES >> 20} MiB (speechkit.runtime)"
    if state is None:
        return "malloc: system defaults"
    return f"malloc: system defaults ({state})"
