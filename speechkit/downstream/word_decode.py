"""Word-level CTC decoding: lexicon-constrained beam search with a word n-gram LM (flashlight-text).

This is how the "4-gram LM" rows of published LibriSpeech tables are decoded (wav2vec 2.0,
HuBERT): a beam search over the CTC frame log-probabilities that only emits words of a lexicon
(their spellings in the tokenizer's units, kept in a prefix trie) and ranks hypotheses by::

    score = log P_ctc(path) + lm_weight * log10 P_lm(words, </s>) + word_score * len(words)
            (+ sil_score per word-boundary token)

where ``P_ctc(path)`` is the best CTC alignment (Viterbi, as torchaudio's ``ctc_decoder`` does by
default), ``P_lm`` in log10 as KenLM gives it (so weights compare with fairseq's and torchaudio's), and
``P_lm`` a word n-gram LM in ARPA (or KenLM binary) format, e.g. the official
LibriSpeech 4-gram or one written by ``speechkit.bin.train_word_lm``. The search itself is
flashlight-text's ``LexiconDecoder`` (C++, the engine behind torchaudio's ``ctc_decoder``); we call
flashlight directly rather than through torchaudio's wrapper so that one loaded LM and trie serve a
whole grid of LM weights and word scores (a LibriSpeech 4-gram takes minutes to load). The tests
check it against torchaudio's wrapper and against a brute-force search.

Token conventions (speechkit tokenizers): id 0 is the blank. With a character tokenizer, lexicon
spellings end in the word boundary ``|`` (``HELLO -> H E L L O |``, see speechkit.text.lexicon),
``|`` is also the decoder's silence token (extra ones between words score ``sil_score``), and since
speechkit's CTC targets have no trailing ``|``, one frame where ``|`` is certain (log-prob 0) is
appended to each utterance so that its last word can end; it adds nothing to any path's score.
With that, the decoder's best hypothesis is exactly the best of the brute-force search over all
word sequences and CTC alignments (test_word_decode.py). With sentencepiece (no boundary token)
the blank doubles as silence, as in fairseq's word decoders.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import TYPE_CHECKING

import torch

from speechkit.text.lexicon import read_lexicon

if TYPE_CHECKING:
    from speechkit.text.tokenizer import Tokenizer

__all__ = ["WordDecodeConfig", "WordCTCDecoder", "flashlight_available"]


def flashlight_available() -> bool:
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass
class WordDecodeConfig:
    beam: int = 50  # hypotheses kept per frame
    beam_size_token: int = 0  # tokens tried per frame (0 = all)
    beam_threshold: float = 25.0  # drop hypotheses this far below the best
    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    unk_score: float = -math.inf  # words outside the lexicon are never emitted


class WordCTCDecoder:
    """``decoder(log_probs (B,T,V), lengths (B,)) -> list of word lists``; LM and trie are loaded once.

    ``lm`` is an ARPA / KenLM binary file, or None for lexicon-only decoding (no LM, words still
    constrained to the lexicon). :meth:`with_weights` gives a decoder sharing the loaded LM.
    """

    def __init__(self, tokenizer: "Tokenizer", lexicon, lm=None, config: WordDecodeConfig | None = None):
        try:
            from flashlight.lib.text import decoder as fl
            from flashlight.lib.text.dictionary import Dictionary, create_word_dict
        except ImportError as e:
            raise RuntimeError("word-level decoding needs flashlight-text (pip install flashlight-text==0.0.7; "
                               "make install installs it)") from e
        self.config = config or WordDecodeConfig()
        self.tokenizer = tokenizer
        tokens = list(tokenizer.tokens)
        self.blank = tokenizer.blank_id
        self.sil = tokens.index("|") if "|" in tokens else self.blank
        self.final_boundary = self.sil != self.blank  # append a certain-boundary frame (see the module doc)
        self.tokens_dict = Dictionary(tokens)
        lex = read_lexicon(lexicon, tokens)
        for w in ("<s>", "</s>"):
            lex.pop(w, None)
        lex.pop("<unk>", None)  # never spelled: the decoder's unknown word, scored by unk_score
        self.word_dict = create_word_dict({**lex, "<unk>": [["<unk>"]]})  # flashlight wants <unk> listed
        if lm is None:
            self.lm = fl.ZeroLM()
        else:
            lm = pathlib.Path(lm)
            if not lm.is_file():
                raise FileNotFoundError(f"LM {lm} not found")
            from flashlight.lib.text.decoder.kenlm import KenLM

            self.lm = KenLM(str(lm), self.word_dict)
        self.trie = fl.Trie(self.tokens_dict.index_size(), self.sil)
        start = self.lm.start(False)
        for word, spellings in lex.items():
            idx = self.word_dict.get_index(word)
            _, score = self.lm.score(start, idx)  # unigram score, smeared over the trie for early pruning
            for sp in spellings:
                self.trie.insert([self.tokens_dict.get_index(t) for t in sp], idx, score)
        self.trie.smear(fl.SmearingMode.MAX)
        self._fl = fl
        self._decoder = self._make_decoder()

    def _make_decoder(self):
        c, fl = self.config, self._fl
        opts = fl.LexiconDecoderOptions(
            beam_size=c.beam, beam_size_token=c.beam_size_token or self.tokens_dict.index_size(),
            beam_threshold=c.beam_threshold, lm_weight=c.lm_weight, word_score=c.word_score,
            unk_score=c.unk_score, sil_score=c.sil_score, log_add=False, criterion_type=fl.CriterionType.CTC)
        return fl.LexiconDecoder(opts, self.trie, self.lm, self.sil, self.blank,
                                 self.word_dict.get_index("<unk>"), [], False)

    def with_weights(self, lm_weight: float, word_score: float) -> "WordCTCDecoder":
        """A decoder with other LM weight / word score that shares this one's LM and trie."""
        other = object.__new__(WordCTCDecoder)
        other.__dict__.update(self.__dict__)
        other.config = dataclasses.replace(self.config, lm_weight=lm_weight, word_score=word_score)
        other._decoder = other._make_decoder()
        return other

    def decode_one(self, log_probs: torch.Tensor) -> tuple[list[str], float]:
        """Best word sequence and its score for one utterance's (T, V) log-probs."""
        lp = log_probs.detach().to("cpu", torch.float32).contiguous()
        if lp.dim() != 2 or lp.shape[1] != self.tokens_dict.index_size():
            raise ValueError(f"log_probs must be (T, {self.tokens_dict.index_size()}), got {tuple(lp.shape)}")
        if self.final_boundary:
            end = torch.full((1, lp.shape[1]), -1.0e4)  # effectively impossible, yet finite arithmetic
            end[0, self.sil] = 0.0
            lp = torch.cat([lp, end]).contiguous()
        results = self._decoder.decode(lp.data_ptr(), lp.shape[0], lp.shape[1])
        if not results:
            return [], -math.inf
        best = results[0]
        return [self.word_dict.get_entry(w) for w in best.words if w >= 0], float(best.score)

    def __call__(self, log_probs, lengths=None) -> list[list[str]]:
        log_probs = torch.as_tensor(log_probs)
        if log_probs.dim() != 3:
            raise ValueError(f"log_probs must be (batch, time, vocab), got shape {tuple(log_probs.shape)}")
        B, T, _ = log_probs.shape
        lengths = [T] * B if lengths is None else [int(n) for n in lengths]
        return [self.decode_one(log_probs[b, :lengths[b]])[0] for b in range(B)]
