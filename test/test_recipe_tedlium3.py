"""End-to-end run of egs/tedlium3/asr1 on a fake TED-LIUM 3 in the official layout (SPHERE + STM).

The fake corpus (test/fake_corpora.py) has per talk an ``ignore_time_segment_in_scoring`` line, a
zero-length segment (crossing nothing) and noise / variant markers to normalise away. The recipe imports
a tiny HF transformers HuBERT folder (convert_checkpoint), fine-tunes it with CTC, decodes dev and test,
scores and writes RESULTS.md. Bad input -- an STM whose talk audio is missing, a truncated .sph -- is a
counted, reported skip, or with --prep-opts --strict an error naming the file.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import time

import pytest
import soundfile as sf
import torch

from fake_corpora import make_tedlium3
from recipe_helpers import ROOT, copy_recipe, run_recipe
from speechkit.io.datadir import read_table

RECIPE = ROOT / "egs" / "tedlium3" / "asr1"


@pytest.fixture(scope="module")
def ted(tmp_path_factory):
    return make_tedlium3(tmp_path_factory.mktemp("ted"), talks_per_set=2, utts_per_talk=3, seed=0)


@pytest.fixture(scope="module")
def hf_tiny_hubert(tmp_path_factory):
    """A tiny HuBERT saved as HF transformers saves published models (config.json + weights)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.HubertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "hubert_tiny"
    transformers.HubertModel(cfg).save_pretrained(out)
    return out


def test_tedlium3_recipe_all_stages(ted, hf_tiny_hubert, tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path / "asr1")
    t0 = time.time()
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(ted.root),
                     "--import-model", str(hf_tiny_hubert))
    elapsed = time.time() - t0
    assert res.returncode == 0, f"run.sh failed\nSTDOUT\n{res.stdout[-4000:]}\nSTDERR\n{res.stderr[-6000:]}"
    for stage in range(1, 8):
        assert f"Stage {stage}:" in res.stdout, f"stage {stage} did not run:\n{res.stdout}"
    data = recipe / "data"
    # stage 1: exactly the scored segments, ids <talk>-<start>-<end>, normalised text, speaker = talk
    for s in ("train", "dev", "test"):
        text = read_table(data / s / "text")
        assert text == ted.expected[("legacy", s)], s
        assert list(text) == sorted(text)
        segs = read_table(data / s / "segments")
        assert set(segs) == set(text)
        utt2spk = read_table(data / s / "utt2spk")
        assert all(u.startswith(spk + "-") and spk in ted.talks[("legacy", s)] for u, spk in utt2spk.items())
    # stages 3-4: the imported checkpoint and the fine-tuned model
    assert (recipe / "exp" / "import_hubert_tiny" / "checkpoint.pt").is_file()
    exp = recipe / "exp" / "ctc_import_hubert_tiny"
    info = json.loads((exp / "downstream_info.json").read_text())
    assert info["task"] == "ctc" and info["labeled utts"] == len(ted.expected[("legacy", "train")])
    # stages 5-6: every utterance decoded, scored
    for s in ("dev", "test"):
        dec = exp / f"decode_{s}_greedy"
        hyp = read_table(dec / "hyp") if (dec / "hyp").stat().st_size else {}
        assert set(hyp) <= set(read_table(data / s / "text"))
        assert len((dec / "hyp").read_text().splitlines()) == len(ted.expected[("legacy", s)])
        assert json.loads((dec / "result.json").read_text())["dataset"] == s
    results = (recipe / "RESULTS.md").read_text()
    assert "ctc_import_hubert_tiny" in results and "|dev|" in results and "|test|" in results
    print(f"tedlium3 recipe, all stages: {elapsed:.1f} s")
    print("\n".join(line for line in res.stdout.splitlines() if " took " in line))


