#!/usr/bin/env bash
# validate_data_dir.sh — check Kaldi data dirs (a wrapper over speechkit.io.datadir).
usage="Usage: $0 [--no-feats] [--no-text] [--no-wav] [--non-print] <data-dir> [<data-dir> ...]
Checks that keys are unique and sorted (C locale), every per-utterance file covers the same
utterances, spk2utt agrees with utt2spk, and segment times are sane. Exits 1 with a message
naming the file and line of the first problem. The Kaldi flags are accepted for compatibility
(speechkit never requires feats.scp or text, and always checks what is there)."
set -euo pipefail
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "$usage"; exit 0 ;;
    --no-feats|--no-text|--no-wav|--non-print|--no-spk-sort) shift ;;
    --*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -ge 1 ] || { echo "$usage" >&2; exit 1; }
exec "${SPEECHKIT_PYTHON:-python3}" -m speechkit.bin.data_dir validate "${args[@]}"
