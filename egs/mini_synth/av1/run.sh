#!/usr/bin/env bash
# Mini audio-visual data recipe: the synthetic talking-face corpus in the LRS3 and VoxCeleb2 layouts,
# prepared exactly as the real corpora are, with mouth ROIs for every set. Runs anywhere, no downloads.
#   1  make the synthetic AV corpora (corpus/lrs3, corpus/voxceleb2)
#   2  LRS3 prep: pretrain (long clips split at word gaps), trainval, valid, train_30h, train_433h, test
#   3  VoxCeleb2 prep: dev/test from the mp4 variant (video_src.scp) and from the aac variant (audio only)
#   4  mouth ROIs (96x96 gray, 25 fps) for the LRS3 sets -> data/lrs3/<set>/{video.scp,utt2num_frames}
#   5  mouth ROIs for VoxCeleb2 dev/test
#   6  sentencepiece unit model on the LRS3 train_433h text
#   7  GRID clips (../../../../shared/fixtures/grid when present): data dir + mouth ROIs + contact sheet
# Usage: ./run.sh [--stage N] [--stop-stage M] [--size tiny|default] [--nj N] [--detect-every K]
set -euo pipefail

stage=1
stop_stage=100
size=tiny               # synthetic AV corpus size: tiny (seconds) or default (~40 min of video)
seed=0
nj=2                    # parallel jobs (audio extraction, ROI extraction)
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
cores=""                # cores this recipe may use; "": nproc
detect_every=5          # face detector every k-th frame, tracked in between
vocab_size=1000         # unit model size (lowered automatically for tiny text)
grid_dir=../../../../shared/fixtures/grid
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for every job

. utils/stage_log.sh

lrs3_sets="pretrain trainval valid train_30h train_433h test"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: synthetic AV corpora (size=$size)"
  python -m speechkit.bin.make_synth_av_corpus corpus --layout lrs3 voxceleb2 --size $size --seed $seed
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: LRS3 data dirs"
  if ! is_done data/lrs3/.prep.done; then
    python -m speechkit.bin.prepare_lrs3 corpus/lrs3 data/lrs3 --audio-dir dump/audio/lrs3 --seed $seed --nj $nj
    touch data/lrs3/.prep.done
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: VoxCeleb2 data dirs (mp4 and audio-only aac variants)"
  if ! is_done data/vox2/.prep.done; then
    python -m speechkit.bin.prepare_voxceleb2 corpus/voxceleb2 data/vox2 --audio-dir dump/audio/vox2 --nj $nj
    python -m speechkit.bin.prepare_voxceleb2 corpus/voxceleb2 data/vox2_aac --source aac \
      --audio-dir dump/audio/vox2_aac --nj $nj
    touch data/vox2/.prep.done
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: mouth ROIs for LRS3"
  for s in $lrs3_sets; do
    is_done data/lrs3/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi data/lrs3/$s dump/roi/lrs3/$s --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --debug-dir exp/roi_debug/lrs3_$s
    touch data/lrs3/$s/.roi.done
  done
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: mouth ROIs for VoxCeleb2"
  for s in dev test; do
    is_done data/vox2/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi data/vox2/$s dump/roi/vox2/$s --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --debug-dir exp/roi_debug/vox2_$s
    touch data/vox2/$s/.roi.done
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: sentencepiece unit model (unigram, $vocab_size units at most)"
  python -m speechkit.bin.prepare_lrs3 --unit-model data/lrs3/lang_unigram$vocab_size \
    --text data/lrs3/train_433h/text --vocab-size $vocab_size
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: GRID clips -> data dir + mouth ROIs"
  if [ -d "$grid_dir" ]; then
    python -m speechkit.bin.prepare_video_folder $grid_dir data/grid --text $grid_dir/text --audio-dir dump/audio/grid
    python -m speechkit.bin.extract_mouth_roi data/grid dump/roi/grid --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --debug-dir exp/roi_debug/grid
  else
    log "  $grid_dir not found; skipping"
  fi
fi
log "done"
