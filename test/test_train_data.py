"""speechkit.train data side: bucketing, collation/cropping, datasets, config, schedules."""
from __future__ import annotations

import logging
import math
import pathlib

import numpy as np
import pytest
import torch

from speechkit.io.datadir import DataDirError
from speechkit.train.batching import BucketBatchSampler, Collater, crop_labels, make_batches
from speechkit.train.config import ConfigError, ScheduleConfig, TrainConfig
from speechkit.train.dataset import AudioLabelDataset
from speechkit.train.schedule import LRSchedule
from train_toy import make_data_dir, toy_frames


# ---- bucketing ------------------------------------------------------------------------------
def test_batches_respect_max_tokens_and_cover_every_utterance_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1000, 50000, size=500).tolist()
    for epoch in (1, 2):
        batches = make_batches(lengths, 200000, seed=7, epoch=epoch)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(500))
        for b in batches:
            assert len(b) * max(lengths[i] for i in b) <= 200000
        # bucketed: a batch spans a narrow length range, so padding waste is small
        waste = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
        assert waste / sum(lengths) < 0.05
    assert make_batches(lengths, 200000, seed=7, epoch=1) == make_batches(lengths, 200000, seed=7, epoch=1)
    assert make_batches(lengths, 200000, seed=7, epoch=1) != make_batches(lengths, 200000, seed=7, epoch=2)


