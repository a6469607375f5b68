#!/usr/bin/env bash
# take_rois.sh — give a data dir the mouth-ROI tables of a bigger data dir that contains its utterances
# (e.g. LRS3's train_30h inside train_433h), instead of extracting the same ROIs twice.
usage="Usage: $0 <from-dir> <to-dir>
Writes <to-dir>/{video.scp,utt2num_frames,utt2roi}: the rows of <from-dir>'s tables (written by
speechkit.bin.extract_mouth_roi) for the utterances of <to-dir>/utt2spk, which must all be utterances of
<from-dir>. Utterances without an ROI in <from-dir> (no face found there) are left out, as
extract_mouth_roi leaves them out."
set -euo pipefail
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { echo "$usage"; exit 0; }
[ $# -eq 2 ] || { echo "$usage" >&2; exit 1; }
from=$1 to=$2
for f in video.scp utt2num_frames; do
  [ -f "$from/$f" ] || { echo "$0: $from/$f not found (run speechkit.bin.extract_mouth_roi on $from first)" >&2; exit 1; }
done
[ -f "$to/utt2spk" ] || { echo "$0: $to/utt2spk not found" >&2; exit 1; }
[ -f "$from/utt2spk" ] || { echo "$0: $from/utt2spk not found" >&2; exit 1; }
# every utterance of <to-dir> must be one of <from-dir>'s: otherwise its ROIs were never extracted
outside=$(awk 'NR == FNR { have[$1] = 1; next } !($1 in have) { n++; if (n == 1) first = $1 }
               END { if (n) print n " utterance(s) of " FILENAME ", the first " first "," }' \
             "$from/utt2spk" "$to/utt2spk")
[ -z "$outside" ] || { echo "$0: $outside are not in $from: extract their ROIs with" \
                         "speechkit.bin.extract_mouth_roi instead" >&2; exit 1; }
for f in video.scp utt2num_frames utt2roi; do
  [ -f "$from/$f" ] || continue
  awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "$to/utt2spk" "$from/$f" > "$to/$f.tmp"
  mv "$to/$f.tmp" "$to/$f"
done
echo "$0: $(wc -l < "$to/video.scp") of $(wc -l < "$to/utt2spk") utterances of $to have ROIs from $from"
