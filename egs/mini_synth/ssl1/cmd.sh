# How jobs run. utils/run.pl runs them as local processes; for a Slurm cluster use
# utils/slurm.pl with its options, for example:
#   export cpu_cmd="utils/slurm.pl --partition cpu --mem 8G"
#   export train_cmd="utils/slurm.pl --partition gpu --gpus 1 --time 48:00:00"
#   export decode_cmd="utils/slurm.pl --partition cpu --mem 4G"
# cpu_cmd: feature dumps (many small jobs); train_cmd: each pre-training, fine-tuning and
# speaker-ID training run (one job; its log is exp/<dir>/log/*.log); decode_cmd: the decodes,
# one job per (model, set).
export cpu_cmd="utils/run.pl"
export train_cmd="utils/run.pl"
export decode_cmd="utils/run.pl --max-jobs-run 2"
