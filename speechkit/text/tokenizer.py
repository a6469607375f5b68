"""Tokenizers for CTC fine-tuning: characters and sentencepiece (BPE / unigram).

One small interface, :class:`Tokenizer`:

- ``encode(text) -> list[int]`` normalises ``text`` with the tokenizer's own
  :class:`~speechkit.text.normalize.NormalizerConfig` (stored with it) and maps it to ids;
- ``decode(ids) -> str`` maps ids back to text, dropping the CTC blank;
- ``vocab_size`` counts every id including the blank; ``tokens`` lists them by id;
- id 0 is always the CTC blank ``<blank>``, id 1 is ``<unk>``;
- ``unknown_chars(text)`` counts the characters that ``encode`` cannot spell (they become ``<unk>``),
  so training code can report them instead of learning ``<unk>`` silently;
- ``save(folder)`` writes ``tokenizer.json`` (type + options), ``tokens.txt`` (``<token> <id>``
  per line, as in icefall/k2 recipes) and, for sentencepiece, ``spm.model``;
  :func:`load_tokenizer` reads any of them back.

Character tokenizer: the word boundary is the token ``|``, as in fairseq's letter
dictionaries (``HELLO WORLD`` -> ``H E L L O | W O R L D``), so a space never has to be a
token and ``tokens.txt`` stays whitespace-separated. No trailing ``|`` is added (CTC does not
need one); decoding turns any run of ``|`` into one space.

Sentencepiece: trained in-process from an iterator of (normalised) sentences, with one thread,
no sentence sampling and no shuffling, so the same text gives byte-identical models. The
sentencepiece ``pad`` id is used for the blank (id 0) and BOS/EOS are disabled, so
sentencepiece ids are our ids without any remapping.
"""
from __future__ import annotations

import abc
import collections
import io
import json
import pathlib
from typing import Iterable, Sequence

from speechkit.text.normalize import NormalizerConfig, normalize_text, read_text_file

__all__ = [
    "BLANK", "UNK", "WORD_BOUNDARY", "Tokenizer", "CharTokenizer", "SentencePieceTokenizer",
    "train_tokenizer", "load_tokenizer",
]

BLANK = "<blank>"
UNK = "<unk>"
WORD_BOUNDARY = "|"


class Tokenizer(abc.ABC):
    """Common interface; id 0 is the CTC blank, id 1 ``<unk>``."""

    blank_id: int = 0
    unk_id: int = 1
    kind: str = ""

    def __init__(self, normalizer: NormalizerConfig | None = None):
        self.normalizer = normalizer or NormalizerConfig()

    @property
    @abc.abstractmethod
    def tokens(self) -> list[str]:
        """Token strings ordered by id."""

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def normalize(self, text: str) -> str:
        return normalize_text(text, self.normalizer)

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        ...

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        ...

    @abc.abstractmethod
    def known_chars(self) -> frozenset[str]:
        """Every character some token spells (a character outside it is encoded as ``<unk>``)."""

    def unknown_chars(self, text: str) -> collections.Counter[str]:
        """Characters of the normalised ``text`` outside the vocabulary, with their counts."""
        known = self.known_chars()
        return collections.Counter(c for c in self.normalize(text) if c != " " and c not in known)

    def _meta(self) -> dict:
        return {"type": self.kind, "vocab_size": self.vocab_size, "normalizer": self.normalizer.to_dict()}

    def save(self, folder) -> pathlib.Path:
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_extra(folder)
        with open(folder / "tokens.txt", "w", encoding="utf-8") as f:
            for i, tok in enumerate(self.tokens):
                f.write(f"{tok} {i}\n")
        (folder / "tokenizer.json").write_text(json.dumps(self._meta(), indent=2) + "\n", encoding="utf-8")
        return folder

    def _save_extra(self, folder: pathlib.Path) -> None:
        pass

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        out = [int(i) for i in ids]
        bad = [i for i in out if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} out of range for a vocabulary of {self.vocab_size}")
        return out


