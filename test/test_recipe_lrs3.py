"""End-to-end run of egs/lrs3/avhubert1 on the tiny synthetic LRS3 in the official layout
({pretrain,trainval,test}/<speaker>/<clip>.{mp4,txt}), with conf/tiny.sh: data prep, mouth ROIs, MFCC
k-means, AV-HuBERT iterations 1 (100 Hz MFCC units, feature masking) and 2 (25 Hz units of iteration 1,
input masking + modality dropout), the unit model, VSR and AVSR fine-tuning on 30h and 433h, decoding on
clean and noisy audio, RESULTS.md; and the --ngpu arithmetic."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from av_fixtures import synth_av_root  # noqa: F401  (fixture)
from recipe_helpers import ROOT, copy_recipe, run_recipe

RECIPE = ROOT / "egs" / "lrs3" / "avhubert1"


@pytest.fixture
def finished(synth_av_root, tmp_path):  # noqa: F811
    from speechkit.bin import make_noise_dir

    corpus = tmp_path / "lrs3"
    shutil.copytree(synth_av_root / "lrs3", corpus)
    make_noise_dir.main(["--out", str(tmp_path / "noise"), "--num-files", "2", "--seconds", "3"])
    recipe = copy_recipe(RECIPE, tmp_path / "avhubert1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--lrs3-dir", str(corpus), "--noise-dir",
                     str(tmp_path / "noise"), timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return recipe, res.stdout + res.stderr


def test_lrs3_recipe_all_stages(finished):
    recipe, log = finished
    for n in (1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17):
        assert re.search(rf"stage {n} took \d+ s", log), f"stage {n} did not run"
    assert not re.search(r"Stage (8|9|1[0-3]): ", log)  # iterations 3-5 are off with --iters 2
    for it, rate, masking in ((1, 100, "feature"), (2, 25, "input")):
        conf = (recipe / "exp" / f"avhubert_iter{it}" / "config.yaml").read_text()
        assert f"label_rate: {rate}" in conf and f"masking_type: {masking}" in conf
    info = json.loads((recipe / "dump" / "av1_l1" / "train_433h" / "feat_info.json").read_text())
    assert info["modalities"] == "audiovisual"
    for x in ("vsr_base_30h", "vsr_base_433h", "avsr_base_30h", "avsr_base_433h"):
        assert json.loads((recipe / "exp" / x / "downstream_info.json").read_text())["modalities"] == \
            ("video" if x.startswith("vsr") else "audiovisual")
    for c in ("clean", "babble_0", "noise_0"):
        assert list((recipe / "exp" / "avsr_base_30h" / f"decode_test_{c}").glob("result*.json")), c
    assert not (recipe / "exp" / "vsr_base_30h" / "decode_test_babble_0").exists()
    results = (recipe / "RESULTS.md").read_text()
    assert "## exp/vsr_base_30h" in results and "## exp/avsr_base_433h" in results


def test_ngpu_scales_update_freq(tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path / "r")
    res = run_recipe(recipe, "--ngpu", "3", "--stage", "5", "--stop-stage", "5", "--lrs3-dir", str(tmp_path))
    assert res.returncode != 0 and "--ngpu 3 does not divide the reference 32 GPUs" in res.stdout + res.stderr
    res = run_recipe(recipe, "--lrs3-dir", str(tmp_path / "missing"), "--stop-stage", "1")
    assert res.returncode != 0 and "not found" in res.stdout + res.stderr
