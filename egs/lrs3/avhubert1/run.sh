#!/usr/bin/env bash
# LRS3 recipe: AV-HuBERT pre-training (iterated, lips + audio) on the 433 h, then lip reading (VSR) and
# audio-visual ASR (AVSR) fine-tuning on the 30 h and 433 h label sets, decoding on clean and noisy audio,
# scoring, RESULTS.md. See README.md for the published numbers and how to scale to your GPUs.
#   1  LRS3 data dirs (pretrain, trainval, valid, train_30h, train_433h, test) from the official layout
#   2  mouth ROIs (96x96 gray, 25 fps) for train_433h, valid, test; train_30h takes its rows of train_433h's
#   3  MFCC (39-dim, 100 Hz) of train_433h and valid
#   4  k-means on MFCC (K=$mfcc_k, on a $kmeans_portion portion) -> km.mfcc<K> (100 Hz) for train_433h, valid
#   5  AV-HuBERT iteration 1 on the MFCC units (feature masking)
#   6  units of iteration 1 (layer ${layers[1]}, K=${ks[1]}, audio+video, 25 Hz)     7  AV-HuBERT iteration 2
#   8  units of iteration 2 (layer ${layers[2]}, K=${ks[2]})                          9  AV-HuBERT iteration 3
#  10  units of iteration 3 (layer ${layers[3]}, K=${ks[3]})                         11  AV-HuBERT iteration 4
#  12  units of iteration 4 (layer ${layers[4]}, K=${ks[4]})                         13  AV-HuBERT iteration 5
#      (input masking and modality dropout in the last iteration; --iters N stops after iteration N)
#  14  sentencepiece unigram unit model (1000) on the train_433h text
#  15  fine-tuning of the last iteration: VSR and AVSR on each label set in --finetune (30h 433h)
#  16  decode test: VSR on video; AVSR on clean audio and with babble / noise at $snrs dB (fixed seed)
#  17  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--lrs3-dir DIR] [--ngpu G] [--iters 1..5] ...
#        ./run.sh --config conf/tiny.sh --lrs3-dir DIR   (tiny models and counts; what the recipe test runs)
set -euo pipefail

. ./db.sh
stage=1
stop_stage=100
lrs3_dir=$LRS3
noise_dir=$MUSAN_NOISE  # noise recordings (MUSAN noise/); empty: babble only
valid_ids=""            # av_hubert's lrs3-valid.id; empty: a seeded random choice of $num_valid trainval clips
num_valid=1200
nj=32                   # parallel jobs for ROIs, dumping and labelling
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
ngpu=1                  # GPUs per training job (torchrun when > 1); 0 = train and decode on CPU
auto_update_freq=true   # turn the anchor's GPU counts into update_freq for $ngpu GPUs (README)
seed=0
iters=5                 # AV-HuBERT iterations (the paper: 5)
mfcc_k=100              # iteration-1 targets: k-means of MFCC
kmeans_portion=0.1
kmeans_opts=""
# per iteration k (1-based): the layer of iteration k clustered, and K, for the targets of iteration k+1
layer_list="12 12 12 12"
k_list="100 500 1000 2000"
pretrain_config=conf/pretrain_avhubert_base_iter.yaml       # iterations 1..iters-1 (feature masking)
pretrain_last_config=conf/pretrain_avhubert_base_last.yaml  # the last iteration (input masking, modality dropout)
pretrain_opts=""
finetune="30h 433h"     # label sets: 30h (train_30h), 433h (train_433h)
finetune_tasks="vsr avsr"
finetune_model=base     # config family: conf/finetune_<task>_<model>_<set>.yaml
finetune_config=""      # one config for every task and set instead (tests: conf/finetune_tiny.yaml)
finetune_opts=""
finetune_init=""        # checkpoint to fine-tune; default exp/avhubert_iter$iters/checkpoint_last.pt (e.g. one from
                        # egs/voxceleb2/avhubert1, pre-trained on LRS3 + VoxCeleb2 as the paper's best models)
snrs="0 -5"
babble_speakers=30      # voices per babble clip of the noisy tests (the anchor: 30)
babble_data=data/valid  # whose speech makes the test babble (held-out speakers; not the test set's own)
ft_babble=true          # AVSR training noise includes babble of the training speech (needs >= 30 utterances)
decode_opts="--beam 50 --len-penalty 1.0"   # the anchor's s2s decoding (conf/s2s_decode.yaml)
decode_checkpoint=checkpoint_best.pt
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
train_procs=$((ngpu > 0 ? ngpu : 1))
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for jobs; $train_threads per training process

