"""WER/CER scoring: hand-computed cases, a plain DP reference, jiwer, and the score CLI."""
import json
import random

import jiwer
import pytest

from speechkit.bin import score as score_cli
from speechkit.text.normalize import NormalizerConfig
from speechkit.text.scoring import align, format_alignments, score_texts, summary_line


def plain_edit_distance(a, b):
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return d[-1]


@pytest.mark.parametrize("ref,hyp,ops", [
    ("A B C", "A B C", "CCC"),
    ("A B C", "A X C", "CSC"),
    ("A B C", "A C", "CDC"),
    ("A B C", "A B C D", "CCCI"),
    ("A B C", "", "DDD"),
    ("", "A B", "II"),
    ("THE CAT SAT ON THE MAT", "THE CAT SAT ON MAT", "CCCCDC"),
    ("A B", "B A", "SS"),
])
def test_align_hand_cases(ref, hyp, ops):
    got = align(ref.split(), hyp.split())
    assert "".join(op for op, _, _ in got) == ops
    # the alignment reproduces both sequences
    assert [r for _, r, _ in got if r is not None] == ref.split()
    assert [h for _, _, h in got if h is not None] == hyp.split()


def test_wer_hand_computed():
    refs = {"s1-a": "the cat sat on the mat", "s1-b": "a b c", "s2-a": "hello world"}
    hyps = {"s1-a": "The cat sat on mat.", "s1-b": "a x c d", "s2-a": "hello world"}
    res = score_texts(refs, hyps)
    t = res.total
    assert (t.snt, t.wrd, t.corr, t.sub, t.dele, t.ins, t.s_err) == (3, 11, 9, 1, 1, 1, 2)
    assert t.err_rate == pytest.approx(300 / 11)
    assert t.sent_err_rate == pytest.approx(200 / 3)
    assert set(res.by_speaker) == {"s1", "s2"}
    assert res.by_speaker["s1"].wrd == 9 and res.by_speaker["s2"].errors == 0
    v = t.table_values()
    assert v["Corr"] + v["Sub"] + v["Del"] == pytest.approx(100.0)
    assert summary_line(res) == "%WER 27.27 [ 3 / 11, 1 ins, 1 del, 1 sub ] %SER 66.67 [ 2 / 3 ]"


def test_cer_counts_spaces():
    res = score_texts({"u": "ab cd"}, {"u": "ab ce"}, unit="char")
    assert (res.total.wrd, res.total.sub) == (5, 1)
    assert res.total.err_rate == pytest.approx(20.0)
    res = score_texts({"u": "ab cd"}, {"u": "abcd"}, unit="char")
    assert (res.total.dele, res.total.errors) == (1, 1)
    assert [r for op, r, _ in res.utts[0].ops if op == "D"] == ["<space>"]


def test_normalisation_shared_by_ref_and_hyp():
    refs = {"u": "Hello, <unk> World! It's [noise] fine."}
    hyps = {"u": "hello world it's fine"}
    assert score_texts(refs, hyps).total.errors == 0
    raw = NormalizerConfig(upper=False, remove_punct=False, remove_noise=False)
    assert score_texts(refs, hyps, normalizer=raw).total.errors > 0


def test_missing_and_extra_utterances():
    with pytest.raises(ValueError, match=r"no hypothesis for 1 of 2 .*'u2'"):
        score_texts({"u1": "a", "u2": "b"}, {"u1": "a"})
    res = score_texts({"u1": "a", "u2": "b c"}, {"u1": "a"}, allow_missing=True)
    assert (res.total.dele, res.total.s_err) == (2, 1)
    with pytest.raises(ValueError, match=r"no reference .*'zz'"):
        score_texts({"u1": "a"}, {"u1": "a", "zz": "b"})


