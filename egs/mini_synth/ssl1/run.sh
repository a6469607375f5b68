#!/usr/bin/env bash
# Mini recipe: HuBERT-style self-supervised pre-training on speechkit's synthetic corpus.
#
# It runs anywhere (2 CPU cores, no downloads) and exercises every stage a real recipe has:
#   1  make the synthetic corpus (LibriSpeech layout) and prepare Kaldi data dirs
#   2  dump MFCC (39-dim, 100 Hz) for every set
#   3  learn k-means on MFCC (K=$mfcc_k)
#   4  write MFCC k-means labels (km.mfcc${mfcc_k}) for every set
#   5  label quality (phone purity, cluster purity, PNMI) of the MFCC units
#   6  pre-train iteration 1: HuBERT (or WavLM) on the MFCC units; wav2vec 2.0 / data2vec need no units
#   7  dump layer-$layer features of the iteration-1 model
#   8  learn k-means on them (K=$iter2_k)
#   9  write the iteration-1 labels (km.<ssl>1_l<layer>_<K>) for every set
#  10  label quality of the iteration-1 units, next to the MFCC ones
#  11  pre-train iteration 2 on the iteration-1 units (stages 7-11 apply to the unit-based --ssl hubert|wavlm)
#  12  character tokenizer and the labeled subset for fine-tuning ($ft_utts utterances)
#  13  CTC fine-tuning of the last pre-trained model, and the from-scratch baseline (same data and updates)
#  14  decode and score dev/test with both models (greedy CTC; WER and CER)
#  15  speaker identification with the frozen pre-trained model (weighted sum of layers)
#  16  speaker verification: embeddings, cosine scoring of a trial list, EER/minDCF
#  17  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--ssl hubert|wavlm|wav2vec2|data2vec] [--size tiny|default] ...
set -euo pipefail

stage=1
stop_stage=100
size=default            # synthetic corpus size: tiny (tests) or default (~1 h, 40 speakers)
seed=0
nj=2                    # parallel jobs for dumping and labelling
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
cores=""                # cores this recipe may use; "": nproc
mfcc_k=100              # clusters on MFCC (iteration 1 targets)
kmeans_portion=1.0      # portion of train utterances used to learn k-means
layer=4                 # layer of the iteration-1 model that is clustered for iteration 2
iter2_k=100             # clusters on layer features (same K as MFCC, so PNMI compares fairly)
ssl=hubert              # pre-training objective: hubert | wavlm (iterated on units) | wav2vec2 | data2vec
pretrain1_config=""     # default: conf/pretrain_<ssl>_iter1.yaml (hubert) or conf/pretrain_<ssl>_tiny.yaml
pretrain2_config=""     # default: conf/pretrain_hubert_iter2.yaml (hubert) or the iteration-1 config (wavlm)
pretrain_opts=""        # extra options for speechkit.bin.pretrain (e.g. "--set trainer.max_updates=20")
ft_utts=200             # labeled utterances for CTC fine-tuning (a random subset of train)
finetune_config=conf/finetune_ctc_tiny.yaml
finetune_opts=""        # extra options for the fine-tuning runs (both pre-trained and baseline)
scratch_lr=5.0e-3       # the from-scratch baseline's peak lr (its best; see $finetune_config)
sid_config=conf/sid_tiny.yaml
sid_opts=""
num_target_trials=200   # speaker-verification trial list: target pairs (x5 non-target)
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for jobs; $train_threads for steps run alone

case $ssl in
  hubert) : "${pretrain1_config:=conf/pretrain_hubert_iter1.yaml}"; : "${pretrain2_config:=conf/pretrain_hubert_iter2.yaml}"; iterated=true ;;
  wavlm) : "${pretrain1_config:=conf/pretrain_wavlm_tiny.yaml}"; : "${pretrain2_config:=$pretrain1_config}"; iterated=true ;;
  wav2vec2|data2vec) : "${pretrain1_config:=conf/pretrain_${ssl}_tiny.yaml}"; iterated=false ;;
  *) echo "$0: unknown --ssl $ssl (expected hubert, wavlm, wav2vec2 or data2vec)" >&2; exit 1 ;;
