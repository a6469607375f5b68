"""CTC greedy and prefix beam search decoding, checked on hand cases and by brute force."""
import itertools
import math

import numpy as np
import pytest
import torch

from speechkit.downstream.ctc_decode import (
    CTCDecoder, DecodeConfig, ctc_greedy_decode, ctc_prefix_beam_search, decode_batches, write_hyp,
)
from speechkit.text.tokenizer import CharTokenizer


def one_hot_logp(paths, V, eps=1e-4):
    """(B, T, V) log-probs whose argmax follows each path."""
    T = max(len(p) for p in paths)
    x = np.full((len(paths), T, V), eps)
    for b, p in enumerate(paths):
        for t, s in enumerate(p):
            x[b, t, s] = 1.0
    x /= x.sum(-1, keepdims=True)
    return torch.from_numpy(np.log(x))


def collapse(path, blank=0):
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def brute_force_posteriors(lp: np.ndarray) -> dict:
    """log P(labels | x) for every label sequence, summing over all V**T alignments."""
    T, V = lp.shape
    post: dict = {}
    for path in itertools.product(range(V), repeat=T):
        s = sum(lp[t, c] for t, c in enumerate(path))
        lab = collapse(path)
        post[lab] = np.logaddexp(post.get(lab, -np.inf), s)
    return post


def random_logp(rng, T, V, sharp=2.0):
    x = rng.normal(size=(T, V)) * sharp
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- greedy
def test_greedy_hand_cases():
    paths = [
        [0, 1, 1, 0, 1, 2, 2, 0],  # repeats collapse, a blank separates the two 1s
        [3, 3, 3, 3, 3, 3, 3, 3],  # one long label
        [0, 0, 0, 0, 0, 0, 0, 0],  # all blank -> empty
        [1, 2, 1, 2, 0, 0, 2, 2],
    ]
    lp = one_hot_logp(paths, V=4)
    assert ctc_greedy_decode(lp) == [[1, 1, 2], [3], [], [1, 2, 1, 2, 2]]


def test_greedy_honours_lengths():
    lp = one_hot_logp([[1, 0, 2, 3, 3], [2, 2, 1, 0, 1]], V=4)
    assert ctc_greedy_decode(lp, torch.tensor([3, 5])) == [[1, 2], [2, 1, 1]]
    assert ctc_greedy_decode(lp, torch.tensor([0, 2])) == [[], [2]]
    with pytest.raises(ValueError, match="lengths"):
        ctc_greedy_decode(lp, torch.tensor([6, 1]))


def test_greedy_blank_other_than_zero():
    lp = one_hot_logp([[3, 1, 3, 1, 1, 2]], V=4)
    assert ctc_greedy_decode(lp, blank=3) == [[1, 1, 2]]


def test_greedy_matches_beam_size_one_on_peaked_input():
    lp = one_hot_logp([[0, 1, 1, 0, 1, 2, 2, 0]], V=3, eps=1e-6)
    hyps = ctc_prefix_beam_search(lp, beam_size=1)
    assert list(hyps[0][0].tokens) == ctc_greedy_decode(lp)[0] == [1, 1, 2]


# ---------------------------------------------------------------- prefix beam search
@pytest.mark.parametrize("T,V,seed", [(1, 3, 0), (3, 3, 1), (5, 3, 2), (4, 4, 3), (6, 2, 4), (5, 3, 5)])
def test_beam_search_exact_with_unbounded_beam(T, V, seed):
    """With a beam holding every prefix, each hypothesis score is the exact CTC posterior."""
    lp = random_logp(np.random.default_rng(seed), T, V)
    exact = brute_force_posteriors(lp)
    hyps = ctc_prefix_beam_search(torch.from_numpy(lp)[None], beam_size=10_000, nbest=10_000)[0]
    got = {h.tokens: h.ctc_score for h in hyps}
    assert set(got) == set(exact)
    for lab, s in exact.items():
        assert got[lab] == pytest.approx(s, abs=1e-9), lab
    # probabilities of all label sequences sum to one
    assert np.logaddexp.reduce(list(got.values())) == pytest.approx(0.0, abs=1e-9)
    best = max(exact, key=exact.get)
    assert hyps[0].tokens == best


@pytest.mark.parametrize("seed", range(8))
def test_beam_search_finds_brute_force_best(seed):
    """A modest beam finds the MAP label sequence on tiny problems, where greedy may not."""
    rng = np.random.default_rng(100 + seed)
    lp = random_logp(rng, 6, 3, sharp=1.0)
    exact = brute_force_posteriors(lp)
    best = max(exact, key=exact.get)
    hyp = ctc_prefix_beam_search(torch.from_numpy(lp)[None], beam_size=16)[0][0]
    assert hyp.tokens == best
    assert hyp.ctc_score == pytest.approx(exact[best], abs=1e-6)


def test_beam_beats_greedy_when_alignments_add_up():
    # Frame posteriors where the best path is "blank blank" (0.4*0.4=0.16) but the label "1" has
    # P = 0.3*0.3 + 0.3*0.4 + 0.4*0.3 = 0.33 over its alignments, against 0.16 for the empty output.
    p = np.array([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]])
    lp = torch.from_numpy(np.log(p))[None]
    assert ctc_greedy_decode(lp) == [[]]
    hyps = ctc_prefix_beam_search(lp, beam_size=4, nbest=3)[0]
    assert hyps[0].tokens in [(1,), (2,)]
    assert math.exp(hyps[0].ctc_score) == pytest.approx(0.33)
    assert {h.tokens for h in hyps[:2]} == {(1,), (2,)}