def _corrupt_copy(ted, out: pathlib.Path) -> tuple[pathlib.Path, str, str]:
    """A copy of the fake corpus with one dev talk's audio missing and one test talk's .sph truncated."""
    root = out / "TEDLIUM_release-3"
    shutil.copytree(ted.root, root)
    missing = ted.talks[("legacy", "dev")][0]
    (root / "legacy" / "dev" / "sph" / f"{missing}.sph").unlink()
    truncated = ted.talks[("legacy", "test")][1]
    sph = root / "legacy" / "test" / "sph" / f"{truncated}.sph"
    raw = sph.read_bytes()
    sph.write_bytes(raw[: 1024 + (len(raw) - 1024) // 3])  # header + the first third of the samples
    return root, missing, truncated


def test_tedlium3_recipe_bad_input_is_reported(ted, tmp_path):
    root, missing, truncated = _corrupt_copy(ted, tmp_path / "corpus")
    recipe = copy_recipe(RECIPE, tmp_path / "asr1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(root), "--stop-stage", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stderr
    # the missing talk: every STM line of it (bar the ignored gap) is skipped, counted and named
    stm_lines = [ln for ln in ted.stm("legacy", "dev", missing).read_text().splitlines()
                 if "ignore_time_segment_in_scoring" not in ln]
    assert missing in log and f"missing_audio={len(stm_lines)}" in log, log[-3000:]
    dev = read_table(recipe / "data" / "dev" / "text")
    assert not any(u.startswith(missing) for u in dev)
    assert len(dev) == len(ted.expected[("legacy", "dev")]) - 3
    # the truncated talk: segments past the end of its audio are skipped and counted
    assert truncated in log and "beyond_audio=" in log, log[-3000:]
    test = read_table(recipe / "data" / "test" / "text")
    assert 0 < len(test) < len(ted.expected[("legacy", "test")])

    strict = copy_recipe(RECIPE, tmp_path / "asr1_strict")
    res = run_recipe(strict, "--config", "conf/tiny.sh", "--corpus-dir", str(root), "--stop-stage", "1",
                     "--prep-opts", "--strict")
    assert res.returncode != 0
    assert f"{missing}.sph" in res.stderr, res.stderr[-3000:]
    assert not (strict / "data" / ".prep.done").exists()


def test_tedlium3_recipe_missing_inputs(ted, tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path / "asr1")
    # no SSL checkpoint: the default is the LibriSpeech recipe's, absent here
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--stage", "4", "--stop-stage", "4")
    assert res.returncode != 0 and "hubert_iter2/checkpoint_last.pt: no such checkpoint" in res.stderr
    # a missing set folder is a structural error
    root = tmp_path / "corpus" / "TEDLIUM_release-3"
    shutil.copytree(ted.root, root)
    shutil.rmtree(root / "legacy" / "test")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(root), "--stop-stage", "1")
    assert res.returncode != 0 and "test" in res.stderr and "missing" in res.stderr, res.stderr[-2000:]


def test_tedlium3_recipe_real_sphere_an4(an4_dir, tmp_path):
    """Real SPHERE files (an4) placed in the TED-LIUM 3 layout go through stages 1-2 of the recipe."""
    trans = {}
    for name in ("an4_train.transcription", "an4_test.transcription"):
        for line in (an4_dir / "etc" / name).read_text().splitlines():
            words = [w for w in line.split() if w not in ("<s>", "</s>")]
            if words and words[-1].startswith("("):
                trans[words[-1].strip("()")] = " ".join(words[:-1]).lower()
    files = [f for f in sorted(an4_dir.glob("wav/**/*.sph")) if f.stem in trans]  # transcribed ones
    train_files = [f for f in files if "an4test" not in str(f)]
    assert len(train_files) >= 2 and len(files) > len(train_files), f"too few transcribed .sph in {an4_dir}"
    root = tmp_path / "TEDLIUM_release-3"
    expected = {}
    for sph in files:
        set_name = "test" if "an4test" in str(sph) else ("dev" if sph == train_files[0] else "train")
        talk = sph.stem.replace("-", "_")  # a TED-style talk name (no '-', the id separator)
        for sub in ("sph", "stm"):
            (root / "legacy" / set_name / sub).mkdir(parents=True, exist_ok=True)
        (root / "legacy" / set_name / "sph" / f"{talk}.sph").symlink_to(sph)  # never copied
        dur = sf.info(str(sph)).frames / 16000
        end = int((dur - 0.05) * 100) / 100
        (root / "legacy" / set_name / "stm" / f"{talk}.stm").write_text(
            f"{talk} 1 {talk} 0.00 0.10 <o,f0,male> ignore_time_segment_in_scoring\n"
            f"{talk} 1 {talk} 0.10 {end:.2f} <o,f0,male> {trans[sph.stem]}\n")
        expected.setdefault(set_name, {})[f"{talk}-{10:07d}-{round(end * 100):07d}"] = trans[sph.stem]
    recipe = copy_recipe(RECIPE, tmp_path / "asr1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(root), "--stop-stage", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    from speechkit.io.audio import AudioReader

    for set_name, utts in expected.items():
        d = recipe / "data" / set_name
        assert read_table(d / "text") == utts, set_name
        reader = AudioReader(d)
        for utt, wav in reader:
            _, start, end = utt.rsplit("-", 2)
            assert abs(len(wav) - (int(end) - int(start)) * 160) <= 160, utt
            assert 0 < abs(wav).max() <= 1.0
    tokens = (recipe / "data" / "token_char" / "tokens.txt").read_text()
    assert "E" in tokens.split() or "e" in tokens.split()
