"""Prepare LRS3 data dirs (pretrain, trainval, valid, train_30h, train_433h, test) and the unit model.

Usage:
    python -m speechkit.bin.prepare_lrs3 /data/lrs3 data --audio-dir dump/audio/lrs3 \
        [--valid-ids lrs3-valid.id | --num-valid 1200 --seed 0] [--nj 4]
    python -m speechkit.bin.prepare_lrs3 --unit-model data/lang_unigram1000 --vocab-size 1000 \
        --text data/train_433h/text

The first form reads the official layout ({pretrain,trainval,test}/<speaker>/<clip>.mp4 + .txt),
extracts 16 kHz wav, splits pretrain clips longer than --max-duration (15 s) at word gaps longer
than --min-gap (0.4 s), and writes the sets (see speechkit.corpora.lrs3). Skipped inputs are
logged, counted and listed in <out_dir>/lrs3_skipped.txt. The second form trains the sentencepiece
unit model (unigram; a smaller vocabulary is used, with a warning, when the text is too small).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from speechkit.bin import one_line_errors
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", type=pathlib.Path, nargs="?", help="the LRS3 folder (with pretrain/ trainval/ test/)")
    p.add_argument("out_dir", type=pathlib.Path, nargs="?", help="where the data dirs go (e.g. data)")
    p.add_argument("--audio-dir", type=pathlib.Path, default=None, help="extracted wavs (default <out_dir>/audio)")
    p.add_argument("--valid-ids", type=pathlib.Path, default=None, help="av_hubert lrs3-valid.id style list")
    p.add_argument("--num-valid", type=int, default=1200, help="seeded valid size without --valid-ids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-duration", type=float, default=15.0)
    p.add_argument("--min-gap", type=float, default=0.4)
    p.add_argument("--nj", type=int, default=1, help="parallel audio extraction processes")
    p.add_argument("--unit-model", type=pathlib.Path, default=None, help="train the unit model into this folder")
    p.add_argument("--text", type=pathlib.Path, nargs="*", default=[], help="Kaldi text files for --unit-model")
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from speechkit.corpora.lrs3 import prepare_lrs3, train_unit_model

    if args.unit_model is not None:
        if not args.text:
            parser.error("--unit-model needs --text FILE [FILE ...]")
        with one_line_errors("prepare_lrs3", args.verbose):
            out = train_unit_model(args.text, args.unit_model, args.vocab_size, args.model_type)
        print(f"unit model: {out}")
        return 0
    if args.corpus_dir is None or args.out_dir is None:
        parser.error("give corpus_dir and out_dir (or --unit-model)")
    with one_line_errors("prepare_lrs3", args.verbose):
        rep = prepare_lrs3(args.corpus_dir, args.out_dir, audio_dir=args.audio_dir, valid_ids=args.valid_ids,
                           num_valid=args.num_valid, seed=args.seed, max_duration=args.max_duration,
                           min_gap=args.min_gap, num_jobs=args.nj)
    print("LRS3: " + ", ".join(f"{k} {v}" for k, v in rep.num_utts.items())
          + f"; {rep.num_split_clips} pretrain clips split; skipped: {rep.skipped.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
