"""Word-level CTC decoding: the ARPA word LM (normalisation, file round trip, KenLM loading), the
lexicon, the flashlight lexicon decoder against a brute-force search and torchaudio's ctc_decoder,
and the train_word_lm / decode_ctc CLIs (grid on dev, applied to test)."""
from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from speechkit.text.lexicon import make_lexicon, read_lexicon, spell, write_lexicon
from speechkit.text.ngram_lm import TokenNgramLM, WordNgramLM
from speechkit.text.tokenizer import CharTokenizer, train_tokenizer

fl = pytest.importorskip("flashlight.lib.text.decoder", reason="flashlight-text is not installed")

LN10 = math.log(10.0)


def random_sentences(seed: int, words: list[str], n: int = 60) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(words[:-1]) for _ in range(rng.randint(1, 8))] for _ in range(n)]  # words[-1] unseen


# ---------------------------------------------------------------------------------------- ARPA LM
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_arpa_distributions_sum_to_one(order, tmp_path):
    words = "a b c d e zz".split()
    lm = WordNgramLM.train(random_sentences(order, words), order)
    back = WordNgramLM.read_arpa(lm.write_arpa(tmp_path / "lm.arpa"))
    assert back.order == order and back.vocab == lm.vocab
    predicted = [w for w in lm.vocab if w != "<s>"]
    assert "<unk>" in predicted and "</s>" in predicted
    contexts = [("<s>",), ("<s>", "a"), ("a", "b"), ("b", "b", "c"), ("e",), ("a", "e", "b"), (), ("zz", "a")]
    for model, tol in ((lm, 1e-12), (back, 1e-5)):  # the file rounds to 7 decimals of log10
        for h in contexts:
            probs = [math.exp(model.logprob(h, w)) for w in predicted]
            assert sum(probs) == pytest.approx(1.0, abs=tol), (order, h)
            assert min(probs) > 0
    assert lm.logprob(("a",), "never-seen") == lm.logprob(("a",), "<unk>")


def test_bigram_equals_the_token_lm():
    # At order 2 the two estimators share every convention (one sentence-start marker, continuation
    # counts, discounts, a uniform base over the vocabulary, </s> and <unk>), so they must agree.
    words = "a b c d e".split()
    sents = random_sentences(7, words + ["x"])
    lm = WordNgramLM.train(sents, 2)
    ids = {w: i for i, w in enumerate(words, start=2)}  # id 1 = <unk>, eos = len(words) + 2
    tok_lm = TokenNgramLM.train([[ids[w] for w in s] for s in sents], vocab_size=len(words) + 2, order=2)
    eos = tok_lm.eos
    for h in [None] + words:
        for w in words + ["</s>", "<unk>"]:
            wid = {"</s>": eos, "<unk>": 1}.get(w, ids.get(w))
            ctx = ("<s>",) if h is None else (h,)
            assert lm.logprob(ctx, w) == pytest.approx(tok_lm.logprob([] if h is None else [ids[h]], wid), abs=1e-12)


def test_arpa_file_loads_in_kenlm_with_the_same_scores(tmp_path):
    from flashlight.lib.text.dictionary import create_word_dict

    words = "a b c d e zz".split()
    sents = random_sentences(3, words)
    lm = WordNgramLM.train(sents, 3)
    path = lm.write_arpa(tmp_path / "lm.arpa")
    wd = create_word_dict({w: [[w]] for w in words + ["<unk>"]})
    from flashlight.lib.text.decoder.kenlm import KenLM

    kenlm = KenLM(str(path), wd)
    for s in sents[:10] + [["zz", "a", "a", "b"]]:
        state, total = kenlm.start(False), 0.0
        for w in s:
            state, sc = kenlm.score(state, wd.get_index(w))
            total += sc
        _, sc = kenlm.finish(state)
        assert (total + sc) * LN10 == pytest.approx(lm.sentence_logprob(s), abs=1e-4)


