# How jobs run (see utils/README.md). utils/run.pl runs them as local processes; the same run.sh
# runs on a Slurm cluster when these lines use utils/slurm.pl instead, for example:
#   export cpu_cmd="utils/slurm.pl --partition cpu --mem 8G --max-jobs-run 100"
#   export train_cmd="utils/slurm.pl --partition gpu --gpus 8 --num-threads 48 --mem 400G --time 72:00:00"
#   export decode_cmd="utils/slurm.pl --partition gpu --gpus 1 --mem 32G --time 4:00:00"
# train_cmd runs one training job on one node with $ngpu GPUs (run.sh starts torchrun inside it
# when ngpu > 1), so ask Slurm for --gpus equal to run.sh's --ngpu.
# cpu_cmd: feature dumps, k-means labels (many small jobs); decode_cmd: one job per test set.
export cpu_cmd="utils/run.pl"
export train_cmd="utils/run.pl"
export decode_cmd="utils/run.pl --max-jobs-run 2"
