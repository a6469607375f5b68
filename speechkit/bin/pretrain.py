"""Self-supervised pre-training (HuBERT masked prediction of k-means units).

Usage:
    python -m speechkit.bin.pretrain --config conf/pretrain_hubert_iter1.yaml \\
        --train-data data/train --valid-data data/dev --label-tag mfcc100 \\
        --exp-dir exp/hubert_iter1 [--resume auto] [--set trainer.max_updates=100]

    # several GPUs / nodes: the same command under torchrun
    torchrun --nproc_per_node 4 -m speechkit.bin.pretrain --config ... --resume auto

Labels are read from ``<data>/km.<label-tag>`` at ``data.label_rate`` Hz. The config's ``model``
section (``{arch: hubert, preset: tiny, ...overrides}``) builds the model; ``num_classes`` defaults
to 1 + the largest label and ``label_rate`` to ``data.label_rate``. Writes into the exp dir:
config.yaml (resolved), train.log, tensorboard/, checkpoint_{last,best,<updates>}.pt.
``--resume auto`` continues from checkpoint_last.pt when there is one (exactly where it stopped).

AV-HuBERT (``model.arch: avhubert``): the data dirs need ``video.scp`` (mouth ROIs) beside ``wav.scp``;
batches come from speechkit.train.av_pretrain (AVDataset + AVCollater), ``data.max_tokens`` counts 25 Hz
frames, the model section's ``av_data`` holds the crop size and length limits, and ``data.label_rate`` is
100 for MFCC k-means of the audio (iteration 1) or 25 for units of a previous AV model::

    python -m speechkit.bin.pretrain --config conf/pretrain_avhubert_iter1.yaml --train-data data/lrs3/pretrain \
        --valid-data data/lrs3/valid --label-tag mfcc100 --exp-dir exp/avhubert_iter1
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys

logger = logging.getLogger("speechkit.bin.pretrain")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML training config (conf/*.yaml)")
    p.add_argument("--train-data", required=True, help="training data dir (wav.scp, km.<tag>, ...)")
    p.add_argument("--valid-data", default=None, help="held-out data dir for validation loss/accuracy")
    p.add_argument("--label-tag", default=None, help="labels file km.<tag> in each data dir (e.g. mfcc100)")
    p.add_argument("--exp-dir", required=True, help="output dir for checkpoints, logs, config.yaml")
    p.add_argument("--resume", default=None,
                   help="'auto' (continue from exp-dir/checkpoint_last.pt if present) or a checkpoint path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. --set trainer.max_updates=100")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--verbose", action="store_true")
    return p


def _num_classes(ds) -> int:
    """1 + the largest label of the first stream (audio and AV datasets keep the same tables)."""
    return 1 + max(max(int(x) for x in ds.label_text[0][u].split()) for u in ds.utt_ids)


def resolve_model_section(model: dict, data_cfg, train_set, valid_set, config_path: str) -> dict:
    """Fill ``num_classes`` / ``label_rate`` from the data when the config leaves them out."""
    from speechkit.train.config import ConfigError

    model = dict(model)
    if "arch" not in model:
        raise ConfigError(f"{config_path}: model.arch is missing (e.g. arch: hubert)")
    if train_set.label_files:
        rate = model.setdefault("label_rate", data_cfg.label_rate)
        if float(rate) != float(data_cfg.label_rate):
            raise ConfigError(f"{config_path}: model.label_rate {rate} differs from data.label_rate "
                              f"{data_cfg.label_rate}")
        needed = max(_num_classes(s) for s in (train_set, valid_set) if s is not None)
        if "num_classes" not in model:
            model["num_classes"] = needed
            logger.info("model.num_classes not set: using %d (1 + the largest label in %s)", needed,
                        train_set.label_files[0])
        elif model["num_classes"] < needed:
            raise ConfigError(f"{config_path}: model.num_classes={model['num_classes']} but the labels go up to "
                              f"{needed - 1} ({train_set.label_files[0]})")
    return model


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging
    from speechkit.train.distributed import cleanup, init_distributed

    info = init_distributed(args.device)
    setup_logging(args.verbose)
    if not info.is_main:  # one copy of the log is enough
        logging.getLogger().setLevel(logging.WARNING)

    from speechkit.models import build_model
    from speechkit.train.config import TrainConfig
    from speechkit.train.dataset import AudioLabelDataset
    from speechkit.train.trainer import Trainer, set_seed

    cfg = TrainConfig.from_yaml(args.config, overrides=args.overrides)
    dc = cfg.data
    tags = [args.label_tag] if args.label_tag else []
    rates = [dc.label_rate] * len(tags)
    collaters = None
    if cfg.model.get("arch") == "avhubert":  # lips + audio: the AV batch contract at 25 Hz
        from speechkit.train.av_pretrain import build_av_pretrain_data, split_av_data

        cfg.model, av = split_av_data(cfg.model, args.config)
        train_set, valid_set, *collaters = build_av_pretrain_data(cfg, av, args.train_data, args.valid_data, tags)
    else:
        kw = dict(sample_rate=dc.sample_rate, min_sample_size=dc.min_sample_size, max_sample_size=dc.max_sample_size)
        train_set = AudioLabelDataset(args.train_data, tags, rates, **kw)
        valid_set = AudioLabelDataset(args.valid_data, tags, rates, **kw) if args.valid_data else None

    cfg.model = resolve_model_section(cfg.model, dc, train_set, valid_set, args.config)
    set_seed(cfg.trainer.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    model = build_model(cfg.model)
    model_config = model.model_config() if hasattr(model, "model_config") else dict(cfg.model)
    cfg.model = model_config  # config.yaml is resolved: the preset expanded, every field as built
    if info.is_main:
        logger.info("command: %s", shlex.join([sys.executable, "-m", "speechkit.bin.pretrain", *sys.argv[1:]]))
    trainer = Trainer(model, cfg, args.exp_dir, train_set, valid_set, dist_info=info, model_config=model_config)
    if collaters:  # the Trainer builds audio collaters; AV batches come from the AV ones
        trainer.collater, trainer.valid_collater = collaters
        cfg.model["av_data"] = dataclasses.asdict(av)  # config.yaml records the data options too
    trainer.maybe_resume(args.resume)
    trainer.train()
    cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
