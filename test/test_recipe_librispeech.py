"""End-to-end run of egs/librispeech/ssl1 on a fake LibriSpeech + Libri-light in the official layouts.

The fake LibriSpeech has all seven parts: train-clean-100 / dev-clean / test-clean from the synthetic
generator (tiny size) and train-clean-360 / train-other-500 / dev-other / test-other written here with
new voices, each a ``<spk>/<chapter>/*.flac + <spk>-<chapter>.trans.txt`` folder as on openslr.org/12.
The recipe runs every stage (data prep, MFCC, k-means, labels, two HuBERT iterations, tokenizer, CTC
fine-tuning on train_10h and train_clean_100, decoding, scoring, RESULTS.md) with conf/tiny.sh.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import time

import pytest

from fake_corpora import SENTENCES, _write_chapter, make_librilight_finetuning
from recipe_helpers import ROOT, copy_recipe, run_recipe, training_outputs
from speechkit.corpora.synth import generate_corpus, make_voices
from speechkit.io.datadir import read_table

RECIPE = ROOT / "egs" / "librispeech" / "ssl1"
# (part, speaker, chapter, utterances) written here; the generator's speakers have other ids
EXTRA_PARTS = (("train-clean-360", 9901, 990101, 3), ("train-other-500", 9902, 990201, 3),
               ("dev-other", 9903, 990301, 2), ("test-other", 9904, 990401, 2))
SETS = ("dev_clean", "dev_other", "test_clean", "test_other")


def make_librispeech(out: pathlib.Path) -> tuple[pathlib.Path, dict[str, int]]:
    """Official-layout LibriSpeech with all seven parts; returns (corpus dir, utterances per part)."""
    synth = generate_corpus(out / "synth", size="tiny", seed=0, num_jobs=2)
    root = out / "corpus" / "LibriSpeech"
    root.mkdir(parents=True)
    counts = {}
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        shutil.copytree(synth / "LibriSpeech" / part, root / part)
        counts[part] = len(list((root / part).rglob("*.flac")))
    voices = make_voices(len(EXTRA_PARTS), seed=7)
    for i, (part, spk, chapter, n) in enumerate(EXTRA_PARTS):
        texts = [SENTENCES[(3 * i + j) % len(SENTENCES)] for j in range(n)]
        _write_chapter(root / part / str(spk) / str(chapter), spk, chapter, 0, texts, voices[i])
        counts[part] = n
    return root.parent, counts


def num_lines(path: pathlib.Path) -> int:
    return len(path.read_text().splitlines())


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    out = tmp_path_factory.mktemp("ls_corpora")
    corpus, counts = make_librispeech(out)
    ll = make_librilight_finetuning(out / "ll", utts_per_folder=1, seed=3)
    return corpus, counts, ll


def test_librispeech_recipe_all_stages(corpora, tmp_path):
    corpus, counts, ll = corpora
    recipe = copy_recipe(RECIPE, tmp_path / "ssl1")
    t0 = time.time()
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(corpus),
                     "--librilight-dir", str(ll.root))
    elapsed = time.time() - t0
    assert res.returncode == 0, f"run.sh failed\nSTDOUT\n{res.stdout[-4000:]}\nSTDERR\n{res.stderr[-6000:]}"
    for stage in range(1, 16):
        assert f"Stage {stage}:" in res.stdout, f"stage {stage} did not run:\n{res.stdout}"
    data = recipe / "data"
    # stage 1: every part plus the combined sets, utterance counts as on disk
    for part, n in counts.items():
        assert num_lines(data / part.replace("-", "_") / "wav.scp") == n, part
    n960 = sum(counts[p] for p in ("train-clean-100", "train-clean-360", "train-other-500"))
    assert num_lines(data / "train_960" / "text") == n960
    assert num_lines(data / "dev" / "text") == counts["dev-clean"] + counts["dev-other"]
    # stage 2: Libri-light sets
    for name in ("train_10min", "train_1h", "train_10h"):
        assert num_lines(data / name / "text") == len(ll.expected(name)), name
    # stages 3-10: labels for both iterations, one label per frame, two pre-trained models
    for tag in ("mfcc12", "hubert1_l1_12"):
        labels = (data / "train_960" / f"km.{tag}").read_text().splitlines()
        assert len(labels) == n960
        assert all(0 <= int(x) < 12 for line in labels for x in line.split()[1:])
    for it in (1, 2):
        assert (recipe / "exp" / f"hubert_iter{it}" / "checkpoint_last.pt").is_file()
    # stages 12-14: two fine-tuned models, four decoded and scored sets each
    for ft, train_set in (("10h", "train_10h"), ("100h", "train_clean_100")):
        exp = recipe / "exp" / f"ctc_{ft}_hubert_iter2"
        info = json.loads((exp / "downstream_info.json").read_text())
        assert info["labeled utts"] == num_lines(data / train_set / "text")
        for s in SETS:
            dec = exp / f"decode_{s}_greedy"
            hyp_ids = [line.split(maxsplit=1)[0] for line in (dec / "hyp").read_text().splitlines()]
            assert sorted(hyp_ids) == sorted(read_table(data / s / "text")), dec
            result = json.loads((dec / "result.json").read_text())
            assert result["dataset"] == s
            assert "wer" in json.dumps(result).lower()
            # word-level decoding with the 3-gram of the transcripts (tiny.sh), tuned on dev_other
            lm_result = json.loads((exp / f"decode_{s}_4gram" / "result.json").read_text())
            assert lm_result["dataset"] == f"{s}_4gram" and "lexicon beam 20" in lm_result["info"]["decode"]
        grid = json.loads((exp / "decode_dev_other_4gram" / "lm_grid.json").read_text())
        assert [(g["lm_weight"], g["word_score"]) for g in grid["grid"]] == [(1, 0), (2, 0)]
    # stage 15
    results = (recipe / "RESULTS.md").read_text()
    for s in SETS:
        assert s in results
    assert "ctc_10h_hubert_iter2" in results and "ctc_100h_hubert_iter2" in results
    print(f"librispeech recipe, all stages: {elapsed:.1f} s")
    print("\n".join(line for line in res.stdout.splitlines() if " took " in line))

    # a re-run skips finished work (markers), and says so; no training stage runs again
    before = training_outputs(recipe)
    assert any("hubert_iter2" in p for p in before) and any("ctc_100h" in p for p in before)
    res2 = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(corpus),
                      "--librilight-dir", str(ll.root), "--stop-stage", "13")
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert res2.stdout.count("exists; skipping") >= 20
    assert "Stage 12" in res2.stdout
    assert training_outputs(recipe) == before  # checkpoints and train.logs untouched


def test_librispeech_recipe_missing_part(corpora, tmp_path):
    corpus, _, _ = corpora
    partial = tmp_path / "partial" / "LibriSpeech"
    partial.mkdir(parents=True)
    for part in (corpus / "LibriSpeech").iterdir():
        if part.name != "train-other-500":
            (partial / part.name).symlink_to(part)
    recipe = copy_recipe(RECIPE, tmp_path / "ssl1")
    res = run_recipe(recipe, "--config", "conf/tiny.sh", "--corpus-dir", str(partial.parent), "--stop-stage", "1")
    assert res.returncode != 0
    assert "train-other-500" in res.stderr and "absent" in res.stderr, res.stderr[-2000:]
    assert not (recipe / "data" / ".prep.done").exists()


def test_librispeech_recipe_bad_options(tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path / "ssl1")
    res = run_recipe(recipe, "--finetune", "5h", "--stage", "12")
    assert res.returncode != 0 and "unknown labeled set '5h'" in res.stderr
    res = run_recipe(recipe, "--corpus-dir", str(tmp_path / "nowhere"), "--stop-stage", "1")
    assert res.returncode != 0 and "nowhere: no such folder" in res.stderr
    res = run_recipe(recipe, "--ngpu", "3", "--stage", "15", "--stop-stage", "14")
    assert res.returncode != 0 and "does not divide" in res.stderr
    res = run_recipe(recipe, "--no-such-option", "1")
    assert res.returncode != 0 and "unknown option --no-such-option" in res.stderr
