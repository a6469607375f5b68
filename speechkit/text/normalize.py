"""Text normalisation shared by references, hypotheses and tokenizer training.

One small configurable function, :func:`normalize_text`, so that the text a tokenizer is
trained on, the text a model is fine-tuned on and both sides of WER scoring go through
exactly the same rules. The defaults give LibriSpeech-style text: upper case, words of
letters/digits and in-word apostrophes, single spaces.

Rules, applied in this order (each can be switched off in :class:`NormalizerConfig`):

1. noise markers such as ``<unk>``, ``<noise>``, ``[noise]``, ``[laughter]`` are removed
   (``remove_noise``; the pattern is configurable);
2. the text is upper-cased (``upper``);
3. punctuation is replaced by a space (``remove_punct``): every character that is not a
   letter, digit or combining mark becomes a space, except an apostrophe *between* two word
   characters ("DON'T" stays, "'TIS" and "JAMES'" lose theirs). Typographic apostrophes
   (U+2019, U+02BC) count as apostrophes and are written as ``'``. Hyphenated words are
   therefore split ("WELL-KNOWN" -> "WELL KNOWN"), as in most ASR scoring setups;
4. runs of white space collapse to one space, and the ends are stripped (always).
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata

__all__ = ["NormalizerConfig", "normalize_text", "read_text_file"]

_APOSTROPHES = "'\u2019\u02bc"
# <...> and [...] markers: Kaldi/LibriSpeech/WSJ/Switchboard style noise and unknown tokens.
_DEFAULT_NOISE = r"<[^<>\s]*>|\[[^\[\]\s]*\]"


@dataclasses.dataclass(frozen=True)
class NormalizerConfig:
    """Which normalisation rules to apply (see the module docstring)."""

    upper: bool = True
    remove_punct: bool = True
    remove_noise: bool = True
    noise_pattern: str = _DEFAULT_NOISE

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NormalizerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown normalizer option(s) {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)


def _is_word_char(ch: str) -> bool:
    # Letters (L*), digits/numbers (N*) and combining marks (M*, e.g. accents in NFD text).
    return unicodedata.category(ch)[0] in "LNM"


def _strip_punct(text: str) -> str:
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        if _is_word_char(ch):
            out.append(ch)
        elif ch in _APOSTROPHES and 0 < i < n - 1 and _is_word_char(text[i - 1]) and _is_word_char(text[i + 1]):
            out.append("'")
        else:
            out.append(" ")
    return "".join(out)


_noise_cache: dict[str, re.Pattern] = {}


def normalize_text(text: str, config: NormalizerConfig | None = None) -> str:
    """Normalise one transcript (see the module docstring for the rules)."""
    cfg = config or NormalizerConfig()
    if cfg.remove_noise and cfg.noise_pattern:
        pat = _noise_cache.get(cfg.noise_pattern)
        if pat is None:
            pat = _noise_cache[cfg.noise_pattern] = re.compile(cfg.noise_pattern)
        text = pat.sub(" ", text)
    if cfg.upper:
        text = text.upper()
    if cfg.remove_punct:
        text = _strip_punct(text)
    return " ".join(text.split())


def read_text_file(path, allow_empty: bool = True) -> dict[str, str]:
    """Read a Kaldi ``text`` file (``<utt> word word ...``) keeping file order.

    A line with only an utterance id is an empty transcript (common in hypothesis files for
    utterances where the decoder emitted nothing). Duplicate ids are an error naming path:line.
    """
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            utt = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty:
                raise ValueError(f"{path}:{lineno}: utterance {utt!r} has an empty transcript")
            if utt in out:
                raise ValueError(f"{path}:{lineno}: duplicate utterance id {utt!r}")
            out[utt] = value
    return out
