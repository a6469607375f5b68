#!/usr/bin/env bash
# LibriSpeech recipe: HuBERT Base pre-training (two iterations) on the 960 h, CTC fine-tuning on the
# Libri-light 10 h set and on train-clean-100, decoding and scoring of dev/test clean/other.
# See README.md for what it expects on disk, the published numbers and how to scale to your GPUs.
#   1  LibriSpeech data dirs (every part, plus train_960 and dev) from the official layout
#   2  Libri-light limited-resource sets train_10min / train_1h / train_10h (when --librilight-dir is set)
#   3  MFCC (39-dim, 100 Hz) of $train and $valid
#   4  k-means on MFCC, K=$mfcc_k, learned on a $kmeans_portion portion of $train
#   5  MFCC k-means labels km.mfcc${mfcc_k} for $train and $valid
#   6  pre-train HuBERT iteration 1 on km.mfcc${mfcc_k}
#   7  layer-$layer features of the iteration-1 model for $train and $valid
#   8  k-means on them, K=$iter2_k, on a $kmeans_portion portion of $train
#   9  iteration-1 labels km.hubert1_l${layer}_${iter2_k} for $train and $valid
#  10  pre-train HuBERT iteration 2 on km.hubert1_l${layer}_${iter2_k}
#  11  character tokenizer (fairseq's letter dictionary) from $train's transcripts; the word LM and
#      lexicon of decoding (data/lang_word): the official 4-gram and lexicon words from --lm-dir, or a
#      $lm_order-gram built from $train's transcripts
#  12  CTC fine-tuning of the iteration-2 encoder on each labeled set in --finetune (10min 1h 10h 100h 960h)
#  13  greedy CTC decoding of $test_sets with every fine-tuned model; with --word-lm true also word-level
#      decoding with the LM (LM weight / word score tuned on $lm_tune_set, applied to the other sets)
#  14  score (WER) every decode dir
#  15  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--corpus-dir DIR] [--librilight-dir DIR] [--ngpu G] ...
#        ./run.sh --config conf/tiny.sh ...   (tiny models and counts; what the recipe test runs)
set -euo pipefail

. ./db.sh
stage=1
stop_stage=100
corpus_dir=$LIBRISPEECH           # folder holding LibriSpeech/ (or LibriSpeech/ itself)
librilight_dir=$LIBRILIGHT_FT     # librispeech_finetuning/ (or its parent); empty: no Libri-light sets
parts="dev-clean dev-other test-clean test-other train-clean-100 train-clean-360 train-other-500"
ll_sets="train_10min train_1h train_10h"
nj=32                   # parallel jobs for dumping and labelling
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
cores=""                # cores this recipe may use; "": nproc
ngpu=1                  # GPUs per training job (torchrun when > 1); 0 = train and decode on CPU
auto_update_freq=true   # turn the papers' GPU counts into update_freq for $ngpu GPUs (README)
seed=0
mfcc_k=100              # iteration-1 targets: k-means of MFCC (HuBERT paper: K=100)
kmeans_portion=0.1      # k-means is learned on 10% of the training utterances (as fairseq's recipe)
kmeans_opts=""          # extra options for learn_kmeans (e.g. "--algorithm minibatch": fairseq's)
layer=6                 # layer of iteration 1 clustered for iteration 2 (HuBERT Base: 6)
iter2_k=500             # iteration-2 targets (HuBERT Base: K=500)
pretrain1_config=conf/pretrain_hubert_base_iter1.yaml
pretrain2_config=conf/pretrain_hubert_base_iter2.yaml
pretrain_opts=""        # extra options for speechkit.bin.pretrain (e.g. "--set trainer.max_updates=20")
finetune="10h 100h"     # labeled sets to fine-tune on: 10min 1h 10h (Libri-light) 100h (train-clean-100) 960h
finetune_model=hubert_base  # config family: conf/finetune_${finetune_model}_<set>.yaml
finetune_config=""      # one config for every set instead of the family (tests: conf/finetune_ctc_tiny.yaml)
finetune_init=""        # checkpoint to fine-tune; default exp/hubert_iter2/checkpoint_last.pt (or an imported one)
finetune_valid=dev_other    # fairseq's valid_subset for fine-tuning
finetune_opts=""        # extra options for speechkit.bin.train_downstream
test_sets="dev_clean dev_other test_clean test_other"
decode_checkpoint=checkpoint_best.pt
decode_opts=""          # extra options for speechkit.bin.decode_ctc (e.g. "--beam 20 --lm data/lm.json --lm-weight 0.5")
decode_tag=greedy       # name of the decode dirs: decode_<set>_<tag>
word_lm=true            # stage 13 also decodes with the word LM (dirs decode_<set>_<lm_tag>)
lm_dir=$LIBRISPEECH_LM  # official LM folder (4-gram.arpa, librispeech-lexicon.txt); empty: build one
lm_order=4              # order of the LM built from the transcripts when there is no --lm-dir
lm_tag=4gram            # name of the LM decode dirs
lm_weights="1 2 3"      # LM weight grid (x log10 P_lm), tuned on $lm_tune_set
word_scores="-1 0 1"    # word score grid
lm_tune_set=dev_other   # the set the grid is tuned on (as fairseq's recipes tune on dev-other)
lm_beam=500             # lexicon beam (the wav2vec 2.0 / HuBERT 4-gram rows: 500 for the published numbers)
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
train_procs=$(( ngpu > 1 ? ngpu : 1 ))  # processes of a training job (torchrun)
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for jobs; $train_threads per training process

