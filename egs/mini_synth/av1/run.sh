#!/usr/bin/env bash
# Mini audio-visual recipe: AV-HuBERT pre-training, lip reading (VSR), ASR and AVSR on the synthetic
# talking-face corpus, prepared exactly as LRS3 and VoxCeleb2 are. Runs anywhere (2 CPU cores, no downloads).
#   1  make the synthetic AV corpora (corpus/lrs3, corpus/voxceleb2 when in --corpora), sentences of --grammar
#   2  LRS3 prep: pretrain (long clips split at word gaps), trainval, valid, train_30h, train_433h, test
#   3  VoxCeleb2 prep: dev/test from the mp4 variant (video_src.scp) and from the aac variant (audio only)
#   4  mouth ROIs ($roi_size x $roi_size gray, 25 fps) for the LRS3 sets used below (train_433h, valid, test; train_30h,
#      a part of train_433h, takes its ROIs from there) -> data/lrs3/<set>/{video.scp,utt2num_frames}
#   5  mouth ROIs for VoxCeleb2 dev/test
#   6  sentencepiece unit model on the LRS3 train_433h text
#   7  GRID clips (../../../../shared/fixtures/grid when present): data dir + mouth ROIs + contact sheet
#   8  MFCC (39-dim, 100 Hz) of the LRS3 audio (train_433h, valid) and a synthetic noise folder (corpus/noise)
#   9  k-means on MFCC (K=$mfcc_k) -> km.mfcc<K> labels (100 Hz) for train_433h and valid
#  10  label quality (phone purity, PNMI) of the MFCC units on valid (corpus/lrs3_alignments)
#  11  AV-HuBERT iteration 1 on the MFCC units (lips + audio, tiny preset with a narrow ResNet-18)
#  12  units of iteration 1 (the AV units): layer-$layer features (--modalities audiovisual, 25 Hz), k-means (K=$iter2_k),
#      labels, and their label quality (PNMI) next to the MFCC units
#  13  AV-HuBERT iteration 2 on those 25 Hz units (only with --iters 2)
#  14  character tokenizer for the train_30h transcripts; word lexicon + $lm_order-gram LM of the train_433h text
#  15  fine-tuning of the last AV-HuBERT (attention decoder + CTC head): VSR (video), ASR (audio), AVSR
#      (audio+video; ASR and AVSR with noise augmentation), and the from-scratch VSR baseline (same architecture,
#      data and updates)
#  16  decode: the CTC head at the word level (lexicon + word LM), LM weight and word score tuned on valid;
#      test: VSR on video; ASR and AVSR on clean audio and with babble / noise at $snrs dB (fixed seed)
#      and the blind-guess row (exp/guess): the training transcript with the fewest errors on valid, for every
#      utterance (chance for a closed grammar: an empty hypothesis scores 100 %, a guess much less)
#  17  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--size tiny|default] [--corpora "lrs3 voxceleb2"] [--iters 1|2]
#        [--config conf/tiny.sh] ...
set -euo pipefail

stage=1
stop_stage=100
size=default            # synthetic AV corpus size: tiny (tests, seconds) or default (~40 min of video)
seed=0
grammar=grid            # sentences: grid (GRID's six-word commands, 51 words) or open (the 499-word grammar,
                        # where lip reading from this little video stays at chance: README)
