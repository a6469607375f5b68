"""End-to-end run of egs/voxceleb2/avhubert1 on tiny synthetic VoxCeleb2 and LRS3 corpora in the official
layouts, with conf/tiny.sh: VoxCeleb2 prep with an English-subset id list, LRS3 prep, mouth ROIs, the combined
pre-training set, MFCC k-means, two AV-HuBERT iterations, a VoxCeleb1-format trial list, speaker verification
with audio-only and audio-visual embeddings of the pre-trained encoder, RESULTS.md."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from av_fixtures import synth_av_root  # noqa: F401  (fixture)
from recipe_helpers import ROOT, copy_recipe, run_recipe

RECIPE = ROOT / "egs" / "voxceleb2" / "avhubert1"


@pytest.fixture
def finished(synth_av_root, tmp_path):  # noqa: F811
    for name in ("lrs3", "voxceleb2"):
        shutil.copytree(synth_av_root / name, tmp_path / name)
    vox = tmp_path / "voxceleb2"
    dev = sorted(p.relative_to(vox / "dev" / "mp4").with_suffix("").as_posix() for p in (vox / "dev" / "mp4").glob("*/*/*.mp4"))
    ids = tmp_path / "vox-en.id"
    ids.write_text("".join(f"dev/mp4/{r}\n" for r in dev[:-1]))  # one dev clip is "not English"
    test = sorted(p.relative_to(vox / "test" / "mp4").with_suffix(".wav").as_posix() for p in (vox / "test" / "mp4").glob("*/*/*.mp4"))
    spk = lambda r: r.split("/")[0]  # noqa: E731
    trials = [(1 if spk(a) == spk(b) else 0, a, b) for i, a in enumerate(test) for b in test[i + 1:]]
    (tmp_path / "veri_test.txt").write_text("".join(f"{t} {a} {b}\n" for t, a, b in trials))
    recipe = copy_recipe(RECIPE, tmp_path / "avhubert1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--vox2-dir", str(vox), "--lrs3-dir", str(tmp_path / "lrs3"),
                     "--vox-en-ids", str(ids), "--vox1-trials", str(tmp_path / "veri_test.txt"),
                     "--vox1-data", "data/vox2/test", timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return recipe, res.stdout + res.stderr, len(dev), len(trials)


def test_voxceleb2_recipe_all_stages(finished):
    recipe, log, n_dev, n_trials = finished
    for n in range(1, 12):
        assert re.search(rf"stage {n} took \d+ s", log), f"stage {n} did not run"
    d = recipe / "data"
    n_en = len((d / "vox2" / "dev_en" / "wav.scp").read_text().splitlines())
    n_lrs3 = len((d / "lrs3" / "train_433h" / "utt2spk").read_text().splitlines())
    assert n_en == n_dev - 1
    assert len((d / "pretrain_av" / "utt2spk").read_text().splitlines()) == n_en + n_lrs3
    assert (d / "pretrain_av" / "video.scp").is_file() and (d / "pretrain_av" / "km.av1_l1_8").is_file()
    assert len((d / "vox2" / "test" / "trials").read_text().splitlines()) == n_trials
    for m in ("audio", "audiovisual"):
        x = recipe / "exp" / f"sv_avhubert_iter2_l1_{m}"
        res = json.loads((x / "eval" / "result_sv.json").read_text())
        assert 0.0 <= res["values"]["EER(%)"] <= 100.0 and res["info"]["modalities"] == m
    results = (recipe / "RESULTS.md").read_text()
    assert "EER" in results and "audiovisual" in results


def test_pool_embeddings(tmp_path):
    from speechkit.bin import pool_embeddings
    from speechkit.io.ark import ArkWriter, read_scp

    rng = np.random.default_rng(0)
    feats = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(7, 3))}
    with ArkWriter(tmp_path / "f.ark", tmp_path / "feats.scp") as w:
        for k, v in feats.items():
            w.write(k, v)
    assert pool_embeddings.main(["--feats", str(tmp_path / "feats.scp"), "--out", str(tmp_path / "e"),
                                 "--stats", "meanstd"]) == 0
    emb = read_scp(tmp_path / "e" / "embeddings.scp")
    for k, v in feats.items():
        np.testing.assert_allclose(emb[k], np.concatenate([v.mean(0), v.std(0)]), rtol=1e-5)
    with pytest.raises(ValueError, match="utterance z"):
        pool_embeddings.pool(np.zeros((0, 3)), "mean", "z")
