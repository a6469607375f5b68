#!/usr/bin/env bash
# VoxCeleb2 recipe: AV-HuBERT pre-training on LRS3 433 h + the English part of VoxCeleb2 dev (1759 h in the
# paper), then speaker verification with the frozen pre-trained encoder: utterance embeddings pooled from one
# layer, from audio only and from audio + video, cosine-scored on a trial list (EER, minDCF).
#   1  VoxCeleb2 data dirs: dev (the English subset, by --vox-en-ids) and test, from the mp4 release
#   2  LRS3 data dirs (train_433h, valid, ...)
#   3  mouth ROIs for vox2 dev_en, vox2 test, LRS3 train_433h and valid
#   4  the pre-training set: LRS3 train_433h + vox2 dev_en (whole-clip segments for VoxCeleb2, whose clips
#      are not split, so that both dirs combine)
#   5  MFCC, k-means (K=$mfcc_k) on MFCC, labels km.mfcc<K> (100 Hz)
#   6  AV-HuBERT iteration 1                      7  units of iteration 1 (layer ${layers[1]}, K=${ks[1]})
#   8  AV-HuBERT iteration 2 (the last one with --iters 2; the paper: 5 iterations, see README)
#   9  trial list: VoxCeleb1 trials (--vox1-trials + --vox1-data) or seeded trials over VoxCeleb2 test
#  10  speaker verification: layer-$sv_layer features (audio; audio + video), mean-pooled, cosine, EER/minDCF
#  11  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--vox2-dir DIR] [--lrs3-dir DIR] [--vox-en-ids FILE] [--ngpu G]
#        ./run.sh --config conf/tiny.sh --vox2-dir DIR --lrs3-dir DIR   (tiny; what the recipe test runs)
set -euo pipefail

. ./db.sh
stage=1
stop_stage=100
vox2_dir=$VOXCELEB2
lrs3_dir=$LRS3
vox_en_ids=$VOX_EN_IDS
vox1_trials=""          # VoxCeleb1 trial list (veri_test2.txt); needs --vox1-data
vox1_data=""            # a data dir of the VoxCeleb1 test clips (wav.scp; video.scp for AV embeddings)
nj=32
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
ngpu=1
auto_update_freq=true
seed=0
iters=2
mfcc_k=100
kmeans_portion=0.1
kmeans_opts=""
layer_list="12"         # iteration k's layer clustered for iteration k+1
k_list="500"
pretrain_config=conf/pretrain_avhubert_base_iter.yaml
pretrain_last_config=conf/pretrain_avhubert_base_last.yaml
pretrain_opts=""
sv_layer=6              # layer pooled into speaker embeddings (lower layers keep more speaker information)
sv_modalities="audio audiovisual"
num_target_trials=5000  # seeded VoxCeleb2-test trials when no VoxCeleb1 list is given (x1 non-target)
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
update_freq_opt() {
  $auto_update_freq || return 0
  local g=$(( ngpu > 0 ? ngpu : 1 ))
  (( $1 % g == 0 )) || die "--ngpu $ngpu does not divide the reference $1 GPUs; set trainer.update_freq yourself"
  echo "--set trainer.update_freq=$(( $1 / g ))"
}
device_opt=""; [ "$ngpu" -eq 0 ] && device_opt="--device cpu"
pretrain_uf=$(update_freq_opt 32)   # AV-HuBERT Base on LRS3 + VoxCeleb2: 32 GPUs x 1000 frames
d=data
train=pretrain_av; valid=lrs3/valid
last=exp/avhubert_iter$iters
km_tag() { if [ $1 -eq 1 ]; then echo mfcc$mfcc_k; else echo av$(( $1 - 1 ))_l${layers[$1-1]}_${ks[$1-1]}; fi; }
label_rate() { if [ $1 -eq 1 ]; then echo 100; else echo 25; fi; }
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
  begin 1 "VoxCeleb2 data dirs from $vox2_dir (English subset: ${vox_en_ids:-every clip})"
  if ! is_done $d/vox2/.prep.done; then
    [ -d "$vox2_dir" ] || die "--vox2-dir $vox2_dir: not found (the folder holding dev/mp4 and test/mp4; see db.sh)"
    idopt=""; [ -n "$vox_en_ids" ] && idopt="--id-list $vox_en_ids"
    python -m speechkit.bin.prepare_voxceleb2 $vox2_dir $d/vox2 --source mp4 --subsets dev --audio-dir dump/audio/vox2 \
      $idopt --nj $nj
    mv $d/vox2/dev $d/vox2/dev_en
    python -m speechkit.bin.prepare_voxceleb2 $vox2_dir $d/vox2 --source mp4 --subsets test --audio-dir dump/audio/vox2 --nj $nj
    touch $d/vox2/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "LRS3 data dirs from $lrs3_dir"
  if ! is_done $d/lrs3/.prep.done; then
    [ -d "$lrs3_dir" ] || die "--lrs3-dir $lrs3_dir: not found (the folder holding pretrain/ trainval/ test/)"
    python -m speechkit.bin.prepare_lrs3 $lrs3_dir $d/lrs3 --audio-dir dump/audio/lrs3 --seed $seed --nj $nj
    touch $d/lrs3/.prep.done
  fi
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "mouth ROIs"
  for s in vox2/dev_en vox2/test lrs3/train_433h lrs3/valid; do
    is_done $d/$s/.roi.done && continue
    python -m speechkit.bin.extract_mouth_roi $d/$s dump/roi/$s --nj $nj --cmd "$cpu_cmd"
    touch $d/$s/.roi.done
  done
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "pre-training set $d/$train = lrs3/train_433h + vox2/dev_en"
  if ! is_done $d/$train/.done; then
    # VoxCeleb2 clips are whole recordings; LRS3's 433 h has segments (split pretrain clips): give VoxCeleb2
    # one segment per clip (recording id = utterance id) so that the two combine
    rm -rf $d/vox2/dev_en_seg; cp -r $d/vox2/dev_en $d/vox2/dev_en_seg
    awk '{ printf "%s %s 0.0 %.4f\n", $1, $1, $2 / 16000 }' $d/vox2/dev_en/utt2num_samples > $d/vox2/dev_en_seg/segments
    rm -rf $d/$train; python -m speechkit.bin.data_dir combine $d/$train $d/lrs3/train_433h $d/vox2/dev_en_seg
    touch $d/$train/.done
  fi
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "MFCC, k-means K=$mfcc_k, labels km.mfcc$mfcc_k"
  for s in $train $valid; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir $d/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
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
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "AV-HuBERT iteration 1 on km.mfcc$mfcc_k ($ngpu GPUs)"; pretrain_iter 1; took 6
fi

