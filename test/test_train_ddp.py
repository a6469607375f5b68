"""Two processes (torchrun, gloo on CPU): CTC fine-tuning with a frozen-encoder phase and HuBERT pre-training
with LayerDrop, each through its CLI; and the trainer's rule for DDP's unused-parameter search."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from downstream_helpers import make_data_dir as make_text_dir
from downstream_helpers import tiny_hubert_checkpoint, write_config
from speechkit.models import build_model
from train_toy import ROOT, make_data_dir, worker_env

PRETRAIN = """\
model:
  arch: hubert
  preset: tiny
  mask_prob: 0.5
  mask_length: 3
  layerdrop: 0.5
data:
  max_sample_size: 16000
  min_sample_size: 4000
  max_tokens: 32000
  num_workers: 0
  label_rate: 100
trainer:
  max_updates: 3
  log_interval: 1
  valid_interval: 0
  save_interval: 0
"""


def test_two_process_finetuning_and_pretraining(tmp_path):
    """The frozen encoder gets no gradient in updates 1-2 and LayerDrop skips layers: without DDP's unused-
    parameter search the second update fails ("Expected to have finished reduction in the prior iteration")."""
    from speechkit.text.tokenizer import train_tokenizer

    words = ["AB CD", "DA BC", "CAB", "BAD", "DC", "ABCD"]
    texts = {f"spk{s}-1-{i:04d}": (s, words[(i + s) % len(words)]) for s in range(2) for i in range(4)}
    train_tokenizer([w for _, w in texts.values()], "char").save(tmp_path / "tok")
    text_dir = make_text_dir(tmp_path / "ft_data", texts)
    init = tiny_hubert_checkpoint(tmp_path / "init" / "checkpoint_best.pt")
    ft_conf = write_config(tmp_path / "ft.yaml", "  arch: ctc\n  freeze_finetune_updates: 2\n  encoder: {mask_prob: 0.3}",
                           max_updates=3)
    pt_data = make_data_dir(tmp_path / "pt_data", [0.6, 0.8, 1.0, 1.2, 0.9, 0.7], label_rate=100, tag="km",
                            num_classes=20)
    (tmp_path / "pt.yaml").write_text(PRETRAIN)
    ft, pt = tmp_path / "ft", tmp_path / "pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "test" / "ddp_worker.py"),
           "train_downstream", "--task", "ctc", "--config", str(ft_conf), "--init", str(init), "--tokenizer",
           str(tmp_path / "tok"), "--train-data", str(text_dir), "--exp-dir", str(ft), "--",
           "pretrain", "--config", str(tmp_path / "pt.yaml"), "--train-data", str(pt_data), "--label-tag", "km",
           "--exp-dir", str(pt)]
    env = worker_env()
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-5000:]
    for exp, reason in ((ft, "CTCModel declares parameters without gradient"), (pt, "layerdrop 0.5")):
        log = (exp / "train.log").read_text()
        assert "2 processes on cpu" in log and f"DDP looks for parameters without gradient each step ({reason}" in log
        assert torch.load(exp / "checkpoint_last.pt", weights_only=True)["num_updates"] == 3
    # the encoder trained in update 3, after its frozen phase, and both ranks applied the same updates
    before = torch.load(init, weights_only=True)["model"]
    after = torch.load(ft / "checkpoint_last.pt", weights_only=True)["model"]
    key = "encoder.layers.0.feed_forward.output_dense.weight"
    assert not torch.equal(after["encoder." + key], before["hubert." + key])


def _model(arch_cfg: dict) -> torch.nn.Module:
    return build_model({"preset": "tiny", "num_classes": 10, **arch_cfg})


@pytest.mark.parametrize("model_config, reason", [
    ({"arch": "hubert"}, None),  # the tiny preset: no layerdrop, every parameter in every loss
    ({"arch": "hubert", "layerdrop": 0.1}, "layerdrop 0.1 in hubert.encoder"),
    ({"arch": "wavlm", "layerdrop": 0.2}, "layerdrop 0.2 in wavlm.encoder"),
])
def test_unused_parameter_reason_of_pretraining_models(model_config, reason):
    from speechkit.train.trainer import unused_parameters_reason

    got = unused_parameters_reason(_model(model_config))
    assert got == reason if reason is None else reason in got


def test_unused_parameter_reason_of_downstream_models():
    from speechkit.downstream.ctc_model import build_ctc_model
    from speechkit.downstream.speaker import SpeakerIDModel
    from speechkit.train.trainer import unused_parameters_reason

    pre = _model({"arch": "hubert"})
    frozen_first = build_ctc_model(6, init=pre, freeze_finetune_updates=5, encoder_overrides={"mask_prob": 0.3})
    assert "CTCModel declares" in unused_parameters_reason(frozen_first)
    no_mask = build_ctc_model(6, init=pre, encoder_overrides={"mask_prob": 0.0})  # masked_spec_embed unused
    assert unused_parameters_reason(no_mask) is not None
    plain = build_ctc_model(6, init=pre, encoder_overrides={"mask_prob": 0.3})
    assert unused_parameters_reason(plain) is None
    # a frozen upstream has no trainable parameter to miss, even with layerdrop in its config
    sid = SpeakerIDModel.from_upstream(_model({"arch": "hubert", "layerdrop": 0.3}), ["a", "b"])
    assert unused_parameters_reason(sid) is None
