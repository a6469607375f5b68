"""Data-directory tools (validate, fix, split, subset, combine).

Usage:
    python -m speechkit.bin.data_dir validate data/train [data/dev ...]
    python -m speechkit.bin.data_dir fix data/train
    python -m speechkit.bin.data_dir split data/train 4 [--by-speaker] [--out-root DIR]
    python -m speechkit.bin.data_dir subset data/train data/train_1k --first 1000
    python -m speechkit.bin.data_dir subset data/train data/train_r500 --random 500 --seed 1
    python -m speechkit.bin.data_dir subset data/train data/train_sub --utt-list list.txt
    python -m speechkit.bin.data_dir combine data/train_all data/train_a data/train_b

The shell wrappers utils/{validate,fix,split,subset,combine}_data_dir.sh call this.
Exit status 1 with a message naming the file and line when a dir is invalid.
"""
from __future__ import annotations

import argparse
import logging
import sys

from speechkit.io.datadir import DataDir, DataDirError, validate_data_dir
from speechkit.io.datadir_ops import combine_data_dirs, fix_data_dir, split_data_dir, subset_data_dir
from speechkit.log import setup_logging

logger = logging.getLogger("speechkit.data_dir")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m speechkit.bin.data_dir", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a data dir; exit 1 naming file:line on the first problem")
    v.add_argument("dirs", nargs="+")

    f = sub.add_parser("fix", help="keep utterances present in every file, sort, rebuild spk2utt; report drops")
    f.add_argument("dir")

    s = sub.add_parser("split", help="split into N parts under <out-root>/splitN/{1..N}")
    s.add_argument("dir")
    s.add_argument("num_parts", type=int)
    s.add_argument("--by-speaker", action="store_true", help="never split a speaker across parts")
    s.add_argument("--out-root", default=None, help="where splitN/ goes (default: the dir itself)")

    b = sub.add_parser("subset", help="write a subset of a data dir")
    b.add_argument("dir")
    b.add_argument("out")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--first", type=int, help="the first N utterances (sorted order)")
    g.add_argument("--random", type=int, help="N utterances chosen at random (see --seed)")
    g.add_argument("--utt-list", help="file whose first column lists the utterances to keep")
    b.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("combine", help="concatenate data dirs (Kaldi order: destination first)")
    c.add_argument("out")
    c.add_argument("dirs", nargs="+")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        if args.command == "validate":
            for d in args.dirs:
                validate_data_dir(d)
                dd = DataDir.load(d)
                print(f"{d}: OK ({len(dd)} utterances, {len(dd.spk2utt or {})} speakers, "
                      f"{len(dd.wav_scp)} recordings)")
        elif args.command == "fix":
            print(fix_data_dir(args.dir))
        elif args.command == "split":
            for part in split_data_dir(args.dir, args.num_parts, args.out_root, by_speaker=args.by_speaker):
                print(part)
        elif args.command == "subset":
            out = subset_data_dir(args.dir, args.out, first=args.first, random=args.random,
                                  seed=args.seed, utt_list=args.utt_list)
            print(f"{out}: {len(DataDir.load(out))} utterances")
        elif args.command == "combine":
            out = combine_data_dirs(args.dirs, args.out)
            print(f"{out}: {len(DataDir.load(out))} utterances from {len(args.dirs)} dirs")
    except (DataDirError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
