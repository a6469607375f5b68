"""speechkit.models.upstream.S3PRLUpstream against s3prl's upstream / featurizer conventions.

s3prl is not installed; its convention is written out here from its documented interface: an upstream is
called with a list of 1-D 16 kHz waveforms, pads them with zeros, returns {"hidden_states": L+1 tensors
(B, T, D)} (hooks on every transformer layer's input plus the encoder output) and reports
`get_downsample_rates(key)`; the Featurizer takes softmax(weights) over zero-initialised weights, optionally
layer-norms each state over D without parameters, sums, and cuts utterance i to round(len_i / rate) frames
after checking |T - round(max_len / rate)| < 5.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechkit.models import build_model
from speechkit.models.upstream import S3PRLUpstream

LENS = [16000, 12345, 7000]
TOLERABLE_SEQLEN_DIFF = 5  # s3prl's featurizer assertion


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(arch: str, **encoder):
    torch.manual_seed(0)
    return build_model({"arch": arch, "preset": "tiny", "encoder": encoder}).eval()


def wavs(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in LENS]


def s3prl_featurize(hidden_states, weights, layer_norm: bool, wav_lens: list[int], rate: int) -> list[torch.Tensor]:
    """s3prl's Featurizer, as documented: weighted sum over stacked states, then per-utterance cut."""
    stacked = torch.stack(list(hidden_states), dim=0)  # (L+1, B, T, D)
    if layer_norm:
        stacked = F.layer_norm(stacked, (stacked.shape[-1],))
    n, *shape = stacked.shape
    summed = (F.softmax(weights, dim=-1)[:, None] * stacked.reshape(n, -1)).sum(dim=0).reshape(*shape)
    assert abs(summed.size(1) - round(max(wav_lens) / rate)) < TOLERABLE_SEQLEN_DIFF
    return [f[: round(length / rate)] for f, length in zip(summed, wav_lens)]


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_hidden_states_count_shape_and_padding(arch):
    model = tiny(arch)
    up = S3PRLUpstream(model)
    ws = wavs()
    with torch.no_grad():
        out = up(ws)
    hs = out["hidden_states"]
    num_layers = model.config.encoder.num_layers
    d = model.config.encoder.embed_dim
    assert len(hs) == num_layers + 1  # pre-transformer features + every layer's output
    enc = model.hubert if arch == "hubert" else model.wavlm
    frames = enc.frame_lengths(torch.tensor(LENS))
    assert torch.equal(out["frame_lens"], frames)
    for h in hs:
        assert h.shape == (len(ws), int(frames.max()), d)
    assert out["last_hidden_state"] is hs[-1] and all(out[f"hidden_state_{i}"] is h for i, h in enumerate(hs))
    assert up.get_downsample_rates("hidden_states") == up.get_downsample_rates("last_hidden_state") == 320
    # the padded batch is the zero-padded tensor + lengths of speechkit's own call
    padded = torch.nn.utils.rnn.pad_sequence(ws, batch_first=True)
    with torch.no_grad():
        ref, _ = model.extract_features(padded, torch.tensor(LENS))
        for a, b in zip(hs, ref):
            assert torch.equal(a, b)
        # and each utterance's valid frames are what it gets alone (padding does not leak in)
        for i, w in enumerate(ws):
            alone = up([w])["hidden_states"]
            n = int(frames[i])
            assert alone[0].shape[1] == n
            for layer, (a, b) in enumerate(zip(hs, alone)):
                err = float((a[i, :n] - b[0]).abs().max())
                assert err < 1e-4, (i, layer, err)


def test_s3prl_frame_count_convention():
    """s3prl cuts utterances to round(len / 320) frames: never fewer than the exact conv count, at most one
    more, and the padded length passes its tolerance check, for every length from 0.1 s to 2 s."""
    up = S3PRLUpstream(tiny("hubert"))
    rate = up.get_downsample_rates("hidden_states")
    lens = torch.arange(1600, 32000, 7)
    exact = up.model.hubert.frame_lengths(lens)
    rounded = torch.round(lens.double() / rate).long()
    assert int((rounded - exact).min()) >= 0 and int((rounded - exact).max()) <= 1


@pytest.mark.parametrize("layer_norm", [False, True])
def test_weighted_sum_matches_s3prl_featurizer(layer_norm):
    from speechkit.downstream.featurizer import Upstream, WeightedSumFeaturizer

    model = tiny("hubert")
    up = S3PRLUpstream(model)
    ws = wavs(2)
    # s3prl's Featurizer sizes its weights from one call on a 1-second waveform in eval mode
    with torch.no_grad():
        probe = up([torch.randn(16000)])["hidden_states"]
    featurizer = WeightedSumFeaturizer(len(probe), layer_norm=layer_norm)
    assert featurizer.num_states == Upstream(model).num_states() == model.config.encoder.num_layers + 1
    with torch.no_grad():
        featurizer.weights.copy_(torch.tensor([0.3, -1.2, 2.0]))
        out = up(ws)
        ref = s3prl_featurize(out["hidden_states"], featurizer.weights, layer_norm, LENS,
                              up.get_downsample_rates("hidden_states"))
        ours = featurizer(out["hidden_states"])  # (B, T, D)
    for i, r in enumerate(ref):
        n = int(out["frame_lens"][i])  # speechkit's exact frames; s3prl may keep one padded frame more
        assert r.shape[0] in (n, n + 1)
        assert torch.allclose(ours[i, :n], r[:n], atol=1e-5)


def test_layerdrop_keeps_the_count():
    """s3prl's weighted sum needs the same number of states on every call; LayerDrop skips layers, not
    entries, so a training-mode upstream still returns L+1."""
    model = tiny("hubert", layerdrop=1.0).train()
    out = S3PRLUpstream(model)(wavs()[:2])
    assert len(out["hidden_states"]) == model.config.encoder.num_layers + 1


def test_from_pretrained_and_bad_input(tmp_path):
    model = tiny("wav2vec2")
    torch.save({"model": model.state_dict(), "model_config": model.model_config()}, tmp_path / "w2v.pt")
    up = S3PRLUpstream.from_pretrained(tmp_path / "w2v.pt")
    ws = wavs(3)[:2]
    with torch.no_grad():
        assert torch.allclose(up(ws)["last_hidden_state"], S3PRLUpstream(model)(ws)["last_hidden_state"])
    with pytest.raises(TypeError, match="list of 1-D"):
        up(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match=r"wavs\[1\].*2-D"):
        up([torch.zeros(16000), torch.zeros(1, 16000)])
    with pytest.raises(ValueError, match=r"wavs\[0\].*int64"):
        up([torch.zeros(16000, dtype=torch.long)])
    with pytest.raises(ValueError, match="too short"):
        up([torch.zeros(16000), torch.zeros(100)])
    with pytest.raises(TypeError, match="extract_features"):
        S3PRLUpstream(nn.Linear(2, 2))


def test_upstream_without_encoder_measures_its_rate():
    class Framed(nn.Module):
        """Any module with speechkit's extract_features call: 160-sample frames, two states."""

        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(160, 8)

        def extract_features(self, wav, wav_lens):
            frames = wav[:, : wav.size(1) // 160 * 160].reshape(wav.size(0), -1, 160)
            h = self.proj(frames)
            return [h, torch.tanh(h)], wav_lens // 160

    up = S3PRLUpstream(Framed())
    assert up.get_downsample_rates("hidden_states") == 160
    out = up([torch.randn(1600), torch.randn(800)])
    assert [h.shape for h in out["hidden_states"]] == [(2, 10, 8)] * 2 and out["frame_lens"].tolist() == [10, 5]
