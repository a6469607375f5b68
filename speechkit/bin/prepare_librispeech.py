"""Turn a LibriSpeech corpus (official layout, or the synthetic one) into Kaldi data dirs.

Usage:
    python -m speechkit.bin.prepare_librispeech --corpus-dir DIR --out data [--parts dev-clean ...] [--nj 4]

DIR is the folder holding LibriSpeech/ (or LibriSpeech/ itself). Writes data/<part with - as _>/
{wav.scp,text,utt2spk,spk2utt,utt2num_samples} with speaker = <reader>-<chapter>, plus data/train_960
and data/dev when their parts are all there. Without --parts every part present is prepared and
absent official parts are listed; parts named with --parts must exist.
"""
from __future__ import annotations

import argparse

from speechkit.bin import one_line_errors
from speechkit.corpora.librispeech import prepare_librispeech
from speechkit.log import setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", required=True, help="folder holding LibriSpeech/, or LibriSpeech/ itself")
    parser.add_argument("--out", required=True, help="output folder for the data dirs (e.g. data)")
    parser.add_argument("--parts", nargs="+", default=None,
                        help="parts to prepare, e.g. train-clean-100 dev-clean (default: every part present)")
    parser.add_argument("--nj", type=int, default=1, help="parallel threads reading audio headers (default: 1)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    with one_line_errors("prepare_librispeech", args.verbose):
        prepare_librispeech(args.corpus_dir, args.out, parts=args.parts, num_jobs=args.nj)


if __name__ == "__main__":
    main()
