"""Result records, collection from exp dirs, and the RESULTS.md writer."""
import json
import re

import pytest

from speechkit import results
from speechkit.bin import make_results
from speechkit.downstream.metrics import sv_result_record
from speechkit.results import ResultRecord, collect_results, format_results, read_result_json, write_result_json

ENV = {"date": "Mon Jan 01 00:00:00 UTC 2024", "speechkit git hash": "abc123", "pytorch version": "2.x",
       "device": "cpu"}


def wer_record(dataset, err, info=None, metric="WER"):
    return ResultRecord("asr", metric, dataset,
                        {"Snt": 10, "Wrd": 100, "Corr": 100 - err, "Sub": err, "Del": 0.0, "Ins": 0.0,
                         "Err": err, "S.Err": 50.0}, info=info or {})


def make_exp(tmp_path):
    exp = tmp_path / "exp"
    write_result_json(exp / "asr_ft_hubert" / "decode_test" / "result.json",
                      wer_record("decode_test", 12.5, {"labeled utts": 200, "updates": 3000}))
    write_result_json(exp / "asr_ft_hubert" / "decode_dev" / "result.json", wer_record("decode_dev", 10.0))
    write_result_json(exp / "asr_ft_hubert" / "decode_test" / "result_cer.json",
                      wer_record("decode_test", 4.25, metric="CER"))
    write_result_json(exp / "asr_scratch" / "decode_test" / "result.json",
                      wer_record("decode_test", 80.0, {"labeled utts": 200, "updates": 3000}))
    write_result_json(exp / "sv_hubert" / "eval_test" / "result_sv.json",
                      sv_result_record([0.9, 0.8, 0.3, 0.1, 0.2, 0.85], [1, 1, 1, 0, 0, 0], "test"))
    write_result_json(exp / "sid_hubert" / "result_sid.json",
                      ResultRecord("sid", "ACC", "test", {"Utts": 50, "Acc(%)": 92.0}))
    (exp / "asr_scratch" / "decode_test" / "result_other.json").write_text('{"not": "ours"}')
    return exp


def test_record_round_trip_and_naming(tmp_path):
    rec = wer_record("decode_test", 5.0, {"updates": 10})
    p = write_result_json(tmp_path / "d" / "result.json", rec)
    assert read_result_json(p) == rec
    assert json.loads(p.read_text())["speechkit_result"] == 1
    with pytest.raises(ValueError, match="result\\*.json"):
        write_result_json(tmp_path / "scores.json", rec)
    (tmp_path / "result_bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="result_bad.json:1: not valid JSON"):
        read_result_json(tmp_path / "result_bad.json")


def test_collect_results_assigns_experiment_tags(tmp_path):
    recs = collect_results(make_exp(tmp_path))
    got = sorted((r.exp, r.metric, r.dataset) for r in recs)
    assert got == [
        ("exp/asr_ft_hubert", "CER", "decode_test"),
        ("exp/asr_ft_hubert", "WER", "decode_dev"),
        ("exp/asr_ft_hubert", "WER", "decode_test"),
        ("exp/asr_scratch", "WER", "decode_test"),
        ("exp/sid_hubert", "ACC", "test"),
        ("exp/sv_hubert", "EER", "test"),
    ]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_results(tmp_path / "nope")


def test_format_results_espnet_layout(tmp_path):
    md = format_results(collect_results(make_exp(tmp_path)), env=ENV)
    lines = md.splitlines()
    assert lines[1] == "# RESULTS"
    assert "- speechkit git hash: `abc123`" in lines and "- device: `cpu`" in lines
    # summary: one table per task/metric, one row per experiment and dataset, info as columns
    i = lines.index("### ASR: WER") + 2  # a chance-level line, then the table
    assert lines[i] == "Chance level: WER 100 % (an empty hypothesis: every reference token deleted)."
    assert lines[i + 2] == "|exp|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|labeled utts|updates|"
    assert lines[i + 4] == "|exp/asr_ft_hubert|decode_dev|10|100|90.0|10.0|0.0|0.0|10.0|50.0|-|-|"
    assert lines[i + 6] == "|exp/asr_scratch|decode_test|10|100|20.0|80.0|0.0|0.0|80.0|50.0|200|3000|"
    assert lines.index("### ASR: WER") < lines.index("### ASR: CER") < lines.index(
        "### Speaker identification: ACC") < lines.index("### Speaker verification: EER")
    j = lines.index("### Speaker verification: EER") + 2
    assert lines[j].startswith("Chance level: EER 50 %")
    assert lines[j + 2] == "|exp|dataset|Trials|EER(%)|minDCF(p=0.01)|minDCF(p=0.05)|"
    assert lines[j + 4] == "|exp/sv_hubert|test|6|33.33|0.6667|0.6667|"
    # per-experiment ESPnet sections
    k = lines.index("## exp/asr_ft_hubert")
    assert lines[k + 1:k + 3] == ["- labeled utts: 200", "- updates: 3000"]
    w = lines.index("### WER", k)
    assert lines[w + 2] == "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"
    assert lines[w + 3] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[w + 4].startswith("|decode_dev|") and lines[w + 5].startswith("|decode_test|10|100|87.5|12.5|")
    assert "|decode_test|10|100|95.8|4.2|0.0|0.0|4.2|50.0|" in lines  # CER table, 1 decimal
    assert format_results([], env=ENV).rstrip().endswith("No results found.")


def test_environment_info(monkeypatch, tmp_path):
    env = results.environment_info()
    assert {"date", "speechkit git hash", "python version", "pytorch version", "device"} <= set(env)
    assert env["speechkit git hash"] == "unknown" or re.match(r"[0-9a-f]{40}", env["speechkit git hash"])
    monkeypatch.setattr(results, "PROJECT_ROOT", tmp_path)  # not a git checkout
    assert results.environment_info()["speechkit git hash"] == "unknown"


def test_make_results_cli(tmp_path, capsys):
    exp = make_exp(tmp_path)
    out = tmp_path / "RESULTS.md"
    assert make_results.main(["--exp-dir", str(exp), "--out", str(out), "--print"]) == 0
    text = out.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert "## exp/asr_scratch" in text and "## Environments" in text
    assert "result_other" not in text


def test_experiment_section_lists_only_facts_shared_by_its_rows():
    recs = [wer_record("decode_test", 20.0, {"labeled utts": 200, "decode": "greedy"}),
            wer_record("decode_test_lm3", 10.0, {"labeled utts": 200, "decode": "lexicon beam 50, LM lm3.arpa x1"})]
    for r in recs:
        r.exp = "exp/ft"
    md = format_results(recs, ENV)
    section = md[md.index("## exp/ft"):]
    assert "- labeled utts: 200" in section and "- decode:" not in section
    assert "|exp/ft|decode_test_lm3|" in md and "lexicon beam 50" in md  # the summary table keeps it per row
