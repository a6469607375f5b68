"""Prepare TED-LIUM release 3 as Kaldi data dirs (wav.scp per talk, segments from STM).

Usage::

    python -m speechkit.bin.prepare_tedlium3 /data/TEDLIUM_release-3 data
    python -m speechkit.bin.prepare_tedlium3 --split speaker-adaptation --sets dev test \\
        --sph2pipe --strict /data/TEDLIUM_release-3 data/sa

Writes ``<out_dir>/<set>/{wav.scp,segments,text,utt2spk,spk2utt}`` for each set and logs
what was kept and skipped (ignored gaps, zero-length, missing or truncated audio). The
rules are documented in ``speechkit.corpora.tedlium3``.
"""
from __future__ import annotations

import argparse
import sys

from speechkit.bin import one_line_errors
from speechkit.corpora.tedlium3 import MAX_OVERSHOOT_S, SETS, SPLITS, prepare_tedlium3
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m speechkit.bin.prepare_tedlium3",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", help="TEDLIUM_release-3 folder (or its parent)")
    p.add_argument("out_dir", help="where <set>/ data dirs are written")
    p.add_argument("--split", default="legacy", choices=SPLITS)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--num-jobs", type=int, default=1, help="threads reading STM/SPHERE headers")
    p.add_argument("--sph2pipe", nargs="?", const=True, default=False, metavar="PATH",
                   help="write 'sph2pipe -f wav -p <sph> |' pipes instead of plain paths "
                        "(optionally the sph2pipe binary's path)")
    p.add_argument("--noise", default="drop", choices=("drop", "map"),
                   help="{NOISE}-style markers: drop them, or map to [NOISE]")
    p.add_argument("--no-join-clitics", dest="join_clitics", action="store_false",
                   help="keep the corpus tokenisation \"it 's\" instead of \"it's\"")
    p.add_argument("--max-overshoot", type=float, default=MAX_OVERSHOOT_S,
                   help="segments ending at most this many seconds past the audio are clipped")
    p.add_argument("--strict", action="store_true",
                   help="missing/unreadable/truncated audio is an error, not a counted skip")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    with one_line_errors("prepare_tedlium3", args.verbose):
        reports = prepare_tedlium3(args.corpus_dir, args.out_dir, split=args.split, sets=args.sets,
                                   num_jobs=args.num_jobs, sph2pipe=args.sph2pipe, noise=args.noise,
                                   join_clitics=args.join_clitics, max_overshoot=args.max_overshoot,
                                   strict=args.strict)
    for rep in reports.values():
        print(f"{rep.data_dir}: {rep.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
