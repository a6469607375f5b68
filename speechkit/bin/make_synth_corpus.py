"""Generate the embedded synthetic speech corpus (espeak-ng voices, LibriSpeech layout).

Usage:
    python -m speechkit.bin.make_synth_corpus --out DIR [--size default|tiny] [--seed 0] [--nj 2]

Writes DIR/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/*.flac + trans.txt,
DIR/LibriSpeech/SPEAKERS.TXT and DIR/alignments/<part>.phones (one phone per 10 ms frame). Sizes:
``default`` ~1 h from 40 speakers, ``tiny`` ~2.5 min from 6 speakers (for tests). The output is
byte-identical for a given (size, seed, speechkit version); a re-run with the same parameters
skips the work. Then prepare data dirs with ``python -m speechkit.bin.prepare_librispeech``.
"""
from __future__ import annotations

import argparse

from speechkit.corpora.synth import SIZES, generate_corpus
from speechkit.log import setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (LibriSpeech/ and alignments/ go inside)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES), help="corpus size (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--nj", type=int, default=1, help="parallel synthesis processes (default: 1)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    generate_corpus(args.out, size=args.size, seed=args.seed, num_jobs=args.nj)


if __name__ == "__main__":
    main()