nj=2                    # parallel jobs (corpus synthesis, audio extraction, ROI extraction, decoding)
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
cores=""                # cores this recipe may use; "": nproc
detect_every=10         # face detector every k-th frame, tracked in between (the synthetic head moves slowly)
roi_size=36             # mouth ROI side in pixels (LRS3 recipe: 96); the configs crop 32 (LRS3: 88)
vocab_size=1000         # unit model size (lowered automatically for tiny text)
grid_dir=../../../../shared/fixtures/grid
corpora="lrs3 voxceleb2"  # synthetic corpora to make; stages 3 and 5 need voxceleb2 (make demo-av: lrs3 only)
mfcc_k=100              # clusters on MFCC (iteration-1 targets)
layer=3                 # layer of iteration 1 clustered for iteration 2
iter2_k=100             # clusters on the iteration-1 features
iters=1                 # AV-HuBERT iterations (2 adds stage 13)
pretrain1_config=conf/pretrain_avhubert_iter1.yaml
pretrain2_config=conf/pretrain_avhubert_iter2.yaml
pretrain_opts=""        # extra options for speechkit.bin.pretrain (e.g. "--set trainer.max_updates=20")
finetune_opts=""        # extra options for every fine-tuning run
ft_set=train_433h       # labeled set of the fine-tunings: train_433h (every transcribed clip) or train_30h
scratch_lr=2.0e-3       # peak lr of the from-scratch VSR baseline
snrs="0 -5"             # SNRs (dB) of the noisy test conditions
babble_speakers=8       # voices per babble clip of the noisy tests (the anchor: 30), from train_30h speech
lm_order=3              # word n-gram LM of the train_433h transcripts (stage 14)
lm_weights="0 0.5 1 2"  # LM weight / word score grid, tuned on valid (stage 16)
word_scores="-1 0 1 2"
decode_opts=""          # extra options for every decode (speechkit.bin.decode_seq2seq)
ft_noise_opts="--noise-dir corpus/noise --babble data/lrs3/train_30h"  # training noise of ASR and AVSR
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for every job

. utils/stage_log.sh

# the sets later stages read (pre-training, validation, test); LRS3's own pretrain and trainval parts, and
# train_30h, are inside train_433h / valid, so their ROIs would be extracted twice
lrs3_sets="train_433h valid test"
vox=false; case " $corpora " in *" voxceleb2 "*) vox=true ;; esac
km1=mfcc${mfcc_k}
km2=av1_l${layer}_${iter2_k}
upstream=exp/avhubert_iter$iters
d=data/lrs3

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "synthetic AV corpora (size=$size)"
  python -m speechkit.bin.make_synth_av_corpus corpus --layout $corpora --size $size --seed $seed \
    --grammar $grammar --nj $nj
  took 1
fi
# the later stages skip finished work: a corpus made again with another --seed, --grammar or --size (or by a
# newer version of the generator) must not meet data dirs, features and models of the old one
if [ -f $d/.prep.done ] && [ -f corpus/lrs3/.synth_av.json ] && ! cmp -s corpus/lrs3/.synth_av.json $d/.corpus.json; then
  echo "$0: corpus/lrs3 ($(cat corpus/lrs3/.synth_av.json)) is not the corpus $d was prepared from" \
    "($(cat $d/.corpus.json 2>/dev/null || echo 'not recorded')): remove data, dump and exp, or use a fresh copy" \
    "of the recipe" >&2
  exit 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "LRS3 data dirs"
  if ! is_done data/lrs3/.prep.done; then
    python -m speechkit.bin.prepare_lrs3 corpus/lrs3 data/lrs3 --audio-dir dump/audio/lrs3 --seed $seed --nj $nj
    cp corpus/lrs3/.synth_av.json $d/.corpus.json
    touch data/lrs3/.prep.done
  fi
  took 2
fi

