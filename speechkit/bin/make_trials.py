"""Make a speaker-verification trial list from a data dir (seeded target / non-target pairs).

Usage:
    python -m speechkit.bin.make_trials --data-dir data/test_clean --out data/test_clean/trials \\
        [--num-target 500 --num-nontarget 500 --seed 0 --speaker-key prefix]

Writes ``<enroll> <test> target|nontarget`` lines (utterance ids of the data dir). Target trials
pair two different utterances of one speaker, non-target trials utterances of two speakers; no pair
is repeated. The speaker is the utterance-id prefix (LibriSpeech reader) or utt2spk's.
Deterministic for a given data dir and seed.

Open-set trials (as VoxCeleb1-O): ``--exclude-speakers-of data/sv_train`` (repeatable) drops every
utterance of a speaker found in those data dirs -- the speakers the embedding extractor was trained
on -- so no trial involves a training speaker.
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
    p.add_argument("--exclude-speakers-of", action="append", default=[], type=pathlib.Path, metavar="DIR",
                   help="drop utterances of speakers present in this data dir (open-set trials); repeatable")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.downstream.data import make_trials, speaker_of
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    spk_of = speaker_of(args.data_dir, args.speaker_key)
    seen: set[str] = set()
    for d in args.exclude_speakers_of:
        seen |= set(speaker_of(d, args.speaker_key).values())
    if seen:
        before = len(set(spk_of.values()))
        spk_of = {u: s for u, s in spk_of.items() if s not in seen}
        left = len(set(spk_of.values()))
        logger.info("open set: %d of %d speakers of %s are held out from %s (%d utterances)", left, before,
                    args.data_dir, ", ".join(map(str, args.exclude_speakers_of)), len(spk_of))
        if left < 2:
            raise SystemExit(f"{args.data_dir}: only {left} speaker(s) left after excluding the speakers of "
                             f"{', '.join(map(str, args.exclude_speakers_of))}; open-set trials need at least 2")
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