. utils/stage_log.sh
read -r -a _l <<< "$layer_list"; read -r -a _k <<< "$k_list"
layers=(- "${_l[@]}"); ks=(- "${_k[@]}")
launch() { if [ "$ngpu" -gt 1 ]; then echo "torchrun --standalone --nproc_per_node $ngpu -m"; else echo "python -m"; fi; }
update_freq_opt() {  # REF_GPUS: keep REF_GPUS x max_tokens frames per update on $ngpu GPUs
  $auto_update_freq || return 0
  local g=$(( ngpu > 0 ? ngpu : 1 ))
  (( $1 % g == 0 )) || die "--ngpu $ngpu does not divide the reference $1 GPUs; set trainer.update_freq yourself"
  echo "--set trainer.update_freq=$(( $1 / g ))"
}
device_opt=""; [ "$ngpu" -eq 0 ] && device_opt="--device cpu"
pretrain_uf=$(update_freq_opt 32)   # AV-HuBERT Base pre-training: 32 GPUs x 1000 frames
finetune_uf=$(update_freq_opt 8)    # fine-tuning: 8 GPUs x 1000 frames
d=data
train=train_433h; valid=valid
km_tag() { if [ $1 -eq 1 ]; then echo mfcc$mfcc_k; else echo av$(( $1 - 1 ))_l${layers[$1-1]}_${ks[$1-1]}; fi; }
label_rate() { if [ $1 -eq 1 ]; then echo 100; else echo 25; fi; }

