"""AV-HuBERT pre-training through speechkit.bin.pretrain: the AV data path, 100 Hz and 25 Hz labels, and a
resumed run that ends bit-identical to an uninterrupted one."""
from __future__ import annotations

import pathlib

import torch
import yaml

from av_helpers import ROI, make_av_data_dir
from speechkit.bin import pretrain

TEXTS = {f"s{i % 2}-u{i}": (i % 2, w) for i, w in enumerate(["AB CA", "BAD", "CAB AB", "ABC", "CA BA", "DAB"])}


def _config(tmp_path: pathlib.Path, label_rate: int, masking: str) -> pathlib.Path:
    conf = {
        "model": {"arch": "avhubert", "preset": "tiny", "masking_type": masking, "modality_dropout": 0.5,
                  "audio_dropout": 0.5, "mask_length_video": 2,
                  "encoder": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "ffn_dim": 32, "mask_length": 2,
                              "mask_prob": 0.5},
                  "av_data": {"crop_size": ROI - 4, "max_frames": 30}},
        "data": {"label_rate": label_rate, "max_tokens": 60, "pad_audio": False, "random_crop": True,
                 "num_workers": 0},
        "optim": {"lr": 1.0e-3},
        "schedule": {"name": "polynomial_decay", "warmup_updates": 1, "total_updates": 4},
        "trainer": {"max_updates": 4, "seed": 3, "log_interval": 1, "valid_interval": 2, "save_interval": 2},
    }
    p = tmp_path / f"av_{label_rate}.yaml"
    p.write_text(yaml.safe_dump(conf))
    return p


def _weights(exp: pathlib.Path) -> dict[str, torch.Tensor]:
    return torch.load(exp / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]


def test_av_pretraining_resumes_bit_exactly(tmp_path):
    data = make_av_data_dir(tmp_path / "train", TEXTS, km_rate=100)
    conf = _config(tmp_path, 100, "feature")
    common = ["--config", str(conf), "--train-data", str(data), "--valid-data", str(data), "--label-tag", "test",
              "--set", "model.av_data.audio_features=av_helpers:stand_in_audio_features"]
    assert pretrain.main([*common, "--exp-dir", str(tmp_path / "full")]) == 0
    assert pretrain.main([*common, "--exp-dir", str(tmp_path / "half"), "--set", "trainer.max_updates=2"]) == 0
    assert pretrain.main([*common, "--exp-dir", str(tmp_path / "half"), "--resume", "auto"]) == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "half")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert state["model"]["av_data"]["max_frames"] == 30 and state["model"]["label_rate"] == 100


def test_av_pretraining_on_25_hz_units_with_input_masking(tmp_path):
    data = make_av_data_dir(tmp_path / "train", TEXTS, km_rate=25)
    conf = _config(tmp_path, 25, "input")
    assert pretrain.main(["--config", str(conf), "--train-data", str(data), "--label-tag", "test", "--exp-dir",
                          str(tmp_path / "exp"), "--set", "trainer.max_updates=2",
                          "--set", "model.av_data.audio_features=av_helpers:stand_in_audio_features"]) == 0
    ckpt = torch.load(tmp_path / "exp" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert ckpt["num_updates"] == 2 and ckpt["model_config"]["label_rate"] == 25