. utils/stage_log.sh
# launch: how a training job starts (torchrun for several GPUs on one node).
launch() { if [ "$ngpu" -gt 1 ]; then echo "torchrun --standalone --nproc_per_node $ngpu -m"; else echo "python -m"; fi; }
# update_freq_opt REF_GPUS: keep REF_GPUS x max_tokens samples per update on $ngpu GPUs.
update_freq_opt() {
  $auto_update_freq || return 0
  local g=$(( ngpu > 0 ? ngpu : 1 ))
  (( $1 % g == 0 )) || die "--ngpu $ngpu does not divide the reference $1 GPUs; set trainer.update_freq yourself"
  echo "--set trainer.update_freq=$(( $1 / g ))"
}
device_opt=""; [ "$ngpu" -eq 0 ] && device_opt="--device cpu"
pretrain_uf=$(update_freq_opt 32)   # HuBERT Base pre-training: 32 GPUs x 1.4M samples
finetune_uf=$(update_freq_opt 8)    # fine-tuning: 8 GPUs x 3.2M samples

train=train_960; valid=dev
km1=mfcc${mfcc_k}
km2=hubert1_l${layer}_${iter2_k}
init=${finetune_init:-exp/hubert_iter2/checkpoint_last.pt}
init_tag=$(basename "$(dirname "$init")")
ft_train_of() {  # labeled-set name -> data dir
  case $1 in
    10min|1h|10h) echo train_$1 ;;
    100h) echo train_clean_100 ;;
    960h) echo train_960 ;;
    *) die "--finetune: unknown labeled set '$1' (expected 10min 1h 10h 100h 960h)" ;;
  esac
}
for ft in $finetune; do ft_train_of "$ft" >/dev/null; done

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "LibriSpeech data dirs from $corpus_dir"
  if ! is_done data/.prep.done; then
    [ -d "$corpus_dir" ] || die "--corpus-dir $corpus_dir: no such folder (set LIBRISPEECH in db.sh)"
    python -m speechkit.bin.prepare_librispeech --corpus-dir "$corpus_dir" --out data --parts $parts --nj $nj
    touch data/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "Libri-light limited-resource sets ($ll_sets)"
  if [ -z "$librilight_dir" ]; then
    log "  --librilight-dir is empty: no Libri-light sets (fine-tuning on 10min/1h/10h needs them)"
  elif ! is_done data/.librilight.done; then
    python -m speechkit.bin.prepare_librilight --sets $ll_sets --num-jobs $nj "$librilight_dir" data
    touch data/.librilight.done
  fi
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "MFCC features of $train and $valid"
  for s in $train $valid; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir data/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" \
      --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "k-means on MFCC, K=$mfcc_k, on a $kmeans_portion portion of $train"
  if ! is_done exp/kmeans_$km1/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/mfcc/$train/feats.scp --n-clusters $mfcc_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_$km1 --num-threads $train_threads $kmeans_opts
    touch exp/kmeans_$km1/.done
  fi
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "MFCC k-means labels km.$km1"
  for s in $train $valid; do
    is_done data/$s/.km.$km1.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km1/model.pt --feats-dir dump/mfcc/$s \
      --data-dir data/$s --tag $km1
    touch data/$s/.km.$km1.done
  done
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "pre-train HuBERT iteration 1 on km.$km1 ($pretrain1_config, $ngpu GPUs)"
  if ! is_done exp/hubert_iter1/.done; then
    nthreads $train_threads ${train_cmd} exp/hubert_iter1/log/pretrain.log $(launch) speechkit.bin.pretrain --config $pretrain1_config \
      --train-data data/$train --valid-data data/$valid --label-tag $km1 --exp-dir exp/hubert_iter1 \
      --resume auto $pretrain_uf $device_opt $pretrain_opts
    touch exp/hubert_iter1/.done
  fi
  took 6
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "layer-$layer features of iteration 1 for $train and $valid"
  for s in $train $valid; do
    is_done dump/hubert1_l$layer/$s/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint exp/hubert_iter1/checkpoint_last.pt \
      --layer $layer --data-dir data/$s --out dump/hubert1_l$layer/$s --nj $nj --cmd "$cpu_cmd" $device_opt \
      --num-threads $threads_per_job
    touch dump/hubert1_l$layer/$s/.done
  done
  took 7
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  begin 8 "k-means on iteration-1 layer-$layer features, K=$iter2_k"
  if ! is_done exp/kmeans_$km2/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/hubert1_l$layer/$train/feats.scp --n-clusters $iter2_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_$km2 --num-threads $train_threads $kmeans_opts
    touch exp/kmeans_$km2/.done
  fi
  took 8
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  begin 9 "iteration-1 labels km.$km2"
  for s in $train $valid; do
    is_done data/$s/.km.$km2.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km2/model.pt --feats-dir dump/hubert1_l$layer/$s \
      --data-dir data/$s --tag $km2
    touch data/$s/.km.$km2.done
  done
  took 9
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "pre-train HuBERT iteration 2 on km.$km2 ($pretrain2_config, $ngpu GPUs)"
  if ! is_done exp/hubert_iter2/.done; then
    nthreads $train_threads ${train_cmd} exp/hubert_iter2/log/pretrain.log $(launch) speechkit.bin.pretrain --config $pretrain2_config \
      --train-data data/$train --valid-data data/$valid --label-tag $km2 --exp-dir exp/hubert_iter2 \
      --resume auto $pretrain_uf $device_opt $pretrain_opts
    touch exp/hubert_iter2/.done
  fi
  took 10
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "character tokenizer from data/$train/text"
  if ! is_done data/token_char/.done; then
    python -m speechkit.bin.train_tokenizer --text data/$train/text --out data/token_char --type char
    touch data/token_char/.done
  fi
  if $word_lm && ! is_done data/lang_word/.done; then
    if [ -n "$lm_dir" ]; then  # the official LM; its lexicon's words, spelled in our characters
      for f in 4-gram.arpa librispeech-lexicon.txt; do [ -f $lm_dir/$f ] || die "$lm_dir/$f not found (openslr.org/11)"; done
      python -m speechkit.bin.train_word_lm --text data/$train/text --tokenizer data/token_char --out data/lang_word \
        --words-from $lm_dir/librispeech-lexicon.txt --skip-lm
      ln -sfn "$(cd $lm_dir && pwd)/4-gram.arpa" data/lang_word/lm.arpa
    else
      python -m speechkit.bin.train_word_lm --text data/$train/text --tokenizer data/token_char --order $lm_order \
        --out data/lang_word --dev-text data/$lm_tune_set/text
      ln -sfn lm$lm_order.arpa data/lang_word/lm.arpa
    fi
    touch data/lang_word/.done
  fi
  took 11
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  begin 12 "CTC fine-tuning of $init on: $finetune"
  [ -f "$init" ] || die "$init: no such checkpoint (run stage 10, or pass --finetune-init)"
  for ft in $finetune; do
    ft_train=$(ft_train_of $ft); dir=exp/ctc_${ft}_${init_tag}
    cfg=${finetune_config:-conf/finetune_${finetune_model}_${ft}.yaml}
    [ -f data/$ft_train/wav.scp ] || die "data/$ft_train is missing (Libri-light sets: stage 2 with --librilight-dir)"
    [ -f $cfg ] || die "$cfg: no such config (write one from conf/finetune_${finetune_model}_10h.yaml, or --finetune-config)"
    is_done $dir/.done && continue
    log "  $ft: data/$ft_train, $cfg -> $dir"
    nthreads $train_threads ${train_cmd} $dir/log/finetune.log $(launch) speechkit.bin.train_downstream --task ctc --config $cfg \
      --init $init --tokenizer data/token_char --train-data data/$ft_train --valid-data data/$finetune_valid \
      --exp-dir $dir --resume auto $finetune_uf $device_opt $finetune_opts
    touch $dir/.done
  done
  took 12
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  begin 13 "decode ($decode_tag) $test_sets"
  # one job per (model, set) not decoded yet, run as one job array through $decode_cmd
  mkdir -p exp; todo=exp/decode_${decode_tag}.todo; : > $todo
  for ft in $finetune; do
    for s in $test_sets; do
      out=exp/ctc_${ft}_${init_tag}/decode_${s}_${decode_tag}
      is_done $out/.done || echo "exp/ctc_${ft}_${init_tag} $s" >> $todo
    done
  done
  if [ -s $todo ]; then
    ${decode_cmd} JOB=1:$(wc -l < $todo) exp/log/decode_${decode_tag}.JOB.log \
      "set -- \$(sed -n JOBp $todo); python -m speechkit.bin.decode_ctc --model \$1/$decode_checkpoint \
       --data-dir data/\$2 --out \$1/decode_\${2}_$decode_tag --no-score $device_opt $decode_opts \
       && touch \$1/decode_\${2}_$decode_tag/.done"
  fi
  if $word_lm; then  # word-level: the grid on $lm_tune_set first, its best pair for the other sets
    lm_opts="--lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm.arpa --beam $lm_beam $device_opt"
    for ft in $finetune; do
      dir=exp/ctc_${ft}_${init_tag}; tuned=$dir/decode_${lm_tune_set}_$lm_tag
      for s in $lm_tune_set $test_sets; do
        out=$dir/decode_${s}_$lm_tag
        is_done $out/.done && continue
        if [ $s = $lm_tune_set ]; then w="--lm-weight $lm_weights --word-score $word_scores"; else w="--tuned-from $tuned"; fi
        ${decode_cmd} $dir/log/decode_${s}_$lm_tag.log python -m speechkit.bin.decode_ctc --model $dir/$decode_checkpoint \
          --data-dir data/$s --out $out --dataset ${s}_$lm_tag $lm_opts $w
        touch $out/.done
      done
    done
  fi
  took 13
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  begin 14 "score (WER)"
  for ft in $finetune; do
    dir=exp/ctc_${ft}_${init_tag}
    for s in $test_sets; do
      out=$dir/decode_${s}_${decode_tag}
      python -m speechkit.bin.score --ref data/$s/text --hyp $out/hyp --out $out --dataset $s \
        --utt2spk data/$s/utt2spk --info "labeled=$(ft_train_of $ft)" --info "init=$init_tag" \
        --info "decode=$decode_tag"
    done
  done
  took 14
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  begin 15 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md \
    --title "LibriSpeech: HuBERT pre-training, CTC fine-tuning"
  log "  wrote $(pwd)/RESULTS.md"
  took 15
fi
log "Finished stages $stage..$stop_stage"