# units_for K: layer features of iteration K-1 (audio+video) -> k-means -> km.<tag> labels for iteration K
units_for() {
  local it=$1 prev=$(( $1 - 1 )) tag; tag=$(km_tag $1)
  for s in $train $valid; do
    is_done dump/av${prev}_l${layers[$prev]}/$s/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint exp/avhubert_iter$prev/checkpoint_last.pt \
      --layer ${layers[$prev]} --modalities audiovisual --data-dir $d/$s --out dump/av${prev}_l${layers[$prev]}/$s \
      --nj $nj --cmd "$cpu_cmd" $device_opt --num-threads $threads_per_job
    touch dump/av${prev}_l${layers[$prev]}/$s/.done
  done
  if ! is_done exp/kmeans_$tag/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/av${prev}_l${layers[$prev]}/$train/feats.scp \
      --n-clusters ${ks[$prev]} --portion $kmeans_portion --seed $seed --out exp/kmeans_$tag $kmeans_opts
    touch exp/kmeans_$tag/.done
  fi
  for s in $train $valid; do
    is_done $d/$s/.km.$tag.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$tag/model.pt --feats-dir dump/av${prev}_l${layers[$prev]}/$s \
      --data-dir $d/$s --tag $tag
    touch $d/$s/.km.$tag.done
  done
}
# pretrain_iter K: AV-HuBERT iteration K on km.<tag of K>
pretrain_iter() {
  local it=$1 conf=$pretrain_config
  [ $1 -eq $iters ] && conf=$pretrain_last_config
  is_done exp/avhubert_iter$it/.done && return 0
  nthreads $train_threads ${train_cmd} exp/avhubert_iter$it/log/pretrain.log $(launch) speechkit.bin.pretrain --config $conf \
    --train-data $d/$train --valid-data $d/$valid --label-tag $(km_tag $it) --exp-dir exp/avhubert_iter$it \
    --resume auto --set data.label_rate=$(label_rate $it) $pretrain_uf $device_opt $pretrain_opts
  touch exp/avhubert_iter$it/.done
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "LRS3 data dirs from $lrs3_dir"
  if ! is_done $d/.prep.done; then
    [ -d "$lrs3_dir" ] || die "--lrs3-dir $lrs3_dir: not found (the folder holding pretrain/ trainval/ test/; see db.sh)"
    vopt="--num-valid $num_valid --seed $seed"; [ -n "$valid_ids" ] && vopt="--valid-ids $valid_ids"
    python -m speechkit.bin.prepare_lrs3 $lrs3_dir $d --audio-dir dump/audio $vopt --nj $nj
    touch $d/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "mouth ROIs"
  for s in $train $valid test; do
    is_done $d/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi $d/$s dump/roi/$s --nj $nj --cmd "$cpu_cmd"
    touch $d/$s/.roi.done
  done
  if ! is_done $d/train_30h/.roi.done; then  # train_30h (trainval minus valid) is part of train_433h
    utils/take_rois.sh $d/$train $d/train_30h
    touch $d/train_30h/.roi.done
  fi
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "MFCC of $train and $valid"
  for s in $train $valid; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir $d/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "k-means on MFCC, K=$mfcc_k -> km.mfcc$mfcc_k"
  if ! is_done exp/kmeans_mfcc$mfcc_k/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/mfcc/$train/feats.scp --n-clusters $mfcc_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_mfcc$mfcc_k $kmeans_opts
    touch exp/kmeans_mfcc$mfcc_k/.done
  fi
  for s in $train $valid; do
    is_done $d/$s/.km.mfcc$mfcc_k.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_mfcc$mfcc_k/model.pt --feats-dir dump/mfcc/$s \
      --data-dir $d/$s --tag mfcc$mfcc_k
    touch $d/$s/.km.mfcc$mfcc_k.done
  done
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "AV-HuBERT iteration 1 on km.mfcc$mfcc_k ($ngpu GPUs)"; pretrain_iter 1; took 5
fi
if [ $iters -ge 2 ] && [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "units of iteration 1 -> km.$(km_tag 2)"; units_for 2; took 6
fi
if [ $iters -ge 2 ] && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "AV-HuBERT iteration 2 on km.$(km_tag 2)"; pretrain_iter 2; took 7
fi
if [ $iters -ge 3 ] && [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  begin 8 "units of iteration 2 -> km.$(km_tag 3)"; units_for 3; took 8
fi
if [ $iters -ge 3 ] && [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  begin 9 "AV-HuBERT iteration 3 on km.$(km_tag 3)"; pretrain_iter 3; took 9
fi
if [ $iters -ge 4 ] && [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "units of iteration 3 -> km.$(km_tag 4)"; units_for 4; took 10
fi
if [ $iters -ge 4 ] && [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "AV-HuBERT iteration 4 on km.$(km_tag 4)"; pretrain_iter 4; took 11
fi
if [ $iters -ge 5 ] && [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  begin 12 "units of iteration 4 -> km.$(km_tag 5)"; units_for 5; took 12
fi
if [ $iters -ge 5 ] && [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  begin 13 "AV-HuBERT iteration 5 on km.$(km_tag 5)"; pretrain_iter 5; took 13
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  begin 14 "sentencepiece unigram unit model (1000) on $train text"
  [ -f $d/lang_unigram1000/tokenizer.json ] || python -m speechkit.bin.prepare_lrs3 --unit-model $d/lang_unigram1000 \
    --text $d/$train/text --vocab-size 1000
  took 14
fi

ft_train_of() { case $1 in 30h) echo train_30h ;; 433h) echo train_433h ;; *) die "--finetune: unknown set $1 (30h, 433h)" ;; esac; }
if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  begin 15 "fine-tune ${finetune_init:-exp/avhubert_iter$iters}: $finetune_tasks on $finetune ($ngpu GPUs)"
  for task in $finetune_tasks; do
    for set in $finetune; do
      x=${task}_${finetune_model}_$set
      is_done exp/$x/.done && continue
      conf=${finetune_config:-conf/finetune_${task}_${finetune_model}_$set.yaml}
      mods=video; noise=""
      if [ $task = avsr ]; then
        mods=audiovisual; noise=""
        $ft_babble && noise="--babble $d/$(ft_train_of $set)"
        [ -n "$noise_dir" ] && noise="$noise --noise-dir $noise_dir"
      fi
      nthreads $train_threads ${train_cmd} exp/$x/log/finetune.log $(launch) speechkit.bin.finetune_av --config $conf \
        --init ${finetune_init:-exp/avhubert_iter$iters/checkpoint_last.pt} --tokenizer $d/lang_unigram1000 \
        --train-data $d/$(ft_train_of $set) --valid-data $d/$valid --exp-dir exp/$x --resume auto \
        --set model.modalities=$mods $noise $finetune_uf $device_opt $finetune_opts
      touch exp/$x/.done
    done
  done
  took 15
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  begin 16 "decode test: clean; AVSR also with babble / noise at SNR $snrs dB (seed $seed)"
  for task in $finetune_tasks; do
    for set in $finetune; do
      x=${task}_${finetune_model}_$set
      conds=clean
      if [ $task = avsr ]; then
        for snr in $snrs; do conds="$conds babble_$snr"; [ -n "$noise_dir" ] && conds="$conds noise_$snr"; done
      fi
      for c in $conds; do
        is_done exp/$x/decode_test_$c/.done && continue
        case $c in
          clean) noise="" ;;
          babble_*) noise="--babble $babble_data --babble-speakers $babble_speakers --snr ${c#babble_} --seed $seed" ;;
          noise_*) noise="--noise-dir $noise_dir --snr ${c#noise_} --seed $seed" ;;
        esac
        ${decode_cmd} exp/$x/decode_test_$c/log/decode.log python -m speechkit.bin.decode_seq2seq \
          --model exp/$x/$decode_checkpoint --data-dir $d/test --out exp/$x/decode_test_$c $noise $device_opt $decode_opts
        touch exp/$x/decode_test_$c/.done
      done
    done
  done
  took 16
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  begin 17 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --title "RESULTS (LRS3, AV-HuBERT)" --print
  took 17
fi
log "Finished stages $stage..$stop_stage in $SECONDS s"
