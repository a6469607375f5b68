# stage_log.sh — logging and stage bookkeeping shared by every recipe (sourced by run.sh).
#
#   . utils/stage_log.sh
#   log "message"            timestamped line naming the script and line
#   die "message"            log to stderr and exit 1
#   begin 3 "k-means"        start stage 3 (remembers the time) ...
#   took 3                   ... and log how long it took (wall, and CPU seconds of the stage's commands)
#   is_done MARKER           true (and says so) when MARKER exists: re-runs skip finished work
#   side_by_side N MARKER CMD...   run CMD in the background, at most N at a time (the next starts when one
#                            ends), and touch MARKER when it succeeds (MARKER -: none); a stage of independent
#                            runs, one per core instead of one after another. CMD may be a shell function; under
#                            set -e it stops at its first failing command (and MARKER is not written)
#   wait_side_by_side        wait for those still running; fail the stage naming the markers not written
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  sed -n '2,/^if /{/^if /d;s/^# \{0,1\}//p}' "$0"; exit 0
fi
# The line shown is the line of run.sh itself, also when log is called through begin/took/is_done.
log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[${#BASH_LINENO[@]}-2]}) $*"; }
die() { log "ERROR: $*" >&2; exit 1; }
t_stage=0
cpu_stage=0
# CPU seconds (user + sys) of the finished child processes of this shell so far: the 2nd line of bash's
# `times`, which must run in this shell (a $(...) subshell has no children of its own), hence the file.
_cpu_file="${TMPDIR:-/tmp}/.stage_log_times.$$"
_cpu_read() { awk 'NR==2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }; printf "%.1f", s }' "$_cpu_file"; rm -f "$_cpu_file"; }
begin() { t_stage=$(date +%s); times > "$_cpu_file"; cpu_stage=$(_cpu_read); log "Stage $1: $2"; }
took() {
  times > "$_cpu_file"
  log "  stage $1 took $(( $(date +%s) - t_stage )) s (CPU $(awk -v a="$(_cpu_read)" -v b="$cpu_stage" 'BEGIN { printf "%.1f", a - b }') s)"
}
is_done() { if [ -f "$1" ]; then log "  $1 exists; skipping (remove it to redo)"; return 0; fi; return 1; }
# A pool: a new run starts as soon as one of the N finishes (bash >= 5.1: wait -n -p; older bash waits for
# the whole group of N). After a failure no new run starts; the stage fails once the others have finished.
_sbs_pids=(); _sbs_marks=(); _sbs_failed=""
side_by_side() {
  local n=$1 mark=$2; shift 2
  [ -z "$_sbs_failed" ] || wait_side_by_side
  # "$@" stands alone (not in an && list), so a function run here stops at its first failing command under
  # the recipe's set -e, as it would in the foreground
  ( "$@"; rc=$?; if (( rc == 0 )) && [ "$mark" != - ]; then touch "$mark"; fi; exit $rc ) &
  local what=${mark%/.done}; [ "$mark" = - ] && what="'$*'"
  _sbs_pids+=($!); _sbs_marks+=("$what")
  while (( ${#_sbs_pids[@]} >= n )); do
    if (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501 )); then wait_side_by_side; return; fi
    local pid="" rc=0 i
    wait -n -p pid "${_sbs_pids[@]}" || rc=$?
    for i in "${!_sbs_pids[@]}"; do
      [ "${_sbs_pids[$i]}" = "$pid" ] || continue
      (( rc == 0 )) || _sbs_failed="$_sbs_failed ${_sbs_marks[$i]}"
      unset "_sbs_pids[$i]" "_sbs_marks[$i]"
    done
    _sbs_pids=("${_sbs_pids[@]}"); _sbs_marks=("${_sbs_marks[@]}")
    [ -z "$_sbs_failed" ] || wait_side_by_side
  done
}
wait_side_by_side() {
  local i failed="$_sbs_failed"
  for i in "${!_sbs_pids[@]}"; do wait "${_sbs_pids[$i]}" || failed="$failed ${_sbs_marks[$i]}"; done
  _sbs_pids=(); _sbs_marks=(); _sbs_failed=""
  [ -z "$failed" ] || die "failed:$failed (the output above and each one's log name the cause)"
}