def test_alignment_text_columns():
    res = score_texts({"u1": "the cat sat"}, {"u1": "the bat sat down"})
    text = format_alignments(res)
    assert text == ("id: (u1)\n"
                    "Scores: (#C #S #D #I) 2 1 0 1\n"
                    "REF:  THE CAT SAT ****\n"
                    "HYP:  THE BAT SAT DOWN\n"
                    "Eval:     S       I\n")


def test_row_vectorised_dp_matches_plain_dp():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        ops = align(a, b)
        assert sum(op != "C" for op, _, _ in ops) == plain_edit_distance(a, b)


def random_sentence(rng, words):
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 15)))


def test_matches_jiwer_on_random_strings():
    rng = random.Random(1)
    words = ["A", "B", "C", "AB", "BA", "CAB", "D"]
    for trial in range(20):
        refs = {f"u{i}": random_sentence(rng, words) for i in range(25)}
        hyps = {}
        for u, r in refs.items():
            w = r.split()
            for _ in range(rng.randint(0, 4)):  # random edits
                k = rng.randrange(len(w) + 1)
                e = rng.random()
                if e < 0.33 and k < len(w):
                    w[k] = rng.choice(words)
                elif e < 0.66 and k < len(w):
                    del w[k]
                else:
                    w.insert(k, rng.choice(words))
            hyps[u] = " ".join(w)
        keys = sorted(refs)
        R, H = [refs[k] for k in keys], [hyps[k] for k in keys]
        ours = score_texts(refs, hyps)
        ref_out = jiwer.process_words(R, H)
        errs = ref_out.substitutions + ref_out.deletions + ref_out.insertions
        assert ours.total.errors == errs
        assert ours.total.err_rate / 100 == pytest.approx(jiwer.wer(R, H), abs=1e-12)
        ours_c = score_texts(refs, hyps, unit="char")
        assert ours_c.total.err_rate / 100 == pytest.approx(jiwer.cer(R, H), abs=1e-12)


def test_score_cli(tmp_path, capsys):
    (tmp_path / "text").write_text("spk1-u1 THE CAT SAT\nspk1-u2 HELLO WORLD\nspk2-u1 A B C D\n")
    dec = tmp_path / "exp" / "asr" / "decode_test"
    dec.mkdir(parents=True)
    (dec / "hyp").write_text("spk1-u1 the bat sat down\nspk1-u2 hello world\nspk2-u1 A B D\n")
    rc = score_cli.main(["--ref", str(tmp_path / "text"), "--hyp", str(dec / "hyp"), "--out", str(dec), "--cer",
                         "--info", "labeled utts=12"])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "decode_test: %WER 33.33 [ 3 / 9, 1 ins, 1 del, 1 sub ] %SER 66.67 [ 2 / 3 ]"
    assert out[1].startswith("decode_test: %CER ")
    for name in ["result.txt", "alignment.txt", "result.json", "result_cer.txt", "alignment_cer.txt",
                 "result_cer.json"]:
        assert (dec / name).is_file(), name
    summary = (dec / "result.txt").read_text()
    assert "| SPKR" in summary and "# Snt   # Wrd" in summary and "| Sum/Avg |      3       9 |" in summary
    assert "| spk2    |      1       4 |   75.0    0.0   25.0    0.0   25.0  100.0 |" in summary
    rec = json.loads((dec / "result.json").read_text())
    assert rec["task"] == "asr" and rec["metric"] == "WER" and rec["dataset"] == "decode_test"
    assert list(rec["values"]) == ["Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err"]
    assert rec["values"]["Err"] == pytest.approx(100 / 3)
    assert rec["info"] == {"labeled utts": 12}
    assert "id: (spk2-u1)" in (dec / "alignment.txt").read_text()
    # a hypothesis file with an utterance missing fails unless --allow-missing
    (dec / "hyp").write_text("spk1-u1 the cat sat\n")
    with pytest.raises(ValueError, match="no hypothesis"):
        score_cli.main(["--ref", str(tmp_path / "text"), "--hyp", str(dec / "hyp"), "--out", str(dec)])
