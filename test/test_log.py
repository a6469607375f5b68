"""speechkit.log: logging format and the progress wrapper."""
from __future__ import annotations

import logging
import re

import pytest

from speechkit.log import LOG_FORMAT, progress, setup_logging


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers  # our handler wrote to the captured stream; do not leave it behind
    root.setLevel(level)


def test_setup_logging_format_and_idempotence(capsys):
    setup_logging(verbose=True)
    setup_logging(verbose=False)  # replaces, does not stack handlers
    logging.getLogger("speechkit.test").info("hello %d", 3)
    logging.getLogger("speechkit.test").debug("hidden")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.match(r"\d{4}-\d\d-\d\d [\d:,]+ INFO speechkit.test: hello 3$", err[0])
    assert LOG_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"


def test_progress_yields_everything_and_writes_to_stderr(capsys):
    assert list(progress(range(5), desc="work", total=5, unit="utt")) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.out == "" and "work" in captured.err and "5/5" in captured.err
