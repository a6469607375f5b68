"""Libri-light limited-resource sets on a fake corpus in the official layout."""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from fake_corpora import make_librilight_finetuning
from speechkit.corpora.librilight import (
    FINETUNING_SETS,
    LibrilightError,
    prepare_librilight_finetuning,
)
from speechkit.corpora.librispeech import prepare_librispeech
from speechkit.io.datadir import DataDir, read_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_src(tmp_path_factory):
    return make_librilight_finetuning(tmp_path_factory.mktemp("ll"))


@pytest.fixture
def fake(fake_src, tmp_path):
    shutil.copytree(fake_src.root, tmp_path / "librispeech_finetuning")
    return dataclasses.replace(fake_src, root=tmp_path / "librispeech_finetuning")


def test_sets_from_official_layout(fake, tmp_path):
    dirs = prepare_librilight_finetuning(fake.root.parent, tmp_path / "data", num_jobs=2)
    assert list(dirs) == list(FINETUNING_SETS)
    sizes = []
    for name, path in dirs.items():
        assert path == tmp_path / "data" / name
        dd = DataDir.load(path)
        assert dd.text == fake.expected(name)
        for utt, spk in dd.utt2spk.items():
            assert spk == utt.rsplit("-", 1)[0]  # reader-chapter
        for utt, flac in dd.wav_scp.items():
            assert pathlib.Path(flac).is_absolute()
            assert dd.utt2num_samples[utt] == sf.info(flac).frames
        sizes.append(set(dd.text))
    small, one, ten = sizes
    assert small < one < ten
    assert len(small) == 2 and len(one) == 12 and len(ten) == 14  # 1 utt per folder half
    # a chapter split between 1h/1 and 9h is one speaker with both folders' utterances
    dd = DataDir.load(dirs["train_10h"])
    assert len(dd.spk2utt[fake.shared_chapter]) == 2
    assert len(DataDir.load(dirs["train_1h"]).spk2utt[fake.shared_chapter]) == 1


def test_same_tables_as_librispeech_prep(fake, tmp_path):
    """A Libri-light folder is a LibriSpeech part in disguise: both preps must agree."""
    ls = tmp_path / "LibriSpeech"
    (ls / "train-clean-100").mkdir(parents=True)
    for spk in (fake.root / "1h" / "0" / "clean").iterdir():
        shutil.copytree(spk, ls / "train-clean-100" / spk.name)
    theirs = DataDir.load(prepare_librispeech(tmp_path, tmp_path / "ls")["train_clean_100"])
    ours = DataDir.load(prepare_librilight_finetuning(fake.root, tmp_path / "ll",
                                                      sets=("train_10min",))["train_10min"])
    clean = set(theirs.text)
    assert clean and clean < set(ours.text)
    for table in ("text", "utt2spk", "utt2num_samples"):
        assert {u: v for u, v in getattr(ours, table).items() if u in clean} == \
            getattr(theirs, table)


def test_missing_folders_are_errors(fake, tmp_path):
    shutil.rmtree(fake.root / "1h" / "3")
    with pytest.raises(LibrilightError, match=r"missing: \S+/1h/3/clean, \S+/1h/3/other;"):
        prepare_librilight_finetuning(fake.root, tmp_path / "a", sets=("train_1h",))
    # the 10-minute set needs only 1h/0
    dirs = prepare_librilight_finetuning(fake.root, tmp_path / "b", sets=("train_10min",))
    assert set(read_table(dirs["train_10min"] / "text")) == set(fake.expected("train_10min"))
    shutil.rmtree(fake.root / "9h" / "other")
    with pytest.raises(LibrilightError, match=r"3 folder\(s\) missing: \S+/1h/3/clean, "
                       r"\S+/1h/3/other, \S+/9h/other;"):
        prepare_librilight_finetuning(fake.root, tmp_path / "c", sets=("train_10h",))
    with pytest.raises(LibrilightError, match="no Libri-light fine-tuning data"):
        prepare_librilight_finetuning(fake.root / "1h" / "0", tmp_path / "d")
    with pytest.raises(ValueError, match="unknown Libri-light sets"):
        prepare_librilight_finetuning(fake.root, tmp_path / "e", sets=("train_100h",))


def test_utterance_in_two_folders_is_an_error(fake, tmp_path):
    utt = next(iter(fake.folders["1h/0/clean"]))
    spk, chapter, _ = utt.split("-")
    src = fake.root / "1h" / "0" / "clean" / spk / chapter
    shutil.copytree(src, fake.root / "1h" / "4" / "other" / spk / chapter)
    with pytest.raises(LibrilightError, match=rf"utterance {utt} is also in .*1h/0"):
        prepare_librilight_finetuning(fake.root, tmp_path / "a", sets=("train_1h",))


def test_missing_flac_is_counted_and_reported(fake, tmp_path, caplog):
    utt = next(iter(fake.folders["1h/2/other"]))
    spk, chapter, _ = utt.split("-")
    (fake.root / "1h" / "2" / "other" / spk / chapter / f"{utt}.flac").unlink()
    with caplog.at_level(logging.WARNING):
        dirs = prepare_librilight_finetuning(fake.root, tmp_path / "a", sets=("train_1h",))
    assert "1h/2: 1 transcript lines have no flac file" in caplog.text and utt in caplog.text
    text = read_table(dirs["train_1h"] / "text")
    assert set(text) == set(fake.expected("train_1h")) - {utt}


def test_cli(fake, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "speechkit.bin.prepare_librilight", "--help"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "train_10min" in out and "--sets" in out
    from speechkit.bin.prepare_librilight import main
    assert main([str(fake.root), str(tmp_path / "data"), "--sets", "train_10min"]) == 0
    assert (tmp_path / "data" / "train_10min" / "spk2utt").is_file()
    assert not (tmp_path / "data" / "train_1h").exists()
