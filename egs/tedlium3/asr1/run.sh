#!/usr/bin/env bash
# TED-LIUM release 3 recipe: CTC fine-tuning of a self-supervised encoder (the LibriSpeech recipe's
# HuBERT iteration 2, or a checkpoint imported from HF transformers / fairseq), decoding of dev and
# test, scoring. See README.md for what it expects on disk and what to expect.
#   1  data dirs train/dev/test of the $split split from the official layout (sph + stm): segments from
#      STM lines, text normalised, skips counted and reported (missing/truncated audio, ignored gaps)
#   2  character tokenizer from data/train/text
#   3  import --import-model (an HF folder or a fairseq .pt) as a speechkit checkpoint (only when set)
#   4  CTC fine-tuning on data/train (valid: data/dev) from the SSL checkpoint
#   5  greedy CTC decoding of $test_sets
#   6  score (WER) every decode dir
#   7  RESULTS.md
# Usage: ./run.sh [--stage N] [--stop-stage M] [--corpus-dir DIR] [--finetune-init CKPT | --import-model SRC] ...
#        ./run.sh --config conf/tiny.sh ...   (tiny counts; what the recipe test runs)
set -euo pipefail

. ./db.sh
stage=1
stop_stage=100
corpus_dir=$TEDLIUM3    # TEDLIUM_release-3 (or its parent)
split=legacy            # legacy (the standard train/dev/test) or speaker-adaptation
prep_opts=""            # extra options for prepare_tedlium3, e.g. "--strict" (bad audio is an error) or "--sph2pipe"
nj=8
threads_per_job=""      # threads of each of the $nj jobs; "": cores / nj (utils/threads.sh)
cores=""                # cores this recipe may use; "": nproc
ngpu=1                  # GPUs for the training job (torchrun when > 1); 0 = train and decode on CPU
auto_update_freq=true   # keep 8 GPUs x max_tokens samples per update on $ngpu GPUs (README)
finetune_init=../../librispeech/ssl1/exp/hubert_iter2/checkpoint_last.pt  # SSL checkpoint to fine-tune
import_model=""         # HF model folder or fairseq checkpoint to import (stage 3) and fine-tune instead
import_opts=""          # extra options for convert_checkpoint (e.g. "--from fairseq")
finetune_config=conf/finetune_hubert_base_ted3.yaml
finetune_opts=""        # extra options for speechkit.bin.train_downstream
test_sets="dev test"
decode_checkpoint=checkpoint_best.pt
decode_opts=""          # extra options for speechkit.bin.decode_ctc (e.g. "--beam 20")
decode_tag=greedy
help_message="Usage: $0 [options]   (stages are listed at the top of this file)"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
train_procs=$(( ngpu > 1 ? ngpu : 1 ))  # processes of the training job (torchrun)
. utils/threads.sh      # OMP_NUM_THREADS=$threads_per_job for jobs; $train_threads per training process

. utils/stage_log.sh
launch() { if [ "$ngpu" -gt 1 ]; then echo "torchrun --standalone --nproc_per_node $ngpu -m"; else echo "python -m"; fi; }
update_freq_opt() {  # REF_GPUS -> keep REF_GPUS x max_tokens samples per update on $ngpu GPUs
  $auto_update_freq || return 0
  local g=$(( ngpu > 0 ? ngpu : 1 ))
  (( $1 % g == 0 )) || die "--ngpu $ngpu does not divide the reference $1 GPUs; set trainer.update_freq yourself"
  echo "--set trainer.update_freq=$(( $1 / g ))"
}
device_opt=""; [ "$ngpu" -eq 0 ] && device_opt="--device cpu"
finetune_uf=$(update_freq_opt 8)    # fine-tuning reference: 8 GPUs x 3.2M samples

if [ -n "$import_model" ]; then
  import_tag=import_$(basename "${import_model%/}"); import_tag=${import_tag%.pt}
  init=exp/$import_tag/checkpoint.pt
else
  init=$finetune_init
fi
init_tag=$(basename "$(dirname "$init")")
dir=exp/ctc_${init_tag}

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  begin 1 "TED-LIUM 3 data dirs ($split split) from $corpus_dir"
  if ! is_done data/.prep.done; then
    [ -d "$corpus_dir" ] || die "--corpus-dir $corpus_dir: no such folder (set TEDLIUM3 in db.sh)"
    python -m speechkit.bin.prepare_tedlium3 --split $split --sets train dev test --num-jobs $nj \
      $prep_opts "$corpus_dir" data
    touch data/.prep.done
  fi
  took 1
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  begin 2 "character tokenizer from data/train/text"
  if ! is_done data/token_char/.done; then
    python -m speechkit.bin.train_tokenizer --text data/train/text --out data/token_char --type char
    touch data/token_char/.done
  fi
  took 2
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  begin 3 "import ${import_model:-(nothing: --import-model not set)}"
  if [ -n "$import_model" ] && ! is_done exp/$import_tag/.done; then
    [ -e "$import_model" ] || die "--import-model $import_model: no such file or folder"
    mkdir -p exp/$import_tag
    python -m speechkit.bin.convert_checkpoint $import_opts "$import_model" $init
    touch exp/$import_tag/.done
  fi
  took 3
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  begin 4 "CTC fine-tuning of $init on data/train ($finetune_config, $ngpu GPUs)"
  if ! is_done $dir/.done; then
    [ -f "$init" ] || die "$init: no such checkpoint (run the LibriSpeech recipe, pass --finetune-init, or --import-model)"
    nthreads $train_threads ${train_cmd} $dir/log/finetune.log $(launch) speechkit.bin.train_downstream --task ctc \
      --config $finetune_config --init $init --tokenizer data/token_char --train-data data/train \
      --valid-data data/dev --exp-dir $dir --resume auto $finetune_uf $device_opt $finetune_opts
    touch $dir/.done
  fi
  took 4
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  begin 5 "decode ($decode_tag) $test_sets"
  # one job per set not decoded yet, run as one job array through $decode_cmd
  mkdir -p $dir; todo=$dir/decode_${decode_tag}.todo; : > $todo
  for s in $test_sets; do
    is_done $dir/decode_${s}_${decode_tag}/.done || echo $s >> $todo
  done
  if [ -s $todo ]; then
    ${decode_cmd} JOB=1:$(wc -l < $todo) $dir/log/decode_${decode_tag}.JOB.log \
      "s=\$(sed -n JOBp $todo); python -m speechkit.bin.decode_ctc --model $dir/$decode_checkpoint \
       --data-dir data/\$s --out $dir/decode_\${s}_$decode_tag --no-score $device_opt $decode_opts \
       && touch $dir/decode_\${s}_$decode_tag/.done"
  fi
  took 5
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  begin 6 "score (WER)"
  for s in $test_sets; do
    out=$dir/decode_${s}_${decode_tag}
    python -m speechkit.bin.score --ref data/$s/text --hyp $out/hyp --out $out --dataset $s \
      --utt2spk data/$s/utt2spk --info "init=$init_tag" --info "decode=$decode_tag"
  done
  took 6
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  begin 7 "RESULTS.md"
  python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md --title "TED-LIUM 3: CTC fine-tuning of SSL encoders"
  log "  wrote $(pwd)/RESULTS.md"
  took 7
fi
log "Finished stages $stage..$stop_stage"
