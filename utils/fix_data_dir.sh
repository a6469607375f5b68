#!/usr/bin/env bash
# fix_data_dir.sh — make a data dir consistent and say what was dropped (wrapper over speechkit.io).
usage="Usage: $0 <data-dir>
Keeps the utterances present in every per-utterance file, drops recordings without segments,
sorts every table, rebuilds spk2utt, and prints how many entries were dropped from which file
and why. The original files are kept in <data-dir>/.backup/."
set -euo pipefail
case "${1:-}" in -h|--help) echo "$usage"; exit 0 ;; esac
[ $# -eq 1 ] || { echo "$usage" >&2; exit 1; }
exec "${SPEECHKIT_PYTHON:-python3}" -m speechkit.bin.data_dir fix "$1"
