"""Train a token n-gram LM (interpolated Kneser-Ney) for CTC shallow fusion.

Usage:
    python -m speechkit.bin.train_token_lm --text data/train/text --tokenizer data/token_char \
        --order 4 --out exp/token_lm/lm.json

The transcripts are encoded with the tokenizer (which normalises them as at fine-tuning time),
so the LM predicts exactly the CTC output tokens. Use it in decoding with
``CTCDecoder(DecodeConfig(method="beam", lm_weight=0.5, insertion_bonus=...), lm=TokenNgramLM.load(...))``.
Prints the per-token perplexity of the training text (and of --dev-text when given).
"""
from __future__ import annotations

import argparse
import logging
import math
import pathlib
import sys

from speechkit.log import setup_logging
from speechkit.text.ngram_lm import TokenNgramLM
from speechkit.text.normalize import read_text_file
from speechkit.text.tokenizer import load_tokenizer

logger = logging.getLogger("speechkit.bin.train_token_lm")


def perplexity(lm: TokenNgramLM, sentences: list[list[int]]) -> float:
    total = sum(lm.sentence_logprob(s) for s in sentences)
    n = sum(len(s) + 1 for s in sentences)  # + end of sentence
    return math.exp(-total / n)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, type=pathlib.Path, help="Kaldi text file to train on")
    p.add_argument("--tokenizer", required=True, type=pathlib.Path, help="tokenizer folder")
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--out", required=True, type=pathlib.Path, help="output LM file (.json)")
    p.add_argument("--dev-text", type=pathlib.Path, default=None, help="Kaldi text file to report perplexity on")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    tok = load_tokenizer(args.tokenizer)
    sents = [ids for ids in (tok.encode(t) for t in read_text_file(args.text).values()) if ids]
    lm = TokenNgramLM.train(sents, tok.vocab_size, args.order)
    lm.save(args.out)
    msg = f"order-{args.order} token LM on {len(sents)} sentences -> {args.out}; train ppl {perplexity(lm, sents):.2f}"
    if args.dev_text:
        dev = [ids for ids in (tok.encode(t) for t in read_text_file(args.dev_text).values()) if ids]
        msg += f", dev ppl {perplexity(lm, dev):.2f}"
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
