"""Collect result records under an exp dir and write RESULTS.md (ESPnet style).

Usage:
    python -m speechkit.bin.make_results --exp-dir exp --out RESULTS.md [--plots] [--print]

Reads every ``result*.json`` that scoring steps wrote (``speechkit.bin.score``,
``speechkit.bin.compute_eer``, speaker-ID evaluation) and writes an environment header (date,
speechkit git hash, python/torch versions, device), a summary table per task with one row per
experiment and dataset (with the task's chance level, and a WER-vs-labeled-data table when several
amounts of labeled data were run), then one section per experiment (``## exp/<tag>`` / ``### WER`` /
table). ``--plots`` draws PNG figures into ``plots/`` beside --out and embeds them
(speechkit.plots: pre-training curves, unit PNMI, WER vs labeled data, speaker-ID confusion).
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from speechkit.log import setup_logging
from speechkit.results import collect_results, format_results

logger = logging.getLogger("speechkit.bin.make_results")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, type=pathlib.Path, help="experiment root to search (e.g. exp)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output markdown file (e.g. RESULTS.md)")
    p.add_argument("--title", default="RESULTS", help="top-level heading")
    p.add_argument("--plots", action="store_true", help="draw PNG figures into plots/ beside --out and embed them")
    p.add_argument("--print", action="store_true", help="also print the markdown to stdout")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    records = collect_results(args.exp_dir)
    if not records:
        logger.warning("no result*.json records under %s", args.exp_dir)
    figures = None
    if args.plots:
        import os

        from speechkit.plots import make_plots

        figures = [(t, os.path.relpath(p, args.out.parent))
                   for t, p in make_plots(args.exp_dir, args.out.parent / "plots", records)]
    text = format_results(records, title=args.title, figures=figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    logger.info("wrote %s (%d result records from %d experiments)", args.out, len(records),
                len({r.exp for r in records}))
    if args.print:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
