"""Make a speaker-verification trial list from a data dir (seeded target / non-target pairs).

Usage:
    python -m speechkit.bin.make_trials --data-dir data/test_clean --out data/test_clean/trials \\
        [--num-target 500 --num-nontarget 500 --seed 0 --speaker-key prefix]

Writes ``<enroll> <test> target|nontarget`` lines (utterance ids of the data dir). Target trials
pair two different utterances of one speaker, non-target trials utterances of two speakers; no pair
is repeated. The speaker is the utterance-id prefix (LibriSpeech reader) or utt2spk's.
Deterministic for a given data dir and seed.
"""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys

logger = logging.getLogger("speechkit.bin.make_trials")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, type=pathlib.Path)
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--num-target", type=int, default=500)
    p.add_argument("--num-nontarget", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speaker-key", default="prefix", choices=["prefix", "utt2spk"])
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.downstream.data import make_trials, speaker_of
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    spk_of = speaker_of(args.data_dir, args.speaker_key)
    try:
        trials = make_trials(spk_of, args.num_target, args.num_nontarget, args.seed)
    except ValueError as e:
        raise SystemExit(f"{args.data_dir}: {e}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for a, b, target in trials:
            f.write(f"{a} {b} {'target' if target else 'nontarget'}\n")
    os.replace(tmp, args.out)
    logger.info("wrote %d trials (%d target) from %d utterances of %d speakers to %s", len(trials),
                sum(t[2] for t in trials), len(spk_of), len(set(spk_of.values())), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
