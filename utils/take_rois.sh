#!/usr/bin/env bash
# take_rois.sh — give a data dir the mouth-ROI tables of a bigger data dir that contains its utterances
# (e.g. LRS3's train_30h inside train_433h), instead of extracting the same ROIs twice.
usage="Usage: $0 <from-dir> <to-dir>
Writes <to-dir>/{video.scp,utt2num_frames,utt2roi}: the rows of <from-dir>'s tables (written by
speechkit.bin.extract_mouth_roi) for the utterances of <to-dir>/utt2spk. Utterances without an ROI in
<from-dir> (no face found there) are left out, as extract_mouth_roi leaves them out."
set -euo pipefail
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { echo "$usage"; exit 0; }
[ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
from=$1 to=$2
for f in video.scp utt2num_frames; do
  [ -f "$from/$f" ] || { echo "$0: $from/$f not found (run speechkit.bin.extract_mouth_roi on $from first)" >&2; exit 1; }
done
[ -f "$to/utt2spk" ] || { echo "$0: $to/utt2spk not found" >&2; exit 1; }
for f in video.scp utt2num_frames utt2roi; do
  [ -f "$from/$f" ] || continue
  awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "$to/utt2spk" "$from/$f" > "$to/$f.tmp"
  mv "$to/$f.tmp" "$to/$f"
done
echo "$0: $(wc -l < "$to/video.scp") of $(wc -l < "$to/utt2spk") utterances of $to have ROIs from $from"
