"""Quoting for commands handed to a Kaldi-style job launcher (``utils/run.pl``, ``slurm.pl``).

A launcher joins its command arguments into one bash command line, Kaldi's way: an argument
without whitespace goes in as it is, one with whitespace is wrapped in quotes. So a data path
``d$(touch X)`` would run ``touch X`` in every job, and ``dev(1)`` is a bash syntax error.
:func:`launcher_args` turns each argument into one shell word that bash reads back as exactly
that string and that contains no whitespace, so every launcher with Kaldi's convention (ours,
Kaldi's run.pl/queue.pl/slurm.pl) passes it through untouched:

    >>> launcher_args(["python", "-m", "x", "data/dev(1)", "d$(touch X)", "my data", "JOB"])
    ['python', '-m', 'x', "'data/dev(1)'", "'d$(touch'$'\\\\x20''X)'", "my$'\\\\x20'data", 'JOB']

The job variable (``JOB``) stays a plain word, so the launcher still substitutes it; it is
also substituted inside quotes (``out/JOB.log`` -> ``'out/JOB.log'`` becomes ``'out/3.log'``).
Whitespace uses bash's ``$'\\xHH'`` quoting: every launcher of this kind runs bash.
"""
from __future__ import annotations

import re
import shlex
from typing import Sequence

_SAFE = re.compile(r"[\w@%+=:,./-]+", re.ASCII)
_SPACE = re.compile(r"(\s)")


def launcher_word(arg: str) -> str:
    """One whitespace-free bash word that reads back as ``arg``."""
    if _SAFE.fullmatch(arg):
        return arg
    out = []
    for part in _SPACE.split(arg):
        if not part:
            continue
        if _SPACE.fullmatch(part):
            out.append("$'" + "".join(f"\\x{b:02x}" for b in part.encode()) + "'")
        else:
            out.append(shlex.quote(part))
    return "".join(out) if out else "''"


def launcher_args(argv: Sequence[str]) -> list[str]:
    """Every argument as :func:`launcher_word`, for ``launcher JOB=1:N log <these>``."""
    return [launcher_word(str(a)) for a in argv]
