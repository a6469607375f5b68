"""Batched beam search for attention decoders, with a length penalty and optional CTC prefix scoring.

:func:`beam_search` keeps ``beam`` live hypotheses per utterance for a whole batch at once (rows
``b * beam + k`` of every tensor). At each step the model scores the next token of every live hypothesis;
every live hypothesis followed by EOS is a finished candidate, and the ``beam`` best non-EOS
expansions per utterance stay alive (fairseq looks for EOS only among the best ``2 * beam`` expansions and so
can lose an ending that a wider look keeps; this costs nothing). A finished hypothesis of ``n`` tokens plus EOS scores ``logp / (n + 1) ** len_penalty``
(fairseq's ``--lenpen`` normalisation); at an utterance's maximum length only EOS may follow.

An utterance is done when no live hypothesis can still enter its ``beam`` best finished ones. The bound is
exact: log-probs only fall as a hypothesis grows and, with ``len_penalty >= 0``, a live hypothesis with
log-prob ``s <= 0`` can at best finish at ``s / (max_len + 1) ** len_penalty``. So with a beam as wide as the
search space the result equals exhaustive search (the tests check this on a tiny vocabulary).

Joint CTC/attention decoding (Watanabe et al., 2017; ESPnet's ``ctc_weight``): :class:`CTCPrefixScorer` gives
``log p_ctc(prefix + c, ...)`` for the best ``pre_beam`` attention candidates of each hypothesis, and the
expansion score is ``(1 - w) * attention + w * ctc`` (increments of the prefix scores).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS and EOS
    score: float  # length-normalised, what the ranking uses
    logp: float  # raw sum of (combined) log-probs, EOS included
    extra: dict = field(default_factory=dict)


class CTCPrefixScorer:
    """CTC prefix probabilities of hypotheses, vectorised over hypotheses and candidate tokens.

    ``log_probs`` (N, T, V) and ``lengths`` (N,) are the CTC head's outputs, already expanded to one row per
    hypothesis. State per hypothesis: ``r`` (T, N, 2) = log-probs of the prefix over frames 0..t ending in a
    non-blank / blank, and ``psi`` (N,) = log p(prefix as the start of the output).
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank: int, eos: int) -> None:
        self.x = log_probs.transpose(0, 1).float()  # (T, N, V)
        self.T, self.N, _ = self.x.shape
        self.lengths = lengths.to(log_probs.device).long()
        self.blank, self.eos = blank, eos
        r = torch.full((self.T, self.N, 2), NEG_INF, device=log_probs.device)
        r[:, :, 1] = torch.cumsum(self.x[:, :, blank], dim=0)  # empty prefix: blanks only
        self.r = r
        self.psi = torch.zeros(self.N, device=log_probs.device)
        self.last = torch.full((self.N,), -1, dtype=torch.long, device=log_probs.device)
        self.valid_t = torch.arange(self.T, device=log_probs.device)[:, None] < self.lengths[None, :]  # (T, N)

    def score(self, cands: Tensor) -> tuple[Tensor, Tensor]:
        """cands (N, P) token ids -> (prefix log-probs (N, P), new r (T, N, P, 2)); EOS gets log p(prefix)."""
        T, N, P = self.T, self.N, cands.size(1)
        x_c = torch.gather(self.x, 2, cands[None].expand(T, N, P))  # (T, N, P)
        r_prev = self.r
        both = torch.logaddexp(r_prev[:, :, 0], r_prev[:, :, 1])  # (T, N)
        same = cands == self.last[:, None]  # repeating the last token needs a blank in between
        phi = torch.where(same[None], r_prev[:, :, 1][:, :, None], both[:, :, None])  # (T, N, P)
        r = torch.full((T, N, P, 2), NEG_INF, device=x_c.device)
        empty = self.last < 0
        r[0, :, :, 0] = torch.where(empty[:, None], x_c[0], torch.full_like(x_c[0], NEG_INF))
        x_blank = self.x[:, :, self.blank]  # (T, N)
        for t in range(1, T):
            r[t, :, :, 0] = torch.logaddexp(r[t - 1, :, :, 0], phi[t - 1]) + x_c[t]
            r[t, :, :, 1] = torch.logaddexp(r[t - 1, :, :, 0], r[t - 1, :, :, 1]) + x_blank[t][:, None]
        # psi = r[0, 0] + sum_{t=1}^{L-1} phi[t-1] * x_c[t], frames beyond an utterance's length excluded
        terms = phi[:-1] + x_c[1:]  # (T-1, N, P)
        terms = terms.masked_fill(~self.valid_t[1:, :, None], NEG_INF)
        psi = torch.logaddexp(r[0, :, :, 0], torch.logsumexp(terms, dim=0)) if T > 1 else r[0, :, :, 0].clone()
        # EOS: the prefix is the whole output, probability of all its alignments up to the last frame
        last_t = (self.lengths - 1).clamp(min=0)
        end = both.gather(0, last_t[None]).squeeze(0)  # (N,)
        psi = torch.where(cands == self.eos, end[:, None], psi)
        return psi, r

    def select(self, rows: Tensor, cand_index: Tensor, tokens: Tensor, psi: Tensor, r: Tensor) -> None:
        """Keep, for each new hypothesis, row ``rows`` and its candidate ``cand_index`` (position in P)."""
        self.r = r[:, rows, cand_index]
        self.psi = psi[rows, cand_index]
        self.last = tokens
        # x, lengths and valid_t are per utterance, and rows stay within an utterance's block of rows


