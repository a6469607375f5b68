"""Train a tokenizer (characters, or sentencepiece BPE/unigram) from a data dir's text.

Usage:
    python -m speechkit.bin.train_tokenizer --text data/train/text --out data/token_char --type char
    python -m speechkit.bin.train_tokenizer --text data/train/text --out data/token_bpe300 \
        --type bpe --vocab-size 300

The transcripts (utterance ids dropped) are normalised first (upper case, punctuation and
noise markers removed; see speechkit.text.normalize) and the normaliser settings are saved with
the tokenizer, so ``encode`` applies the same rules at fine-tuning time. Writes tokenizer.json,
tokens.txt (``<token> <id>``; id 0 is the CTC blank) and, for sentencepiece, spm.model.
Deterministic: the same text gives the same files.
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from speechkit.log import setup_logging
from speechkit.text.normalize import NormalizerConfig, read_text_file
from speechkit.text.tokenizer import train_tokenizer

logger = logging.getLogger("speechkit.bin.train_tokenizer")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, type=pathlib.Path, help="Kaldi text file (<utt> words...)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output tokenizer folder")
    p.add_argument("--type", default="char", choices=["char", "bpe", "unigram"])
    p.add_argument("--vocab-size", type=int, default=0, help="sentencepiece vocabulary size (incl. blank, unk)")
    p.add_argument("--keep-case", action="store_true", help="do not upper-case")
    p.add_argument("--keep-punct", action="store_true", help="do not remove punctuation")
    p.add_argument("--keep-noise", action="store_true", help="do not remove <...> and [...] noise markers")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.type != "char" and args.vocab_size <= 3:
        raise SystemExit(f"--type {args.type} needs --vocab-size > 3")
    norm = NormalizerConfig(upper=not args.keep_case, remove_punct=not args.keep_punct,
                            remove_noise=not args.keep_noise)
    texts = list(read_text_file(args.text).values())
    if not texts:
        raise SystemExit(f"{args.text}: no transcripts")
    tok = train_tokenizer(texts, args.type, args.vocab_size, norm)
    tok.save(args.out)
    logger.info("trained a %s tokenizer on %d transcripts from %s: %d tokens -> %s", args.type, len(texts),
                args.text, tok.vocab_size, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
