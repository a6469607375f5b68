"""The mini AV recipe end to end at tiny size (egs/mini_synth/av1 with conf/tiny.sh), as `make demo-av` runs it,
and the AV-HuBERT branch of speechkit.bin.pretrain."""
from __future__ import annotations

import json
import re

import pytest

from recipe_helpers import ROOT, copy_recipe, run_recipe

RECIPE = ROOT / "egs" / "mini_synth" / "av1"
FT = ("vsr", "asr", "avsr", "vsr_scratch")


@pytest.fixture(scope="module")
def finished_recipe(tmp_path_factory):
    recipe = copy_recipe(RECIPE, tmp_path_factory.mktemp("mini_av") / "av1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--nj", "2", timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return recipe, res.stdout + res.stderr


def test_every_stage_ran_and_was_timed(finished_recipe):
    _, log = finished_recipe
    for n in (1, 2, 4, 6, 7):  # the data stages (3 and 5 need --corpora voxceleb2)
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    for n in range(8, 18):
        assert re.search(rf"stage {n} took \d+ s \(CPU [\d.]+ s\)", log), f"stage {n} printed no timing"


def test_two_iterations_with_100_and_25_hz_labels(finished_recipe):
    recipe, _ = finished_recipe
    data = recipe / "data" / "lrs3" / "train_433h"
    frames = {u: int(n) for u, n in (ln.split() for ln in (data / "utt2num_frames").read_text().splitlines())}
    for tag, per_frame in (("mfcc8", 4), ("av1_l1_8", 1)):
        for line in (data / f"km.{tag}").read_text().splitlines():
            utt, *labels = line.split()
            assert abs(len(labels) - per_frame * frames[utt]) <= per_frame, (tag, utt)
    dump_info = json.loads((recipe / "dump" / "av1_l1" / "train_433h" / "feat_info.json").read_text())
    assert dump_info["modalities"] == "audiovisual" and dump_info["frame_rate"] == 25
    for it, rate in ((1, 100), (2, 25)):
        state = (recipe / "exp" / f"avhubert_iter{it}" / "config.yaml").read_text()
        assert f"label_rate: {rate}" in state and "av_data:" in state


def test_label_quality_of_mfcc_and_av_units(finished_recipe):
    recipe, _ = finished_recipe
    for tag in ("mfcc8", "av1_l1_8"):
        rep = json.loads((recipe / "exp" / f"kmeans_{tag}" / "quality_valid.json").read_text())
        assert 0.0 < rep["pnmi"] <= 1.0 and 0.0 < rep["phone_purity"] <= 1.0, tag
    assert "PNMI" in (recipe / "RESULTS.md").read_text().upper()


def test_results_have_every_modality_and_condition(finished_recipe):
    recipe, _ = finished_recipe
    results = (recipe / "RESULTS.md").read_text()
    for x in FT:
        assert f"## exp/{x}" in results, x
    for x in ("asr", "avsr"):
        for cond in ("clean", "babble_0", "noise_0"):
            rec = json.loads(next((recipe / "exp" / x / f"decode_test_{cond}").glob("result*.json")).read_text())
            assert rec["metric"] == "WER"
            want = "clean" if cond == "clean" else ("babble" if "babble" in cond else "noise") + " 0 dB seed 0"
            assert want in rec["info"]["noise"], rec["info"]
    assert not (recipe / "exp" / "vsr" / "decode_test_babble_0").exists()  # noise means nothing to lip reading
    assert "video" in results and "audiovisual" in results
    # the blind-guess row, and the GRID sentences it guesses from (the recipe's default grammar)
    guess = json.loads((recipe / "exp" / "guess" / "decode_test_clean" / "result.json").read_text())
    assert guess["info"]["modalities"] == "none" and "## exp/guess" in results and "blind guess" in results
    hyp = (recipe / "exp" / "guess" / "decode_test_clean" / "hyp").read_text().splitlines()
    assert len({ln.split(maxsplit=1)[1] for ln in hyp}) == 1
    from speechkit.corpora.synth.text import GRID_SLOTS

    grid = {w.upper() for slot in GRID_SLOTS for w in slot}
    for ln in (recipe / "data" / "lrs3" / "test" / "text").read_text().splitlines():
        assert len(ln.split()) == 7 and set(ln.split()[1:]) <= grid, ln


def test_rerun_skips_finished_work(finished_recipe):
    recipe, _ = finished_recipe
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--stage", "8", "--stop-stage", "16", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "skipping" in log and "starting from scratch" not in log and "decoded" not in log


def test_a_changed_corpus_does_not_meet_the_old_data_dirs(finished_recipe):
    """Stages skip finished work, so a corpus made again (another seed or grammar) must stop the run."""
    recipe, _ = finished_recipe
    stamp = recipe / "corpus" / "lrs3" / ".synth_av.json"
    kept = stamp.read_text()
    assert (recipe / "data" / "lrs3" / ".corpus.json").read_text() == kept
    try:
        stamp.write_text(kept.replace('"grammar": "grid"', '"grammar": "open"'))
        assert stamp.read_text() != kept
        res = run_recipe(recipe, "--config", "conf/tiny.sh", "--stage", "17", "--stop-stage", "17", timeout=300)
        assert res.returncode != 0 and "is not the corpus data/lrs3 was prepared from" in res.stderr
    finally:
        stamp.write_text(kept)


def test_make_noise_dir_is_deterministic(tmp_path):
    from speechkit.bin import make_noise_dir

    for d in ("a", "b"):
        assert make_noise_dir.main(["--out", str(tmp_path / d), "--num-files", "3", "--seconds", "0.5"]) == 0
    for k in range(3):
        a, b = (tmp_path / d / f"noise_{k}.wav" for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "noise_0.wav").read_bytes() != (tmp_path / "a" / "noise_1.wav").read_bytes()


def test_av_pretrain_config_errors(tmp_path):
    from speechkit.train.av_pretrain import build_av_pretrain_data, split_av_data
    from speechkit.train.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="model.av_data"):
        split_av_data({"arch": "avhubert", "av_data": {"crop": 88}}, "conf/x.yaml")
    with pytest.raises(ConfigError, match="min_frames"):
        split_av_data({"arch": "avhubert", "av_data": {"min_frames": 50, "max_frames": 10}}, "conf/x.yaml")
    model, av = split_av_data({"arch": "avhubert", "preset": "tiny", "av_data": {"max_frames": 300}}, "c")
    assert "av_data" not in model and av.max_frames == 300 and av.crop_size == 88
    with pytest.raises(ConfigError, match="--label-tag"):
        build_av_pretrain_data(TrainConfig(), av, str(tmp_path), None, [])
