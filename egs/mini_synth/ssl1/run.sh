#!/usr/bin/env bash
# Mini recipe: HuBERT-style self-supervised pre-training on speechkit's synthetic corpus.
#
# It runs anywhere (2 CPU cores, no downloads) and exercises every stage a real recipe has:
#   1  make the synthetic corpus (LibriSpeech layout) and prepare Kaldi data dirs
#   2  dump MFCC (39-dim, 100 Hz) of train and dev, the sets pre-training uses (test is only decoded)
#   3  learn k-means on MFCC (K=$mfcc_k)
#   4  write MFCC k-means labels (km.mfcc${mfcc_k}) for train and dev
#   5  label quality (phone purity, cluster purity, PNMI) of the MFCC units, where phone alignments
#      exist ($alignments_dir); otherwise cluster usage and entropy
#   6  pre-train iteration 1: HuBERT (or WavLM) on the MFCC units; wav2vec 2.0 / data2vec need no units
#   7  dump layer-$layer features of the iteration-1 model
#   8  learn k-means on them (K=$iter2_k)
#   9  write the iteration-1 labels (km.<ssl>1_l<layer>_<K>) for train and dev
#  10  label quality of the iteration-1 units, next to the MFCC ones
#  11  pre-train iteration 2 on the iteration-1 units (stages 7-11 apply to the unit-based --ssl hubert|wavlm)
#  12  character tokenizer, the labeled subsets for fine-tuning ($ft_utts utterances, "all" = the whole train
#      set; a list = a sweep), and
#      the word LM of decoding: a $lm_order-gram ARPA LM from the train transcripts and its lexicon (data/lang_word)
#  13  CTC fine-tuning of the last pre-trained model, and the from-scratch baseline (same data and updates)
#  14  decode and score dev/test with both models: greedy CTC, and word-level with the lexicon and LM
#      (LM weight / word score tuned on dev, applied to test); WER and CER
#  15  speaker identification: the frozen pre-trained model (weighted sum of layers) and an fbank baseline,
#      heads trained on cached hidden-state moments with early stopping on dev
#  16  open-set speaker verification: a head trained on all but $sv_heldout speakers, trials among those
#      held out (as VoxCeleb1-O); cosine scoring, EER/minDCF; SSL and fbank embeddings
#  17  RESULTS.md (with plots)
# When stage 13 runs with later stages, their work joins its pool: each fine-tuned model is decoded (14) as
# soon as it is trained, and stages 15-16 run on the core the shorter fine-tuning frees.
# Training (6, 11, 13, 15, 16) goes through $train_cmd and decoding (14) through $decode_cmd, set in cmd.sh
# (local processes or Slurm); their logs are exp/<dir>/log/*.log (decoding: exp/<model>/log/decode.log).
# Stages that make something leave a .done marker and are skipped on a re-run; the reporting stages
# (5, 10 label quality, 15-16 speaker evaluation, 17 RESULTS.md) are cheap and always run again.
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
# k-means algorithm for the MFCC units (learn_kmeans --algorithm). minibatch is fairseq's (scikit-learn's
# MiniBatchKMeans settings); lloyd, speechkit's default, reaches a lower inertia and better MFCC units, but
# as targets of the 400-update iteration 1 here they gave the weaker model (one run each, default corpus,
# dev PNMI; the layer-4 units are clustered with lloyd in both):
#   minibatch: MFCC units 0.492 -> iteration-1 units 0.521;  lloyd: MFCC units 0.507 -> iteration-1 units 0.495
mfcc_kmeans_algorithm=minibatch
kmeans_portion=1.0      # portion of train utterances used to learn k-means
alignments_dir=corpus/alignments  # phone alignments <part>.phones for PNMI (stages 5, 10); absent: skipped
layer=4                 # layer of the iteration-1 model that is clustered for iteration 2
iter2_k=100             # clusters on layer features (same K as MFCC, so PNMI compares fairly)
ssl=hubert              # pre-training objective: hubert | wavlm (iterated on units) | wav2vec2 | data2vec
pretrain1_config=""     # default: conf/pretrain_<ssl>_iter1.yaml (hubert) or conf/pretrain_<ssl>_tiny.yaml
pretrain2_config=""     # default: conf/pretrain_hubert_iter2.yaml (hubert) or the iteration-1 config (wavlm)
pretrain_opts=""        # extra options for speechkit.bin.pretrain (e.g. "--set trainer.max_updates=20")
ft_utts="all"           # labeled utterances for CTC fine-tuning: N (a random subset of train) or all; a list
                        # runs a low-resource sweep, e.g. "50 200 all" (RESULTS.md: WER vs labeled data)
