"""The blind-guess row of a recognition table: one transcript for every utterance, chosen without the input.

Usage:
    python -m speechkit.bin.guess_baseline --train-text data/lrs3/train_433h/text --tune-dir data/lrs3/valid \
        --data-dir data/lrs3/test --out exp/guess [--max-candidates 2000]

Among the distinct transcripts of --train-text (the --max-candidates most frequent ones, ties in sorted
order), picks the one with the fewest word errors when it is the hypothesis of every utterance of the
--tune-dir set, then writes and scores it as the hypothesis of every utterance of the tune set and of each
--data-dir set: <out>/decode_<set>_clean/{hyp,result.json,...}, rows of RESULTS.md like any decode.

This is what a system that learned the text but nothing from the input scores, the chance level that
matters for a closed grammar: an empty hypothesis has 100 % WER, but on GRID's commands (four words in
most slots) a fixed guess gets about one word in five right.
"""
from __future__ import annotations

import argparse
import collections
import logging
import pathlib
import sys

from speechkit.log import setup_logging

logger = logging.getLogger("speechkit.bin.guess_baseline")


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions of ``hyp`` against ``ref`` (the scoring's own alignment)."""
    from speechkit.text.scoring import align

    return sum(op != "C" for op, _, _ in align(ref, hyp))


def best_guess(train: list[str], tune: list[str], max_candidates: int = 2000) -> tuple[str, int]:
    """(transcript, word errors on ``tune``): the training transcript with the fewest errors as the hypothesis
    of every tune utterance; candidates are the ``max_candidates`` most frequent (ties: sorted order)."""
    if not train or not tune:
        raise ValueError("guess baseline: need at least one training transcript and one tune utterance")
    counts = collections.Counter(train)
    candidates = sorted(counts, key=lambda t: (-counts[t], t))[:max_candidates]
    refs = [t.split() for t in tune]
    best, best_err = "", None
    for cand in candidates:
        hyp = cand.split()
        err = 0
        for r in refs:
            err += word_errors(r, hyp)
            if best_err is not None and err >= best_err:
                break
        if best_err is None or err < best_err:
            best, best_err = cand, err
    return best, int(best_err)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-text", required=True, type=pathlib.Path, help="Kaldi text file: the candidates")
    p.add_argument("--tune-dir", required=True, type=pathlib.Path, help="data dir the guess is chosen on")
    p.add_argument("--data-dir", action="append", default=[], type=pathlib.Path,
                   help="data dir to score the guess on (repeatable)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="experiment dir, e.g. exp/guess")
    p.add_argument("--max-candidates", type=int, default=2000,
                   help="most frequent training transcripts tried (default: 2000)")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    from speechkit.text.normalize import NormalizerConfig, normalize_text, read_text_file
    from speechkit.text.scoring import score_files, summary_line

    norm = NormalizerConfig()
    train = [normalize_text(t, norm) for t in read_text_file(args.train_text).values()]
    tune = read_text_file(args.tune_dir / "text")
    guess, errors = best_guess([t for t in train if t], [normalize_text(t, norm) for t in tune.values()],
                               args.max_candidates)
    logger.info("best guess on %s: %r (%d word errors)", args.tune_dir, guess, errors)
    info = {"modalities": "none", "decode": f"the training transcript best on {args.tune_dir.name}, for every utt"}
    for d in [args.tune_dir, *args.data_dir]:
        out = args.out / f"decode_{d.name}_clean"
        out.mkdir(parents=True, exist_ok=True)
        refs = read_text_file(d / "text")
        (out / "hyp").write_text("".join(f"{u} {guess}\n" for u in sorted(refs)), encoding="utf-8")
        utt2spk = d / "utt2spk"
        for result, _ in score_files(d / "text", out / "hyp", out, utt2spk=utt2spk if utt2spk.is_file() else None,
                                     info=info):
            print(summary_line(result, out.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
