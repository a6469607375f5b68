"""WavLM: gated relative position bias encoder (Base size as HF), utterance mixing, HuBERT-objective training."""
from __future__ import annotations

import math

import pytest
import torch

from speechkit.models import build_model
from speechkit.models.wavlm import WavLMEncoder, mix_utterances, relative_position_bucket


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's spinning makes
    a training step up to 100x slower (measured: 1.5 s vs 16 ms); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_base_parameter_count_and_names_match_hf():
    transformers = pytest.importorskip("transformers")
    model = build_model({"arch": "wavlm", "preset": "base", "num_classes": 504})
    enc = sum(p.numel() for p in model.wavlm.parameters())
    hf = transformers.WavLMModel(transformers.WavLMConfig())
    assert enc == sum(p.numel() for p in hf.parameters()) == 94_381_936
    assert set(model.wavlm.state_dict()) == set(hf.state_dict())
    # with HuBERT's head over 504 units (SUPERB's 94.70M for WavLM Base)
    assert sum(p.numel() for p in model.parameters()) == 94_381_936 + 768 * 256 + 256 + 504 * 256 == 94_707_824
    assert (model.config.num_buckets, model.config.max_distance) == (320, 800)


def test_buckets_t5_bidirectional():
    rel = torch.arange(-1000, 1001)
    b = relative_position_bucket(rel, 320, 800)
    assert int(b[rel == 0]) == 0
    assert torch.equal(b[(rel > 0) & (rel < 80)], rel[(rel > 0) & (rel < 80)] + 160)  # exact near, upper half
    assert torch.equal(b[(rel < 0) & (rel > -80)], -rel[(rel < 0) & (rel > -80)])  # exact near, lower half
    assert int(b[rel == 800]) == int(b[rel == 1000]) == 319 and int(b[rel == -1000]) == 159  # clamped far
    far = b[(rel >= 80) & (rel < 800)]
    assert bool((far[1:] >= far[:-1]).all())  # monotone, log-spaced


@pytest.mark.parametrize("preset", ["tiny", "tiny_prenorm"])
def test_padded_batch_equals_single_utterances(preset):
    """The bias and its gates are per frame: padding (masked keys) must not change valid frames."""
    torch.manual_seed(0)
    cfg = build_model({"arch": "wavlm", "preset": preset}).config
    enc = WavLMEncoder(cfg.encoder, cfg.num_buckets, cfg.max_distance).eval()
    with torch.no_grad():
        enc.encoder.layers[0].attention.rel_attn_embed.weight.normal_(0, 2.0)
    lens = [9000, 6000]
    singles = [0.3 * torch.randn(1, n) for n in lens]
    wav = torch.zeros(2, 9000)
    for i, s in enumerate(singles):
        wav[i, :lens[i]] = s[0]
    with torch.no_grad():
        batched, blens = enc.extract_features(wav, torch.tensor(lens))
        for i, s in enumerate(singles):
            alone, alens = enc.extract_features(s)
            n = int(alens[0])
            for a, b in zip(batched, alone):
                assert torch.allclose(a[i, :n], b[0], atol=1e-4)


def test_utterance_mixing():
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([16000, 12000, 8000, 10000])
    wav = torch.zeros(4, 16000)
    for i, n in enumerate(lens.tolist()):
        wav[i, :n] = torch.randn(n, generator=g) * (0.1 * (i + 1))
    same, flags = mix_utterances(wav, lens, prob=0.0, generator=g)
    assert torch.equal(same, wav) and not flags.any()
    mixed, flags = mix_utterances(wav, lens, prob=1.0, generator=torch.Generator().manual_seed(1))
    assert flags.all()
    for i, n in enumerate(lens.tolist()):
        added = mixed[i] - wav[i]
        where = torch.nonzero(added.abs() > 0).flatten()
        assert len(where) > 0 and int(where.max()) < n  # nothing written into padding
        start, end = int(where.min()), int(where.max()) + 1
        assert end - start < 0.5 * n  # the overlaid segment is shorter than half the primary
        seg = added[start:end]
        # it is a scaled piece of another utterance of the batch
        found = False
        for j, m in enumerate(lens.tolist()):
            if j == i:
                continue
            src = wav[j, :m].unfold(0, end - start, 1)  # all windows of that length
            scale = seg.norm() / src.norm(dim=1).clamp(min=1e-9)
            err = (src * scale[:, None] - seg).abs().max(dim=1).values
            if float(err.min()) < 1e-4:
                found = True
        assert found, f"utterance {i}: the added signal is not a segment of another utterance"
        ratio_db = 10 * math.log10(float(wav[i, :n].pow(2).mean() / seg.pow(2).mean()))
        assert -5.0 - 1e-3 <= ratio_db <= 5.0 + 1e-3
    # a single utterance has nobody to mix with
    one, flags = mix_utterances(wav[:1], lens[:1], prob=1.0)
    assert torch.equal(one, wav[:1]) and not flags.any()