def test_read_arpa_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\nnot-a-number </s>\n\\end\\\n")
    with pytest.raises(ValueError, match=r"bad.arpa:6"):
        WordNgramLM.read_arpa(bad)
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-99\t<s>\n-1.0\t</s>\n\\end\\\n")
    with pytest.raises(ValueError, match="ngram 1=3 but the section has 2"):
        WordNgramLM.read_arpa(bad)


# ---------------------------------------------------------------------------------------- lexicon
def test_lexicon_char_and_sentencepiece(tmp_path):
    tok = CharTokenizer(list("ABC"))
    assert spell("CAB", tok) == ["C", "A", "B", "|"]
    assert spell("CAD", tok) is None  # D needs <unk>
    lex = make_lexicon(["CAB", "CAD", "A"], tok)
    assert lex == {"A": ["A", "|"], "CAB": ["C", "A", "B", "|"]}
    path = write_lexicon(tmp_path / "lexicon.txt", lex)
    assert path.read_text() == "A A |\nCAB C A B |\n"
    assert read_lexicon(path, tok.tokens) == {"A": [["A", "|"]], "CAB": [["C", "A", "B", "|"]]}
    (tmp_path / "bad.txt").write_text("A A |\nDOG D O G\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: token\(s\) \['D', 'O', 'G'\]"):
        read_lexicon(tmp_path / "bad.txt", tok.tokens)
    spm = train_tokenizer(["THE CAT SAT ON THE MAT", "A CAT AND A HAT"] * 20, "bpe", vocab_size=24)
    pieces = spell("CAT", spm)
    assert "".join(pieces).replace("▁", "") == "CAT" and pieces[0].startswith("▁")


# ---------------------------------------------------------------------------------------- decoder
def ctc_viterbi(lp: list[list[float]], labels: list[int], blank: int = 0) -> float:
    """Best CTC alignment score of ``labels`` (max over alignments), by dynamic programming."""
    ext = [blank]
    for lab in labels:
        ext += [lab, blank]
    neg = -math.inf
    a = [lp[0][blank], lp[0][ext[1]] if len(ext) > 1 else neg] + [neg] * (len(ext) - 2)
    for row in lp[1:]:
        b = [neg] * len(ext)
        for s, lab in enumerate(ext):
            m = max(a[s], a[s - 1] if s else neg,
                    a[s - 2] if s > 1 and lab != blank and lab != ext[s - 2] else neg)
            b[s] = m + row[lab] if m > neg else neg
        a = b
    return max(a[-1], a[-2] if len(ext) > 1 else neg)


def brute_force(lp, tok, lm, words, lm_weight, word_score, max_words=3, max_sil=2):
    """Best (score, words) over all word sequences and CTC alignments, in the decoder's model: each word
    spelled with a trailing '|', optional extra '|' runs (silence) anywhere between words, LM in log10,
    plus one certain '|' frame at the end."""
    sil = tok.tokens.index("|")
    end = [-1.0e4] * tok.vocab_size
    end[sil] = 0.0
    rows = lp.tolist() + [end]
    best = (-math.inf, None)
    for n in range(max_words + 1):
        for seq in itertools.product(words, repeat=n):
            lm_score = lm.sentence_logprob(seq) / LN10
            for gaps in itertools.product(range(max_sil + 1), repeat=n + 1):
                labels = [sil] * gaps[0]
                for w, g in zip(seq, gaps[1:]):
                    labels += [tok.tokens.index(c) for c in w] + [sil] * (1 + g)
                if len(labels) > len(rows):
                    continue
                s = ctc_viterbi(rows, labels) + lm_weight * lm_score + word_score * n
                if s > best[0]:
                    best = (s, seq)
    return best


