"""Score hypotheses against references: WER (and CER) with sclite-style reports.

Usage:
    python -m speechkit.bin.score --ref data/test/text --hyp exp/x/decode_test/hyp \
        --out exp/x/decode_test [--cer] [--utt2spk data/test/utt2spk] [--info "labeled utts=200"]

Writes into --out: result.txt (summary table per speaker + Sum/Avg and a Kaldi-style %WER line),
alignment.txt (per-utterance REF/HYP/Eval with S/D/I marks) and result.json (read by
``speechkit.bin.make_results``). With --cer, the same files with a ``_cer`` suffix are written
too (characters, word boundaries counted as ``<space>``). References and hypotheses go through
the same normalisation (upper case, punctuation and noise markers such as <unk>/[noise] removed;
switch rules off with --keep-case / --keep-punct / --keep-noise). Prints the summary line(s).
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from speechkit.log import setup_logging
from speechkit.text.normalize import NormalizerConfig
from speechkit.text.scoring import score_files, summary_line

logger = logging.getLogger("speechkit.bin.score")


def parse_info(items: list[str]) -> dict:
    info = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--info expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            info[k.strip()] = int(v)
        except ValueError:
            info[k.strip()] = v.strip()
    return info


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, type=pathlib.Path, help="reference Kaldi text file")
    p.add_argument("--hyp", required=True, type=pathlib.Path, help="hypothesis Kaldi text file")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output dir (usually the decode dir)")
    p.add_argument("--cer", action="store_true", help="also score characters (CER)")
    p.add_argument("--dataset", default=None, help="row label in RESULTS.md (default: name of --out)")
    p.add_argument("--task", default="asr", help="task name for RESULTS.md (default: asr)")
    p.add_argument("--utt2spk", type=pathlib.Path, default=None,
                   help="speaker per utterance for the per-speaker rows (default: utt id prefix before '-')")
    p.add_argument("--allow-missing", action="store_true",
                   help="score reference utterances without a hypothesis as empty output instead of failing")
    p.add_argument("--keep-case", action="store_true", help="do not upper-case")
    p.add_argument("--keep-punct", action="store_true", help="do not remove punctuation")
    p.add_argument("--keep-noise", action="store_true", help="do not remove <...> and [...] noise markers")
    p.add_argument("--info", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment fact to show in RESULTS.md (repeatable), e.g. 'labeled utts=200'")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    norm = NormalizerConfig(upper=not args.keep_case, remove_punct=not args.keep_punct,
                            remove_noise=not args.keep_noise)
    dataset = args.dataset or args.out.resolve().name
    for result, paths in score_files(args.ref, args.hyp, args.out, cer=args.cer, utt2spk=args.utt2spk,
                                     dataset=dataset, task=args.task, info=parse_info(args.info), normalizer=norm,
                                     allow_missing=args.allow_missing):
        logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
        print(summary_line(result, dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
