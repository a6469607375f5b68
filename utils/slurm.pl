#!/usr/bin/env python3
"""slurm.pl — utils/run.pl with the Slurm backend (a job array through `sbatch --wait`).

    utils/slurm.pl [--partition P] [--time T] [--mem M] [--gpus N] [--num-threads N]
                   [--max-jobs-run M] JOB=1:N exp/log/x.JOB.log cmd args ... JOB ...

Same calling convention and failure reporting as utils/run.pl; see `utils/run.pl --help`.
In a recipe's cmd.sh:  export train_cmd="utils/slurm.pl --partition gpu --gpus 1"
"""
import os
import sys

if __name__ == "__main__":
    if sys.argv[1:2] in (["--help"], ["-h"]):
        print(__doc__)
    run_pl = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.pl")
    os.execv(sys.executable, [sys.executable, run_pl, "--backend", "slurm", *sys.argv[1:]])