@pytest.fixture(scope="module")
def tiny_lattice_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lattice")
    tok = CharTokenizer(list("ABC"))
    words = ["AB", "B", "CA"]
    write_lexicon(tmp / "lexicon.txt", make_lexicon(words, tok))
    lm = WordNgramLM.train([["AB", "B"], ["CA"], ["AB", "CA", "B"], ["B", "B"], ["CA", "AB"]], 2)
    return tok, words, lm, tmp / "lexicon.txt", lm.write_arpa(tmp / "lm.arpa")


@pytest.mark.parametrize("lm_weight,word_score", [(1.0, 0.5), (2.0, -1.0), (0.0, 0.0)])
def test_lexicon_decoder_finds_the_brute_force_best(tiny_lattice_setup, lm_weight, word_score):
    from speechkit.downstream.word_decode import WordCTCDecoder, WordDecodeConfig

    tok, words, lm, lex, arpa = tiny_lattice_setup
    dec = WordCTCDecoder(tok, lex, arpa, WordDecodeConfig(beam=1000, beam_threshold=1000.0, lm_weight=lm_weight,
                                                          word_score=word_score))
    T = 6
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        lp = torch.log_softmax(2.0 * torch.randn(T, tok.vocab_size, generator=g), dim=-1)
        want_score, want_words = brute_force(lp, tok, lm, words, lm_weight, word_score)
        got_words, got_score = dec.decode_one(lp)
        assert got_score == pytest.approx(want_score, abs=1e-3), seed
        assert tuple(got_words) == want_words, seed


def test_with_weights_and_torchaudio_wrapper_agree(tiny_lattice_setup):
    from speechkit.downstream.word_decode import WordCTCDecoder, WordDecodeConfig

    ta = pytest.importorskip("torchaudio.models.decoder")
    tok, words, lm, lex, arpa = tiny_lattice_setup
    base = WordCTCDecoder(tok, lex, arpa, WordDecodeConfig(beam=50, lm_weight=0.0))
    ours = base.with_weights(1.5, -0.5)
    assert ours.lm is base.lm and base.config.lm_weight == 0.0
    ref = ta.ctc_decoder(lexicon=str(lex), tokens=tok.tokens, lm=str(arpa), beam_size=50, lm_weight=1.5,
                         word_score=-0.5, sil_token="|", blank_token="<blank>", unk_word="<unk>")
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(2.0 * torch.randn(3, 9, tok.vocab_size, generator=g), dim=-1)
    end = torch.full((3, 1, tok.vocab_size), -1.0e4)
    end[..., tok.tokens.index("|")] = 0.0
    want = [h[0].words for h in ref(torch.cat([lp, end], dim=1).contiguous())]
    assert ours(lp) == want
    assert ours(lp, torch.tensor([9, 5, 2]))[2] == ours(lp[2:3, :2])[0]


