"""The mini recipe end to end (every stage, tiny corpus and tiny configs), as `make demo` runs it."""
from __future__ import annotations

import json
import re

import pytest

from recipe_helpers import ROOT, copy_recipe, run_recipe, training_outputs

RECIPE = ROOT / "egs" / "mini_synth" / "ssl1"


@pytest.fixture(scope="module")
def finished_recipe(tmp_path_factory):
    recipe = copy_recipe(RECIPE, tmp_path_factory.mktemp("mini") / "ssl1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--nj", "2", timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return recipe, res.stdout + res.stderr


def test_every_stage_ran_and_was_timed(finished_recipe):
    _, log = finished_recipe
    for n in range(1, 18):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
        assert re.search(rf"stage {n} took \d+ s", log), f"stage {n} printed no timing"


def test_later_stages_ran_in_stage_13s_pool(finished_recipe):
    """A full run decodes each fine-tuned model and runs the speaker stages inside stage 13's pool; stages
    14-16 then find that work done and do not repeat it."""
    _, log = finished_recipe
    stages = {int(m.group(1)): m.start() for m in re.finditer(r"Stage (\d+): ", log)}
    in_13, in_14 = log[stages[13]:stages[14]], log[stages[14]:stages[15]]
    assert "decoding each when it ends" in in_13 and "the speaker stages (15, 16) beside them" in in_13
    for x in ("ft_hubert_iter2_n20", "ft_scratch_n20"):
        assert f"exp/{x}/.decode.done exists; skipping" in in_14
    for n, end in ((15, stages[16]), (16, len(log))):
        assert "ran in stage 13's pool" in log[stages[n]:end], f"stage {n} did not find its work done"


def test_label_quality_reports_for_both_iterations(finished_recipe):
    recipe, _ = finished_recipe
    for tag in ("mfcc20", "hubert1_l2_20"):
        rep = json.loads((recipe / "exp" / f"kmeans_{tag}" / "quality_dev_clean.json").read_text())
        assert 0.0 < rep["pnmi"] <= 1.0 and 0.0 < rep["phone_purity"] <= 1.0
    # labels cover every utterance of the sets pre-training uses; test is only decoded, it gets none
    assert not (recipe / "data" / "test_clean" / "km.mfcc20").exists()
    for s in ("train_clean_100", "dev_clean"):
        utts = (recipe / "data" / s / "wav.scp").read_text().split("\n")
        km = (recipe / "data" / s / "km.mfcc20").read_text().split("\n")
        assert len([u for u in utts if u]) == len([k for k in km if k])


def test_results_table_compares_pretrained_and_scratch(finished_recipe):
    recipe, _ = finished_recipe
    results = (recipe / "RESULTS.md").read_text()
    assert "torch" in results and "speechkit" in results.lower()
    for tag in ("exp/ft_hubert_iter2_n20", "exp/ft_scratch_n20", "exp/sid_hubert_iter2", "exp/sid_fbank",
                "exp/sv_hubert_iter2", "exp/sv_fbank"):
        assert f"## {tag}" in results, tag
    assert "labeled utts: 20" in results
    assert "|decode_test_clean|12|" in results
    assert "EER" in results and "Chance level: EER 50 %" in results
    assert "(plots/pretraining.png)" in results and (recipe / "plots" / "pretraining.png").is_file()


def test_open_set_trials_have_no_training_speaker(finished_recipe):
    recipe, _ = finished_recipe
    trained = {line.split()[0].split("-")[0] for line in (recipe / "data" / "sv_train" / "utt2spk").read_text().splitlines()}
    trials = (recipe / "data" / "sv_eval" / "trials").read_text().split()
    in_trials = {w.split("-")[0] for i, w in enumerate(trials) if i % 3 != 2}
    assert in_trials and not (in_trials & trained)
    assert len(in_trials) == 3  # conf/tiny.sh: sv_heldout=3


def test_rerun_skips_finished_work(finished_recipe):
    recipe, _ = finished_recipe
    before = training_outputs(recipe)
    assert any("hubert_iter2" in p for p in before) and any("ft_scratch" in p for p in before)
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--stop-stage", "13", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipping" in res.stdout + res.stderr
    # a training stage that ran again (from scratch or resumed) would rewrite a checkpoint and its train.log
    assert training_outputs(recipe) == before


def test_training_and_decoding_go_through_the_launcher(finished_recipe):
    # so that cmd.sh's train_cmd/decode_cmd (e.g. utils/slurm.pl) decide where they run
    recipe, _ = finished_recipe
    for log, cmd in (("exp/hubert_iter1/log/pretrain.log", "speechkit.bin.pretrain"),
                     ("exp/hubert_iter2/log/pretrain.log", "speechkit.bin.pretrain"),
                     ("exp/ft_scratch_n20/log/finetune.log", "speechkit.bin.finetune_ctc"),
                     ("exp/sid_hubert_iter2/log/train.log", "speechkit.bin.train_sid_cached"),
                     ("exp/sv_fbank/log/train.log", "speechkit.bin.train_sid_cached")):
        text = (recipe / log).read_text()
        assert text.startswith("# ") and cmd in text.splitlines()[0] and "# Ended (code 0)" in text, log
    decode_logs = sorted(recipe.glob("exp/ft_*/log/decode.log"))
    assert len(decode_logs) == 2 and all("speechkit.bin.decode_ctc" in p.read_text().splitlines()[0]
                                         and "# Ended (code 0)" in p.read_text() for p in decode_logs)
    # decodes leave .done markers: a re-run of stage 14 skips them and rewrites nothing
    hyp = recipe / "exp/ft_scratch_n20/decode_test_clean/hyp"
    mtime = hyp.stat().st_mtime_ns
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--stage", "14", "--stop-stage", "14", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exp/ft_scratch_n20/.decode.done exists; skipping" in res.stdout
    assert hyp.stat().st_mtime_ns == mtime


def test_unknown_option_is_an_error_listing_known_ones(tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path / "ssl1")
    res = run_recipe(recipe, "--no-such-option", "1", timeout=60)
    assert res.returncode != 0
    assert "unknown option --no-such-option" in res.stderr and "--stop-stage" in res.stderr


@pytest.mark.parametrize("ssl,iterated", [("wavlm", True), ("data2vec", False)])
def test_other_objectives_through_the_same_recipe(finished_recipe, ssl, iterated):
    recipe, _ = finished_recipe
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--ssl", ssl, "--stage", "6", "--stop-stage", "13",
                     timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr
    final = f"{ssl}_iter2" if iterated else f"{ssl}_iter1"
    assert (recipe / "exp" / final / "checkpoint_last.pt").is_file()
    assert (recipe / "exp" / f"ft_{final}_n20" / "checkpoint_best.pt").is_file()
    if iterated:
        assert (recipe / "data" / "dev_clean" / f"km.{ssl}1_l2_20").is_file()
    else:
        assert "Stages 7-11: skipped" in log
