"""Prepare the Libri-light limited-resource fine-tuning sets as Kaldi data dirs.

Usage::

    python -m speechkit.bin.prepare_librilight /data/librispeech_finetuning data
    python -m speechkit.bin.prepare_librilight --sets train_10h /data data

Reads the official ``librispeech_finetuning/`` layout (``1h/{0..5}/{clean,other}/<spk>/
<chapter>/*.flac + <spk>-<chapter>.trans.txt`` and ``9h/{clean,other}/...``) and writes
``<out_dir>/train_10min`` (1h/0), ``<out_dir>/train_1h`` (all of 1h) and
``<out_dir>/train_10h`` (1h + 9h), each with wav.scp, text, utt2spk, spk2utt
(speaker = reader-chapter, as the LibriSpeech preparation).
"""
from __future__ import annotations

import argparse
import sys

from speechkit.bin import one_line_errors
from speechkit.corpora.librilight import FINETUNING_SETS, prepare_librilight_finetuning
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m speechkit.bin.prepare_librilight",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", help="librispeech_finetuning folder (or its parent)")
    p.add_argument("out_dir", help="where the train_10min/train_1h/train_10h dirs are written")
    p.add_argument("--sets", nargs="+", default=list(FINETUNING_SETS),
                   choices=list(FINETUNING_SETS))
    p.add_argument("--num-jobs", type=int, default=1, help="threads reading chapter folders")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    with one_line_errors("prepare_librilight", args.verbose):
        dirs = prepare_librilight_finetuning(args.corpus_dir, args.out_dir, sets=args.sets,
                                             num_jobs=args.num_jobs)
    for name, path in dirs.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