esac
# The model that downstream stages use: the last pre-training iteration of this objective.
if $iterated; then upstream=exp/${ssl}_iter2; else upstream=exp/${ssl}_iter1; fi

. utils/stage_log.sh

corpus=corpus
train=train_clean_100; dev=dev_clean; test=test_clean
sets="$train $dev $test"
km1=mfcc${mfcc_k}
km2=${ssl}1_l${layer}_${iter2_k}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "synthetic corpus (size=$size) and data dirs"
  if ! is_done data/.prep.done; then
    python -m speechkit.bin.make_synth_corpus --out $corpus --size $size --seed $seed --nj $nj
    python -m speechkit.bin.prepare_librispeech --corpus-dir $corpus --out data
    touch data/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "MFCC features"
  for s in $sets; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir data/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" \
      --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "k-means on MFCC, K=$mfcc_k"
  if ! is_done exp/kmeans_$km1/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/mfcc/$train/feats.scp --n-clusters $mfcc_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_$km1 --num-threads $train_threads
    touch exp/kmeans_$km1/.done
  fi
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "MFCC k-means labels (km.$km1)"
  for s in $sets; do
    is_done data/$s/.km.$km1.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km1/model.pt --feats-dir dump/mfcc/$s \
      --data-dir data/$s --tag $km1
    touch data/$s/.km.$km1.done
  done
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "label quality of km.$km1"
  for s in $train $dev; do
    python -m speechkit.bin.label_quality --labels data/$s/km.$km1 --label-rate 100 \
      --alignments $corpus/alignments/$(echo $s | tr _ -).phones \
      --out exp/kmeans_$km1/quality_$s --result-json exp/kmeans_$km1/result_units_$s.json --units "MFCC, K=$mfcc_k"
  done
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "pre-train $ssl iteration 1 ($pretrain1_config)"
  if ! is_done exp/${ssl}_iter1/.done; then
    labels=""; $iterated && labels="--label-tag $km1"
    nthreads $train_threads python -m speechkit.bin.pretrain --config $pretrain1_config --train-data data/$train \
      --valid-data data/$dev $labels --exp-dir exp/${ssl}_iter1 --resume auto $pretrain_opts
    touch exp/${ssl}_iter1/.done
  fi
  took 6
fi

if ! $iterated && [ $stage -le 11 ] && [ $stop_stage -ge 7 ]; then
  log "Stages 7-11: skipped: --ssl $ssl learns without units, so it has no second iteration"
fi

if $iterated && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "layer-$layer features of iteration 1"
  for s in $sets; do
    is_done dump/${ssl}1_l$layer/$s/.done && continue
    python -m speechkit.bin.dump_layer_features --checkpoint exp/${ssl}_iter1/checkpoint_last.pt \
      --layer $layer --data-dir data/$s --out dump/${ssl}1_l$layer/$s --nj $nj --cmd "$cpu_cmd" \
      --num-threads $threads_per_job
    touch dump/${ssl}1_l$layer/$s/.done
  done
  took 7
fi

