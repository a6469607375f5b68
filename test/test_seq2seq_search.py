"""Beam search against exhaustive search on a tiny vocabulary; CTC prefix scores against torch's CTC loss;
the transformer decoder's incremental path against teacher forcing."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechkit.downstream.beam_search import CTCPrefixScorer, beam_search
from speechkit.downstream.seq2seq_decoder import DECODER_PRESETS, TransformerDecoder

V, EOS, BOS = 4, 0, 0  # tokens 1..3 plus EOS (= BOS, as the seq2seq model uses them)


def toy_model(seed: int):
    """Next-token log-probs as a fixed random function of (utterance, whole prefix)."""
    g = torch.Generator().manual_seed(seed)
    table: dict[tuple, torch.Tensor] = {}

    def logp(b: int, prefix: tuple[int, ...]) -> torch.Tensor:
        key = (b, prefix)
        if key not in table:
            table[key] = F.log_softmax(2.0 * torch.randn(V, generator=g), dim=0)
        return table[key]
    return logp


def exhaustive(logp, b: int, max_len: int, lp: float) -> tuple[list[int], float]:
    best, best_s = None, -math.inf
    for n in range(max_len + 1):
        for seq in itertools.product(range(1, V), repeat=n):
            s = sum(float(logp(b, seq[:i])[seq[i]]) for i in range(n)) + float(logp(b, seq)[EOS])
            s /= (n + 1) ** lp
            if s > best_s:
                best, best_s = list(seq), s
    return best, best_s


def run_beam(logp, B: int, beam: int, max_lens: list[int], lp: float):
    def step(prefixes: torch.Tensor) -> torch.Tensor:
        rows = [logp(r // beam, tuple(prefixes[r, 1:].tolist())) for r in range(prefixes.size(0))]
        return torch.stack(rows)
    return beam_search(step, lambda order: None, B, beam, BOS, EOS, max_lens, lp)


@pytest.mark.parametrize("lp", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_search(lp, seed):
    logp = toy_model(seed)
    max_lens = [3, 2, 4]
    hyps = run_beam(logp, 3, 3 ** 4, max_lens, lp)  # beam as wide as every prefix: nothing pruned
    for b, m in enumerate(max_lens):
        ref, ref_s = exhaustive(logp, b, m, lp)
        assert hyps[b][0].tokens == ref
        assert hyps[b][0].score == pytest.approx(ref_s, abs=1e-5)


def test_beam_one_follows_the_best_token_and_ends_at_the_best_eos():
    """Beam 1: the live hypothesis always takes the best non-EOS token; the answer is the best of its
    prefixes + EOS (finished hypotheses are kept as they appear), and its logp is the raw sum."""
    logp = toy_model(5)
    hyps = run_beam(logp, 2, 1, [6, 6], 0.0)
    for b in range(2):
        seq: list[int] = []
        ends = []
        for n in range(7):
            raw = sum(float(logp(b, tuple(seq[:i]))[seq[i]]) for i in range(n)) + float(logp(b, tuple(seq))[EOS])
            ends.append((raw, list(seq)))
            if n < 6:
                seq.append(int(logp(b, tuple(seq))[1:].argmax()) + 1)
        best_raw, best_seq = max(ends, key=lambda e: e[0])
        assert hyps[b][0].tokens == best_seq
        assert hyps[b][0].logp == pytest.approx(best_raw, abs=1e-5)


def test_small_beam_never_beats_exhaustive_and_wider_is_no_worse():
    logp = toy_model(11)
    for b in range(4):
        _, ref_s = exhaustive(logp, b, 4, 1.0)
    s2 = [h[0].score for h in run_beam(logp, 4, 2, [4] * 4, 1.0)]
    s81 = [h[0].score for h in run_beam(logp, 4, 81, [4] * 4, 1.0)]
    for b in range(4):
        _, ref_s = exhaustive(logp, b, 4, 1.0)
        assert s2[b] <= ref_s + 1e-6 and s81[b] == pytest.approx(ref_s, abs=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="len_penalty"):
        beam_search(lambda p: None, lambda o: None, 1, 2, 0, 0, [3], len_penalty=-1)
    with pytest.raises(ValueError, match="max lengths"):
        beam_search(lambda p: None, lambda o: None, 2, 2, 0, 0, [3])


def test_ctc_prefix_score_of_a_whole_sequence_is_minus_ctc_loss():
    torch.manual_seed(0)
    N, T, Vc, blank = 3, 9, 5, 0
    lp = F.log_softmax(torch.randn(N, T, Vc), dim=-1)
    lengths = torch.tensor([9, 7, 5])
    seqs = [[1, 2, 2], [3, 1], [4]]
    eos = Vc  # an id outside the CTC vocabulary is fine: EOS is only compared, never gathered
    sc = CTCPrefixScorer(torch.cat([lp, torch.zeros(N, T, 1)], dim=-1), lengths, blank, eos)
    for i in range(max(map(len, seqs))):
        cands = torch.tensor([[s[i] if i < len(s) else s[-1], eos] for s in seqs])
        psi, r = sc.score(cands)
        sc.select(torch.arange(N), torch.zeros(N, dtype=torch.long), cands[:, 0], psi, r)
    # rows whose sequence is shorter repeated their last token; recompute them for their own length
    for n, s in enumerate(seqs):
        sc2 = CTCPrefixScorer(torch.cat([lp[n:n + 1], torch.zeros(1, T, 1)], dim=-1), lengths[n:n + 1], blank, eos)
        for tok in s:
            psi, r = sc2.score(torch.tensor([[tok, eos]]))
            sc2.select(torch.tensor([0]), torch.tensor([0]), torch.tensor([tok]), psi, r)
        psi, _ = sc2.score(torch.tensor([[eos]]))
        ref = -F.ctc_loss(lp[n:n + 1, : lengths[n]].transpose(0, 1), torch.tensor([s]), lengths[n:n + 1],
                          torch.tensor([len(s)]), blank=blank, reduction="sum")
        assert float(psi[0, 0]) == pytest.approx(float(ref), abs=1e-4)


def test_ctc_prefix_probabilities_sum_over_extensions():
    """p(prefix as start) = p(prefix exactly) + sum_c p(prefix + c as start) (the prefix-probability identity)."""
    torch.manual_seed(1)
    T, Vc = 6, 4
    lp = F.log_softmax(torch.randn(1, T, Vc), dim=-1)
    eos = Vc
    x = torch.cat([lp, torch.zeros(1, T, 1)], dim=-1)
    sc = CTCPrefixScorer(x, torch.tensor([T]), 0, eos)
    psi, r = sc.score(torch.tensor([[2]]))
    sc.select(torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), psi, r)
    psi_all, _ = sc.score(torch.tensor([[eos, 1, 2, 3]]))
    lhs = float(sc.psi[0])
    rhs = float(torch.logsumexp(psi_all[0], dim=0))
    assert rhs == pytest.approx(lhs, abs=1e-4)


def test_incremental_decoder_matches_teacher_forcing():
    torch.manual_seed(0)
    cfg = DECODER_PRESETS["tiny"]
    dec = TransformerDecoder(cfg, vocab_size=7, encoder_dim=24).eval()
    enc = torch.randn(2, 5, 24)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    toks = torch.tensor([[0, 3, 4, 1], [0, 2, 2, 6]])
    full = dec(toks, enc, pad)
    cache: dict = {}
    steps = [dec(toks[:, : i + 1], enc, pad, cache=cache)[:, -1] for i in range(4)]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)
    # the padded frames of utterance 2 do not matter
    enc2 = enc.clone()
    enc2[1, 3:] = 100.0
    assert torch.allclose(dec(toks, enc2, pad)[1], full[1], atol=1e-5)
    # tied embeddings: one tensor for input and output
    assert dec.embed_out is None and "embed_tokens.weight" in dict(dec.named_parameters())


def test_decoder_presets_parameter_counts():
    """Base / Large decoders from the anchor's sizes: embeddings V x D, per layer 2 attentions (4 D^2 + 4 D),
    FFN (2 D F + F + D), 3 layer norms (6 D), plus the final LN (2 D)."""
    V = 1000
    for name in ("base", "large"):
        c = DECODER_PRESETS[name]
        D, Fd, L = c.embed_dim, c.ffn_dim, c.num_layers
        expect = V * D + L * (2 * (4 * D * D + 4 * D) + 2 * D * Fd + Fd + D + 6 * D) + 2 * D
        with torch.device("meta"):  # shapes only: no memory, no init time
            dec = TransformerDecoder(c, V, D)
        assert sum(p.numel() for p in dec.parameters()) == expect
    assert (DECODER_PRESETS["base"].num_layers, DECODER_PRESETS["base"].num_heads) == (6, 4)
    assert (DECODER_PRESETS["large"].num_layers, DECODER_PRESETS["large"].embed_dim,
            DECODER_PRESETS["large"].ffn_dim, DECODER_PRESETS["large"].num_heads) == (9, 1024, 4096, 8)
