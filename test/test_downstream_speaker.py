"""Weighted-sum featurizer, statistics pooling, speaker ID head, probe model, trial lists."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from speechkit.downstream.ctc_model import ProbeCTCModel
from speechkit.downstream.data import make_trials
from speechkit.downstream.featurizer import Upstream, WeightedSumFeaturizer, upstream_spec
from speechkit.downstream.speaker import SpeakerIDConfig, SpeakerIDModel, statistics_pooling
from speechkit.models import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_featurizer_zero_init_is_uniform_average_and_saves_weights(tmp_path):
    f = WeightedSumFeaturizer(4)
    assert f.layer_weights() == pytest.approx([0.25] * 4)
    hs = [torch.randn(2, 5, 3) for _ in range(4)]
    torch.testing.assert_close(f(hs), torch.stack(hs).mean(0))
    # the weights learn: push towards state 2
    opt = torch.optim.SGD(f.parameters(), lr=1.0)
    for _ in range(20):
        opt.zero_grad()
        ((f(hs) - hs[2]) ** 2).mean().backward()
        opt.step()
    w = f.layer_weights()
    assert max(range(4), key=w.__getitem__) == 2 and sum(w) == pytest.approx(1.0)
    path = f.save_weights(tmp_path / "lw.json", {"task": "x"})
    data = json.loads(path.read_text())
    assert data["layer_weights"] == pytest.approx(w) and data["num_states"] == 4 and data["task"] == "x"
    assert "hidden state 2" in f.format_weights()
    with pytest.raises(ValueError, match="built for 4 hidden states"):
        f(hs[:3])


def test_statistics_pooling_ignores_padding():
    torch.manual_seed(0)
    a, b = torch.randn(7, 3), torch.randn(4, 3)
    x = torch.full((2, 7, 3), 1e6)  # padding full of garbage
    x[0], x[1, :4] = a, b
    pooled = statistics_pooling(x, torch.tensor([7, 4]))
    ref = torch.stack([torch.cat([a.mean(0), a.std(0, unbiased=False)]), torch.cat([b.mean(0), b.std(0, unbiased=False)])])
    torch.testing.assert_close(pooled, ref)
    alone = statistics_pooling(b[None], torch.tensor([4]))
    torch.testing.assert_close(pooled[1:], alone)
    with pytest.raises(ValueError, match="at least one valid frame"):
        statistics_pooling(x, torch.tensor([7, 0]))


class FrameUpstream(nn.Module):
    """A fake upstream: frames of 160 samples -> 3 "layers" of simple features (no parameters to train)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def extract_features(self, wav, wav_lens=None, layer=None):
        b = wav.size(0)
        frames = wav[:, : wav.size(1) // 160 * 160].reshape(b, -1, 160)[:, :, :16] * self.scale  # (B, T, 16)
        lens = wav_lens // 160
        return [frames, frames.abs(), torch.zeros_like(frames)], lens


def test_sid_learns_separable_speakers():
    rng = np.random.default_rng(0)
    speakers = ["s0", "s1", "s2"]

    def utt(spk: int, n: int) -> torch.Tensor:  # speaker = DC offset of some samples, plus noise
        x = rng.standard_normal(n).astype(np.float32) * 0.5
        x[np.arange(n) % 160 < 16] += (spk - 1) * 0.8
        return torch.from_numpy(x)

    def batch(k: int):
        spk = [i % 3 for i in range(k)]
        lens = [int(rng.integers(2000, 4800)) for _ in spk]
        wav = torch.zeros(k, max(lens))
        for i, (s, n) in enumerate(zip(spk, lens)):
            wav[i, :n] = utt(s, n)
        return {"wav": wav, "wav_lens": torch.tensor(lens), "labels": torch.tensor(spk)[:, None]}

    torch.manual_seed(0)
    model = SpeakerIDModel(SpeakerIDConfig(speakers=speakers), upstream=FrameUpstream())
    assert not model.upstream.model.scale.requires_grad  # frozen by default
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        loss, stats, n = model(batch(12))
        loss.backward()
        opt.step()
    assert model.upstream.model.scale.grad is None
    assert model.featurizer.weights.grad is not None
    model.eval()
    test = batch(30)
    with torch.no_grad():
        acc = float((model.logits(test["wav"], test["wav_lens"]).argmax(-1) == test["labels"][:, 0]).float().mean())
        emb = model.embedding(test["wav"], test["wav_lens"])
    assert acc >= 0.9, acc
    assert emb.shape == (30, 32)
    # the layer weights moved away from uniform
    assert max(model.featurizer.layer_weights()) > 0.34


def test_frozen_upstream_stays_in_eval_mode_and_gets_no_grads():
    enc_model = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 5})
    up = Upstream(enc_model, freeze=True)
    up.train()
    assert not enc_model.training
    wav = torch.randn(2, 8000)
    hs, lens = up(wav, torch.tensor([8000, 6000]))
    assert len(hs) == 3 and not any(h.requires_grad for h in hs)
    assert up.num_states() == 3


def test_probe_ctc_trains_only_featurizer_and_head():
    torch.manual_seed(0)
    upstream = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 5})
    probe = ProbeCTCModel.from_upstream(upstream, vocab_size=6, head="lstm", hidden_dim=16, num_layers=1)
    assert probe.config.upstream == upstream_spec(upstream)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("upstream.") for n in trainable)
    batch = {"wav": torch.randn(2, 9600), "wav_lens": torch.tensor([9600, 7000]),
             "labels": torch.tensor([[1, 2, 3], [4, 5, -100]]), "label_lens": torch.tensor([3, 2])}
    probe.train()
    loss, stats, n = probe(batch)
    loss.backward()
    assert n == 5 and probe.featurizer.weights.grad is not None
    assert all(p.grad is None for p in probe.upstream.parameters())
    rebuilt = ProbeCTCModel.from_config(probe.model_config())
    rebuilt.load_state_dict(probe.state_dict())  # the config alone rebuilds the same architecture
    probe.eval()
    _, st, _ = probe(batch)
    assert 0.0 <= st["uer"]


def test_make_trials_seeded_and_consistent():
    spk_of = {f"{s}-1-{i:04d}": s for s in ("a", "b", "c") for i in range(4)}
    t1 = make_trials(spk_of, 10, 20, seed=3)
    assert t1 == make_trials(spk_of, 10, 20, seed=3)
    assert t1 != make_trials(spk_of, 10, 20, seed=4)
    assert sum(t[2] for t in t1) == 10 and len(t1) == 30
    assert all((spk_of[a] == spk_of[b]) == tgt and a != b for a, b, tgt in t1)
    assert len({frozenset((a, b)) for a, b, _ in t1}) == 30
    with pytest.raises(ValueError, match="allow 18 / 48"):
        make_trials(spk_of, 19, 5)
