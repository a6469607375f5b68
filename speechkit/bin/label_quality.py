"""Phone purity, cluster purity and PNMI of k-means labels against phone alignments (or, without
alignments, cluster usage and entropy).

Usage:
    python -m speechkit.bin.label_quality --labels data/dev/km.mfcc100 \\
        --alignments data/dev/phones.ali --out exp/kmeans_mfcc100/quality_dev \\
        [--label-rate 100 --align-rate 100 --tolerance 2]

Alignments: one line per utterance, ``<utt> PH PH ...`` at 100 Hz (one phone per
10 ms frame). Labels at 50 Hz (model frames) use --label-rate 50: the alignment is
subsampled by 2 and lengths may differ by --tolerance frames. Prints a small table
and writes <out>.txt and <out>.json. With --result-json it also writes a result record
(task "units", metric PNMI) that make_results puts into RESULTS.md, e.g.

    ... --result-json exp/kmeans_mfcc100/result_units_dev.json --units "MFCC, K=100"

Without --alignments (a corpus without phone alignments) it reports what needs none: the clusters
used of --num-clusters K and the entropy of the cluster distribution (bits, and perplexity 2**H),
with a result record of metric ``usage``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechkit.cluster.labels import read_label_file
from speechkit.bin import one_line_errors
from speechkit.cluster.quality import label_quality, read_alignments, unit_usage
from speechkit.log import setup_logging
from speechkit.results import write_result_json


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", required=True, help="km.<tag> label file")
    p.add_argument("--alignments", default=None,
                   help="frame-level phone alignment file (without it: cluster usage and entropy only)")
    p.add_argument("--num-clusters", type=int, default=None, help="K, for the usage report (default: largest label + 1)")
    p.add_argument("--out", default=None, help="report stem: writes <out>.txt and <out>.json")
    p.add_argument("--label-rate", type=float, default=100.0, help="labels per second (100 MFCC, 50 model)")
    p.add_argument("--align-rate", type=float, default=100.0, help="alignment frames per second")
    p.add_argument("--tolerance", type=int, default=2, help="allowed length difference in label frames")
    p.add_argument("--result-json", default=None,
                   help="also write a RESULTS.md record (task units, metric PNMI) to this file")
    p.add_argument("--units", default="", help="what the labels are, for the record (e.g. 'MFCC, K=100')")
    p.add_argument("--dataset", default=None, help="row name in the record (default: the labels' data dir name)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    with one_line_errors("label_quality", args.verbose):
        labels = read_label_file(args.labels)
        if args.alignments is None:
            rep = unit_usage(labels, args.num_clusters, args.label_rate)
        else:
            rep = label_quality(labels, read_alignments(args.alignments), args.label_rate, args.align_rate,
                                args.tolerance)
    print(f"{'label quality' if args.alignments else 'cluster usage (no alignments)'} of {args.labels}")
    print(rep.table())
    if args.out:
        txt, js = rep.save(args.out)
        print(f"wrote {txt} and {js}")
    if args.result_json:
        dataset = args.dataset or Path(args.labels).resolve().parent.name
        print(f"wrote {write_result_json(args.result_json, rep.result_record(dataset, args.units))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