# ---------------------------------------------------------------------------------------- CLIs
def test_train_word_lm_and_decode_grid_then_tuned(tmp_path, capsys):
    from downstream_helpers import make_data_dir
    from speechkit.bin import decode_ctc, train_word_lm
    from speechkit.downstream.ctc_model import build_ctc_model
    from speechkit.models import build_model

    texts = ["AB CD", "DA BC", "CAB", "BAD", "DC", "ABCD"]
    train = make_data_dir(tmp_path / "train", {f"s0-1-{i:02d}": (0, t) for i, t in enumerate(texts)})
    dev = make_data_dir(tmp_path / "dev", {f"s0-2-{i:02d}": (0, t) for i, t in enumerate(texts[:3])})
    tok = train_tokenizer(texts, "char")
    tok.save(tmp_path / "tok")
    (tmp_path / "words.txt").write_text("CABBA C A B B A\nDOG D O G\n")  # DOG needs <unk>: left out
    assert train_word_lm.main(["--text", str(train / "text"), "--tokenizer", str(tmp_path / "tok"), "--order", "3",
                               "--out", str(tmp_path / "lang"), "--dev-text", str(dev / "text"),
                               "--words-from", str(tmp_path / "words.txt")]) == 0
    assert "8 words in 6 sentences; lexicon of 9 words" in capsys.readouterr().out
    WordNgramLM.read_arpa(tmp_path / "lang" / "lm3.arpa")
    torch.manual_seed(0)
    model = build_ctc_model(tok.vocab_size, init=build_model({"arch": "hubert", "preset": "tiny", "num_classes": 10}))
    ckpt = tmp_path / "ft" / "checkpoint_best.pt"
    ckpt.parent.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.model_config(), "num_updates": 0}, ckpt)
    common = ["--model", str(ckpt), "--tokenizer", str(tmp_path / "tok"), "--lexicon",
              str(tmp_path / "lang" / "lexicon.txt"), "--lm", str(tmp_path / "lang" / "lm3.arpa"), "--beam", "8"]
    out_dev = tmp_path / "ft" / "decode_dev_lm"
    assert decode_ctc.main(common + ["--data-dir", str(dev), "--out", str(out_dev), "--lm-weight", "0", "2",
                                     "--word-score", "-1", "1", "--greedy-out", str(tmp_path / "ft" / "decode_dev")]) == 0
    grid = json.loads((out_dev / "lm_grid.json").read_text())
    assert [(r["lm_weight"], r["word_score"]) for r in grid["grid"]] == [(0, -1), (0, 1), (2, -1), (2, 1)]
    assert grid["best"]["wer"] == min(r["wer"] for r in grid["grid"])
    res = json.loads((out_dev / "result.json").read_text())
    assert res["values"]["Err"] == pytest.approx(grid["best"]["wer"], abs=0.05)
    assert "best of 4" in res["info"]["decode"]
    assert json.loads((tmp_path / "ft" / "decode_dev" / "result.json").read_text())["info"]["decode"] == "greedy"
    lex_words = {line.split()[0] for line in (tmp_path / "lang" / "lexicon.txt").read_text().splitlines()}
    for line in (out_dev / "hyp").read_text().splitlines():
        assert set(line.split()[1:]) <= lex_words  # every output word is a lexicon word
    out_test = tmp_path / "ft" / "decode_test_lm"
    assert decode_ctc.main(common + ["--data-dir", str(dev), "--out", str(out_test), "--tuned-from", str(out_dev)]) == 0
    info = json.loads((out_test / "result.json").read_text())["info"]
    assert f"x{grid['best']['lm_weight']:g}, word score {grid['best']['word_score']:g}" in info["decode"]
    with pytest.raises(SystemExit, match="needs --lexicon"):
        decode_ctc.main(["--model", str(ckpt), "--tokenizer", str(tmp_path / "tok"), "--data-dir", str(dev),
                         "--out", str(tmp_path / "x"), "--lm-weight", "1", "2"])


def test_sentencepiece_lexicon_decoding_recovers_the_words(tmp_path):
    from speechkit.downstream.word_decode import WordCTCDecoder, WordDecodeConfig

    texts = ["THE CAT SAT ON THE MAT", "A CAT AND A HAT", "THE HAT SAT"] * 20
    spm = train_tokenizer(texts, "bpe", vocab_size=24)
    write_lexicon(tmp_path / "lexicon.txt", make_lexicon({w for t in texts for w in t.split()}, spm))
    lm = WordNgramLM.train([t.split() for t in texts], 3).write_arpa(tmp_path / "lm.arpa")
    dec = WordCTCDecoder(spm, tmp_path / "lexicon.txt", lm, WordDecodeConfig(beam=20, lm_weight=0.5))
    ids = spm.encode("THE MAT")
    frames = []
    for i in ids:  # each piece for two frames, then a blank
        frames += [i, i, 0]
    lp = torch.full((len(frames), spm.vocab_size), -8.0)
    lp[torch.arange(len(frames)), torch.tensor(frames)] = -0.01
    assert dec(lp[None]) == [["THE", "MAT"]]
