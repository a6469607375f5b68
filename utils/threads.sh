# threads.sh — threads per job, shared by every recipe (sourced by run.sh after parse_options.sh).
#
#   nj=4                  # parallel jobs                           (run.sh defaults, then
#   threads_per_job=""    # threads of each job; "": cores / nj      parse_options.sh lets
#   cores=""              # cores the recipe may use; "": nproc      --nj/--threads-per-job/--cores
#   . utils/threads.sh                                               change them)
#
# Exports OMP_NUM_THREADS / MKL_NUM_THREADS = threads_per_job, so every job a launcher starts
# gets it; warns when nj x threads_per_job > cores (local jobs fighting over cores run several
# times slower; on a cluster, --cores is the cores the jobs get). Sets train_threads =
# cores / train_procs (train_procs: processes of one training run, default 1, e.g. torchrun's
# per-node count) for the steps that run alone, e.g.
#   nthreads $train_threads python -m speechkit.bin.pretrain ...   (the command with
#                                                                   OMP/MKL_NUM_THREADS = N)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  sed -n '2,/^if /{/^if /d;s/^# \{0,1\}//p}' "$0"; exit 0
fi
# nproc honours the CPU affinity / cgroup set the recipe was started with, but also an inherited
# OMP_NUM_THREADS, which is not a core count: leave that out.
: "${cores:=}"
# --cores, else $SPEECHKIT_CORES (a share of a machine running other work, e.g. parallel test workers), else nproc
[ -n "$cores" ] || cores=${SPEECHKIT_CORES:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
: "${threads_per_job:=}"
[ -n "$threads_per_job" ] || threads_per_job=$(( cores / ${nj:-1} > 0 ? cores / ${nj:-1} : 1 ))
for _v in cores threads_per_job; do
  [[ "${!_v}" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --${_v//_/-} must be a positive integer, got '${!_v}'" >&2; exit 1; }
done
if (( ${nj:-1} * threads_per_job > cores )); then
  # not an error: a cluster launcher (cmd.sh) spreads the jobs over other machines
  echo "$0: WARNING: --nj ${nj:-1} x --threads-per-job $threads_per_job exceeds the $cores cores (--cores);" \
       "jobs run locally will fight over them" >&2
fi
train_threads=$(( cores / ${train_procs:-1} > 0 ? cores / ${train_procs:-1} : 1 ))
export OMP_NUM_THREADS=$threads_per_job MKL_NUM_THREADS=$threads_per_job
nthreads() { local n=$1; shift; OMP_NUM_THREADS=$n MKL_NUM_THREADS=$n "$@"; }
unset _v
