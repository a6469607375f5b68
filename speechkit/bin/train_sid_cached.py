"""Speaker ID on a frozen upstream, trained on cached hidden-state moments (seconds, many epochs).

Usage:
    python -m speechkit.bin.train_sid_cached --upstream exp/hubert_iter2/checkpoint_last.pt \\
        --config conf/sid_tiny.yaml --train-data data/train_clean_100 --valid-data data/dev_clean \\
        --exp-dir exp/sid_hubert_iter2
    # the spectral baseline (SUPERB's FBANK row): the same head on Kaldi fbank (or mfcc)
    python -m speechkit.bin.train_sid_cached --upstream fbank --config conf/sid_tiny.yaml ... \\
        --exp-dir exp/sid_fbank

The upstream runs once over each data dir; the per-utterance moments of its L+1 hidden states go
to --cache-dir (default <exp-dir>/cache, reused while the checkpoint and wav.scp are unchanged; with
--reuse-cache, a data dir whose utterances all lie in another head's cache file takes them from it), and
the head (the softmax layer weights, BatchNorm, optional embedding layer, linear classifier: the
model section of --config, as ``train_downstream --task sid``) trains on them with AdamW at the
config's optim.lr, whole utterances, early stopping on the --valid-data accuracy. See
speechkit.downstream.head_cache for why this is exact.

Writes to --exp-dir: checkpoint_best.pt (an ordinary speaker-ID checkpoint: evaluate it with
speechkit.bin.eval_sid, embed with speechkit.bin.extract_embeddings), downstream_info.json,
layer_weights.json, history.json (loss and accuracy per epoch).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys

logger = logging.getLogger("speechkit.bin.train_sid_cached")


def get_parser() -> argparse.ArgumentParser:
    from speechkit.downstream.head_cache import HeadTrainConfig

    d = HeadTrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True,
                   help="upstream checkpoint (pre-trained, imported or fine-tuned), or 'fbank' / 'mfcc'")
    p.add_argument("--config", required=True, type=pathlib.Path, help="YAML with the sid model section (conf/sid_*.yaml)")
    p.add_argument("--train-data", required=True, type=pathlib.Path)
    p.add_argument("--valid-data", default=None, type=pathlib.Path, help="dev data dir for early stopping")
    p.add_argument("--exp-dir", required=True, type=pathlib.Path)
    p.add_argument("--cache-dir", default=None, type=pathlib.Path, help="default: <exp-dir>/cache")
    p.add_argument("--reuse-cache", nargs="+", default=[], type=pathlib.Path, metavar="DIR",
                   help="cache dirs of other heads on the same upstream: a data dir whose utterances (same audio) "
                        "all lie in one of their files takes its moments from there (e.g. a subset of their data)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patience", type=int, default=d.patience, help="epochs without dev improvement before stopping")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set model.embed_dim=128")
    p.add_argument("--device", default=None)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    import torch

    from speechkit.downstream.baseline_upstream import KINDS, SpectralUpstream
    from speechkit.downstream.data import speaker_of
    from speechkit.downstream.head_cache import HeadTrainConfig, cached_moments, train_head
    from speechkit.downstream.speaker import SpeakerIDModel
    from speechkit.downstream.tasks import INFO_FILE, LAYER_WEIGHTS_FILE, load_upstream
    from speechkit.train import checkpoint as ckpt
    from speechkit.train.config import TrainConfig

    cfg = TrainConfig.from_yaml(args.config, overrides=args.overrides)
    sec = dict(cfg.model)
    if sec.pop("arch", "sid") != "sid":
        raise SystemExit(f"{args.config}: model.arch must be sid")
    key = sec.pop("speaker_key", "prefix")
    if not sec.pop("freeze_upstream", True):
        raise SystemExit(f"{args.config}: model.freeze_upstream is false; cached training needs a frozen upstream "
                         "(use speechkit.bin.train_downstream --task sid)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    upstream = SpectralUpstream(args.upstream) if args.upstream in KINDS else load_upstream(args.upstream)
    spk_train = speaker_of(args.train_data, key)
    speakers = sorted(set(spk_train.values()))
    torch.manual_seed(cfg.trainer.seed)  # the same random head on every run
    model = SpeakerIDModel.from_upstream(upstream, speakers, freeze_upstream=True, **sec)
    cache = args.cache_dir or args.exp_dir / "cache"
    up_path = args.upstream if args.upstream in KINDS else str(args.upstream)
    ln = model.featurizer.layer_norm
    kw = {"layer_norm": ln, "device": device, "reuse": args.reuse_cache}
    train = cached_moments(model.upstream.model, up_path, args.train_data, cache, **kw)
    dev = spk_dev = None
    if args.valid_data is not None:
        dev = cached_moments(model.upstream.model, up_path, args.valid_data, cache, **kw)
        spk_dev = speaker_of(args.valid_data, key)
    model.to("cpu")
    hcfg = HeadTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=cfg.optim.lr,
                           weight_decay=cfg.optim.weight_decay, patience=args.patience, seed=cfg.trainer.seed)
    summary = train_head(model, train, spk_train, dev, spk_dev, hcfg)
    history = summary.pop("history")
    exp = args.exp_dir
    exp.mkdir(parents=True, exist_ok=True)
    ckpt.save_atomic({"model": model.state_dict(), "model_config": model.model_config(),
                      "speechkit_version": ckpt.version()}, exp / "checkpoint_best.pt")
    info = {"task": "sid", "init": str(args.upstream), "speakers": len(speakers), "speaker_key": key,
            "labeled utts": len(train.utt_ids), "training": "cached moments",
            **summary, "layer_weights": model.featurizer.layer_weights()}
    model.featurizer.save_weights(exp / LAYER_WEIGHTS_FILE, {"task": "sid", "best_epoch": summary["best_epoch"]})
    for name, data in ((INFO_FILE, info), ("history.json", history)):
        tmp = exp / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, exp / name)
    logger.info("wrote %s (layer weights %s)", exp / "checkpoint_best.pt", model.featurizer.format_weights())
    return 0


if __name__ == "__main__":
    sys.exit(main())
