"""Speaker heads on cached hidden-state moments: exactness, training, the spectral baseline, open-set trials."""
from __future__ import annotations

import json
import pathlib

import pytest
import torch

from downstream_helpers import make_data_dir, tiny_hubert_checkpoint
from speechkit.downstream.baseline_upstream import SpectralUpstream
from speechkit.downstream.head_cache import (HeadTrainConfig, LayerMoments, cached_moments, compute_moments,
                                             train_head, utterance_moments)
from speechkit.downstream.speaker import SpeakerIDModel
from speechkit.models import build_model

SID_YAML = """model:
  arch: sid
  freeze_upstream: true
  embed_dim: {embed}
  layer_norm: {ln}
  speaker_key: prefix
data:
  max_sample_size: 160000
  min_sample_size: 0
  max_tokens: 64000
  pad_audio: true
  random_crop: false
  num_workers: 0
optim:
  lr: 1.0e-2
  weight_decay: 0.0
trainer:
  max_updates: 10
  seed: 3
"""


def _texts(n_spk: int, per_spk: int, offset: int = 0) -> dict[str, tuple[int, str]]:
    words = ["AB", "CDA", "BAD", "DCB", "ACD", "BB", "CAB", "DAD"]
    return {f"{s + 1}-{offset + i:03d}": (s, words[(i + s) % len(words)]) for s in range(n_spk) for i in range(per_spk)}


@pytest.mark.parametrize("layer_norm,embed_dim", [(False, 0), (True, 16)])
def test_moments_give_exactly_the_models_pooled_statistics(layer_norm, embed_dim):
    torch.manual_seed(0)
    up = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 10})
    model = SpeakerIDModel.from_upstream(up, ["a", "b", "c"], layer_norm=layer_norm, embed_dim=embed_dim).eval()
    with torch.no_grad():
        model.featurizer.weights.copy_(torch.tensor([0.7, -1.2, 0.3]))  # not the uniform start
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2.0)
    lens = torch.tensor([16000, 9000, 5200])
    wav = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        direct = model.logits(wav, lens)
        hs, flens = model.upstream(wav, lens)
        mean, cov = utterance_moments(hs, flens, layer_norm)
        cached = model.classify(model.pooled_from_moments(mean, cov))
    assert mean.shape == (3, 3, 64) and cov.shape == (3, 6, 64)
    torch.testing.assert_close(cached, direct, rtol=1e-4, atol=1e-4)


def test_moments_ignore_padding():
    h = torch.randn(2, 7, 4)
    lens = torch.tensor([7, 4])
    m_pad, c_pad = utterance_moments([h, 2 * h], lens)
    m_one, c_one = utterance_moments([h[1:, :4], 2 * h[1:, :4]], lens[1:])
    torch.testing.assert_close(m_pad[1:], m_one)
    torch.testing.assert_close(c_pad[1:], c_one)
    # C_00 is the variance of state 0, C_01 = 2 var, C_11 = 4 var
    var = h[1, :4].var(dim=0, unbiased=False)
    torch.testing.assert_close(c_one[0], torch.stack([var, 2 * var, 4 * var]), rtol=1e-5, atol=1e-6)


def _toy_moments(n_per: int, seed: int) -> tuple[LayerMoments, dict[str, str]]:
    g = torch.Generator().manual_seed(seed)
    ids, means, covs, spk = [], [], [], {}
    for s in range(4):
        for i in range(n_per):
            u = f"{s}-{seed}-{i}"
            ids.append(u)
            spk[u] = f"s{s}"
            m = torch.randn(2, 8, generator=g)
            m[1, s] += 5.0  # only hidden state 1 tells the speakers apart
            means.append(m)
            covs.append(torch.rand(3, 8, generator=g) * 0.1 + torch.tensor([1.0, 0.0, 1.0])[:, None])
    return LayerMoments(ids, torch.stack(means), torch.stack(covs)), spk