def test_batches_error_when_one_utterance_exceeds_max_tokens():
    with pytest.raises(ValueError, match="max_tokens"):
        make_batches([100, 5000], 4000, seed=0, epoch=0)


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_slices_are_disjoint_and_equal_length(world):
    lengths = list(range(1000, 31000, 100))
    full = make_batches(lengths, 60000, seed=1, epoch=3)
    per_rank = [BucketBatchSampler(lengths, 60000, seed=1, rank=r, world_size=world).batches(3) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1
    got = [tuple(b) for r in per_rank for b in r]
    # every batch of the epoch is somewhere; only the top-up (repeated first batches) appears twice
    assert {tuple(b) for b in full} == set(got)
    assert len(got) - len(full) == (-len(full)) % world


# ---- collation and cropping -----------------------------------------------------------------
def _item(index, n, labels_hz=100, sr=16000):
    hop = sr // labels_hz
    n_lab = 1 + (n - 400) // 160 if labels_hz == 100 else 1 + (n - 400) // 320
    wav = np.arange(n, dtype=np.float32)  # sample value == original sample index
    return {"index": index, "utt": f"u{index}", "wav": wav, "labels": [np.arange(n_lab) % 1000]}, hop


@pytest.mark.parametrize("rate", [100, 50])
def test_crop_keeps_labels_aligned(rate):
    col = Collater(16000, 8000, label_rates=[rate], pad_audio=False, random_crop=True, seed=5)
    items = [_item(i, n, rate)[0] for i, n in enumerate([16000, 23456, 12345])]
    for epoch in range(4):
        col.set_epoch(epoch)
        batch = col(items)
        hop = 16000 // rate
        assert batch["wav"].shape == (3, 8000)
        for b in range(3):
            start = int(batch["wav"][b, 0])  # the crop's first original sample index
            assert start % hop == 0
            labels = batch["labels"][b, : batch["label_lens"][b]]
            # label i of the crop is original label start/hop + i
            assert labels[0].item() == start // hop
            assert torch.equal(labels, torch.arange(start // hop, start // hop + len(labels)))
            # never shorter than the crop's own frames, at most one longer
            true_frames = 1 + (8000 - 400) // 160 if rate == 100 else 1 + (8000 - 400) // 320
            assert true_frames <= len(labels) <= true_frames + 1
    # crops are a function of (seed, epoch, index): reproducible
    col.set_epoch(2)
    assert torch.equal(col(items)["wav"], col(items)["wav"])


def test_collate_pads_to_contract():
    col = Collater(16000, 10**6, label_rates=[50], pad_audio=True, random_crop=False)
    items = [_item(0, 8000, 50)[0], _item(1, 6400, 50)[0]]
    batch = col(items)
    assert batch["wav"].dtype == torch.float32 and batch["wav"].shape == (2, 8000)
    assert batch["wav_lens"].tolist() == [8000, 6400]
    assert torch.all(batch["wav"][1, 6400:] == 0)
    assert batch["labels"].dtype == torch.long
    assert batch["label_lens"].tolist() == [toy_frames(8000), toy_frames(6400)]
    assert torch.all(batch["labels"][1, toy_frames(6400):] == -100)
    assert batch["utt_ids"] == ["u0", "u1"]


def test_crop_labels_at_the_end():
    labels = np.arange(98)  # 16000 samples at 100 Hz
    out = crop_labels(labels, 16000, 160 * 40, 16000 - 160 * 40, 160)
    assert out.tolist() == list(range(40, 98))


# ---- datasets -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    return make_data_dir(tmp_path_factory.mktemp("data") / "train", [0.2, 0.5, 1.0, 1.5, 0.1], label_rate=100,
                         tag="mfcc100")


def test_min_length_filter_reports(data_dir, caplog):
    with caplog.at_level(logging.INFO):
        ds = AudioLabelDataset(data_dir, ["mfcc100"], [100], min_sample_size=4000)
    assert sorted(ds.dropped) == ["spk0-utt000", "spk0-utt004"]
    assert len(ds) == 3
    assert "dropped 2 of 5 utterances" in caplog.text and "spk0-utt000" in caplog.text
    item = ds[0]
    assert item["wav"].dtype == np.float32 and len(item["wav"]) == ds.sizes[0]
    assert len(item["labels"][0]) == 1 + (ds.sizes[0] - 400) // 160
    with pytest.raises(DataDirError, match="shorter than min_sample_size"):
        AudioLabelDataset(data_dir, ["mfcc100"], [100], min_sample_size=10**6)


def test_dataset_label_errors_name_the_file(data_dir, tmp_path):
    with pytest.raises(DataDirError, match="km.nope"):
        AudioLabelDataset(data_dir, ["nope"], [100])
    # labels at 100 Hz read as 50 Hz: lengths disagree, and the error names the utterance
    with pytest.raises(DataDirError, match=r"km\.mfcc100: utterance spk\d-utt\d+ has \d+ labels"):
        AudioLabelDataset(data_dir, ["mfcc100"], [50])
    partial = tmp_path / "km.part"
    partial.write_text("spk0-utt000 1 2 3\n")
    with pytest.raises(DataDirError, match="no labels for 4 of 5"):
        AudioLabelDataset(data_dir, [str(partial)], [100])


# ---- config ---------------------------------------------------------------------------------
def test_config_unknown_key_and_types(tmp_path):
    conf = tmp_path / "x.yaml"
    conf.write_text("model: {arch: hubert}\ntrainer:\n  max_update: 10\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown key 'trainer\.max_update'"):
        TrainConfig.from_yaml(conf)
    conf.write_text("optim:\n  lr: 5e-4\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: optim\.lr: expected a number.*5\.0e-4"):
        TrainConfig.from_yaml(conf)
    conf.write_text("bogus: 1\n")
    with pytest.raises(ConfigError, match="x.yaml: unknown key 'bogus'"):
        TrainConfig.from_yaml(conf)
    conf.write_text("optim:\n  lr: 5.0e-4\ntrainer: {max_updates: 7, amp: bf16}\nmodel: {arch: hubert, preset: tiny}\n")
    cfg = TrainConfig.from_yaml(conf, overrides=["trainer.update_freq=2"])
    assert cfg.optim.lr == 5e-4 and cfg.trainer.max_updates == 7 and cfg.trainer.update_freq == 2
    cfg.save_yaml(tmp_path / "resolved.yaml")
    assert TrainConfig.from_yaml(tmp_path / "resolved.yaml") == cfg


# ---- schedules ------------------------------------------------------------------------------
def test_polynomial_decay_matches_fairseq_values():
    s = LRSchedule(ScheduleConfig(name="polynomial_decay", warmup_updates=100, end_lr=1e-5, power=1.0), 5e-4, 1000)
    assert s.lr_at(0) == pytest.approx(5e-4 / 100)  # fairseq's lr before the first update
    assert s.lr_at(1) == pytest.approx(5e-4 / 100)
    assert s.lr_at(50) == pytest.approx(2.5e-4)
    assert s.lr_at(100) == pytest.approx(5e-4)
    assert s.lr_at(550) == pytest.approx((5e-4 - 1e-5) * 0.5 + 1e-5)
    assert s.lr_at(1000) == pytest.approx(1e-5) and s.lr_at(5000) == pytest.approx(1e-5)
    s2 = LRSchedule(ScheduleConfig(name="polynomial_decay", warmup_updates=0, power=2.0), 1.0, 100)
    assert s2.lr_at(50) == pytest.approx(0.25)


def test_cosine_linear_tri_stage_values():
    cos = LRSchedule(ScheduleConfig(name="cosine", warmup_updates=10, end_lr=0.0), 1.0, 110)
    assert cos.lr_at(5) == pytest.approx(0.5)
    assert cos.lr_at(60) == pytest.approx(0.5)
    assert cos.lr_at(110) == pytest.approx(0.0)
    lin = LRSchedule(ScheduleConfig(name="linear", warmup_updates=0, power=3.0), 1.0, 100)
    assert lin.lr_at(25) == pytest.approx(0.75)  # power ignored by linear
    tri = LRSchedule(ScheduleConfig(name="tri_stage", phase_ratio=[0.1, 0.4, 0.5], init_lr_scale=0.01,
                                    final_lr_scale=0.05), 1.0, 1000)
    assert tri.lr_at(0) == pytest.approx(0.01)
    assert tri.lr_at(50) == pytest.approx(0.01 + 0.99 * 0.5)
    assert tri.lr_at(100) == pytest.approx(1.0) and tri.lr_at(499) == pytest.approx(1.0)
    assert tri.lr_at(750) == pytest.approx(math.sqrt(0.05))  # halfway through the exp decay
    assert tri.lr_at(1000) == pytest.approx(0.05) and tri.lr_at(2000) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown schedule"):
        LRSchedule(ScheduleConfig(name="nope"), 1.0, 10)


@pytest.mark.parametrize("name", ["iter1", "iter2", "base"])
def test_shipped_pretrain_configs_load(name):
    from speechkit.models import resolve_config

    path = pathlib.Path(__file__).resolve().parents[1] / "egs/mini_synth/ssl1/conf" / f"pretrain_hubert_{name}.yaml"
    # shipped with the recipe: a missing (renamed, deleted) config is a failure, not a skip
    assert path.is_file(), f"{path}: shipped config missing"
    cfg = TrainConfig.from_yaml(path)
    model = resolve_config(cfg.model)
    assert cfg.data.max_tokens >= cfg.data.max_sample_size  # every cropped utterance fits a batch
    if name == "base":  # the paper's settings
        assert (model.encoder.num_layers, model.encoder.mask_prob, model.encoder.mask_length) == (12, 0.8, 10)
        assert (cfg.optim.lr, cfg.schedule.warmup_updates, cfg.trainer.max_updates) == (5e-4, 32000, 400000)
        assert cfg.data.max_tokens == 1400000