if $iterated && [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  begin 8 "k-means on iteration-1 layer-$layer features, K=$iter2_k"
  if ! is_done exp/kmeans_$km2/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/${ssl}1_l$layer/$train/feats.scp --n-clusters $iter2_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_$km2 --num-threads $train_threads
    touch exp/kmeans_$km2/.done
  fi
  took 8
fi

if $iterated && [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  begin 9 "iteration-1 labels (km.$km2)"
  for s in $sets; do
    is_done data/$s/.km.$km2.done && continue
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_$km2/model.pt --feats-dir dump/${ssl}1_l$layer/$s \
      --data-dir data/$s --tag $km2
    touch data/$s/.km.$km2.done
  done
  took 9
fi

if $iterated && [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "label quality: km.$km1 vs km.$km2"
  for s in $train $dev; do
    python -m speechkit.bin.label_quality --labels data/$s/km.$km2 --label-rate 50 \
      --alignments $corpus/alignments/$(echo $s | tr _ -).phones --out exp/kmeans_$km2/quality_$s \
      --result-json exp/kmeans_$km2/result_units_$s.json --units "$ssl iteration 1, layer $layer, K=$iter2_k"
  done
  took 10
fi

if $iterated && [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "pre-train $ssl iteration 2 on km.$km2 ($pretrain2_config)"
  if ! is_done exp/${ssl}_iter2/.done; then
    nthreads $train_threads python -m speechkit.bin.pretrain --config $pretrain2_config --train-data data/$train \
      --valid-data data/$dev --label-tag $km2 --exp-dir exp/${ssl}_iter2 --resume auto \
      --set data.label_rate=50 $pretrain_opts
    touch exp/${ssl}_iter2/.done
  fi
  took 11
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  begin 12 "tokenizer and a labeled subset of $ft_utts utterances"
  if ! is_done data/.ft.done; then
    python -m speechkit.bin.train_tokenizer --text data/$train/text --out data/token_char --type char
    rm -rf data/train_ft; python -m speechkit.bin.data_dir subset data/$train data/train_ft --random $ft_utts --seed $seed
    touch data/.ft.done
  fi
  took 12
fi

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  begin 13 "CTC fine-tuning: $upstream, and the from-scratch baseline"
  for x in ft_$(basename $upstream) ft_scratch; do
    is_done exp/$x/.done && continue
    opt=""; [ $x = ft_scratch ] && opt="--from-scratch --set optim.lr=$scratch_lr"
    nthreads $train_threads python -m speechkit.bin.finetune_ctc --config $finetune_config --init $upstream/checkpoint_last.pt $opt \
      --tokenizer data/token_char --train-data data/train_ft --valid-data data/$dev --exp-dir exp/$x --resume auto $finetune_opts
    touch exp/$x/.done
  done
  took 13
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  begin 14 "decode and score $dev $test"
  for x in ft_$(basename $upstream) ft_scratch; do
    pids=""  # dev and test side by side: small models use one core each better than two
    for s in $dev $test; do
      OMP_NUM_THREADS=1 python -m speechkit.bin.decode_ctc --model exp/$x/checkpoint_best.pt --data-dir data/$s \
        --out exp/$x/decode_$s --cer &
      pids="$pids $!"
    done
    for p in $pids; do wait $p; done  # a failed decode stops the recipe (set -e)
  done
  took 14
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  begin 15 "speaker identification on the frozen $upstream"
  if ! is_done exp/sid_$(basename $upstream)/.done; then
    nthreads $train_threads python -m speechkit.bin.train_downstream --task sid --config $sid_config --init $upstream/checkpoint_last.pt \
      --train-data data/$train --valid-data data/$dev --exp-dir exp/sid_$(basename $upstream) --resume auto $sid_opts
    touch exp/sid_$(basename $upstream)/.done
  fi
  nthreads $train_threads python -m speechkit.bin.eval_sid --model exp/sid_$(basename $upstream)/checkpoint_best.pt --data-dir data/$test \
    --out exp/sid_$(basename $upstream)/eval_$test
  took 15
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  begin 16 "speaker verification on $test (cosine scoring, EER, minDCF)"
  [ -f data/$test/trials ] || python -m speechkit.bin.make_trials --data-dir data/$test --out data/$test/trials \
    --num-target $num_target_trials --num-nontarget $((num_target_trials * 5)) --seed $seed
  nthreads $train_threads python -m speechkit.bin.extract_embeddings --model exp/sid_$(basename $upstream)/checkpoint_best.pt --data-dir data/$test \
    --out exp/sid_$(basename $upstream)/embed_$test
  python -m speechkit.bin.compute_eer --trials data/$test/trials \
    --embeddings exp/sid_$(basename $upstream)/embed_$test/embeddings.scp --out exp/sid_$(basename $upstream)/sv_$test
  took 16
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  begin 17 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --print
  took 17
fi
log "Finished stages $stage..$stop_stage in $SECONDS s"
