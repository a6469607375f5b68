"""Generate the synthetic audio-visual corpus (a drawn talking face + espeak-ng speech).

Usage:
    python -m speechkit.bin.make_synth_av_corpus downloads/synth_av [--layout lrs3 voxceleb2] \
        [--size tiny|default] [--seed 0] [--image-size 160] [--grammar open|grid] [--nj 2]

Writes <out_dir>/lrs3 ({pretrain,trainval,test}/<speaker>/<clip>.mp4 + .txt, with at least one
pretrain clip longer than 15 s) and/or <out_dir>/voxceleb2 ({dev,test}/mp4/<spk>/<yt>/<n>.mp4 and
the audio-only {dev,test}/aac/.../<n>.m4a), so prepare_lrs3 / prepare_voxceleb2 run on them.
--grammar grid speaks GRID's six-word commands ("bin blue at f two now", 51 words) instead of the
open 499-word grammar. A finished corpus with the same parameters is not regenerated (stamp file
.synth_av.json).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=pathlib.Path)
    p.add_argument("--layout", nargs="+", choices=("lrs3", "voxceleb2"), default=["lrs3", "voxceleb2"])
    p.add_argument("--size", choices=("tiny", "default"), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=160, help="frame side in pixels (even)")
    p.add_argument("--grammar", choices=("open", "grid"), default="open",
                   help="sentences: the open grammar (499 words) or GRID's commands (51 words)")
    p.add_argument("--nj", type=int, default=1, help="processes writing speakers side by side (same files for any nj)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    from speechkit.corpora.synth_av import make_synth_av_corpus

    for layout in args.layout:
        root = make_synth_av_corpus(args.out_dir, layout, args.size, args.seed, args.image_size, args.nj,
                                    args.grammar)
        print(f"{layout}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
