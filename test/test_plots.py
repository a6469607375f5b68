"""RESULTS.md figures and the chance / WER-vs-labels additions to the summary tables."""
from __future__ import annotations

import pathlib

from speechkit.plots import make_plots, parse_train_log
from speechkit.results import ResultRecord, format_results, write_result_json, write_results_md

LOG = """2026-12-04 10:00:00,000 INFO speechkit.train.trainer: epoch 1 | update 100/400 | acc_m 0.0651 | acc_u 0.1063 | loss 3.8223 | lr 1.000e-03 | gnorm 1.2 | 2.00 upd/s | 30.0 s audio/s | ETA 2m30s
2026-12-04 10:00:50,000 INFO speechkit.train.trainer: epoch 1 | update 200/400 | acc_m 0.0796 | acc_u 0.1398 | loss 3.5308 | lr 2.000e-03 | gnorm 1.1 | 2.00 upd/s | 30.0 s audio/s | ETA 1m40s
2026-12-04 10:01:00,000 INFO speechkit.train.trainer: valid | update 200 | acc_m 0.0900 | loss 3.4000
"""


def _asr(exp, n, init, err, dataset="decode_test_clean"):
    return ResultRecord("asr", "WER", dataset, {"Snt": 10, "Wrd": 100, "Err": err},
                        info={"labeled utts": n, "init": init, "decode": "greedy"}, exp=exp)


def _records(tmp: pathlib.Path) -> pathlib.Path:
    exp = tmp / "exp"
    (exp / "hubert_iter1").mkdir(parents=True)
    (exp / "hubert_iter1" / "train.log").write_text(LOG)
    for n, e1, e2 in ((50, 60.0, 90.0), (200, 30.0, 70.0)):
        write_result_json(exp / f"ft_pt_{n}" / "decode_test_clean" / "result.json", _asr("", n, "hubert_iter2", e1))
        write_result_json(exp / f"ft_scratch_{n}" / "decode_test_clean" / "result.json", _asr("", n, "scratch", e2))
    write_result_json(exp / "sid_x" / "eval_test" / "result_sid.json",
                      ResultRecord("sid", "ACC", "test", {"Acc(%)": 97.5}, info={"speakers": 40}))
    write_result_json(exp / "kmeans" / "result_units_dev.json",
                      ResultRecord("units", "PNMI", "dev", {"PNMI": 0.5}, info={"units": "MFCC K=100"}))
    (exp / "sid_x" / "eval_test" / "predictions").write_text("u1 a a\nu2 b a\nu3 b b\n")
    return exp


def test_parse_train_log():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "train.log"
        p.write_text(LOG)
        c = parse_train_log(p)
    assert [r["update"] for r in c["train"]] == [100, 200]
    assert c["train"][1]["acc_m"] == 0.0796 and c["train"][0]["loss"] == 3.8223
    assert c["valid"] == [{"update": 200, "acc_m": 0.09, "loss": 3.4}]


def test_plots_are_written_deterministically_and_embedded(tmp_path):
    exp = _records(tmp_path)
    from speechkit.results import collect_results

    recs = collect_results(exp)
    made = make_plots(exp, tmp_path / "plots", recs)
    names = sorted(p.name for _, p in made)
    assert names == ["pretraining.png", "sid_confusion_sid_x.png", "unit_pnmi.png", "wer_vs_labels.png"]
    for _, p in made:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    first = {p.name: p.read_bytes() for _, p in made}
    again = make_plots(exp, tmp_path / "plots", recs)
    assert {p.name: p.read_bytes() for _, p in again} == first
    md = write_results_md(exp, tmp_path / "RESULTS.md", env={"date": "x"}, plots=True).read_text()
    assert "![Speaker ID confusion (sid_x, test)](plots/sid_confusion_sid_x.png)" in md
    assert "![WER vs labeled data](plots/wer_vs_labels.png)" in md


def test_chance_levels_and_labels_table(tmp_path):
    exp = _records(tmp_path)
    from speechkit.results import collect_results

    md = format_results(collect_results(exp), env={})
    assert "Chance level: 2.5 % accuracy (40 speakers)." in md
    assert "Chance level: WER 100 %" in md
    assert "Chance level: PNMI 0" in md
    table = md.split("#### WER vs labeled utterances (decode_test_clean)")[1]
    assert "|labeled utts|hubert_iter2|scratch|" in table
    assert "|50|60.0|90.0|" in table and "|200|30.0|70.0|" in table


def test_labels_table_and_plot_keep_one_column_per_init_when_lm_weights_are_tuned_per_model(tmp_path):
    """Each model's LM weight / word score is tuned on dev, so the descriptions differ between models;
    the sweep table still has one column per init (and one line per init in the plot)."""
    from speechkit.downstream.word_grid import decode_family, describe
    from speechkit.plots import wer_lines
    from speechkit.results import collect_results

    exp = tmp_path / "exp"
    tuned = {(50, "hubert_iter2"): (2, -1), (200, "hubert_iter2"): (1, 0),
             (50, "scratch"): (0.5, 1), (200, "scratch"): (2, 1.5)}
    for (n, init), (lm_weight, word_score) in tuned.items():
        rec = _asr("", n, init, 10.0 if init == "scratch" else 5.0, dataset="decode_test_clean_lm3")
        rec.info["decode"] = describe(50, "lm3.arpa", lm_weight, word_score, "tuned on decode_dev_clean_lm3")
        write_result_json(exp / f"ft_{init}_{n}" / "decode_test_clean_lm3" / "result.json", rec)
    md = format_results(collect_results(exp), env={})
    table = md.split("#### WER vs labeled utterances (decode_test_clean_lm3)")[1].split("\n\n")[1]
    assert table.splitlines()[0] == ("|labeled utts|hubert_iter2, lexicon beam 50, LM lm3.arpa"
                                     "|scratch, lexicon beam 50, LM lm3.arpa|")
    assert "|50|5.0|10.0|" in table and "|200|5.0|10.0|" in table and "-" not in table.splitlines()[2]
    assert decode_family("greedy") == decode_family(None) == "greedy"
    assert decode_family("CTC " + describe(5, "lm.arpa", 1e-05, -2, "best of 16 on this set")) == \
        "CTC lexicon beam 5, LM lm.arpa"
    assert decode_family(describe(5, "4-gram.arpa", 1e21, 0.5)) == "lexicon beam 5, LM 4-gram.arpa"
    assert decode_family("beam 5 lenpen 1") == "beam 5 lenpen 1"

    lines, sets = wer_lines(collect_results(exp))
    assert sets == ["decode_test_clean_lm3"]
    assert lines == {"pre-trained (hubert_iter2), lexicon beam 50, LM lm3.arpa": [(50, 5.0), (200, 5.0)],
                     "scratch, lexicon beam 50, LM lm3.arpa": [(50, 10.0), (200, 10.0)]}
