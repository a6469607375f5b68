"""CTC decoding: batched greedy decoding and CTC prefix beam search.

Both take frame log-probabilities ``log_probs`` (B, T, V) — log-softmax outputs of a CTC head —
and the valid lengths ``lengths`` (B,), and return token ids per utterance; frames at or past an
utterance's length are ignored. The blank id is 0 by default (speechkit tokenizers put it there).

Prefix beam search (Hannun et al., 2014, "First-Pass Large Vocabulary Continuous Speech
Recognition using Bi-Directional Recurrent DNNs") keeps for every label prefix two log
probabilities: of all alignments of the frames so far that give the prefix and end in a blank
(``pb``), and that end in the prefix's last label (``pnb``). A repeated label only extends the
prefix after a blank (``pb``); without a blank in between, it merges into the same label. With
an unbounded beam and no token pruning the scores are the exact posteriors
``log P(labels | x)`` summed over all alignments (the tests check this by brute force).

Shallow fusion with a token n-gram LM (:class:`speechkit.text.ngram_lm.TokenNgramLM`) adds
``lm_weight * log P_lm(token | history) + insertion_bonus`` for each emitted token, and the LM's
end-of-sentence score at the end; the beam is ranked by the fused score. Works with character
(``|`` word boundaries are ordinary LM tokens) and sentencepiece tokenizers alike. Word-level
decoding with a lexicon and a word n-gram LM is :mod:`speechkit.downstream.word_decode`.

Pruning, as in most CTC beam decoders: per frame only tokens within ``prune_logp`` of the
frame's best token, at most ``max_tokens_per_frame`` of them, are tried as extensions.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch

from speechkit.log import progress

if TYPE_CHECKING:  # only for type hints; the LM lives in speechkit.text
    from speechkit.text.ngram_lm import TokenNgramLM
    from speechkit.text.tokenizer import Tokenizer

__all__ = [
    "DecodeConfig", "Hypothesis", "ctc_greedy_decode", "ctc_prefix_beam_search", "CTCDecoder",
    "decode_batches", "write_hyp",
]

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


def _check_inputs(log_probs, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    log_probs = torch.as_tensor(log_probs)
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, vocab), got shape {tuple(log_probs.shape)}")
    B, T, _ = log_probs.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=log_probs.device)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.max()) > T or int(lengths.min()) < 0):
        raise ValueError(f"lengths must lie in [0, {T}] (the time axis of log_probs), got {lengths.tolist()}")
    return log_probs, lengths


def ctc_greedy_decode(log_probs, lengths=None, blank: int = 0) -> list[list[int]]:
    """Best path decoding: argmax per frame, collapse repeats, drop blanks; batched.

    log_probs: (B, T, V) scores (log-probs or logits: only the argmax matters);
    lengths: (B,) valid frames per utterance (None = all T).
    """
    log_probs, lengths = _check_inputs(log_probs, lengths)
    B, T, _ = log_probs.shape
    best = log_probs.argmax(dim=-1)  # (B, T)
    # previous frame's label; -1 before the first frame so frame 0 is never a "repeat"
    prev = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], dim=1)
    valid = torch.arange(T, device=best.device)[None, :] < lengths[:, None]
    keep = (best != blank) & (best != prev) & valid  # (B, T)
    best, keep = best.cpu(), keep.cpu()
    return [best[b][keep[b]].tolist() for b in range(B)]


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # ranking score: ctc_score + lm_weight * lm_score + insertion_bonus * len(tokens)
    ctc_score: float  # log P_ctc(tokens | x), summed over the alignments kept in the beam
    lm_score: float = 0.0  # log P_lm(tokens </s>), 0 without an LM


@dataclasses.dataclass
class DecodeConfig:
    """How to decode; ``method`` is ``greedy`` or ``beam``."""

    method: str = "greedy"
    beam_size: int = 10
    nbest: int = 1
    prune_logp: float = 10.0  # try only tokens within this many nats of the frame's best token
    max_tokens_per_frame: int = 0  # and at most this many per frame (0 = beam_size)
    lm_weight: float = 0.0
    insertion_bonus: float = 0.0

    def __post_init__(self):
        if self.method not in ("greedy", "beam"):
            raise ValueError(f"decode method must be 'greedy' or 'beam', got {self.method!r}")
        if self.beam_size < 1 or self.nbest < 1 or self.nbest > self.beam_size:
            raise ValueError(f"need 1 <= nbest ({self.nbest}) <= beam_size ({self.beam_size})")


class _PrefixTrie:
    """Prefixes as nodes of a trie, so extending and hashing a prefix is O(1) rather than O(length)."""

    def __init__(self, lm: "TokenNgramLM | None"):
        self.parent = [-1]
        self.last = [-1]  # last label of the prefix; -1 for the empty prefix
        self.length = [0]
        self.lm = lm
        self.lm_acc = [0.0]  # accumulated LM log-prob of the prefix's tokens
        self.lm_state = [lm.initial_state()] if lm is not None else []
        self.children: dict[tuple[int, int], int] = {}

    def child(self, node: int, token: int) -> int:
        key = (node, token)
        n = self.children.get(key)
        if n is None:
            n = self.children[key] = len(self.parent)
            self.parent.append(node)
            self.last.append(token)
            self.length.append(self.length[node] + 1)
            if self.lm is not None:
                lp, state = self.lm.score(self.lm_state[node], token)
                self.lm_acc.append(self.lm_acc[node] + lp)
                self.lm_state.append(state)
        return n

    def tokens(self, node: int) -> tuple[int, ...]:
        out = []
        while node > 0:
            out.append(self.last[node])
            node = self.parent[node]
        return tuple(reversed(out))


def _beam_search_one(lp: np.ndarray, beam_size: int, nbest: int, blank: int, prune_logp: float, max_tokens: int,
                     lm: "TokenNgramLM | None", lm_weight: float, bonus: float) -> list[Hypothesis]:
    """Prefix beam search over one utterance; ``lp`` is (T, V) float64 log-probs."""
    T, V = lp.shape
    use_lm = lm is not None and lm_weight != 0.0
    trie = _PrefixTrie(lm if use_lm else None)
    last, length, lm_acc, children = trie.last, trie.length, trie.lm_acc, trie.children
    # prefix node -> [log p(ends in blank), log p(ends in last label)]
    beam: dict[int, list[float]] = {0: [0.0, NEG_INF]}
    k = min(max_tokens, V)
    for t in range(T):
        row = lp[t]
        # candidate extensions: the k best non-blank tokens of this frame, within prune_logp of the best
        cand = np.argpartition(-row, k - 1)[:k] if k < V else np.arange(V)
        floor = row.max() - prune_logp
        cand = [int(c) for c in cand if c != blank and row[c] >= floor]
        rowl = row.tolist()
        p_blank = rowl[blank]
        nxt: dict[int, list[float]] = {}
        for node, (pb, pnb) in beam.items():
            ptot = _logaddexp(pb, pnb)
            entry = nxt.get(node)
            if entry is None:
                entry = nxt[node] = [NEG_INF, NEG_INF]
            entry[0] = _logaddexp(entry[0], ptot + p_blank)
            prev = last[node]
            if prev >= 0:  # the last label repeated without a blank collapses into the same prefix
                entry[1] = _logaddexp(entry[1], pnb + rowl[prev])
            for c in cand:
                new = children.get((node, c))
                if new is None:
                    new = trie.child(node, c)
                e = nxt.get(new)
                if e is None:
                    e = nxt[new] = [NEG_INF, NEG_INF]
                # a repeat of the last label needs a blank in between to count as a new label
                e[1] = _logaddexp(e[1], (pb if c == prev else ptot) + rowl[c])

        def rank(item):
            node, (pb, pnb) = item
            s = _logaddexp(pb, pnb) + bonus * length[node]
            return s + lm_weight * lm_acc[node] if use_lm else s

        # a prefix with zero probability (e.g. a repeat right after a prefix with pb = -inf) takes no beam slot
        live = [item for item in nxt.items() if item[1][0] != NEG_INF or item[1][1] != NEG_INF]
        beam = dict(heapq.nlargest(beam_size, live, key=rank))

    hyps = []
    for node, (pb, pnb) in beam.items():
        ctc = _logaddexp(pb, pnb)
        lm_s = lm_acc[node] + lm.final_score(trie.lm_state[node]) if use_lm else 0.0
        hyps.append(Hypothesis(trie.tokens(node), ctc + lm_weight * lm_s + bonus * length[node], ctc, lm_s))
    hyps.sort(key=lambda h: h.score, reverse=True)
    return hyps[:nbest]


def ctc_prefix_beam_search(log_probs, lengths=None, beam_size: int = 10, nbest: int = 1, blank: int = 0,
                           prune_logp: float = math.inf, max_tokens_per_frame: int = 0,
                           lm: "TokenNgramLM | None" = None, lm_weight: float = 0.0,
                           insertion_bonus: float = 0.0) -> list[list[Hypothesis]]:
    """CTC prefix beam search for each utterance of a batch.

    log_probs: (B, T, V) log-softmax outputs; lengths: (B,) valid frames (None = all T).
    Returns, per utterance, up to ``nbest`` :class:`Hypothesis` sorted best first.
    ``max_tokens_per_frame`` 0 means no per-frame token limit.
    """
    log_probs, lengths = _check_inputs(log_probs, lengths)
    B, T, V = log_probs.shape
    if not 0 <= blank < V:
        raise ValueError(f"blank id {blank} outside the vocabulary of size {V}")
    lp = log_probs.detach().to("cpu", torch.float64).numpy()
    max_tokens = max_tokens_per_frame if max_tokens_per_frame > 0 else V
    out = []
    for b in range(B):
        n = int(lengths[b])
        out.append(_beam_search_one(lp[b, :n], beam_size, nbest, blank, prune_logp, max_tokens, lm, lm_weight,
                                    insertion_bonus))
    return out


class CTCDecoder:
    """Greedy or beam decoding by :class:`DecodeConfig`; ``decoder(log_probs, lengths) -> list[list[int]]``."""

    def __init__(self, config: DecodeConfig | None = None, blank: int = 0, lm: "TokenNgramLM | None" = None):
        self.config = config or DecodeConfig()
        self.blank = blank
        self.lm = lm
        if self.config.lm_weight and lm is None:
            raise ValueError("DecodeConfig.lm_weight is set but no LM was given to CTCDecoder")
        if lm is not None and self.config.method != "beam":
            raise ValueError("LM shallow fusion needs method='beam'")

    def __call__(self, log_probs, lengths=None) -> list[list[int]]:
        cfg = self.config
        if cfg.method == "greedy":
            return ctc_greedy_decode(log_probs, lengths, self.blank)
        hyps = ctc_prefix_beam_search(
            log_probs, lengths, beam_size=cfg.beam_size, nbest=1, blank=self.blank, prune_logp=cfg.prune_logp,
            max_tokens_per_frame=cfg.max_tokens_per_frame or cfg.beam_size, lm=self.lm,
            lm_weight=cfg.lm_weight, insertion_bonus=cfg.insertion_bonus)
        return [list(h[0].tokens) if h else [] for h in hyps]


def decode_batches(batches: Iterable[tuple[Sequence[str], torch.Tensor, torch.Tensor]], decoder: CTCDecoder,
                   tokenizer: "Tokenizer", total: int | None = None) -> dict[str, str]:
    """Decode ``(utt_ids, log_probs (B,T,V), lengths (B,))`` batches to ``{utt: text}``, with a progress bar."""
    hyps: dict[str, str] = {}
    for utt_ids, log_probs, lengths in progress(batches, desc="decode", total=total, unit="batch"):
        if len(utt_ids) != log_probs.shape[0]:
            raise ValueError(f"batch has {len(utt_ids)} utterance ids but log_probs of shape {tuple(log_probs.shape)}")
        for utt, ids in zip(utt_ids, decoder(log_probs, lengths)):
            if utt in hyps:
                raise ValueError(f"utterance {utt!r} decoded twice")
            hyps[utt] = tokenizer.decode(ids)
    return hyps


def write_hyp(path, hyps: dict[str, str]) -> None:
    """Write ``{utt: text}`` as a Kaldi text file sorted by utterance id (byte order)."""
    import os
    import pathlib

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for utt in sorted(hyps, key=lambda u: u.encode("utf-8")):
            f.write(f"{utt} {hyps[utt]}".rstrip() + "\n")
    os.replace(tmp, path)
