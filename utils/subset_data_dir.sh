#!/usr/bin/env bash
# subset_data_dir.sh — write a subset of a data dir (wrapper over speechkit.io).
usage="Usage: $0 [--first | --random [--seed S]] <src-dir> <num-utts> <dest-dir>
       $0 --utt-list <file> <src-dir> <dest-dir>
--first takes the first N utterances in sorted order; --random (the default) takes N chosen
with a seeded generator (--seed, default 0); --utt-list keeps the utterances listed in the
first column of <file>. Tables, speakers and recordings are restricted accordingly."
set -euo pipefail
mode=random seed=0 list=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "$usage"; exit 0 ;;
    --first) mode=first; shift ;;
    --random) mode=random; shift ;;
    --seed) [ $# -ge 2 ] || { echo "$0: --seed needs a value" >&2; exit 1; }; seed=$2; shift 2 ;;
    --utt-list) [ $# -ge 2 ] || { echo "$0: --utt-list needs a file" >&2; exit 1; }
                mode=list; list=$2; shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) break ;;
  esac
done
py="${SPEECHKIT_PYTHON:-python3}"
if [ "$mode" = list ]; then
  [ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
  exec "$py" -m speechkit.bin.data_dir subset "$1" "$2" --utt-list "$list"
fi
[ $# -eq 3 ] || { echo "$usage" >&2; exit 1; }
if [ "$mode" = first ]; then
  exec "$py" -m speechkit.bin.data_dir subset "$1" "$3" --first "$2"
fi
exec "$py" -m speechkit.bin.data_dir subset "$1" "$3" --random "$2" --seed "$seed"
