"""Fine-tune a pre-trained encoder with an attention decoder (+ optional CTC head): VSR, ASR or AVSR.

Usage:
    # lip reading (VSR) from an AV-HuBERT checkpoint, tokens from the LRS3 sentencepiece model
    python -m speechkit.bin.finetune_av --config conf/finetune_vsr_base_30h.yaml \\
        --init exp/avhubert_iter5/checkpoint_best.pt --tokenizer data/token_spm1000 \\
        --train-data data/trainval_30h --valid-data data/valid --exp-dir exp/vsr_base_30h
    # AVSR with noise augmentation (MUSAN-style folders and babble from the training speech)
    python -m speechkit.bin.finetune_av --config conf/finetune_avsr_base.yaml ... \\
        --noise-dir /corpora/musan/noise --babble data/train
    # the from-scratch baseline: the architecture of --init, random weights
    python -m speechkit.bin.finetune_av ... --from-scratch --exp-dir exp/vsr_scratch

--init is any speechkit checkpoint holding an AV encoder (AV-HuBERT: an ``avhubert`` module) or an audio
SSLEncoder (HuBERT, wav2vec 2.0, ...: audio-only ASR with the same decoder). The model section of the
config is described in speechkit.downstream.seq2seq_task (decoder preset, modalities, label smoothing,
CTC weight, encoder freezing, av_data). Writes into --exp-dir what the trainer writes (config.yaml,
train.log, tensorboard/, checkpoint_{best,last,N}.pt) plus tokenizer/ and downstream_info.json. Decode
with speechkit.bin.decode_seq2seq. ``--resume auto`` continues an interrupted run.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

logger = logging.getLogger("speechkit.bin.finetune_av")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML training config (model section: see above)")
    p.add_argument("--train-data", required=True, help="training data dir (wav.scp, text; video.scp for AV)")
    p.add_argument("--valid-data", default=None, help="held-out data dir (validation loss and accuracy)")
    p.add_argument("--exp-dir", required=True, help="output dir")
    p.add_argument("--init", required=True, help="pre-trained checkpoint holding the encoder")
    p.add_argument("--tokenizer", required=True, help="tokenizer folder (speechkit.bin.train_tokenizer)")
    p.add_argument("--from-scratch", action="store_true", help="take only the architecture from --init")
    p.add_argument("--noise-dir", action="append", default=[], help="folder of noise audio (repeatable)")
    p.add_argument("--babble", default=None, metavar="DATA_DIR", help="make babble noise from this data dir's speech")
    p.add_argument("--resume", default=None, help="'auto' or a checkpoint path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. --set trainer.max_updates=100")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging
    from speechkit.train.distributed import cleanup, init_distributed

    info = init_distributed(args.device)
    setup_logging(args.verbose)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)

    from speechkit.downstream.seq2seq_task import build_seq2seq_task, train_seq2seq
    from speechkit.downstream.tasks import load_upstream
    from speechkit.text.tokenizer import load_tokenizer
    from speechkit.train.config import TrainConfig
    from speechkit.train.trainer import set_seed

    cfg = TrainConfig.from_yaml(args.config, overrides=args.overrides)
    set_seed(cfg.trainer.seed)  # the same random decoder on every rank and every run
    tok = load_tokenizer(args.tokenizer)
    setup = build_seq2seq_task(cfg, args.train_data, args.valid_data, init=load_upstream(args.init), tokenizer=tok,
                               from_scratch=args.from_scratch, noise_dirs=args.noise_dir, babble_dir=args.babble,
                               source=args.config)
    if setup.info["init"] is None:
        setup.info["init"] = str(args.init)
    if info.is_main:
        logger.info("command: %s", shlex.join([sys.executable, *sys.argv]))
        logger.info("seq2seq (%s encoder, %s): %d labeled utterances, %d trainable parameters, init %s",
                    setup.info["encoder"], setup.info["modalities"], setup.info["labeled utts"],
                    setup.info["trainable params"], setup.info["init"])
    train_seq2seq(setup, cfg, args.exp_dir, resume=args.resume, dist_info=info, tokenizer_dir=args.tokenizer)
    cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
