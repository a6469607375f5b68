"""Token n-gram LM (interpolated Kneser-Ney): hand values, normalisation, save/load, CLI."""
import math
import random

import pytest

from speechkit.bin import train_token_lm
from speechkit.text.ngram_lm import TokenNgramLM
from speechkit.text.tokenizer import train_tokenizer


def test_hand_computed_bigram():
    # sentences "1 2" and "1 3": token ids 1..3, eos = 4, one BOS pad
    lm = TokenNgramLM.train([[1, 2], [1, 3]], vocab_size=4, order=2)
    # bigram count-of-counts n1=4 (1>2, 1>3, 2>eos, 3>eos), n2=1 (BOS>1) -> D2 = 4/6;
    # unigram continuation counts (distinct left neighbours) 1:1, 2:1, 3:1, eos:2 -> n1=3, n2=1 -> D1 = 3/5
    assert lm.discounts == pytest.approx([0.6, 2 / 3])
    # P1(w) = (N(w) - 0.6)/5 + 0.6*4/5 * 1/4  ->  P1(1) = P1(2) = P1(3) = 0.2, P1(eos) = 0.4
    assert [lm.prob([5], w) for w in (1, 2, 3, 4)] == pytest.approx([0.2, 0.2, 0.2, 0.4])  # unseen context
    # P(2 | 1) = (1 - 2/3)/2 + (2/3) * 2/2 * P1(2)
    assert lm.prob([1], 2) == pytest.approx(0.3)
    assert lm.prob([1], 4) == pytest.approx(2 / 3 * 0.4)
    # P(1 | BOS) = (2 - 2/3)/2 + (2/3) * 1/2 * P1(1); the empty context means "sentence start"
    assert lm.prob([], 1) == pytest.approx((2 - 2 / 3) / 2 + (2 / 3) * (1 / 2) * 0.2)
    assert lm.prob([], 2) == pytest.approx((2 / 3) * (1 / 2) * 0.2)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_sum_to_one(order):
    rng = random.Random(order)
    V = 8
    sents = [[rng.choice([1, 2, 3, 3, 4, 5]) for _ in range(rng.randint(1, 12))] for _ in range(60)]
    lm = TokenNgramLM.train(sents, V, order)
    contexts = [[], [3], [3, 3], [1, 2, 3], [7, 7, 7], [6, 1, 2]]  # seen and unseen
    for h in contexts:
        probs = [lm.prob(h, w) for w in range(1, V + 1)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        assert min(probs) > 0


def test_learns_regularities_and_ranks_sentences():
    sents = [[1, 2, 3]] * 20 + [[2, 1, 3]] * 2
    lm = TokenNgramLM.train(sents, 5, order=3)
    assert lm.prob([1], 2) > 0.8
    assert lm.sentence_logprob([1, 2, 3]) > lm.sentence_logprob([2, 1, 3]) > lm.sentence_logprob([3, 2, 1])
    with pytest.raises(ValueError, match="outside 1..4"):
        TokenNgramLM.train([[0, 1]], 5)


def test_save_load(tmp_path):
    lm = TokenNgramLM.train([[1, 2, 3, 2], [2, 3]], 6, order=3)
    back = TokenNgramLM.load(lm.save(tmp_path / "lm.json"))
    for h in ([], [2], [1, 2], [5, 5]):
        for w in range(1, 7):
            assert back.prob(h, w) == lm.prob(h, w)


def test_cli(tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("u1 A B A B\nu2 A B\nu3 B A\n")
    tok = train_tokenizer(["A B"], "char")
    tok.save(tmp_path / "tok")
    assert train_token_lm.main(["--text", str(text), "--tokenizer", str(tmp_path / "tok"), "--order", "3",
                                "--out", str(tmp_path / "lm.json"), "--dev-text", str(text)]) == 0
    out = capsys.readouterr().out
    ppl = float(out.split("train ppl ")[1].split(",")[0])
    assert 1.0 < ppl < tok.vocab_size  # better than uniform over the predicted set
    lm = TokenNgramLM.load(tmp_path / "lm.json")
    assert lm.vocab_size == tok.vocab_size and lm.order == 3
    assert math.isfinite(lm.sentence_logprob(tok.encode("B B B")))