finetune_config=conf/finetune_ctc_tiny.yaml
finetune_opts=""        # extra options for the fine-tuning runs (both pre-trained and baseline)
scratch_lr=2.0e-3       # the from-scratch baseline's peak lr: its best of 1.3e-3 / 2e-3 / 3e-3 / 5e-3 (dev token
                        # error 0.327 / 0.274 / 0.291 / 1.0, blanks only; default corpus, all labels, 1200 updates)
lm_order=3              # word n-gram LM written from the train transcripts (stage 12)
lm_weights="0.5 1 2"    # grid of LM weights (x log10 P_lm) tried on dev; the best pair decodes test
word_scores="-1 0 1"    # grid of word insertion scores
lm_beam=50              # beam of the lexicon decoder
sid_config=conf/sid_tiny.yaml
sid_opts=""
sv_heldout=10           # speakers held out of the verification head's training (open-set trials)
sv_embed_dim=128        # embedding layer of the verification head (cosine-scored)
num_target_trials=200   # speaker-verification trial list: target pairs (x5 non-target)
help_message=$(sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//p}' "$0")  # --help: the stages above

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
unit_sets="$train $dev"  # the sets that get features and units: pre-training's train and valid
km1=mfcc${mfcc_k}
km2=${ssl}1_l${layer}_${iter2_k}
# Label quality against phone alignments (PNMI) where the corpus has them; otherwise cluster usage/entropy.
alignment_opt() {
  local ali=$alignments_dir/$(echo $1 | tr _ -).phones
  if [ -f $ali ]; then echo "--alignments $ali"; else log "  no $ali: PNMI skipped for $1, cluster usage only" >&2; fi
}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "synthetic corpus (size=$size) and data dirs"
  if ! is_done data/.prep.done; then
    # --- data prep: on another corpus, replace these lines (README: "Adapting a recipe to your corpus") ---
    python -m speechkit.bin.make_synth_corpus --out $corpus --size $size --seed $seed --nj $nj
    python -m speechkit.bin.prepare_librispeech --corpus-dir $corpus --out data --parts $(echo $sets | tr _ -)
    # --- end of data prep ---
    for s in $sets; do  # a missing part fails here, not in a later stage's job log
      [ -s data/$s/wav.scp ] || die "data prep made no data/$s/wav.scp: the recipe needs the sets $sets"
    done
    touch data/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "MFCC features"
  for s in $unit_sets; do
    is_done dump/mfcc/$s/.done && continue
    python -m speechkit.bin.dump_features --data-dir data/$s --feat mfcc --out dump/mfcc/$s --nj $nj --cmd "$cpu_cmd" \
      --num-threads $threads_per_job
    touch dump/mfcc/$s/.done
  done
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "k-means on MFCC, K=$mfcc_k ($mfcc_kmeans_algorithm)"
  if ! is_done exp/kmeans_$km1/.done; then
    python -m speechkit.bin.learn_kmeans --feats dump/mfcc/$train/feats.scp --n-clusters $mfcc_k \
      --portion $kmeans_portion --seed $seed --out exp/kmeans_$km1 --num-threads $train_threads \
      --algorithm $mfcc_kmeans_algorithm
    touch exp/kmeans_$km1/.done
  fi
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "MFCC k-means labels (km.$km1)"
  for s in $unit_sets; do
    is_done data/$s/.km.$km1.done && continue
    side_by_side $nj data/$s/.km.$km1.done nthreads $threads_per_job python -m speechkit.bin.assign_kmeans \
      --model exp/kmeans_$km1/model.pt --feats-dir dump/mfcc/$s --data-dir data/$s --tag $km1
  done
  wait_side_by_side
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "label quality of km.$km1"
  for s in $train $dev; do
    side_by_side $nj - python -m speechkit.bin.label_quality --labels data/$s/km.$km1 --label-rate 100 \
      $(alignment_opt $s) --num-clusters $mfcc_k --out exp/kmeans_$km1/quality_$s \
      --result-json exp/kmeans_$km1/result_units_$s.json --units "MFCC, K=$mfcc_k"
  done
  wait_side_by_side
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "pre-train $ssl iteration 1 ($pretrain1_config)"
  if ! is_done exp/${ssl}_iter1/.done; then
    labels=""; $iterated && labels="--label-tag $km1"
    nthreads $train_threads ${train_cmd} exp/${ssl}_iter1/log/pretrain.log python -m speechkit.bin.pretrain --config $pretrain1_config \
      --train-data data/$train --valid-data data/$dev $labels --exp-dir exp/${ssl}_iter1 --resume auto $pretrain_opts
    touch exp/${ssl}_iter1/.done
  fi
  took 6
fi

if ! $iterated && [ $stage -le 11 ] && [ $stop_stage -ge 7 ]; then
  log "Stages 7-11: skipped: --ssl $ssl learns without units, so it has no second iteration"
fi

if $iterated && [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "layer-$layer features of iteration 1"
  for s in $unit_sets; do
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
  for s in $unit_sets; do
    is_done data/$s/.km.$km2.done && continue
    side_by_side $nj data/$s/.km.$km2.done nthreads $threads_per_job python -m speechkit.bin.assign_kmeans \
      --model exp/kmeans_$km2/model.pt --feats-dir dump/${ssl}1_l$layer/$s --data-dir data/$s --tag $km2
  done
  wait_side_by_side
  took 9
fi

if $iterated && [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  begin 10 "label quality: km.$km1 vs km.$km2"
  for s in $train $dev; do
    side_by_side $nj - python -m speechkit.bin.label_quality --labels data/$s/km.$km2 --label-rate 50 \
      $(alignment_opt $s) --num-clusters $iter2_k --out exp/kmeans_$km2/quality_$s \
      --result-json exp/kmeans_$km2/result_units_$s.json --units "$ssl iteration 1, layer $layer, K=$iter2_k"
  done
  wait_side_by_side
  took 10
fi

if $iterated && [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  begin 11 "pre-train $ssl iteration 2 on km.$km2 ($pretrain2_config)"
  if ! is_done exp/${ssl}_iter2/.done; then
    nthreads $train_threads ${train_cmd} exp/${ssl}_iter2/log/pretrain.log python -m speechkit.bin.pretrain --config $pretrain2_config \
      --train-data data/$train --valid-data data/$dev --label-tag $km2 --exp-dir exp/${ssl}_iter2 --resume auto \
      --set data.label_rate=50 $pretrain_opts
    touch exp/${ssl}_iter2/.done
  fi
  took 11
fi

if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  begin 12 "tokenizer and labeled subsets of $ft_utts utterances"
  if ! is_done data/token_char/.done; then
    python -m speechkit.bin.train_tokenizer --text data/$train/text --out data/token_char --type char
    touch data/token_char/.done
  fi
  for n in $ft_utts; do  # nested: every smaller subset lies inside the larger ones (same seed, same order)
    is_done data/.train_ft$n.done && continue  # one marker per size: a later --ft-utts adds only its new ones
    rm -rf data/train_ft$n
    if [ $n = all ]; then
      ln -s $train data/train_ft$n
    else
      python -m speechkit.bin.data_dir subset data/$train data/train_ft$n --random $n --seed $seed
    fi
    touch data/.train_ft$n.done
  done
  if ! is_done data/lang_word/.done; then
    python -m speechkit.bin.train_word_lm --text data/$train/text --tokenizer data/token_char --order $lm_order \
      --out data/lang_word --dev-text data/$dev/text
    touch data/lang_word/.done
  fi
  took 12
fi

# Stages 13-16 as functions: stage 13 runs the fine-tunings side by side, and when later stages are asked
# for too, their work joins the same pool (each fine-tuning decodes its model when it ends; the speaker
# stages need only the pre-trained model and take the core the shorter fine-tuning frees), so no core waits
# for the from-scratch run, which trains the convolutions too and takes ~1.6x as long. Run alone, each
# stage does its own part; finished parts leave .done markers and are skipped.
lm="--lexicon data/lang_word/lexicon.txt --lm data/lang_word/lm$lm_order.arpa --beam $lm_beam --cer"
decode_model() {  # stage 14 for one model: dev with the LM weight / word score grid, then test with dev's best
  # pair; one forward pass per set gives both the greedy (decode_<set>) and the LM (decode_<set>_lm<N>) output
  local x=$1
  is_done exp/$x/.decode.done && return 0
  ${decode_cmd} exp/$x/log/decode.log "export OMP_NUM_THREADS=$threads_per_job; \
    python -m speechkit.bin.decode_ctc --model exp/$x/checkpoint_best.pt --data-dir data/$dev \
      --out exp/$x/decode_${dev}_lm$lm_order --greedy-out exp/$x/decode_$dev $lm --lm-weight $lm_weights \
      --word-score $word_scores && \
    python -m speechkit.bin.decode_ctc --model exp/$x/checkpoint_best.pt --data-dir data/$test \
      --out exp/$x/decode_${test}_lm$lm_order --greedy-out exp/$x/decode_$test $lm \
      --tuned-from exp/$x/decode_${dev}_lm$lm_order"
  touch exp/$x/.decode.done
}
finetune_model() {  # stage 13 for one model (ft_<upstream>_n<N> or ft_scratch_n<N>), then stage 14's decoding of it
  local x=$1 n=${1##*_n} opt=""
  [ $x != ft_scratch_n$n ] || opt="--from-scratch --set optim.lr=$scratch_lr"
  if ! is_done exp/$x/.done; then
    nthreads $threads_per_job ${train_cmd} exp/$x/log/finetune.log \
      python -m speechkit.bin.finetune_ctc --config $finetune_config --init $upstream/checkpoint_last.pt $opt \
      --tokenizer data/token_char --train-data data/train_ft$n --valid-data data/$dev --exp-dir exp/$x \
      --resume auto $finetune_opts
    touch exp/$x/.done
  fi
  [ $stop_stage -lt 14 ] || decode_model $x
}
ft_models=""  # fine-tuned models: the pre-trained one and the from-scratch baseline for every labeled subset
for n in $ft_utts; do ft_models="$ft_models ft_$(basename $upstream)_n$n ft_scratch_n$n"; done

sid_up=sid_$(basename $upstream)
sid_stage() {  # stage 15: speaker-ID heads (SSL, fbank) on cached moments, $1 at a time, then their evaluation
  local nj=$1 up x
  for up in $upstream/checkpoint_last.pt fbank; do
    x=$sid_up; [ $up != fbank ] || x=sid_fbank
    is_done exp/$x/.done && continue
    side_by_side $nj exp/$x/.done nthreads $threads_per_job ${train_cmd} exp/$x/log/train.log \
      python -m speechkit.bin.train_sid_cached --upstream $up --config $sid_config \
      --train-data data/$train --valid-data data/$dev --exp-dir exp/$x --cache-dir exp/$x/cache $sid_opts
  done
  wait_side_by_side
  for x in $sid_up sid_fbank; do
    side_by_side $nj - nthreads $threads_per_job python -m speechkit.bin.eval_sid --model exp/$x/checkpoint_best.pt \
      --data-dir data/$test --out exp/$x/eval_$test
  done
  wait_side_by_side
}
eval_sv() {  # embeddings of the held-out speakers' utterances by the head exp/$1, EER and minDCF of the trials
  nthreads $threads_per_job python -m speechkit.bin.extract_embeddings --model exp/$1/checkpoint_best.pt \
    --data-dir data/sv_eval --out exp/$1/embed_sv_eval
  python -m speechkit.bin.compute_eer --trials data/sv_eval/trials --embeddings exp/$1/embed_sv_eval/embeddings.scp \
    --out exp/$1/sv_eval
}
sv_stage() {  # stage 16: verification heads on the seen speakers ($1 at a time), trials among the held-out ones
  local nj=$1 up x y s
  if ! is_done data/.sv.done; then
    # the last $sv_heldout readers are never seen by the verification head; its training uses the others
    cut -d' ' -f1 data/$train/utt2spk | cut -d- -f1 | sort -u | tail -n $sv_heldout > data/sv_heldout_readers
    for s in $train $dev $test; do
      awk 'NR==FNR {h[$1]; next} {split($1, a, "-"); print $1 > ((a[1] in h) ? "'data/$s.sv_heldout'" : "'data/$s.sv_seen'")}' \
        data/sv_heldout_readers data/$s/utt2spk
    done
    rm -rf data/sv_train data/sv_dev data/sv_eval data/sv_eval_all
    python -m speechkit.bin.data_dir subset data/$train data/sv_train --utt-list data/$train.sv_seen
    python -m speechkit.bin.data_dir subset data/$dev data/sv_dev --utt-list data/$dev.sv_seen
    python -m speechkit.bin.data_dir combine data/sv_eval_all data/$dev data/$test
    cat data/$dev.sv_heldout data/$test.sv_heldout > data/sv_eval.list
    python -m speechkit.bin.data_dir subset data/sv_eval_all data/sv_eval --utt-list data/sv_eval.list
    python -m speechkit.bin.make_trials --data-dir data/sv_eval --out data/sv_eval/trials --exclude-speakers-of data/sv_train \
      --num-target $num_target_trials --num-nontarget $((num_target_trials * 5)) --seed $seed
    touch data/.sv.done
  fi
  # sv_train and sv_dev are subsets of $train and $dev: their moments come from stage 15's cache (--reuse-cache)
  for up in $upstream/checkpoint_last.pt fbank; do
    x=sv_$(basename $upstream); y=$sid_up; [ $up != fbank ] || { x=sv_fbank; y=sid_fbank; }
    is_done exp/$x/.done && continue
    side_by_side $nj exp/$x/.done nthreads $threads_per_job ${train_cmd} exp/$x/log/train.log \
      python -m speechkit.bin.train_sid_cached --upstream $up --config $sid_config --train-data data/sv_train \
      --valid-data data/sv_dev --exp-dir exp/$x --reuse-cache exp/$y/cache --set model.embed_dim=$sv_embed_dim $sid_opts
  done
  wait_side_by_side
  for x in sv_$(basename $upstream) sv_fbank; do
    side_by_side $nj - eval_sv $x
  done
  wait_side_by_side
}
speaker_pooled=false  # stage 13 ran stages 15 (and 16) in its pool
speaker_stages() {  # stages 15 (and 16) one after the other inside one job of stage 13's pool: a pool of one
  _sbs_pids=(); _sbs_marks=(); _sbs_failed=""  # this subshell's own pool
  sid_stage 1
  [ $stop_stage -lt 16 ] || sv_stage 1
}

if [ $stage -le 13 ] && [ $stop_stage -ge 13 ]; then
  also=""; [ $stop_stage -lt 14 ] || also="; decoding each when it ends"
  [ $stop_stage -lt 15 ] || also="$also; the speaker stages$( [ $stop_stage -lt 16 ] && echo " (15)" || echo " (15, 16)") beside them"
  begin 13 "CTC fine-tuning of $upstream and the from-scratch baseline ($ft_utts labeled utterances)$also"
  # $nj runs side by side with $threads_per_job threads each (one small model per core trains faster than
  # two threads on one model)
  for x in $ft_models; do
    side_by_side $nj - finetune_model $x
  done
  if [ $stop_stage -ge 15 ]; then side_by_side $nj - speaker_stages; speaker_pooled=true; fi
  wait_side_by_side
  took 13
fi

if [ $stage -le 14 ] && [ $stop_stage -ge 14 ]; then
  begin 14 "decode and score $dev $test: greedy, and with the $lm_order-gram word LM"
  # one job per model not decoded yet (stage 13 decodes each model when it ends, if this stage was asked
  # for), $nj side by side through $decode_cmd (cmd.sh)
  for x in $ft_models; do
    side_by_side $nj - decode_model $x
  done
  wait_side_by_side
  took 14
fi

if [ $stage -le 15 ] && [ $stop_stage -ge 15 ]; then
  begin 15 "speaker identification: frozen $upstream vs the fbank baseline (heads on cached moments)"
  if $speaker_pooled; then log "  ran in stage 13's pool (exp/$sid_up, exp/sid_fbank)"; else sid_stage $nj; fi
  took 15
fi

if [ $stage -le 16 ] && [ $stop_stage -ge 16 ]; then
  begin 16 "open-set speaker verification: $sv_heldout held-out speakers (cosine scoring, EER, minDCF)"
  if $speaker_pooled; then log "  ran in stage 13's pool (exp/sv_$(basename $upstream), exp/sv_fbank)"; else sv_stage $nj; fi
  took 16
fi

if [ $stage -le 17 ] && [ $stop_stage -ge 17 ]; then
  begin 17 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --plots --print
  took 17
fi
log "Finished stages $stage..$stop_stage in $SECONDS s"
