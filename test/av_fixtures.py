"""Shared fixtures for the audio-visual tests: the tiny synthetic LRS3/VoxCeleb2 corpora (generated once
per session into pytest's base temp dir; the generator's stamp file makes later requests free)."""
from __future__ import annotations

import pathlib
import shutil

import pytest


@pytest.fixture
def synth_av_root(tmp_path_factory) -> pathlib.Path:
    from speechkit.corpora.synth_av import make_synth_av_corpus

    root = tmp_path_factory.getbasetemp() / "synth_av_corpus"
    make_synth_av_corpus(root, "lrs3", "tiny", seed=0)
    make_synth_av_corpus(root, "voxceleb2", "tiny", seed=0)
    return root


@pytest.fixture
def lrs3_copy(synth_av_root, tmp_path) -> pathlib.Path:
    """A private copy of the tiny LRS3 corpus that a test may damage."""
    dst = tmp_path / "lrs3"
    shutil.copytree(synth_av_root / "lrs3", dst)
    return dst


@pytest.fixture
def vox_copy(synth_av_root, tmp_path) -> pathlib.Path:
    dst = tmp_path / "voxceleb2"
    shutil.copytree(synth_av_root / "voxceleb2", dst)
    return dst
