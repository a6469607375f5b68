#!/usr/bin/env bash
# combine_data_dir.sh — concatenate data dirs (wrapper over speechkit.io; Kaldi's combine_data.sh order).
usage="Usage: $0 <dest-dir> <src-dir1> <src-dir2> ...
Utterance ids must be unique across the source dirs. A table present in only some of them
is left out with a warning; spk2utt is rebuilt and the result validated."
set -euo pipefail
case "${1:-}" in -h|--help) echo "$usage"; exit 0 ;; esac
[ $# -ge 2 ] || { echo "$usage" >&2; exit 1; }
exec "${SPEECHKIT_PYTHON:-python3}" -m speechkit.bin.data_dir combine "$@"
