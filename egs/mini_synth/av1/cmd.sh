# How parallel jobs run. utils/run.pl runs them as local processes; for a Slurm cluster use
# utils/slurm.pl with its options, for example:
#   export cpu_cmd="utils/slurm.pl --partition cpu --mem 8G"
#   export train_cmd="utils/slurm.pl --partition gpu --gpus 1 --time 48:00:00"
export cpu_cmd="utils/run.pl"
export train_cmd="utils/run.pl"
