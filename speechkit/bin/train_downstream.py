"""Train a downstream model on the shared trainer: CTC fine-tuning, SUPERB-style CTC probing, speaker ID.

Usage:
    # CTC fine-tuning of a pre-trained encoder (fairseq semantics; see speechkit.downstream.ctc_model)
    python -m speechkit.bin.train_downstream --task ctc --config conf/finetune_ctc_tiny.yaml \\
        --init exp/hubert_iter2/checkpoint_best.pt --tokenizer data/token_char \\
        --train-data data/train_ft200 --valid-data data/dev_clean --exp-dir exp/ft_hubert_iter2
    # the from-scratch baseline: the same architecture (taken from --init), random weights
    python -m speechkit.bin.train_downstream --task ctc ... --init exp/hubert_iter2/checkpoint_best.pt \\
        --from-scratch --exp-dir exp/ft_scratch
    # frozen upstream + learned weighted sum of its L+1 hidden states + small head (CTC)
    python -m speechkit.bin.train_downstream --task probe_ctc --config conf/probe_ctc_tiny.yaml \\
        --init exp/hubert_iter2/checkpoint_best.pt --tokenizer data/token_char ...
    # speaker ID (frozen encoder by default): weighted sum, statistics pooling, linear classifier
    python -m speechkit.bin.train_downstream --task sid --config conf/sid_tiny.yaml \\
        --init exp/hubert_iter2/checkpoint_best.pt --train-data data/train_clean_100 \\
        --valid-data data/dev_clean --exp-dir exp/sid_hubert_iter2

--init takes any speechkit checkpoint holding an encoder: pre-training (HuBERT ...), imported, or a
fine-tuned CTC model. Writes into --exp-dir what the trainer writes (config.yaml, train.log,
tensorboard/, checkpoint_{best,last,N}.pt) plus downstream_info.json (task, init, labeled utterances,
updates), tokenizer/ (CTC tasks) and layer_weights.json (probe and sid), whose weights are also
printed at the end. Decode with speechkit.bin.decode_ctc, evaluate speaker ID with
speechkit.bin.eval_sid. ``--resume auto`` continues an interrupted run.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

logger = logging.getLogger("speechkit.bin.train_downstream")


def get_parser(task: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if task is None:
        p.add_argument("--task", required=True, choices=["ctc", "probe_ctc", "sid"])
    p.add_argument("--config", required=True, help="YAML training config (conf/finetune_*.yaml, conf/sid_*.yaml)")
    p.add_argument("--train-data", required=True, help="training data dir (wav.scp, text / speakers)")
    p.add_argument("--valid-data", default=None, help="held-out data dir (validation loss, uer/acc)")
    p.add_argument("--exp-dir", required=True, help="output dir")
    p.add_argument("--init", "--upstream", dest="init", default=None,
                   help="checkpoint to start from (ctc) or to use as the upstream (probe_ctc, sid)")
    p.add_argument("--from-scratch", action="store_true",
                   help="ctc: take only the architecture from --init, initialise the weights randomly (baseline)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (ctc, probe_ctc)")
    p.add_argument("--resume", default=None, help="'auto' or a checkpoint path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. --set trainer.max_updates=100")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None, task: str | None = None) -> int:
    args = get_parser(task).parse_args(argv)
    task = task or args.task
    from speechkit.log import setup_logging
    from speechkit.train.distributed import cleanup, init_distributed

    info = init_distributed(args.device)
    setup_logging(args.verbose)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)

    from speechkit.downstream.tasks import build_task, train_task
    from speechkit.train.config import TrainConfig
    from speechkit.train.trainer import set_seed

    if args.from_scratch and task != "ctc":
        raise SystemExit("--from-scratch applies to --task ctc only")
    cfg = TrainConfig.from_yaml(args.config, overrides=args.overrides)
    set_seed(cfg.trainer.seed)  # the same random head / scratch encoder on every rank and every run
    setup = build_task(task, cfg, args.train_data, args.valid_data, init=args.init, from_scratch=args.from_scratch,
                       tokenizer_dir=args.tokenizer, source=args.config)
    if info.is_main:
        logger.info("command: %s", shlex.join([sys.executable, *sys.argv]))
        logger.info("%s: %d labeled utterances, %d trainable parameters, init %s", task, setup.info["labeled utts"],
                    setup.info["trainable params"], setup.info.get("init"))
    result = train_task(setup, cfg, args.exp_dir, resume=args.resume, dist_info=info, tokenizer_dir=args.tokenizer)
    if info.is_main and "layer_weights" in result:
        w = result["layer_weights"]
        print("layer weights (softmax over hidden states 0.." + str(len(w) - 1) + "): "
              + " ".join(f"{v:.3f}" for v in w))
    cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
