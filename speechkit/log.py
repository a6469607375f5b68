"""Logging and progress bars shared by every speechkit command.

Usage::

    from speechkit.log import setup_logging, progress
    setup_logging(verbose=args.verbose)
    for utt, wav in progress(reader, desc="mfcc", total=len(reader), unit="utt"):
        ...

Progress bars go to stderr. When stderr is not a terminal (a job log written by
``utils/run.pl``, CI), bars refresh at most every 5 s so logs are not flooded.
"""
from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger (INFO, or DEBUG when ``verbose``) to write to stderr.

    Calling it again replaces the handler rather than adding a second one, so
    tests and nested CLIs can call it freely.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_speechkit", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._speechkit = True  # type: ignore[attr-defined]  # marks our own handler
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def progress(
    iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr (sparse refresh when stderr is not a TTY)."""
    from tqdm import tqdm  # imported lazily: tqdm is only needed when a bar is shown

    is_tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return iter(
        tqdm(
            iterable,
            desc=desc,
            total=total,
            unit=unit,
            file=sys.stderr,
            mininterval=0.1 if is_tty else 5.0,
            dynamic_ncols=is_tty,
        )
    )
