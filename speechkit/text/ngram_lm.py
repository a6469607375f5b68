"""n-gram language models (interpolated Kneser-Ney): token-level for CTC shallow fusion, word-level as ARPA.

:class:`TokenNgramLM` is token-level, for CTC shallow fusion in speechkit's own beam search;
:class:`WordNgramLM` (bottom of this file) is word-level and reads/writes ARPA files, the format
KenLM and flashlight's lexicon decoder load (word-level CTC decoding, speechkit.downstream.word_decode).

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

__all__ = ["TokenNgramLM", "WordNgramLM", "kn_discount"]

BOS = -1


def kn_discount(counts: Iterable[int]) -> float:
    """One absolute discount ``n1 / (n1 + 2 n2)`` from (adjusted) counts, clipped to [0.05, 0.95]."""
    coc = collections.Counter(counts)
    n1, n2 = coc.get(1, 0), coc.get(2, 0)
    d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return min(max(d, 0.05), 0.95)


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
        discounts = [kn_discount(c for f in table.values() for c in f.values()) for table in counts]
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


# ====================================================================== word level, ARPA
BOS_WORD, EOS_WORD, UNK_WORD = "<s>", "</s>", "<unk>"
_LOG10 = math.log(10.0)


class WordNgramLM:
    """A back-off word n-gram LM, held as an ARPA file holds it (log10 probability and back-off per n-gram).

    Scoring follows ARPA semantics: ``P(w | h)`` is the listed probability of ``h w`` when that n-gram is
    listed, else ``bow(h) * P(w | h[1:])`` (``bow`` = 1 for a context that is not listed). A sentence is
    ``<s> w1 ... wn </s>``: ``<s>`` is only ever a context (log10 probability -99 by convention), ``</s>``
    is predicted, and a word outside the vocabulary scores as ``<unk>``.

    :meth:`train` estimates interpolated Kneser-Ney with the conventions of KenLM's lmplz: the
    highest order and n-grams starting with ``<s>`` keep raw counts, lower orders use continuation
    counts ``N1+(. g)``, one discount per order (:func:`kn_discount`), and the unigrams interpolate
    with the uniform distribution over the predicted words (the vocabulary, ``</s>`` and ``<unk>``),
    so ``<unk>`` gets the leftover mass. Interpolated KN *is* a back-off model: for an n-gram not
    listed, ``P(w | h) = gamma(h) P(w | h[1:])`` with ``gamma(h) = D N1+(h .) / c(h)``, which is
    therefore ``h``'s back-off weight; every conditional distribution sums to one (tests check it,
    on the model and on the ARPA file read back).
    """

    def __init__(self, order: int, ngrams: list[dict[tuple[str, ...], tuple[float, float]]]):
        if order < 1 or len(ngrams) != order:
            raise ValueError(f"an order-{order} LM needs {order} n-gram tables, got {len(ngrams)}")
        for w in (BOS_WORD, EOS_WORD):
            if (w,) not in ngrams[0]:
                raise ValueError(f"the LM's unigrams lack {w}")
        self.order = order
        self.ngrams = ngrams  # ngrams[k-1][k-gram] = (log10 P, log10 back-off weight)
        self.vocab = sorted(w for (w,) in ngrams[0])
        self._known = frozenset(self.vocab)
        self.has_unk = (UNK_WORD,) in ngrams[0]

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, sentences: Iterable[Sequence[str]], order: int = 3) -> "WordNgramLM":
        """Interpolated Kneser-Ney from word sequences (e.g. normalised transcripts split on spaces)."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        raw: list[collections.Counter] = [collections.Counter() for _ in range(order)]
        n_sent = 0
        for i, sent in enumerate(sentences):
            words = list(sent)
            bad = [w for w in words if w in (BOS_WORD, EOS_WORD) or not w or any(c.isspace() for c in w)]
            if bad:
                raise ValueError(f"sentence {i}: invalid word(s) {bad[:3]} (empty, with spaces, or <s>/</s>)")
            seq = [BOS_WORD] + words + [EOS_WORD]
            for j in range(1, len(seq)):
                for k in range(1, min(order, j + 1) + 1):
                    raw[k - 1][tuple(seq[j - k + 1:j + 1])] += 1
            n_sent += 1
        if not n_sent:
            raise ValueError("no training sentences for the word n-gram LM")
        # adjusted counts: raw at the top order and for <s>-initial n-grams, else distinct left neighbours
        adj: list[dict[tuple[str, ...], int]] = [dict() for _ in range(order)]
        adj[order - 1] = dict(raw[order - 1])
        for k in range(order - 1, 0, -1):
            left = collections.Counter(g[1:] for g in raw[k])
            adj[k - 1] = {g: (c if g[0] == BOS_WORD else left[g]) for g, c in raw[k - 1].items()}
        discounts = [kn_discount(t.values()) for t in adj]
        # per order and context: (sum of adjusted counts, number of distinct followers)
        stats: list[dict[tuple[str, ...], list[int]]] = [dict() for _ in range(order)]
        for k, table in enumerate(adj):
            for g, a in table.items():
                s = stats[k].setdefault(g[:-1], [0, 0])
                s[0] += a
                s[1] += 1
        gamma = [{h: discounts[k] * n / tot for h, (tot, n) in stats[k].items()} for k in range(order)]
        predicted = sorted({g[0] for g in adj[0]} | {UNK_WORD})  # includes </s>, never <s>
        probs: list[dict[tuple[str, ...], float]] = [dict() for _ in range(order)]
        tot1 = stats[0][()][0]
        for w in predicted:
            probs[0][(w,)] = max(adj[0].get((w,), 0) - discounts[0], 0.0) / tot1 + gamma[0][()] / len(predicted)

        def lower(g: tuple[str, ...]) -> float:  # ARPA back-off probability of g's last word given the rest
            p_listed = probs[len(g) - 1].get(g)
            if p_listed is not None:
                return p_listed
            return gamma[len(g) - 1].get(g[:-1], 1.0) * lower(g[1:])

        for k in range(1, order):  # orders 2..N, each from the finished orders below it
            for g, a in sorted(adj[k].items()):
                tot, _ = stats[k][g[:-1]]
                probs[k][g] = max(a - discounts[k], 0.0) / tot + gamma[k][g[:-1]] * lower(g[1:])
        ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = [dict() for _ in range(order)]
        for k in range(order):
            bows = gamma[k + 1] if k + 1 < order else {}
            for g, p in probs[k].items():
                ngrams[k][g] = (math.log10(p), math.log10(bows.get(g, 1.0)))
        ngrams[0][(BOS_WORD,)] = (-99.0, math.log10(gamma[1].get((BOS_WORD,), 1.0)) if order > 1 else 0.0)
        return cls(order, ngrams)

    def __contains__(self, word: str) -> bool:
        """Whether ``word`` is in the LM's vocabulary (else it scores as ``<unk>``)."""
        return word in self._known

    # ------------------------------------------------------------------ scoring
    def _log10prob(self, context: tuple[str, ...], word: str) -> float:
        lp, bow = 0.0, 0.0
        for start in range(len(context) + 1):  # longest listed n-gram first
            h = context[start:]
            g = self.ngrams[len(h)].get(h + (word,))
            if g is not None:
                return lp + g[0]
            hb = self.ngrams[len(h) - 1].get(h) if h else None
            bow = hb[1] if hb is not None else 0.0
            lp += bow
        raise KeyError(word)  # unreachable for vocabulary words (every word is a listed unigram)

    def logprob(self, context: Sequence[str], word: str) -> float:
        """Natural-log ``P(word | context)``; start the context with ``<s>`` at a sentence start."""
        known = self._known
        if word == BOS_WORD:
            raise ValueError("<s> is never predicted")
        if word not in known:
            if not self.has_unk:
                return -math.inf
            word = UNK_WORD
        ctx = tuple(w if w in known else UNK_WORD for w in context)[-(self.order - 1):] if self.order > 1 else ()
        return self._log10prob(ctx, word) * _LOG10

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """Natural-log probability of ``<s> words </s>``."""
        seq = [BOS_WORD] + list(words)
        return sum(self.logprob(seq[:i], w) for i, w in enumerate(list(words) + [EOS_WORD], start=1))

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        total, n = 0.0, 0
        for s in sentences:
            total += self.sentence_logprob(s)
            n += len(s) + 1
        return math.exp(-total / max(n, 1))

    # ------------------------------------------------------------------ ARPA io
    def write_arpa(self, path) -> pathlib.Path:
        """Write the ARPA file atomically (temp file + rename); n-grams sorted, so the bytes are reproducible."""
        import os

        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for k, table in enumerate(self.ngrams, start=1):
                f.write(f"ngram {k}={len(table)}\n")
            for k, table in enumerate(self.ngrams, start=1):
                f.write(f"\n\\{k}-grams:\n")
                for g in sorted(table):
                    p, bow = table[g]
                    line = f"{p:.7f}\t{' '.join(g)}"
                    if k < self.order and bow != 0.0:
                        line += f"\t{bow:.7f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def read_arpa(cls, path) -> "WordNgramLM":
        """Read an ARPA file (any back-off LM: ours, KenLM's, SRILM's); errors name the line."""
        path = pathlib.Path(path)
        counts: dict[int, int] = {}
        ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = []
        section = None  # None before \data\, 0 in \data\, k in \k-grams:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                if line == "\\data\\":
                    section = 0
                elif line == "\\end\\":
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    k = line[1:-len("-grams:")]
                    if not k.isdigit() or int(k) != len(ngrams) + 1:
                        raise ValueError(f"{path}:{lineno}: unexpected section {line!r}")
                    section = int(k)
                    ngrams.append({})
                elif section == 0:
                    m = line.split("=")
                    if len(m) != 2 or not m[0].startswith("ngram ") or not m[1].strip().isdigit():
                        raise ValueError(f"{path}:{lineno}: expected 'ngram K=COUNT' in \\data\\, got {line!r}")
                    counts[int(m[0][len("ngram "):])] = int(m[1])
                elif section:
                    parts = line.split()
                    try:
                        p = float(parts[0])
                        words = tuple(parts[1:1 + section])
                        bow = float(parts[1 + section]) if len(parts) == section + 2 else 0.0
                    except (ValueError, IndexError):
                        raise ValueError(f"{path}:{lineno}: expected 'log10prob {section} word(s) [backoff]', "
                                         f"got {line!r}") from None
                    if len(words) != section or len(parts) > section + 2:
                        raise ValueError(f"{path}:{lineno}: expected 'log10prob {section} word(s) [backoff]', "
                                         f"got {line!r}")
                    ngrams[-1][words] = (p, bow)
                elif section is None:
                    continue  # text before \data\ is a comment
        if not ngrams:
            raise ValueError(f"{path}: no n-gram sections: not an ARPA file")
        for k, table in enumerate(ngrams, start=1):
            if counts.get(k) != len(table):
                raise ValueError(f"{path}: \\data\\ says ngram {k}={counts.get(k)} but the section has {len(table)}")
        return cls(len(ngrams), ngrams)
