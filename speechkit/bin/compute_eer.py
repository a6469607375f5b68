"""Speaker verification scoring: cosine scores of a trial list, EER and minDCF.

Usage:
    python -m speechkit.bin.compute_eer --trials data/test/trials \
        --embeddings exp/sv_x/embed_test/embeddings.scp --out exp/sv_x/eval_test
    python -m speechkit.bin.compute_eer --trials data/test/trials --scores exp/sv_x/eval_test/scores \
        --out exp/sv_x/eval_test

Trials: ``<enroll> <test> target|nontarget`` per line (VoxCeleb's ``1|0 <enroll> <test>`` works
too). Embeddings: a Kaldi scp (vectors, e.g. from speechkit.io.ark.ArkWriter) or a .npz keyed by
utterance. Instead of embeddings, --scores takes a precomputed ``<enroll> <test> <score>`` file.
Writes into --out: ``scores`` (``<enroll> <test> <score> target|nontarget``) and
``result_sv.json`` (EER in percent, minDCF at p_target 0.01 and 0.05 with C_miss = C_fa = 1,
normalised as in NIST SRE / VoxCeleb; read by speechkit.bin.make_results). Prints one summary line.
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

import numpy as np

from speechkit.downstream.metrics import compute_eer, cosine_scores, read_trials, sv_result_record
from speechkit.log import setup_logging
from speechkit.results import write_result_json

logger = logging.getLogger("speechkit.bin.compute_eer")


def load_embeddings(path: pathlib.Path):
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".scp":
        from speechkit.io.ark import read_scp

        return read_scp(path)
    raise SystemExit(f"{path}: embeddings must be a Kaldi .scp or a .npz file")


def read_scores(path: pathlib.Path, trials) -> np.ndarray:
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3:
                raise SystemExit(f"{path}:{lineno}: expected '<enroll> <test> <score>', got {line.strip()!r}")
            try:
                table[(parts[0], parts[1])] = float(parts[2])
            except ValueError:
                raise SystemExit(f"{path}:{lineno}: score {parts[2]!r} is not a number") from None
    missing = [(t.enroll, t.test) for t in trials if (t.enroll, t.test) not in table]
    if missing:
        raise SystemExit(f"{path}: no score for {len(missing)} trial(s), e.g. {missing[:3]}")
    return np.array([table[(t.enroll, t.test)] for t in trials])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True, type=pathlib.Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--embeddings", type=pathlib.Path, help="utterance embeddings (.scp or .npz)")
    src.add_argument("--scores", type=pathlib.Path, help="precomputed '<enroll> <test> <score>' file")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output dir")
    p.add_argument("--dataset", default=None, help="row label in RESULTS.md (default: name of --out)")
    p.add_argument("--info", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment fact to show in RESULTS.md (repeatable)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from speechkit.bin.score import parse_info

    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    trials = read_trials(args.trials)
    if args.embeddings:
        scores = cosine_scores(trials, load_embeddings(args.embeddings))
    else:
        scores = read_scores(args.scores, trials)
    labels = np.array([t.target for t in trials])
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "scores", "w", encoding="utf-8") as f:
        for t, s in zip(trials, scores):
            f.write(f"{t.enroll} {t.test} {s:.6f} {'target' if t.target else 'nontarget'}\n")
    dataset = args.dataset or args.out.resolve().name
    record = sv_result_record(scores, labels, dataset, info=parse_info(args.info))
    write_result_json(args.out / "result_sv.json", record)
    _, thr = compute_eer(scores, labels)
    v = record.values
    print(f"{dataset}: EER {v['EER(%)']:.2f} % (threshold {thr:.4f}), minDCF(p=0.01) {v['minDCF(p=0.01)']:.4f}, "
          f"minDCF(p=0.05) {v['minDCF(p=0.05)']:.4f}, {len(trials)} trials "
          f"({int(labels.sum())} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