def chirps(n=3, samples=8000):
    t = torch.arange(samples) / 16000
    out = []
    for i in range(n):
        f0, f1 = 200 + 300 * i, 3000 - 400 * i
        out.append(0.5 * torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1]))))
    return torch.stack(out)


def test_training_falls_and_mixing_only_in_training():
    torch.manual_seed(2)
    model = build_model({"arch": "wavlm", "preset": "tiny", "num_classes": 10, "label_rate": 50, "mask_length": 3,
                         "mix_prob": 0.5})
    wav = chirps(3, 6400)
    frames = int(model.wavlm.frame_lengths(torch.tensor([wav.size(1)]))[0])
    labels = (torch.arange(frames) * 10 // frames)[None].repeat(3, 1)  # units follow the chirp's frequency
    batch = {"wav": wav, "wav_lens": torch.full((3,), wav.size(1)), "labels": labels,
             "label_lens": torch.full((3,), frames)}
    model.eval()
    torch.manual_seed(3)
    with torch.no_grad():
        before, stats, _ = model(batch)
    assert stats["mixed_frac"] == 0.0  # eval: never mixed
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    mixed = 0.0
    for _ in range(16):
        loss, stats, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mixed += stats["mixed_frac"]
    assert 0 < mixed < 16  # about half the utterances mixed
    model.eval()
    torch.manual_seed(3)
    with torch.no_grad():
        after, stats, _ = model(batch)
    assert float(after) < 0.7 * float(before), (float(before), float(after))


def test_pretrain_cli_with_labels(tmp_path):
    from speechkit.bin import pretrain
    from speechkit.models import load_pretrained
    from train_toy import make_data_dir

    data = make_data_dir(tmp_path / "train", [0.6, 0.8, 1.0, 0.7], num_classes=12, label_rate=100, tag="mfcc100")
    conf = tmp_path / "wavlm.yaml"
    conf.write_text("model: {arch: wavlm, preset: tiny, mask_length: 3, mix_prob: 0.5}\n"
                    "data: {label_rate: 100, max_sample_size: 16000, min_sample_size: 4000, max_tokens: 32000, "
                    "num_workers: 0}\n"
                    "trainer: {max_updates: 3, log_interval: 1, valid_interval: 0, save_interval: 3}\n")
    assert pretrain.main(["--config", str(conf), "--train-data", str(data), "--label-tag", "mfcc100",
                          "--exp-dir", str(tmp_path / "exp")]) == 0
    model = load_pretrained(tmp_path / "exp" / "checkpoint_last.pt")
    assert model.config.arch == "wavlm" and model.config.num_classes == 12 and model.config.label_rate == 100
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "acc_m" in log and "mixed_frac" in log


def test_downstream_rebuilds_the_wavlm_encoder():
    """speechkit.downstream keeps only the encoder of an upstream and rebuilds it from a spec: the relative
    bias must survive that (a plain SSLEncoder spec would lose it)."""
    from speechkit.downstream.featurizer import build_upstream, upstream_module, upstream_spec

    torch.manual_seed(5)
    model = build_model({"arch": "wavlm", "preset": "tiny"}).eval()
    spec = upstream_spec(model)
    assert spec["type"] == "wavlm_encoder"
    rebuilt = build_upstream(spec).eval()
    rebuilt.load_state_dict(upstream_module(model).state_dict())
    wav = torch.randn(1, 6000)
    with torch.no_grad():
        a, _ = model.extract_features(wav)
        b, _ = rebuilt.extract_features(wav)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
