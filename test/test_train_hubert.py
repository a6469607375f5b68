"""End to end: a tiny HuBERT pre-trains through the CLI, is SIGKILLed and resumed exactly,
loads with load_pretrained, and dump_layer_features writes its layer features at model frames."""
from __future__ import annotations

import math
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from speechkit.bin import dump_layer_features, pretrain
from speechkit.io.ark import read_scp
from speechkit.io.datadir import read_table
from speechkit.models import conv_output_lengths, load_pretrained
from speechkit.train.checkpoint import load_checkpoint
from train_toy import make_data_dir, worker_env

CONFIG = """\
model:
  arch: hubert
  preset: tiny
  mask_prob: 0.5
  mask_length: 3
data:
  max_sample_size: 16000
  min_sample_size: 4000
  max_tokens: 48000
  num_workers: 0
  label_rate: 100
optim:
  lr: 2.0e-3
schedule:
  warmup_updates: 2
trainer:
  max_updates: 6
  log_interval: 1
  valid_interval: 3
  save_interval: 2
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubert")
    kw = dict(label_rate=100, tag="mfcc100", num_classes=20)
    train = make_data_dir(root / "train", [0.6, 0.8, 1.0, 1.2, 0.9, 1.5, 0.7, 1.1], **kw)
    dev = make_data_dir(root / "dev", [0.8, 1.0, 0.45], seed=1, **kw)
    conf = root / "tiny.yaml"
    conf.write_text(CONFIG)
    return root, conf, train, dev


def _args(conf, train, dev, exp, *extra):
    return ["--config", str(conf), "--train-data", str(train), "--valid-data", str(dev), "--label-tag", "mfcc100",
            "--exp-dir", str(exp), *extra]


def test_pretrain_kill_resume_load_and_dump(setup, tmp_path):
    root, conf, train, dev = setup
    env = worker_env()
    killed_exp = tmp_path / "killed"
    # the CLI kills itself right after update 5 (saves: 2, 4 by interval, 3 after validation; so
    # checkpoint_last.pt is update 4's and update 5 is lost): a fixed kill point,
    # where polling for the first checkpoint raced the child (it could finish first, or die elsewhere)
    kill_at = pathlib.Path(__file__).with_name("kill_at.py")
    proc = subprocess.Popen([sys.executable, str(kill_at), "5", "speechkit.bin.pretrain",
                             *_args(conf, train, dev, killed_exp)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the uninterrupted reference, in this process meanwhile
    full_exp = tmp_path / "full"
    assert pretrain.main(_args(conf, train, dev, full_exp)) == 0
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"expected the run to die at update 5:\n{err[-3000:]}"
    assert load_checkpoint(killed_exp / "checkpoint_last.pt")["num_updates"] == 4
    assert "update 5" in (killed_exp / "train.log").read_text()  # update 5 ran, and is lost with the kill
    assert pretrain.main(_args(conf, train, dev, killed_exp, "--resume", "auto")) == 0

    a = load_checkpoint(full_exp / "checkpoint_last.pt")
    b = load_checkpoint(killed_exp / "checkpoint_last.pt")
    assert a["num_updates"] == b["num_updates"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

    # loss is finite, accuracy logged; the resolved config and logs are in the exp dir
    assert math.isfinite(a["best_valid_loss"])
    log = (full_exp / "train.log").read_text()
    assert "acc_m" in log and "valid | update 6" in log and "nan" not in log
    assert a["model_config"]["arch"] == "hubert" and a["model_config"]["num_classes"] == 20
    resolved = (full_exp / "config.yaml").read_text()
    assert "num_classes: 20" in resolved and "label_rate: 100" in resolved

    # the checkpoint loads as a model; layer features have one frame per model frame
    model = load_pretrained(full_exp / "checkpoint_best.pt")
    out = tmp_path / "dump"
    assert dump_layer_features.main(["--checkpoint", str(full_exp / "checkpoint_best.pt"), "--layer", "1",
                                     "--data-dir", str(dev), "--out", str(out), "--nj", "1"]) == 0
    frames = {k: int(v) for k, v in read_table(out / "utt2num_frames").items()}
    samples = {k: int(v) for k, v in read_table(dev / "utt2num_samples").items()}
    conv = model.config.encoder.conv_layers
    for utt, n in samples.items():
        assert frames[utt] == int(conv_output_lengths(torch.tensor([n]), conv)[0]), utt
    feats = read_scp(out / "feats.scp")
    import soundfile as sf

    utt = sorted(samples)[0]
    wav, _ = sf.read(read_table(dev / "wav.scp")[utt], dtype="float32")
    with torch.no_grad():
        hidden, lens = model.extract_features(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), layer=1)
    single = hidden[1][0, : int(lens[0])].numpy()
    # batched (padded) extraction agrees with one utterance at a time
    assert feats[utt].shape == (frames[utt], 64)
    np.testing.assert_allclose(feats[utt], single, atol=1e-4)


def test_pretrain_cli_help_and_label_count_check(setup, tmp_path, capsys):
    root, conf, train, dev = setup
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("  preset: tiny\n", "  preset: tiny\n  num_classes: 5\n"))
    from speechkit.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"bad\.yaml: model\.num_classes=5 but the labels go up to 19"):
        pretrain.main(_args(bad, train, dev, tmp_path / "exp"))


def test_config_yaml_expands_the_model_preset(setup, tmp_path):
    # exp/config.yaml is "resolved": the model as built (preset expanded), usable as --config again
    import yaml

    from speechkit.models.registry import resolve_config

    root, conf, train, dev = setup
    assert pretrain.main(_args(conf, train, dev, tmp_path / "exp", "--set", "trainer.max_updates=2",
                               "--set", "trainer.valid_interval=0")) == 0
    saved = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    written = yaml.safe_load(conf.read_text())["model"]
    assert "preset" not in saved["model"] and saved["model"]["num_classes"] == 20
    tiny = resolve_config({"arch": "hubert", "preset": "tiny"})
    assert saved["model"]["encoder"]["embed_dim"] == tiny.encoder.embed_dim
    assert saved["model"]["encoder"]["mask_prob"] == written["mask_prob"] == 0.5
    assert resolve_config(saved["model"]) == resolve_config({**written, "num_classes": 20, "label_rate": 100})
