"""The mini recipe carried over to a new corpus: LibriSpeech layout, no phone alignments, some short
utterances. Only the data-prep lines of stage 1 change (as README "Adapting a recipe to your corpus"
says); every other stage must run as it is, with the tiny settings (conf/tiny.sh)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from recipe_helpers import ROOT, copy_recipe, run_recipe

RECIPE = ROOT / "egs" / "mini_synth" / "ssl1"
PREP_BEGIN = "# --- data prep:"
PREP_END = "# --- end of data prep ---"


def make_corpus(root):
    """The synthetic generator at tiny size, alignments removed, plus short utterances (0.4-0.7 s, the
    first word of an existing one) in every part."""
    subprocess.run([sys.executable, "-m", "speechkit.bin.make_synth_corpus", "--out", str(root), "--size", "tiny",
                    "--seed", "3", "--nj", "2"], check=True, capture_output=True, text=True, timeout=600)
    shutil.rmtree(root / "alignments")
    n_short = 0
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        for trans in sorted((root / "LibriSpeech" / part).rglob("*.trans.txt"))[:3 if part == "train-clean-100" else 1]:
            lines = trans.read_text().splitlines()
            utt, words = lines[0].split(" ", 1)
            audio, sr = sf.read(trans.parent / f"{utt}.flac")
            for k, dur in enumerate((0.4, 0.7)):
                new = f"{trans.name.split('.')[0]}-{9000 + k:04d}"
                sf.write(trans.parent / f"{new}.flac", audio[:int(dur * sr)].astype(np.float32), sr)
                lines.append(f"{new} {words.split()[0]}")
                n_short += 1
            trans.write_text("\n".join(lines) + "\n")
    return n_short


def adapted_recipe(dst, corpus):
    recipe = copy_recipe(RECIPE, dst)
    run_sh = (recipe / "run.sh").read_text()
    begin, end = run_sh.index(PREP_BEGIN), run_sh.index(PREP_END)
    begin = run_sh.rindex("\n", 0, begin) + 1
    prep = f"python -m speechkit.bin.prepare_librispeech --corpus-dir {corpus} --out data --parts $(echo $sets | tr _ -)\n    "
    (recipe / "run.sh").write_text(run_sh[:begin] + "    " + prep + run_sh[end:])
    return recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("newcorpus") / "corpus"
    return root, make_corpus(root)


def test_every_stage_runs_on_a_corpus_without_alignments(corpus, tmp_path):
    root, n_short = corpus
    recipe = adapted_recipe(tmp_path / "ssl1", root)
    # --ft-utts all (the recipe's default; tiny.sh sets 20): fine-tuning on the whole train set, whatever its size
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--nj", "2", "--ft-utts", "all", timeout=1500)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-6000:]
    for n in range(1, 18):
        assert re.search(rf"Stage {n}: ", log), f"stage {n} did not run"
    assert "make_synth_corpus" not in (recipe / "run.sh").read_text()
    assert not (recipe / "corpus").exists()
    # label quality: PNMI skipped (said so), cluster usage reported instead, in RESULTS.md too
    assert "PNMI skipped for train_clean_100, cluster usage only" in log
    for tag, k in (("mfcc20", 20), ("hubert1_l2_20", 20)):
        rec = json.loads((recipe / "exp" / f"kmeans_{tag}" / "result_units_dev_clean.json").read_text())
        assert rec["metric"] == "usage" and rec["values"]["K"] == k and 0 < rec["values"]["clusters used"] <= k
    results = (recipe / "RESULTS.md").read_text()
    assert "### Unit quality (k-means labels vs phone alignments): usage" in results
    # the short utterances are in the data, and pre-training says how many of them its minimum length dropped
    utts = (recipe / "data" / "train_clean_100" / "wav.scp").read_text()
    assert utts.count("-9000 ") + utts.count("-9001 ") == 6
    pretrain_log = (recipe / "exp" / "hubert_iter1" / "log" / "pretrain.log").read_text()  # via $train_cmd
    assert re.search(r"dropped \d+ of \d+ utterances .* shorter than min_sample_size", pretrain_log)
    # greedy and word-LM rows for both models
    assert (recipe / "data" / "train_ftall").resolve() == (recipe / "data" / "train_clean_100").resolve()
    n_train = len(utts.splitlines())
    for exp in ("ft_hubert_iter2_nall", "ft_scratch_nall"):
        assert f"|exp/{exp}|decode_test_clean|" in results and f"|exp/{exp}|decode_test_clean_lm3|" in results
        info = json.loads((recipe / "exp" / exp / "downstream_info.json").read_text())
        assert info["labeled utts"] == n_train, info
        grid = json.loads((recipe / "exp" / exp / "decode_dev_clean_lm3" / "lm_grid.json").read_text())
        assert len(grid["grid"]) == 9


def test_missing_train_part_fails_in_data_prep_in_one_line(corpus, tmp_path):
    root, _ = corpus
    partial = tmp_path / "partial"
    (partial / "LibriSpeech").mkdir(parents=True)
    for part in ("dev-clean", "test-clean"):
        (partial / "LibriSpeech" / part).symlink_to(root / "LibriSpeech" / part)
    recipe = adapted_recipe(tmp_path / "ssl1", partial)
    res = run_recipe(recipe, "--stop-stage", "2", timeout=120)
    assert res.returncode != 0
    assert "Stage 1: " in res.stdout and "Stage 2: " not in res.stdout
    assert "prepare_librispeech: error:" in res.stderr and "train-clean-100" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("name,args", [
    ("prepare_librispeech", ["--corpus-dir", "{missing}", "--out", "{out}"]),
    ("prepare_librilight", ["{missing}", "{out}"]),
    ("prepare_tedlium3", ["{missing}", "{out}"]),
    ("prepare_lrs3", ["{missing}", "{out}"]),
    ("prepare_voxceleb2", ["{missing}", "{out}"]),
    ("prepare_video_folder", ["{missing}", "{out}"]),
])
def test_prepare_clis_report_errors_in_one_line(name, args, tmp_path, capsys):
    import importlib

    cli = importlib.import_module(f"speechkit.bin.{name}")
    argv = [a.format(missing=tmp_path / "no_such_corpus", out=tmp_path / "data") for a in args]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"{name}: error: ") and "no_such_corpus" in err[0], err
