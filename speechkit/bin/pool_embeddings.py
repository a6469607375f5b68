"""Utterance embeddings by pooling frame features over time (mean, or mean and standard deviation).

Usage:
    python -m speechkit.bin.pool_embeddings --feats dump/av5_l9_audio/test/feats.scp \\
        --out exp/sv_av5_l9_audio/embed_test [--stats mean|meanstd]

Turns the frames of a layer-feature dump (speechkit.bin.dump_layer_features; e.g. an AV-HuBERT layer from
audio only or from audio + video) into one vector per utterance: the training-free speaker embedding of
a frozen pre-trained encoder, scored with speechkit.bin.compute_eer (cosine). Writes ``embeddings.ark``,
``embeddings.scp`` and ``info.json`` (written last, through a temp name: its presence means done).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys

import numpy as np

logger = logging.getLogger("speechkit.bin.pool_embeddings")


def pool(frames: np.ndarray, stats: str, utt: str = "?") -> np.ndarray:
    """(T, D) -> (D,) mean, or (2D,) mean and standard deviation."""
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"utterance {utt}: expected (frames, dim) features with at least one frame, got {x.shape}")
    mean = x.mean(axis=0)
    if stats == "mean":
        return mean.astype(np.float32)
    return np.concatenate([mean, x.std(axis=0)]).astype(np.float32)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feats", required=True, type=pathlib.Path, help="feats.scp of frame features")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output dir")
    p.add_argument("--stats", choices=["mean", "meanstd"], default="mean")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.io.ark import ArkWriter, read_scp
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    feats = read_scp(args.feats)
    if len(feats) == 0:
        raise SystemExit(f"{args.feats}: no utterances")
    args.out.mkdir(parents=True, exist_ok=True)
    dim = 0
    with ArkWriter(args.out / "embeddings.ark", args.out / "embeddings.scp") as w:
        for utt in feats:
            e = pool(feats[utt], args.stats, utt)
            dim = len(e)
            w.write(utt, e)
    tmp = args.out / "info.json.tmp"
    tmp.write_text(json.dumps({"feats": str(args.feats), "stats": args.stats, "dim": dim,
                               "utterances": len(feats)}, indent=2) + "\n")
    os.replace(tmp, args.out / "info.json")
    logger.info("%d embeddings of dim %d -> %s", len(feats), dim, args.out / "embeddings.scp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
