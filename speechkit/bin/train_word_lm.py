"""Write a word n-gram LM (ARPA, interpolated Kneser-Ney) and a lexicon for word-level CTC decoding.

Usage:
    python -m speechkit.bin.train_word_lm --text data/train/text --tokenizer data/token_char \\
        --order 3 --out data/lang_word [--dev-text data/dev/text] [--words-from lexicon.txt] [--skip-lm]

Writes into --out:
  lm<order>.arpa  the LM (KenLM/flashlight load it; speechkit.text.ngram_lm.WordNgramLM), trained on
                  the transcripts of --text after the tokenizer's normalisation (so its words are the
                  ones the decoder spells); not with --skip-lm (when the LM comes from elsewhere,
                  e.g. the official LibriSpeech 4-gram);
  lexicon.txt     every word of --text and of --words-from files (first column: a lexicon or a word
                  list, e.g. the official LibriSpeech lexicon), spelled in the tokenizer's units
                  (speechkit.text.lexicon); words the tokenizer can only spell with <unk> are left out.
Prints the word count, the lexicon size, the LM's perplexity on --text (and on --dev-text, with its
out-of-vocabulary rate). Use them with speechkit.bin.decode_ctc --lexicon ... --lm ... .
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys

logger = logging.getLogger("speechkit.bin.train_word_lm")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, type=pathlib.Path, help="Kaldi text file (<utt> words...) to train on")
    p.add_argument("--tokenizer", required=True, type=pathlib.Path, help="tokenizer folder (spells the lexicon)")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output dir (lm<order>.arpa, lexicon.txt)")
    p.add_argument("--dev-text", type=pathlib.Path, default=None, help="Kaldi text file to report perplexity on")
    p.add_argument("--words-from", type=pathlib.Path, action="append", default=[],
                   help="add the words (first column) of this lexicon or word list to the lexicon (repeatable)")
    p.add_argument("--skip-lm", action="store_true", help="write only the lexicon")
    p.add_argument("--verbose", action="store_true")
    return p


def read_word_column(path: pathlib.Path) -> list[str]:
    words = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                words.append(parts[0])
    if not words:
        raise ValueError(f"{path}: no words")
    return words


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    from speechkit.text.lexicon import make_lexicon, words_of_text, write_lexicon
    from speechkit.text.ngram_lm import WordNgramLM
    from speechkit.text.normalize import read_text_file
    from speechkit.text.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(args.tokenizer)
        sents = words_of_text(read_text_file(args.text).values(), tok)
        if not sents:
            raise ValueError(f"{args.text}: no words after normalisation")
        vocab = {w for s in sents for w in s}
        for path in args.words_from:
            vocab.update(tok.normalize(w) for w in read_word_column(path))
        vocab.discard("")
        lexicon = make_lexicon(vocab, tok)
        write_lexicon(args.out / "lexicon.txt", lexicon)
        msg = f"{sum(len(s) for s in sents)} words in {len(sents)} sentences; lexicon of {len(lexicon)} words"
        if not args.skip_lm:
            lm = WordNgramLM.train(sents, args.order)
            arpa = lm.write_arpa(args.out / f"lm{args.order}.arpa")
            msg += f"; order-{args.order} LM -> {arpa}, train ppl {lm.perplexity(sents):.1f}"
            if args.dev_text is not None:
                dev = words_of_text(read_text_file(args.dev_text).values(), tok)
                n = sum(len(s) for s in dev)
                oov = sum(w not in lm for s in dev for w in s)
                msg += f", dev ppl {lm.perplexity(dev):.1f} (OOV {100.0 * oov / max(n, 1):.1f} % of {n} words)"
    except (OSError, ValueError) as e:
        print(f"train_word_lm: error: {e}", file=sys.stderr)
        return 1
    print(msg + f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
