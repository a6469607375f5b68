"""speechkit.bin: one thin CLI per recipe step, and the error convention they share."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from speechkit.runtime import keep_freed_memory

keep_freed_memory()  # a CLI process re-allocates the same large activations every step (speechkit.runtime)

# Errors a user can act on (a missing folder, a malformed line, a corpus in the wrong layout): every
# corpus error class of speechkit derives from one of these. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError)


@contextlib.contextmanager
def one_line_errors(prog: str, verbose: bool = False) -> Iterator[None]:
    """Report a user error as one line ``<prog>: error: <message>`` on stderr and exit with status 1.

    The message already names the file, line or utterance (speechkit's convention), so the traceback
    only hides it in a job log; ``--verbose`` (``verbose=True``) keeps the traceback for debugging.
    """
    try:
        yield
    except USER_ERRORS as e:
        if verbose:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