class CharTokenizer(Tokenizer):
    """Characters with ``|`` as the word boundary (fairseq letter dictionary style)."""

    kind = "char"

    def __init__(self, chars: Iterable[str], normalizer: NormalizerConfig | None = None):
        super().__init__(normalizer)
        chars = list(chars)
        for c in chars:
            if len(c) != 1 or c.isspace() or c == WORD_BOUNDARY:
                raise ValueError(f"invalid character token {c!r}: expected one non-space character other than '|'")
        if len(set(chars)) != len(chars):
            raise ValueError("duplicate characters in the character vocabulary")
        self._tokens = [BLANK, UNK, WORD_BOUNDARY] + chars
        self._index = {t: i for i, t in enumerate(self._tokens)}

    @classmethod
    def train(cls, sentences: Iterable[str], normalizer: NormalizerConfig | None = None,
              min_count: int = 1) -> "CharTokenizer":
        """All characters seen at least ``min_count`` times in the normalised sentences, sorted."""
        norm = normalizer or NormalizerConfig()
        counts: collections.Counter[str] = collections.Counter()
        for s in sentences:
            counts.update(normalize_text(s, norm).replace(" ", ""))
        counts.pop(WORD_BOUNDARY, None)
        chars = sorted(c for c, n in counts.items() if n >= min_count)
        if not chars:
            raise ValueError("no characters found in the training text (is it empty after normalisation?)")
        return cls(chars, norm)

    @property
    def tokens(self) -> list[str]:
        return self._tokens

    @property
    def word_boundary_id(self) -> int:
        return 2

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for w, word in enumerate(self.normalize(text).split(" ")):
            if not word:
                continue
            if w:
                ids.append(self.word_boundary_id)
            ids.extend(self._index.get(c, self.unk_id) for c in word)
        return ids

    def known_chars(self) -> frozenset[str]:
        return frozenset(self._tokens[3:])

    def decode(self, ids: Sequence[int]) -> str:
        pieces = []
        for i in self._check_ids(ids):
            if i == self.blank_id:
                continue
            pieces.append(" " if i == self.word_boundary_id else self._tokens[i])
        return " ".join("".join(pieces).split())

    def _meta(self) -> dict:
        return {**super()._meta(), "chars": self._tokens[3:]}


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece BPE or unigram model whose ids are used as they are (0 = blank = spm pad)."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, normalizer: NormalizerConfig | None = None):
        import sentencepiece as spm

        super().__init__(normalizer)
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        if self._sp.pad_id() != 0 or self._sp.unk_id() != 1:
            raise ValueError(
                f"sentencepiece model has pad_id={self._sp.pad_id()}, unk_id={self._sp.unk_id()}; speechkit needs "
                "pad (the CTC blank) at 0 and unk at 1 — train it with speechkit.text.tokenizer.train_tokenizer")
        self._tokens = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self._tokens[0] = BLANK

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int, model_type: str = "bpe",
              normalizer: NormalizerConfig | None = None, character_coverage: float = 1.0) -> "SentencePieceTokenizer":
        import sentencepiece as spm

        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        norm = normalizer or NormalizerConfig()
        text = [t for t in (normalize_text(s, norm) for s in sentences) if t]
        if not text:
            raise ValueError("no training sentences left after normalisation")
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage, pad_id=0, pad_piece="<pad>", unk_id=1, unk_piece=UNK,
                bos_id=-1, eos_id=-1, normalization_rule_name="identity", num_threads=1,
                input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
        except RuntimeError as e:
            raise ValueError(
                f"sentencepiece {model_type} training with vocab_size={vocab_size} on {len(text)} sentences failed: "
                f"{e} (for a small corpus, lower --vocab-size)") from e
        return cls(buf.getvalue(), norm)

    @property
    def tokens(self) -> list[str]:
        return self._tokens

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(self.normalize(text), out_type=int))

    def known_chars(self) -> frozenset[str]:
        if not hasattr(self, "_known"):  # the characters of the normal pieces ("\u2581" marks a word start)
            normal = [t for i, t in enumerate(self._tokens) if not (self._sp.is_control(i) or self._sp.is_unknown(i))]
            self._known = frozenset("".join(normal).replace("\u2581", ""))
        return self._known

    def decode(self, ids: Sequence[int]) -> str:
        ids = [i for i in self._check_ids(ids) if i != self.blank_id]
        return " ".join(self._sp.decode(ids).split())

    def _save_extra(self, folder: pathlib.Path) -> None:
        (folder / "spm.model").write_bytes(self._proto)

    def _meta(self) -> dict:
        model_type = {1: "unigram", 2: "bpe"}.get(self._trainer_model_type(), "unknown")
        return {**super()._meta(), "model_type": model_type, "model": "spm.model"}

    def _trainer_model_type(self) -> int:
        from sentencepiece import sentencepiece_model_pb2 as pb

        m = pb.ModelProto()
        m.ParseFromString(self._proto)
        return int(m.trainer_spec.model_type)


def train_tokenizer(sentences: Iterable[str] | str | pathlib.Path, kind: str = "char", vocab_size: int = 0,
                    normalizer: NormalizerConfig | None = None) -> Tokenizer:
    """Train a tokenizer; ``kind`` is ``char``, ``bpe`` or ``unigram``.

    ``sentences`` is an iterable of transcripts or the path of a Kaldi ``text`` file
    (``<utt> words...``; the utterance ids are dropped).
    """
    if isinstance(sentences, (str, pathlib.Path)):
        sentences = list(read_text_file(sentences).values())
    if kind == "char":
        return CharTokenizer.train(sentences, normalizer)
    if kind in ("bpe", "unigram"):
        if vocab_size <= 3:
            raise ValueError(f"a {kind} tokenizer needs vocab_size > 3, got {vocab_size}")
        return SentencePieceTokenizer.train(sentences, vocab_size, kind, normalizer)
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char', 'bpe' or 'unigram'")


def load_tokenizer(folder) -> Tokenizer:
    """Load a tokenizer saved with :meth:`Tokenizer.save`."""
    folder = pathlib.Path(folder)
    meta_path = folder / "tokenizer.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a speechkit tokenizer folder")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    norm = NormalizerConfig.from_dict(meta.get("normalizer", {}))
    kind = meta.get("type")
    if kind == "char":
        tok: Tokenizer = CharTokenizer(meta["chars"], norm)
    elif kind == "sentencepiece":
        tok = SentencePieceTokenizer((folder / meta.get("model", "spm.model")).read_bytes(), norm)
    else:
        raise ValueError(f"{meta_path}: unknown tokenizer type {kind!r}; expected 'char' or 'sentencepiece'")
    if "vocab_size" in meta and meta["vocab_size"] != tok.vocab_size:
        raise ValueError(f"{meta_path}: vocab_size {meta['vocab_size']} does not match the loaded model "
                         f"({tok.vocab_size})")
    return tok
