"""Run a speechkit CLI module that SIGKILLs itself right after update N: a real, uncatchable kill at a
deterministic point, for resume tests of the real CLIs (the toy worker has ``--kill-at`` for the same).

Usage: python test/kill_at.py N speechkit.bin.pretrain ARGS...

The Trainer runs its hooks after an update's checkpoint (if any) is written, so with N an update that
saves nothing, the process dies with that update done but unsaved (lost, to be redone on resume).
"""
from __future__ import annotations

import os
import pathlib
import runpy
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from speechkit.train import trainer as _trainer  # noqa: E402


def main() -> None:
    kill_at, module = int(sys.argv[1]), sys.argv[2]
    init = _trainer.Trainer.__init__

    def init_with_killer(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)

        def killer(tr) -> None:
            if tr.num_updates == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        self.hooks.append(killer)

    _trainer.Trainer.__init__ = init_with_killer
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
