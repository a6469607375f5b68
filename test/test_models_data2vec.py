"""data2vec: EMA schedule and update, teacher targets (top-K FFN outputs, instance norm, unmasked input),
regression loss, exact resume with the teacher in the state dict, training through the trainer."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from speechkit.models import build_model
from speechkit.models.data2vec import ema_decay_at, masked_instance_norm


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's spinning makes
    a training step up to 100x slower (measured: 1.5 s vs 16 ms); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**over):
    return build_model({"arch": "data2vec", "preset": "tiny", "mask_length": 3, **over})


def chirps(n=3, samples=8000):
    t = torch.arange(samples) / 16000
    out = []
    for i in range(n):
        f0, f1 = 200 + 300 * i, 3000 - 400 * i
        out.append(0.5 * torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1]))))
    return torch.stack(out)


def test_ema_decay_schedule():
    assert ema_decay_at(0, 0.999, 0.9999, 30000) == 0.999
    assert ema_decay_at(15000, 0.999, 0.9999, 30000) == pytest.approx(0.99945)
    assert ema_decay_at(30000, 0.999, 0.9999, 30000) == 0.9999
    assert ema_decay_at(10 ** 6, 0.999, 0.9999, 30000) == 0.9999
    cfg = build_model({"arch": "data2vec", "preset": "base"}).config
    assert (cfg.ema_decay, cfg.ema_end_decay, cfg.average_top_k_layers) == (0.999, 0.9999, 8)
    assert (cfg.encoder.mask_prob, cfg.encoder.mask_length) == (0.65, 10)


def test_ema_step_and_teacher_is_not_trained():
    torch.manual_seed(0)
    model = tiny(ema_anneal_end_step=100)
    model.train()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for p in model.ema_encoder.parameters())
    with torch.no_grad():  # move the student away from the teacher
        for p in model.data2vec.encoder.parameters():
            p.add_(torch.randn_like(p))
    t_before = {k: v.clone() for k, v in model.ema_encoder.state_dict().items()}
    student = model.data2vec.encoder.state_dict()
    model.set_num_updates(50)  # only the count: the teacher does not move
    assert all(torch.equal(t_before[k], v) for k, v in model.ema_encoder.state_dict().items())
    model.after_update(50)
    tau = 0.9999 - (0.9999 - 0.999) * 0.5
    for k, v in model.ema_encoder.state_dict().items():
        if k.startswith("pos_conv_embed."):  # ema_layers_only: the positional conv is copied
            assert torch.equal(v, student[k]), k
        else:
            assert torch.allclose(v, tau * t_before[k] + (1 - tau) * student[k], atol=1e-6), k
    frozen = {k: v.clone() for k, v in model.ema_encoder.state_dict().items()}
    model.set_num_updates(50)  # again, as a resume does: idempotent
    assert all(torch.equal(frozen[k], v) for k, v in model.ema_encoder.state_dict().items())
    assert int(model.num_updates) == 50


def test_masked_instance_norm_ignores_padding():
    torch.manual_seed(1)
    x = torch.randn(2, 10, 4) * 3 + 1
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 6:] = False
    y = masked_instance_norm(x, valid)
    ref0 = F.instance_norm(x[:1].transpose(1, 2)).transpose(1, 2)
    ref1 = F.instance_norm(x[1:, :6].transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(y[:1], ref0, atol=1e-5) and torch.allclose(y[1:, :6], ref1, atol=1e-5)


def test_targets_are_top_k_ffn_outputs_of_the_unmasked_teacher():
    torch.manual_seed(2)
    model = tiny(dropout_input=0.0)
    model.train()
    with torch.no_grad():
        for p in model.ema_encoder.parameters():  # a teacher different from the student
            p.add_(0.1 * torch.randn_like(p))
    seen = {}
    model.ema_encoder.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    batch = {"wav": chirps(), "wav_lens": torch.full((3,), 8000)}
    loss, stats, n = model(batch)
    enc = model.data2vec
    with torch.no_grad():
        feats, _, _ = enc.local_features(batch["wav"], batch["wav_lens"])
        projected = enc.feature_projection.projection(enc.feature_projection.layer_norm(feats))
    assert torch.allclose(seen["x"], projected, atol=1e-6)  # unmasked: no masked_spec_embed rows
    assert not (seen["x"] == enc.masked_spec_embed).all(-1).any()
    # targets by hand: post-LN layer: x = LN(x + attn(x)); ffn = FFN(x); next = LN(x + ffn)
    teacher = model.ema_encoder.eval()
    with torch.no_grad():
        x = teacher.layer_norm(projected + teacher.pos_conv_embed(projected))
        ffn_outs = []
        for layer in teacher.layers:
            x = layer.layer_norm(x + layer.attention(x))
            ffn = layer.feed_forward(x)
            ffn_outs.append(ffn)
            x = layer.final_layer_norm(x + ffn)
        k = model.config.average_top_k_layers
        want = sum(F.instance_norm(f.transpose(1, 2)).transpose(1, 2) for f in ffn_outs[-k:]) / k
        got = model.targets(projected, None)
    assert torch.allclose(got, want, atol=1e-4)
    assert all(not layer.feed_forward._forward_hooks for layer in teacher.layers)  # capture hooks removed
    # the regression: smooth L1 (beta 0.25) summed over dims, scaled by 1/sqrt(D), mean over masked frames
    assert stats["sample_size"] == n and math.isfinite(float(loss.detach()))


def test_l2_loss_and_training_falls():
    torch.manual_seed(3)
    model = tiny(loss_beta=0.0, dropout=0.0, attention_dropout=0.0)
    batch = {"wav": chirps(3, 6400), "wav_lens": torch.full((3,), 6400)}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for step in range(10):
        loss, stats, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.set_num_updates(step + 1)
        model.after_update(step + 1)
        losses.append(float(loss.detach()))
    assert stats["ema_decay"] == pytest.approx(ema_decay_at(10, 0.999, 0.9999, 1000))
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses


def test_exact_resume_with_teacher_in_state_dict():
    batch = {"wav": chirps(2, 6000), "wav_lens": torch.tensor([6000, 6000])}

    def run(model, opt, steps, start):
        for step in range(start, start + steps):
            loss, _, _ = model(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.set_num_updates(step + 1)
            model.after_update(step + 1)

    torch.manual_seed(4)
    a = tiny()
    a.train()
    opt_a = torch.optim.Adam([p for p in a.parameters() if p.requires_grad], lr=1e-3)
    run(a, opt_a, 3, 0)
    saved = {"model": {k: v.clone() for k, v in a.state_dict().items()}, "opt": copy.deepcopy(opt_a.state_dict()),
             "rng": torch.get_rng_state()}
    assert any(k.startswith("ema_encoder.") for k in saved["model"]) and int(saved["model"]["num_updates"]) == 3
    run(a, opt_a, 2, 3)

    b = tiny()
    b.load_state_dict(saved["model"])
    b.train()
    opt_b = torch.optim.Adam([p for p in b.parameters() if p.requires_grad], lr=1e-3)
    opt_b.load_state_dict(saved["opt"])
    torch.set_rng_state(saved["rng"])
    run(b, opt_b, 2, 3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


CLI_CONFIG = """\
model:
  arch: data2vec
  preset: tiny
  mask_length: 3
  ema_anneal_end_step: 10
