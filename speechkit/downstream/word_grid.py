"""Word-level decoding for the decode CLIs: the (LM weight, word score) grid and its search.

``args`` is the CLI's namespace with ``lexicon``, ``lm``, ``lm_weight`` (list or None), ``word_score`` (list),
``beam``, ``beam_threshold``, ``tuned_from``, ``data_dir`` and ``out``; ``source`` an iterable (a list when a
grid reads it more than once) of ``(utt_ids, log_probs (B, T, V), lengths (B,))`` CTC batches. Shared by
speechkit.bin.decode_ctc (CTC models) and speechkit.bin.decode_seq2seq (the CTC head of seq2seq models).
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import re

logger = logging.getLogger(__name__)


def add_word_search_args(p: argparse.ArgumentParser, lexicon_help: str, lm_help: str) -> None:
    """The options :func:`weight_grid` and :func:`word_decode_grid` read (--beam is the CLI's own)."""
    p.add_argument("--lexicon", type=pathlib.Path, default=None, help=lexicon_help)
    p.add_argument("--lm", type=pathlib.Path, default=None, help=lm_help)
    p.add_argument("--lm-weight", type=float, nargs="+", default=None,
                   help="LM weight(s); several values (with --lexicon) form a grid (default 1 with --lexicon and "
                        "--lm, else 0)")
    p.add_argument("--word-score", type=float, nargs="+", default=[0.0],
                   help="word insertion score(s) for --lexicon decoding; several values form a grid")
    p.add_argument("--beam-threshold", type=float, default=25.0, help="--lexicon decoding: prune hypotheses "
                   "this far below the best")
    p.add_argument("--tuned-from", type=pathlib.Path, default=None,
                   help="--lexicon decoding: take --lm-weight/--word-score from the best pair of DIR/lm_grid.json")


def weight_grid(args) -> list[tuple[float, float]]:
    """(lm_weight, word_score) pairs to decode with, from the options or --tuned-from."""
    if args.tuned_from is not None:
        if args.lexicon is None:
            raise SystemExit("--tuned-from applies to --lexicon decoding")
        path = args.tuned_from / "lm_grid.json"
        if not path.is_file():
            raise SystemExit(f"--tuned-from: {path} not found (decode the tuning set with a grid first)")
        best = json.loads(path.read_text(encoding="utf-8"))["best"]
        return [(float(best["lm_weight"]), float(best["word_score"]))]
    weights = args.lm_weight or ([1.0] if args.lexicon is not None and args.lm is not None else [0.0])
    if args.lexicon is None and (len(weights) > 1 or len(args.word_score) > 1 or args.word_score != [0.0]):
        raise SystemExit("a grid of --lm-weight and --word-score needs --lexicon (word-level decoding)")
    if args.lexicon is not None and args.lm is None and any(w != 0.0 for w in weights):
        raise SystemExit("--lm-weight with --lexicon needs --lm (a word n-gram LM)")
    return [(w, ws) for w in weights for ws in args.word_score]


def word_decode_grid(args, tokenizer, source, grid, can_score) -> tuple[dict[str, str], str]:
    """Lexicon + word LM decoding of the log-prob batches (a list when a grid reads them again); a grid is
    scored and its best pair kept."""
    from speechkit.downstream.word_decode import WordCTCDecoder, WordDecodeConfig
    from speechkit.text.normalize import read_text_file
    from speechkit.text.scoring import score_texts

    if len(grid) > 1 and not can_score:
        raise SystemExit(f"a grid of LM weights / word scores needs a reference text in {args.data_dir}")
    beam = args.beam or 50
    base = WordCTCDecoder(tokenizer, args.lexicon, args.lm, WordDecodeConfig(
        beam=beam, beam_threshold=args.beam_threshold, lm_weight=grid[0][0], word_score=grid[0][1]))
    refs = read_text_file(args.data_dir / "text") if len(grid) > 1 else {}
    runs = []
    for lm_weight, word_score in grid:
        dec = base.with_weights(lm_weight, word_score)
        hyps = {}
        for utt_ids, lp, lens in source:
            for utt, words in zip(utt_ids, dec(lp, lens)):
                hyps[utt] = " ".join(words)
        wer = None
        if refs:
            wer = score_texts(refs, hyps, allow_missing=True).total.err_rate
            logger.info("lm_weight %g, word_score %g: WER %.2f", lm_weight, word_score, wer)
        runs.append({"lm_weight": lm_weight, "word_score": word_score, "wer": wer, "hyps": hyps})
    best = min(runs, key=lambda r: r["wer"]) if refs else runs[0]  # first of equals: grid order
    if len(grid) > 1:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"lexicon": str(args.lexicon), "lm": str(args.lm), "beam": beam,
                  "grid": [{k: r[k] for k in ("lm_weight", "word_score", "wer")} for r in runs],
                  "best": {k: best[k] for k in ("lm_weight", "word_score", "wer")}}
        tmp = args.out / "lm_grid.json.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.out / "lm_grid.json")
    lm_name = args.lm.name if args.lm is not None else "none"
    chosen = (f"best of {len(grid)} on this set" if len(grid) > 1 else
              f"tuned on {args.tuned_from.name}" if args.tuned_from is not None else None)
    return best["hyps"], describe(beam, lm_name, best["lm_weight"], best["word_score"], chosen)


def describe(beam: int, lm_name: str, lm_weight: float, word_score: float, chosen: str | None = None) -> str:
    """The ``decode`` fact of a result record: ``"lexicon beam 50, LM lm3.arpa x1, word score 0 (tuned on
    decode_dev_clean_lm3)"``; ``chosen`` says where the weights came from. :func:`decode_family` reads it."""
    how = f"lexicon beam {beam}, LM {lm_name} x{lm_weight:g}, word score {word_score:g}"
    return how + (f" ({chosen})" if chosen else "")


# What describe() puts in per model: the weights and where they were chosen.
_TUNED = re.compile(r" x-?[\d.]+(?:e[-+]?\d+)?(?=,)|, word score -?[\d.]+(?:e[-+]?\d+)?| \((?:best of|tuned on) [^)]*\)$")


def decode_family(decode: str | None) -> str:
    """A ``decode`` fact without what is tuned per model (so models decoded alike share a column or a line):
    ``"greedy"`` or e.g. ``"lexicon beam 50, LM lm3.arpa"`` (a prefix such as ``"CTC "`` is kept); other
    descriptions are returned as they are."""
    if decode in (None, "", "greedy"):
        return "greedy"
    return _TUNED.sub("", decode).strip()