def test_head_learns_the_informative_state_and_is_deterministic():
    train, spk_train = _toy_moments(30, 0)
    dev, spk_dev = _toy_moments(10, 1)
    up = SpectralUpstream("fbank")
    up.hidden_dim, up.num_hidden_states = 8, 2  # the toy's shape: 2 hidden states of 8 dims
    cfg = HeadTrainConfig(epochs=40, batch_size=16, lr=2e-2, patience=10, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SpeakerIDModel.from_upstream(up, ["s0", "s1", "s2", "s3"])
        summary = train_head(model, train, spk_train, dev, spk_dev, cfg)
        runs.append((summary, model.featurizer.layer_weights()))
    (s1, w1), (s2, w2) = runs
    assert s1["best_dev_acc"] >= 0.9, s1["best_dev_acc"]
    assert w1[1] > w1[0]  # the weighted sum moved towards the informative state
    assert s1["history"] == s2["history"] and w1 == w2
    # the model ends with the best epoch's head, not the last one
    best = s1["history"][s1["best_epoch"] - 1]
    assert best["dev_acc"] == max(h["dev_acc"] for h in s1["history"])


def test_spectral_upstream_frames_and_lengths():
    up = SpectralUpstream("mfcc")
    wav = torch.randn(2, 8000) * 0.1
    hs, lens = up.extract_features(wav, torch.tensor([8000, 4000]))
    assert len(hs) == 1 and hs[0].shape == (2, 48, 39) and lens.tolist() == [48, 23]
    assert float(hs[0][1, 23:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="unknown kind"):
        SpectralUpstream("plp")


def test_cli_fbank_baseline_and_ssl_upstream_end_to_end(tmp_path):
    from speechkit.bin import eval_sid, make_trials, train_sid_cached
    from speechkit.models import load_pretrained_with_state

    train = make_data_dir(tmp_path / "train", _texts(3, 6))
    dev = make_data_dir(tmp_path / "dev", _texts(3, 2, offset=50))
    conf = tmp_path / "sid.yaml"
    conf.write_text(SID_YAML.format(embed=0, ln="false"))
    exp = tmp_path / "exp_fbank"
    argv = ["--upstream", "fbank", "--config", str(conf), "--train-data", str(train), "--valid-data", str(dev),
            "--exp-dir", str(exp), "--epochs", "80", "--patience", "80", "--batch-size", "8"]
    assert train_sid_cached.main(argv) == 0
    info = json.loads((exp / "downstream_info.json").read_text())
    assert info["training"] == "cached moments" and info["speakers"] == 3 and info["init"] == "fbank"
    assert len(json.loads((exp / "history.json").read_text())) == info["epochs"]
    model, _ = load_pretrained_with_state(exp / "checkpoint_best.pt")  # an ordinary sid checkpoint
    assert isinstance(model.upstream.model, SpectralUpstream)
    assert eval_sid.main(["--model", str(exp / "checkpoint_best.pt"), "--data-dir", str(dev),
                          "--out", str(exp / "eval")]) == 0
    rec = json.loads((exp / "eval" / "result_sid.json").read_text())
    assert rec["values"]["Acc(%)"] >= 99.0  # tone "speakers" differ in pitch: fbank separates them
    assert rec["values"]["Acc(%)"] == pytest.approx(100 * info["best_dev_acc"])  # cached == uncached eval
    cache_files = sorted((exp / "cache").glob("moments_*.pt"))
    assert len(cache_files) == 2
    mtimes = [p.stat().st_mtime_ns for p in cache_files]
    assert train_sid_cached.main(argv) == 0  # a re-run reuses the cache
    assert [p.stat().st_mtime_ns for p in cache_files] == mtimes

    ckpt = tiny_hubert_checkpoint(tmp_path / "up" / "checkpoint.pt")
    exp2 = tmp_path / "exp_ssl"
    conf.write_text(SID_YAML.format(embed=8, ln="true"))
    assert train_sid_cached.main(["--upstream", str(ckpt), "--config", str(conf), "--train-data", str(train),
                                  "--valid-data", str(dev), "--exp-dir", str(exp2), "--epochs", "5"]) == 0
    assert json.loads((exp2 / "layer_weights.json").read_text())["num_states"] == 3

    # open-set trials: utterances of speakers seen in training are excluded
    everyone = make_data_dir(tmp_path / "eval_all", {**_texts(3, 3, offset=80),
                                                     **{f"{s}-{i:03d}": (s, "ABCD") for s in (7, 8, 9) for i in range(3)}})
    trials = tmp_path / "trials"
    assert make_trials.main(["--data-dir", str(everyone), "--out", str(trials), "--num-target", "6",
                             "--num-nontarget", "10", "--exclude-speakers-of", str(train)]) == 0
    spk_in_trials = {u.split("-")[0] for line in trials.read_text().split("\n") if line for u in line.split()[:2]}
    assert spk_in_trials == {"7", "8", "9"}
    with pytest.raises(SystemExit, match="open-set trials need at least 2"):
        make_trials.main(["--data-dir", str(train), "--out", str(trials), "--exclude-speakers-of", str(train)])


def test_compute_moments_orders_by_utterance(tmp_path):
    d = make_data_dir(tmp_path / "d", _texts(2, 3))
    mom = compute_moments(SpectralUpstream("fbank"), d, max_tokens=9000)
    assert mom.utt_ids == sorted(mom.utt_ids) and mom.mean.shape == (6, 1, 80)


class _CountingUpstream(SpectralUpstream):
    def __init__(self) -> None:
        super().__init__("fbank")
        self.calls = 0

    def extract_features(self, wav, wav_lens):
        self.calls += 1
        return super().extract_features(wav, wav_lens)


def test_subset_takes_its_moments_from_the_cache_of_a_superset_with_the_same_audio(tmp_path):
    from speechkit.io.datadir_ops import subset_data_dir

    full = make_data_dir(tmp_path / "full", _texts(2, 3))
    up = _CountingUpstream()
    whole = cached_moments(up, "fbank", full, tmp_path / "cache_full")
    assert up.calls > 0
    sub = tmp_path / "sub"
    subset_data_dir(full, sub, utt_list=whole.utt_ids[1:4])
    up.calls = 0
    got = cached_moments(up, "fbank", sub, tmp_path / "cache_sub", reuse=[tmp_path / "cache_full"])
    assert up.calls == 0 and got.utt_ids == whole.utt_ids[1:4]
    assert torch.equal(got.mean, whole.mean[1:4]) and torch.equal(got.cov, whole.cov[1:4])
    # the same utterance ids with other audio behind one of them: computed, not reused
    other = tmp_path / "other"
    subset_data_dir(full, other, utt_list=whole.utt_ids[1:4])
    lines = (other / "wav.scp").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " " + lines[1].split()[1]
    (other / "wav.scp").write_text("\n".join(lines) + "\n")
    got = cached_moments(up, "fbank", other, tmp_path / "cache_other", reuse=[tmp_path / "cache_full"])
    assert up.calls > 0 and torch.equal(got.mean[0], whole.mean[2])
    # and another upstream's cache is never taken
    up.calls = 0
    cached_moments(up, "mfcc", sub, tmp_path / "cache_mfcc", reuse=[tmp_path / "cache_full"])
    assert up.calls > 0


def test_probe_ctc_cache_serves_the_same_hidden_states_without_the_encoder():
    from speechkit.downstream.ctc_model import ProbeCTCModel

    torch.manual_seed(0)
    upstream = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 5})
    cached = ProbeCTCModel.from_upstream(upstream, vocab_size=6, head="lstm", hidden_dim=16, num_layers=1)
    plain = ProbeCTCModel.from_upstream(upstream, vocab_size=6, head="lstm", hidden_dim=16, num_layers=1,
                                        cache_upstream=False)
    plain.load_state_dict(cached.state_dict())
    calls = []
    orig = cached.upstream.model.extract_features
    cached.upstream.model.extract_features = lambda *a: (calls.append(len(a[1])), orig(*a))[1]
    wav = torch.randn(3, 9600)
    lens = torch.tensor([9600, 7000, 4000])
    cached.eval(), plain.eval()
    with torch.no_grad():
        ref, ref_lens = plain.log_probs(wav, lens)
        first, l1 = cached.log_probs(wav, lens, ["a", "b", "c"])
        n_states = len(cached.upstream._cache)
        # a later batch in another order and with other padding: served from the cache
        again, l2 = cached.log_probs(wav[[2, 0], :9600], lens[[2, 0]], ["c", "a"])
    assert n_states == 3 and calls == [3, 3]  # shared encoder: the plain probe, then the cached one once
    torch.testing.assert_close(first, ref)
    assert l1.tolist() == ref_lens.tolist() and l2.tolist() == [ref_lens[2], ref_lens[0]]
    t2 = int(l2[0])
    torch.testing.assert_close(again[0, :t2], ref[2, :t2])
    torch.testing.assert_close(again[1], ref[0])