def test_repeated_labels_need_a_blank():
    # "1 1" can only come from 1 0 1; "1" from 1 1 / 1 0 / 0 1 ... checked against brute force
    p = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0]]) + 1e-12
    p /= p.sum(-1, keepdims=True)
    lp = np.log(p)
    exact = brute_force_posteriors(lp)
    hyps = {h.tokens: h.ctc_score for h in ctc_prefix_beam_search(torch.from_numpy(lp)[None], beam_size=100, nbest=100)[0]}
    assert hyps[(1, 1)] == pytest.approx(exact[(1, 1)])
    assert math.exp(hyps[(1, 1)]) == pytest.approx(0.9 * 0.8 * 0.9, rel=1e-6)
    assert hyps[(1,)] == pytest.approx(exact[(1,)])


def test_beam_batched_honours_lengths():
    rng = np.random.default_rng(7)
    a, b = random_logp(rng, 5, 3), random_logp(rng, 3, 3)
    batch = np.zeros((2, 5, 3))
    batch[0] = a
    batch[1, :3] = b
    batch[1, 3:] = np.log(np.array([0.01, 0.98, 0.01]))  # padding that would add a label if read
    hyps = ctc_prefix_beam_search(torch.from_numpy(batch), torch.tensor([5, 3]), beam_size=50)
    solo = ctc_prefix_beam_search(torch.from_numpy(b)[None], beam_size=50)
    assert hyps[1][0].tokens == solo[0][0].tokens
    assert hyps[1][0].ctc_score == pytest.approx(solo[0][0].ctc_score)


def test_pruning_keeps_peaked_result():
    rng = np.random.default_rng(3)
    paths = [list(rng.integers(0, 6, size=30)) for _ in range(3)]
    lp = one_hot_logp(paths, V=6, eps=1e-3)
    dec = CTCDecoder(DecodeConfig(method="beam", beam_size=4, prune_logp=5.0))
    assert dec(lp) == ctc_greedy_decode(lp) == [list(collapse(p)) for p in paths]


def test_decode_config_validation():
    with pytest.raises(ValueError, match="method"):
        DecodeConfig(method="viterbi")
    with pytest.raises(ValueError, match="nbest"):
        DecodeConfig(method="beam", beam_size=2, nbest=3)
    with pytest.raises(ValueError, match="lm_weight"):
        CTCDecoder(DecodeConfig(method="beam", lm_weight=0.5))


def test_decode_batches_and_write_hyp(tmp_path):
    tok = CharTokenizer(list("ABC"))  # ids: 0 blank, 1 unk, 2 |, 3 A, 4 B, 5 C
    b1 = one_hot_logp([[3, 3, 0, 4, 2, 5, 0], [5, 0, 5, 0, 0, 0, 0]], V=6)
    b2 = one_hot_logp([[4, 4, 4]], V=6)
    batches = [(["u1", "u2"], b1, torch.tensor([7, 3])), (["u3"], b2, torch.tensor([3]))]
    hyps = decode_batches(batches, CTCDecoder(), tok, total=2)
    assert hyps == {"u1": "AB C", "u2": "CC", "u3": "B"}
    hyps_beam = decode_batches(batches, CTCDecoder(DecodeConfig(method="beam", beam_size=3)), tok)
    assert hyps_beam == hyps
    write_hyp(tmp_path / "hyp", {"u2": "CC", "u10": "", "u1": "AB C"})
    assert (tmp_path / "hyp").read_text() == "u1 AB C\nu10\nu2 CC\n"
    with pytest.raises(ValueError, match="twice"):
        decode_batches(batches + batches[:1], CTCDecoder(), tok)


# ---------------------------------------------------------------- shallow fusion with a token n-gram LM
def test_lm_shallow_fusion_changes_the_ambiguous_token():
    from speechkit.text.ngram_lm import TokenNgramLM

    lm = TokenNgramLM.train([[1, 2]] * 20 + [[3, 4]] * 5, vocab_size=5, order=2)
    p = np.array([[0.05, 0.9, 0.02, 0.02, 0.01],
                  [0.15, 0.01, 0.40, 0.43, 0.01],  # acoustically "3" is a little more likely than "2"
                  [0.9, 0.025, 0.025, 0.025, 0.025]])
    lp = torch.from_numpy(np.log(p))[None]
    assert ctc_greedy_decode(lp) == [[1, 3]]
    plain = ctc_prefix_beam_search(lp, beam_size=8)[0][0]
    assert plain.tokens == (1, 3) and plain.lm_score == 0.0
    fused = ctc_prefix_beam_search(lp, beam_size=8, lm=lm, lm_weight=1.0, insertion_bonus=0.5, nbest=3)[0]
    assert fused[0].tokens == (1, 2)
    for h in fused:  # scores are the documented combination, the LM part is the full sentence log-prob
        assert h.lm_score == pytest.approx(lm.sentence_logprob(h.tokens))
        assert h.score == pytest.approx(h.ctc_score + 1.0 * h.lm_score + 0.5 * len(h.tokens))
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    dec = CTCDecoder(DecodeConfig(method="beam", beam_size=8, lm_weight=1.0), lm=lm)
    assert dec(lp) == [[1, 2]]
    with pytest.raises(ValueError, match="method='beam'"):
        CTCDecoder(DecodeConfig(method="greedy"), lm=lm)
