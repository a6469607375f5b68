#!/usr/bin/env bash
# split_data_dir.sh — split a data dir into N parts <data-dir>/splitN/{1..N} (wrapper over speechkit.io).
usage="Usage: $0 [--per-utt|--by-speaker] [--out-root <dir>] <data-dir> <num-parts>
Parts are contiguous runs of the sorted utterances, near-equal in size and stable (the same
dir always splits the same way). --by-speaker keeps each speaker in one part (Kaldi's
split_data.sh default); --per-utt (the default here) splits by utterance."
set -euo pipefail
opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "$usage"; exit 0 ;;
    --per-utt) shift ;;
    --by-speaker|--per-spk) opts+=(--by-speaker); shift ;;
    --out-root) [ $# -ge 2 ] || { echo "$0: --out-root needs a value" >&2; exit 1; }
                opts+=(--out-root "$2"); shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; echo "$usage" >&2; exit 1 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
exec "${SPEECHKIT_PYTHON:-python3}" -m speechkit.bin.data_dir split "$1" "$2" ${opts[@]+"${opts[@]}"}