if [ $iters -ge 2 ] && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "units of iteration 1 -> km.$(km_tag 2)"
  f=dump/av1_l${layers[1]}
  for s in $train $valid; do
    is_done $f/$s/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint exp/avhubert_iter1/checkpoint_last.pt --layer ${layers[1]} \
      --modalities audiovisual --data-dir $d/$s --out $f/$s --nj $nj --cmd "$cpu_cmd" $device_opt --num-threads $threads_per_job
    touch $f/$s/.done
  done
  if ! is_done exp/kmeans_$(km_tag 2)/.done; then
    python -m speechkit.bin.learn_kmeans --feats $f/$train/feats.scp --n-clusters ${ks[1]} --portion $kmeans_portion \
      --seed $seed --out exp/kmeans_$(km_tag 2) $kmeans_opts
    touch exp/kmeans_$(km_tag 2)/.done
  fi
  for s in $train $valid; do
    is_done $d/$s/.km.$(km_tag 2).done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$(km_tag 2)/model.pt --feats-dir $f/$s --data-dir $d/$s \
      --tag $(km_tag 2)
    touch $d/$s/.km.$(km_tag 2).done
  done
  took 7
fi

if [ $iters -ge 2 ] && [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  begin 8 "AV-HuBERT iteration 2 on km.$(km_tag 2)"; pretrain_iter 2; took 8
fi

sv_data=$d/vox2/test; [ -n "$vox1_data" ] && sv_data=$vox1_data
if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  begin 9 "trial list for $sv_data"
  if [ -n "$vox1_trials" ]; then
    [ -n "$vox1_data" ] || die "--vox1-trials needs --vox1-data (a data dir of the VoxCeleb1 test clips)"
    python -m speechkit.bin.prepare_voxceleb2 --trials $vox1_trials --trials-out $sv_data/trials
  elif [ ! -f $sv_data/trials ]; then
    python -m speechkit.bin.make_trials --data-dir $sv_data --out $sv_data/trials --num-target $num_target_trials \
      --num-nontarget $num_target_trials --seed $seed
  fi
  took 9
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "speaker verification with $last, layer $sv_layer: $sv_modalities"
  for m in $sv_modalities; do
    x=exp/sv_$(basename $last)_l${sv_layer}_$m
    is_done $x/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint $last/checkpoint_last.pt --layer $sv_layer \
      --modalities $m --data-dir $sv_data --out dump/sv_l${sv_layer}_$m --nj $nj --cmd "$cpu_cmd" $device_opt --num-threads $threads_per_job
    python -m speechkit.bin.pool_embeddings --feats dump/sv_l${sv_layer}_$m/feats.scp --out $x/embed
    python -m speechkit.bin.compute_eer --trials $sv_data/trials --embeddings $x/embed/embeddings.scp --out $x/eval \
      --dataset "$(basename $sv_data) ($m)" --info modalities=$m --info layer=$sv_layer
    touch $x/.done
  done
  took 10
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --title "RESULTS (VoxCeleb2, AV-HuBERT)" --print
  took 11
fi
log "Finished stages $stage..$stop_stage in $SECONDS s"
