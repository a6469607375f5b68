"""Run under torchrun by test_train_ddp.py: speechkit CLIs one after another in the same processes.

Not collected by pytest (no ``test_`` prefix). ``python test/ddp_worker.py MODULE ARGS... -- MODULE ARGS...``
calls ``speechkit.bin.<MODULE>.main(ARGS)`` for each group: one torchrun start (seconds of imports on a
small machine) serves several 2-process runs. The process group is joined by the first main and kept to
the end: leaving it and joining again through torchrun's store can hang, so each main's ``cleanup`` is
only a barrier here.
"""
from __future__ import annotations

import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    groups: list[list[str]] = [[]]
    for a in argv:
        if a == "--":
            groups.append([])
        else:
            groups[-1].append(a)
    from speechkit.train import distributed

    leave = distributed.cleanup
    distributed.cleanup = distributed.barrier  # what the CLIs call when done
    try:
        for module, *args in groups:
            rc = importlib.import_module(f"speechkit.bin.{module}").main(args)
            if rc:
                return rc
    finally:
        distributed.cleanup = leave
    leave(distributed.init_distributed())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