if $vox && [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "VoxCeleb2 data dirs (mp4 and audio-only aac variants)"
  if ! is_done data/vox2/.prep.done; then
    python -m speechkit.bin.prepare_voxceleb2 corpus/voxceleb2 data/vox2 --audio-dir dump/audio/vox2 --nj $nj
    python -m speechkit.bin.prepare_voxceleb2 corpus/voxceleb2 data/vox2_aac --source aac \
      --audio-dir dump/audio/vox2_aac --nj $nj
    touch data/vox2/.prep.done
  fi
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "mouth ROIs for LRS3"
  for s in $lrs3_sets; do
    is_done data/lrs3/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi data/lrs3/$s dump/roi/lrs3/$s --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --size $roi_size --debug-dir exp/roi_debug/lrs3_$s
    touch data/lrs3/$s/.roi.done
  done
  if ! is_done $d/train_30h/.roi.done; then  # train_30h's ROIs: its rows of train_433h's ROI tables
    utils/take_rois.sh $d/train_433h $d/train_30h
    touch $d/train_30h/.roi.done
  fi
  took 4
fi

if $vox && [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "mouth ROIs for VoxCeleb2"
  for s in dev test; do
    is_done data/vox2/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi data/vox2/$s dump/roi/vox2/$s --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --size $roi_size --debug-dir exp/roi_debug/vox2_$s
    touch data/vox2/$s/.roi.done
  done
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "sentencepiece unit model (unigram, $vocab_size units at most)"
  python -m speechkit.bin.prepare_lrs3 --unit-model data/lrs3/lang_unigram$vocab_size \
    --text data/lrs3/train_433h/text --vocab-size $vocab_size
  took 6
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "GRID clips -> data dir + mouth ROIs"
  if [ -d "$grid_dir" ]; then
    python -m speechkit.bin.prepare_video_folder $grid_dir data/grid --text $grid_dir/text --audio-dir dump/audio/grid
    python -m speechkit.bin.extract_mouth_roi data/grid dump/roi/grid --nj $nj --cmd "$cpu_cmd" \
      --detect-every $detect_every --size $roi_size --debug-dir exp/roi_debug/grid
  else
    log "  $grid_dir not found; skipping"
  fi
  took 7
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  begin 8 "MFCC of the LRS3 audio; synthetic noise folder"
  for s in train_433h valid; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir $d/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
  [ -f corpus/noise/.done ] || { python -m speechkit.bin.make_noise_dir --out corpus/noise --seed $seed && touch corpus/noise/.done; }
  took 8
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  begin 9 "k-means on MFCC, K=$mfcc_k; labels km.$km1 (100 Hz)"
  if ! is_done exp/kmeans_$km1/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/mfcc/train_433h/feats.scp --n-clusters $mfcc_k --seed $seed \
      --out exp/kmeans_$km1
    touch exp/kmeans_$km1/.done
  fi
  for s in train_433h valid; do
    is_done $d/$s/.km.$km1.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km1/model.pt --feats-dir dump/mfcc/$s --data-dir $d/$s --tag $km1
    touch $d/$s/.km.$km1.done
  done
  took 9
fi

align=corpus/lrs3_alignments/trainval.phones  # 10 ms phone labels of trainval (valid is part of it)
# unit_quality TAG RATE DESCRIPTION: purity and PNMI of km.TAG on valid, when the corpus has alignments
unit_quality() {
  if [ ! -f $align ]; then log "  $align not found: no phone alignments, no label quality"; return 0; fi
  python -m speechkit.bin.label_quality --labels $d/valid/km.$1 --label-rate $2 --alignments $align \
    --out exp/kmeans_$1/quality_valid --result-json exp/kmeans_$1/result_units_valid.json --units "$3"
}

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "label quality of km.$km1"
  unit_quality $km1 100 "MFCC, K=$mfcc_k"
  took 10
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "AV-HuBERT iteration 1 on km.$km1 ($pretrain1_config)"
  if ! is_done exp/avhubert_iter1/.done; then
    nthreads $train_threads python -m speechkit.bin.pretrain --config $pretrain1_config --train-data $d/train_433h --valid-data $d/valid \
      --label-tag $km1 --exp-dir exp/avhubert_iter1 --resume auto $pretrain_opts
    touch exp/avhubert_iter1/.done
  fi
  took 11
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  begin 12 "units of iteration 1: layer $layer (audio+video, 25 Hz), K=$iter2_k -> km.$km2"
  for s in train_433h valid; do
    is_done dump/av1_l$layer/$s/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint exp/avhubert_iter1/checkpoint_last.pt --layer $layer \
      --modalities audiovisual --data-dir $d/$s --out dump/av1_l$layer/$s --nj $nj --cmd "$cpu_cmd" --num-threads $threads_per_job
    touch dump/av1_l$layer/$s/.done
  done
  if ! is_done exp/kmeans_$km2/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/av1_l$layer/train_433h/feats.scp --n-clusters $iter2_k \
      --seed $seed --out exp/kmeans_$km2
    touch exp/kmeans_$km2/.done
  fi
  for s in train_433h valid; do
    is_done $d/$s/.km.$km2.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km2/model.pt --feats-dir dump/av1_l$layer/$s \
      --data-dir $d/$s --tag $km2
    touch $d/$s/.km.$km2.done
  done
  unit_quality $km2 25 "AV-HuBERT iteration 1, layer $layer (audio+video), K=$iter2_k"
  took 12
fi

if [ $iters -ge 2 ] && [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  begin 13 "AV-HuBERT iteration 2 on km.$km2 ($pretrain2_config)"
  if ! is_done exp/avhubert_iter2/.done; then
    nthreads $train_threads python -m speechkit.bin.pretrain --config $pretrain2_config --train-data $d/train_433h --valid-data $d/valid \
      --label-tag $km2 --exp-dir exp/avhubert_iter2 --resume auto $pretrain_opts
    touch exp/avhubert_iter2/.done
  fi
  took 13
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  begin 14 "character tokenizer (train_30h text); lexicon + $lm_order-gram word LM (train_433h text)"
  [ -f data/token_char/tokens.txt ] || python -m speechkit.bin.train_tokenizer --text $d/train_30h/text \
    --out data/token_char --type char
  [ -f data/lang_word/lm$lm_order.arpa ] || python -m speechkit.bin.train_word_lm --text $d/train_433h/text \
    --tokenizer data/token_char --order $lm_order --out data/lang_word --dev-text $d/valid/text
  took 14
fi

# fine-tuned model -> modalities it is trained on and the --init / baseline options
ft_models="vsr_scratch avsr vsr asr"  # longest first: they run $nj side by side (stage 15)
ft_modalities() { case $1 in vsr|vsr_scratch) echo video ;; asr) echo audio ;; avsr) echo audiovisual ;; esac; }

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  begin 15 "fine-tune $upstream: VSR, ASR, AVSR; the from-scratch VSR baseline ($nj side by side)"
  for x in $ft_models; do
    is_done exp/$x/.done && continue
    opt=""; conf=conf/finetune_${x%_scratch}.yaml
    case $x in
      vsr_scratch) opt="--from-scratch --set optim.lr=$scratch_lr --set model.encoder_overrides.feature_grad_mult=1.0" ;;
      asr|avsr) opt="$ft_noise_opts" ;;  # noise augmentation, as the anchor's AVSR (ASR too: a fair comparison)
    esac
    side_by_side $nj exp/$x/.done nthreads $threads_per_job ${train_cmd} exp/$x/log/finetune.log \
      python -m speechkit.bin.finetune_av --config $conf --init $upstream/checkpoint_last.pt $opt \
      --tokenizer data/token_char --train-data $d/$ft_set --valid-data $d/valid --exp-dir exp/$x --resume auto \
      $finetune_opts
  done
  wait_side_by_side
  took 15
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  begin 16 "decode (CTC head, lexicon + word LM): valid to tune, test clean and with babble / noise at SNR $snrs dB"
  # $nj decodes side by side, $threads_per_job threads each; .done marks each finished one for a re-run
  lm="--lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm$lm_order.arpa"
  decode_one() {  # decode_one MODEL SET CONDITION OPTIONS...
    local x=$1 set=$2 c=$3; shift 3
    nthreads $threads_per_job python -m speechkit.bin.decode_seq2seq --model exp/$x/checkpoint_best.pt \
      --data-dir $d/$set --out exp/$x/decode_${set}_$c $lm "$@" $decode_opts > exp/$x/decode_${set}_$c.log 2>&1
  }
  for x in $ft_models; do  # LM weight and word score for each model on clean valid
    [ -f exp/$x/decode_valid_clean/.done ] && continue
    side_by_side $nj exp/$x/decode_valid_clean/.done decode_one $x valid clean --lm-weight $lm_weights \
      --word-score $word_scores
  done
  wait_side_by_side
  for x in $ft_models; do
    conds="clean"
    [ $(ft_modalities $x) = video ] || for snr in $snrs; do conds="$conds babble_$snr noise_$snr"; done
    for c in $conds; do
      out=exp/$x/decode_test_$c
      [ -f $out/.done ] && continue
      case $c in
        clean) noise="" ;;
        babble_*) noise="--babble $d/train_30h --babble-speakers $babble_speakers --snr ${c#babble_} --seed $seed" ;;
        noise_*) noise="--noise-dir corpus/noise --snr ${c#noise_} --seed $seed" ;;
      esac
      side_by_side $nj $out/.done decode_one $x test $c --tuned-from exp/$x/decode_valid_clean $noise
    done
  done
  wait_side_by_side
  if [ ! -f exp/guess/.done ]; then  # the blind-guess row: one training transcript for every utterance
    python -m speechkit.bin.guess_baseline --train-text $d/train_433h/text --tune-dir $d/valid --data-dir $d/test \
      --out exp/guess
    touch exp/guess/.done
  fi
  took 16
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  begin 17 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --title "RESULTS (mini AV recipe, size=$size)" --print
  took 17
fi
log "Finished stages $stage..$stop_stage in $SECONDS s"
