"""A token-level n-gram language model (interpolated Kneser-Ney) for CTC shallow fusion.

Trained on the tokenizer's ids of the training transcripts, so it speaks the decoder's
vocabulary directly (characters with ``|`` word boundaries, or sentencepiece pieces). The
predicted set is every non-blank token id ``1..V-1`` plus end-of-sentence (id ``V``); the blank
(id 0) is never predicted. Sentences are padded on the left with ``order - 1`` begin markers.

Interpolated Kneser-Ney (Chen & Goodman, 1998), one absolute discount per order
``D_k = n1 / (n1 + 2 n2)`` from that order's count-of-counts, clipped to [0.05, 0.95]::

    P_k(w | h) = max(c_k(h, w) - D_k, 0) / c_k(h) + D_k * N1+(h .) / c_k(h) * P_{k-1}(w | h')

where ``c_k`` is the raw count at the highest order and the continuation count
``N1+(. h w)`` (number of distinct left neighbours) at lower orders — except for n-grams
that start with the begin marker, which have no left neighbour and keep their raw counts. The
recursion ends in the uniform distribution over the predicted set, so every token, seen or not,
gets probability > 0, and each conditional distribution sums to one (the tests check it).
A context never seen at order k backs off to order k-1 with weight one.
"""
from __future__ import annotations

import collections
import json
import math
import pathlib
from typing import Iterable, Sequence

__all__ = ["TokenNgramLM"]

BOS = -1


class TokenNgramLM:
    def __init__(self, order: int, vocab_size: int, counts: list[dict[tuple[int, ...], dict[int, int]]],
                 discounts: list[float]):
        if order < 1 or len(counts) != order or len(discounts) != order:
            raise ValueError(f"an order-{order} LM needs {order} count tables and discounts")
        self.order = order
        self.vocab_size = vocab_size
        self.eos = vocab_size  # one past the last tokenizer id
        self.counts = counts  # counts[k-1][context of length k-1][token] (continuation counts below the top)
        self.discounts = discounts
        # per context: (total count, number of distinct followers)
        self._stats = [{h: (sum(f.values()), len(f)) for h, f in table.items()} for table in counts]
        self._cache: dict[tuple[tuple[int, ...], int], float] = {}

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, sentences: Iterable[Sequence[int]], vocab_size: int, order: int = 3) -> "TokenNgramLM":
        """Count n-grams of token-id sentences (ids in ``1..vocab_size-1``) and set KN discounts."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        eos = vocab_size
        top: dict[tuple[int, ...], collections.Counter] = collections.defaultdict(collections.Counter)
        n_sent = 0
        for i, sent in enumerate(sentences):
            bad = [t for t in sent if not 0 < t < vocab_size]
            if bad:
                raise ValueError(f"sentence {i}: token ids {bad[:5]} outside 1..{vocab_size - 1} (0 is the blank)")
            seq = [BOS] * (order - 1) + list(sent) + [eos]
            for j in range(order - 1, len(seq)):
                top[tuple(seq[j - order + 1:j])][seq[j]] += 1
            n_sent += 1
        if not n_sent:
            raise ValueError("no training sentences for the n-gram LM")
        counts: list[dict] = [dict() for _ in range(order)]
        counts[order - 1] = {h: dict(c) for h, c in top.items()}
        # lower orders: continuation counts from the order above (raw counts for BOS-initial n-grams)
        for k in range(order - 1, 0, -1):  # build order k from order k+1 (context lengths k-1 from k)
            above = counts[k]
            cont: dict[tuple[int, ...], collections.Counter] = collections.defaultdict(collections.Counter)
            for h, followers in above.items():
                for w, c in followers.items():
                    lower_h = h[1:]
                    ngram_starts_with_bos = (lower_h + (w,))[0] == BOS
                    if ngram_starts_with_bos:
                        cont[lower_h][w] += c  # no left neighbour: the raw count carries down
                    else:
                        cont[lower_h][w] += 1  # one more distinct left neighbour h[0]
            counts[k - 1] = {h: dict(c) for h, c in cont.items()}
        discounts = []
        for table in counts:
            coc = collections.Counter(c for f in table.values() for c in f.values())
            n1, n2 = coc.get(1, 0), coc.get(2, 0)
            d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            discounts.append(min(max(d, 0.05), 0.95))
        return cls(order, vocab_size, counts, discounts)

    # ------------------------------------------------------------------ scoring
    def _context(self, context: Sequence[int]) -> tuple[int, ...]:
        h = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        return (BOS,) * (self.order - 1 - len(h)) + h

    def prob(self, context: Sequence[int], token: int) -> float:
        """P(token | context); ``context`` is the preceding ids (shorter contexts are BOS-padded)."""
        return math.exp(self.logprob(context, token))

    def logprob(self, context: Sequence[int], token: int) -> float:
        h = self._context(context)
        key = (h, token)
        lp = self._cache.get(key)
        if lp is not None:
            return lp
        if not (0 < token <= self.eos):
            raise ValueError(f"token {token} outside the predicted set 1..{self.eos} (eos = {self.eos})")
        p = 1.0 / self.vocab_size  # uniform over ids 1..V-1 and eos: V outcomes
        for k in range(1, self.order + 1):
            hk = h[len(h) - (k - 1):] if k > 1 else ()
            followers = self.counts[k - 1].get(hk)
            if followers is None:
                continue  # unseen context: back off with weight one
            total, types = self._stats[k - 1][hk]
            d = self.discounts[k - 1]
            p = max(followers.get(token, 0) - d, 0.0) / total + d * types / total * p
        lp = self._cache[key] = math.log(p)
        return lp

    def initial_state(self) -> tuple[int, ...]:
        return (BOS,) * (self.order - 1)

    def score(self, state: tuple[int, ...], token: int) -> tuple[float, tuple[int, ...]]:
        """(log P(token | state), next state) — the interface the CTC beam search uses."""
        lp = self.logprob(state, token)
        return lp, (state + (token,))[1:] if self.order > 1 else ()

    def final_score(self, state: tuple[int, ...]) -> float:
        return self.logprob(state, self.eos)

    def sentence_logprob(self, tokens: Sequence[int]) -> float:
        state, total = self.initial_state(), 0.0
        for t in tokens:
            lp, state = self.score(state, t)
            total += lp
        return total + self.final_score(state)

    # ------------------------------------------------------------------ io
    def save(self, path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"type": "token_ngram_kn", "order": self.order, "vocab_size": self.vocab_size,
                "discounts": self.discounts,
                "counts": [[[list(h), sorted(f.items())] for h, f in sorted(t.items())] for t in self.counts]}
        path.write_text(json.dumps(data) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "TokenNgramLM":
        d = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        if d.get("type") != "token_ngram_kn":
            raise ValueError(f"{path}: not a speechkit token n-gram LM (type {d.get('type')!r})")
        counts = [{tuple(h): {int(w): int(c) for w, c in f} for h, f in table} for table in d["counts"]]
        return cls(d["order"], d["vocab_size"], counts, d["discounts"])