def beam_search(
    step: Callable[[Tensor], Tensor],
    reorder: Callable[[Tensor], None],
    batch_size: int,
    beam: int,
    bos: int,
    eos: int,
    max_lens: list[int],
    len_penalty: float = 1.0,
    ctc: CTCPrefixScorer | None = None,
    ctc_weight: float = 0.0,
    pre_beam: int | None = None,
    device: torch.device | str = "cpu",
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """Best ``nbest`` hypotheses per utterance.

    ``step(prefixes (N, t + 1) starting with BOS) -> (N, V)`` next-token log-probs for the N = batch x beam
    live rows; ``reorder(order (N,))`` makes the model's incremental state follow the surviving rows.
    ``max_lens[b]``: most tokens (EOS not counted) utterance b may get.
    """
    if beam < 1:
        raise ValueError(f"beam size must be >= 1, got {beam}")
    if len_penalty < 0:
        raise ValueError(f"len_penalty must be >= 0 (the stopping bound assumes it), got {len_penalty}")
    if len(max_lens) != batch_size:
        raise ValueError(f"{len(max_lens)} max lengths for a batch of {batch_size}")
    if ctc is not None and not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    B, K = batch_size, beam
    N = B * K
    prefixes = torch.full((N, 1), bos, dtype=torch.long, device=device)
    scores = torch.full((B, K), NEG_INF, device=device)
    scores[:, 0] = 0.0  # all rows start identical: only the first may expand, or the beam fills with copies
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    max_len_t = torch.tensor(max_lens, device=device)
    for t in range(max(max_lens) + 1):
        att = step(prefixes).float()  # (N, V)
        V = att.size(1)
        if ctc is not None and ctc_weight > 0:
            P = min(V, pre_beam or max(int(1.5 * K), K + 1))
            cands = att.topk(P, dim=1).indices
            has_eos = (cands == eos).any(dim=1, keepdim=True)
            cands[:, -1:] = torch.where(has_eos, cands[:, -1:], torch.full_like(cands[:, -1:], eos))
            psi, r_new = ctc.score(cands)
            comb = (1 - ctc_weight) * att.gather(1, cands) + ctc_weight * (psi - ctc.psi[:, None])
            step_scores = torch.full_like(att, NEG_INF).scatter(1, cands, comb)
        else:
            cands = psi = r_new = None
            step_scores = att
        # at its maximum length an utterance's hypotheses can only end
        at_max = (max_len_t <= t).repeat_interleave(K)
        if bool(at_max.any()):
            eos_col = step_scores[:, eos].clone()
            step_scores[at_max] = NEG_INF
            step_scores[at_max, eos] = eos_col[at_max]
        total = scores.view(N, 1) + step_scores  # (N, V)
        ends = total[:, eos].view(B, K).tolist()  # every live hypothesis may end here
        total[:, eos] = NEG_INF
        top_v, top_i = total.view(B, K * V).topk(min(K, K * V), dim=1)
        top_v, top_i = top_v.tolist(), top_i.tolist()
        norm = float(t + 1) ** len_penalty
        new_rows, new_tokens, new_scores = [], [], []
        for b in range(B):
            alive: list[tuple[int, int, float]] = []
            if not done[b]:
                for k, v in enumerate(ends[b]):
                    if v > NEG_INF:
                        finished[b].append(Hypothesis(prefixes[b * K + k, 1:].tolist(), v / norm, v))
                for v, i in zip(top_v[b], top_i[b]):
                    if v > NEG_INF:
                        alive.append((b * K + i // V, i % V, v))
                finished[b].sort(key=lambda h: -h.score)
                del finished[b][max(K, nbest):]
                bound = alive[0][2] / float(max_lens[b] + 1) ** len_penalty if alive else NEG_INF
                if not alive or (len(finished[b]) >= K and finished[b][K - 1].score >= bound):
                    done[b] = True
            if done[b]:  # placeholder rows: never expanded again
                alive = []
            while len(alive) < K:
                alive.append((b * K, eos, NEG_INF))
            for row, tok, v in alive:
                new_rows.append(row)
                new_tokens.append(tok)
                new_scores.append(v)
        if all(done):
            break
        order = torch.tensor(new_rows, dtype=torch.long, device=device)
        tok_t = torch.tensor(new_tokens, dtype=torch.long, device=device)
        prefixes = torch.cat([prefixes.index_select(0, order), tok_t[:, None]], dim=1)
        scores = torch.tensor(new_scores, device=device).view(B, K)
        reorder(order)
        if ctc is not None and cands is not None:
            pos = (cands.index_select(0, order) == tok_t[:, None]).float().argmax(dim=1)
            ctc.select(order, pos, tok_t, psi, r_new)
    return [f[:nbest] for f in finished]
