"""Pronunciation lexicons in the tokenizer's units, for word-level CTC decoding.

A lexicon file has one spelling per line, ``WORD tok tok ...`` (flashlight's and torchaudio's
format; a word may have several lines). speechkit spells a word the way its tokenizer would
encode it alone, and a character tokenizer's spellings end in the word boundary
(``HELLO -> H E L L O |``, the convention of torchaudio's and fairseq's letter lexicons): the
decoder emits a word when its last token is reached and cannot hold that token over more frames
afterwards, so the word should end on the boundary, not on its last letter
(:class:`speechkit.downstream.word_decode.WordCTCDecoder` adds one boundary frame at the end of
each utterance for the last word). A sentencepiece tokenizer gives its pieces (``HELLO -> ▁HE LLO``).
Words whose spelling needs ``<unk>`` can never be decoded and are left out (and counted).
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Iterable

from speechkit.text.tokenizer import WORD_BOUNDARY, CharTokenizer, Tokenizer

__all__ = ["spell", "make_lexicon", "write_lexicon", "read_lexicon", "words_of_text"]

logger = logging.getLogger(__name__)


def spell(word: str, tokenizer: Tokenizer) -> list[str] | None:
    """The token strings of ``word`` as the tokenizer encodes it alone; None when it needs ``<unk>``."""
    ids = tokenizer.encode(word)
    if isinstance(tokenizer, CharTokenizer):
        ids = [i for i in ids if i != tokenizer.word_boundary_id]
    if not ids or tokenizer.unk_id in ids or tokenizer.blank_id in ids:
        return None
    out = [tokenizer.tokens[i] for i in ids]
    return out + [WORD_BOUNDARY] if isinstance(tokenizer, CharTokenizer) else out


def words_of_text(sentences: Iterable[str], tokenizer: Tokenizer) -> list[list[str]]:
    """Normalise transcripts with the tokenizer's normaliser and split them into words (empty ones dropped)."""
    out = []
    for s in sentences:
        words = tokenizer.normalize(s).split()
        if words:
            out.append(words)
    return out


def make_lexicon(words: Iterable[str], tokenizer: Tokenizer) -> dict[str, list[str]]:
    """``{word: spelling}`` for the distinct words (sorted); words that need ``<unk>`` are left out with a warning."""
    lex: dict[str, list[str]] = {}
    dropped = []
    for w in sorted(set(words)):
        sp = spell(w, tokenizer)
        if sp is None:
            dropped.append(w)
        else:
            lex[w] = sp
    if dropped:
        logger.warning("lexicon: %d word(s) need <unk> in the tokenizer and are left out, e.g. %s",
                       len(dropped), dropped[:5])
    if not lex:
        raise ValueError("the lexicon is empty: no word can be spelled with the tokenizer's units")
    return lex


def write_lexicon(path, lexicon: dict[str, list[str]]) -> pathlib.Path:
    """Write ``WORD tok tok ...`` lines (sorted by word) atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for w in sorted(lexicon):
            f.write(f"{w} {' '.join(lexicon[w])}\n")
    os.replace(tmp, path)
    return path


def read_lexicon(path, tokens: Iterable[str]) -> dict[str, list[list[str]]]:
    """``{word: [spelling, ...]}``; every token must be one of ``tokens`` (errors name the line)."""
    path = pathlib.Path(path)
    known = set(tokens)
    lex: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'WORD token token ...', got {line.strip()!r}")
            bad = [t for t in parts[1:] if t not in known]
            if bad:
                raise ValueError(f"{path}:{lineno}: token(s) {bad[:5]} of {parts[0]!r} are not in the tokenizer's "
                                 f"units (a lexicon for another tokenizer?)")
            lex.setdefault(parts[0], []).append(parts[1:])
    if not lex:
        raise ValueError(f"{path}: empty lexicon")
    return lex