data:
  max_sample_size: 16000
  min_sample_size: 4000
  max_tokens: 32000
  num_workers: 0
optim:
  lr: 2.0e-3
schedule:
  warmup_updates: 1
  total_updates: 4
trainer:
  max_updates: 4
  log_interval: 1
  valid_interval: 0
  save_interval: 2
"""


def test_pretrain_cli_resume_is_exact_with_teacher(tmp_path):
    """Through speechkit.bin.pretrain (the recipe's path, no labels): 2 updates + resume to 4 equals 4 in one go,
    the teacher included (the trainer calls after_update, resume only set_num_updates; checkpoints carry ema_encoder)."""
    from speechkit.bin import pretrain
    from speechkit.models import load_pretrained
    from speechkit.train.checkpoint import load_checkpoint
    from train_toy import make_data_dir

    data = make_data_dir(tmp_path / "train", [0.6, 0.8, 1.0, 0.7, 0.9, 0.5])
    conf = tmp_path / "d2v.yaml"
    conf.write_text(CLI_CONFIG)
    args = ["--config", str(conf), "--train-data", str(data)]
    assert pretrain.main(args + ["--exp-dir", str(tmp_path / "full")]) == 0
    assert pretrain.main(args + ["--exp-dir", str(tmp_path / "half"), "--set", "trainer.max_updates=2"]) == 0
    assert pretrain.main(args + ["--exp-dir", str(tmp_path / "half"), "--resume", "auto"]) == 0
    a = load_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "half" / "checkpoint_last.pt")
    assert a["num_updates"] == b["num_updates"] == 4 and int(a["model"]["num_updates"]) == 4
    student, teacher = a["model"]["data2vec.encoder.layers.0.feed_forward.output_dense.weight"], \
        a["model"]["ema_encoder.layers.0.feed_forward.output_dense.weight"]
    assert not torch.equal(student, teacher)  # the teacher lags the student
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["model_config"]["arch"] == "data2vec"
    model = load_pretrained(tmp_path / "full" / "checkpoint_last.pt")
    hidden, _ = model.extract_features(torch.randn(1, 8000), layer=1)
    assert len(hidden) == 2
