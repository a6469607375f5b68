"""Assign k-means labels to every frame of every utterance of a data dir.

Usage:
    python -m speechkit.bin.assign_kmeans --model exp/kmeans_mfcc100/model.pt \\
        --feats-dir dump/mfcc/train --data-dir data/train --tag mfcc100 [--ark-dir DIR]

Writes data/<set>/km.<tag> (``<utt> 12 12 57 ...``, one label per feature frame, in
data-dir order) and <ark-dir>/km.<tag>.{ark,scp} int32 vectors (default ark-dir:
the features folder). Every utterance of the data dir needs features, and each label
count must equal utt2num_frames of the features; otherwise the error names the
utterance.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from speechkit.cluster.kmeans import MiniBatchKMeans
from speechkit.cluster.labels import assign_labels, write_labels
from speechkit.io.datadir import DataDir
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="k-means model.pt (or its folder) from speechkit.bin.learn_kmeans")
    feats = p.add_mutually_exclusive_group(required=True)
    feats.add_argument("--feats-dir", help="folder with feats.scp and utt2num_frames")
    feats.add_argument("--feats", help="the feats.scp itself (utt2num_frames beside it)")
    p.add_argument("--data-dir", required=True, help="data dir receiving km.<tag>")
    p.add_argument("--tag", required=True, help="label tag, e.g. mfcc100 -> km.mfcc100")
    p.add_argument("--ark-dir", default=None, help="where km.<tag>.{ark,scp} go (default: --feats-dir)")
    p.add_argument("--device", default="auto")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    model = pathlib.Path(args.model)
    km = MiniBatchKMeans.load(model / "model.pt" if model.is_dir() else model, device=args.device)
    data = DataDir.load(args.data_dir)
    feats_dir = pathlib.Path(args.feats_dir) if args.feats_dir else pathlib.Path(args.feats).parent
    scp = pathlib.Path(args.feats) if args.feats else feats_dir / "feats.scp"
    labels = assign_labels(km, scp, utt_order=data.utt_ids)
    name = f"km.{args.tag}"
    text, scp = write_labels(labels, pathlib.Path(args.data_dir) / name, args.ark_dir or feats_dir, name)
    print(f"wrote {text} and {scp} ({len(labels)} utterances, {sum(len(v) for v in labels.values())} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
