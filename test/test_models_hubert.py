"""HuBERT pre-training model: label alignment, loss, feature_grad_mult, presets, load_pretrained."""
import math

import pytest
import torch

from speechkit.models import (HUBERT_PRESETS, HubertPretrainModel, PretrainedLoadError, align_labels,
                              build_model, hubert_preset, load_pretrained, resolve_config)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**enc):
    enc = {"dropout": 0.0, "attention_dropout": 0.0, "dropout_input": 0.0, "dropout_features": 0.0, **enc}
    return HubertPretrainModel(hubert_preset("tiny", encoder=enc, num_classes=8, label_rate=100.0))


def mfcc_frames(n: int) -> int:
    return 1 + (n - 400) // 160  # Kaldi snip_edges at 16 kHz (CONTRACT frame conventions)


def test_label_alignment_100hz_to_50hz():
    frame_lens = torch.tensor([49, 37])  # conv arithmetic for 16000 and 12000 samples
    lab_lens = torch.tensor([mfcc_frames(16000), mfcc_frames(12000)])  # 98, 73
    labels = torch.full((2, 98), -100)
    labels[0] = torch.arange(98)
    labels[1, :73] = torch.arange(73) + 1000
    out = align_labels(labels, lab_lens, frame_lens, 49, ratio=2.0)
    assert out[0].tolist() == list(range(0, 98, 2))  # every second label
    # utt 2: 73 labels cover frames 0..36 (label 72 is frame 36's), then padding
    assert out[1, :37].tolist() == [1000 + 2 * j for j in range(37)]
    assert (out[1, 37:] == -100).all()
    # 50 Hz labels are taken as they are
    same = align_labels(labels[:, :49], torch.tensor([49, 37]), frame_lens, 49, ratio=1.0)
    assert torch.equal(same[0], labels[0, :49]) and (same[1, 37:] == -100).all()


def test_label_alignment_short_labels_and_mismatch_error():
    # two labels short at 100 Hz = one frame short: tolerated, the last frame is ignored
    out = align_labels(torch.arange(96)[None], torch.tensor([96]), torch.tensor([49]), 49, ratio=2.0)
    assert out[0, :48].tolist() == list(range(0, 96, 2)) and out[0, 48] == -100
    with pytest.raises(ValueError, match=r"utt-7.*60 labels.*49 frames"):
        align_labels(torch.zeros(1, 60, dtype=torch.long), torch.tensor([60]), torch.tensor([49]), 49, 2.0,
                     utt_ids=["utt-7"])
    with pytest.raises(ValueError, match="mismatch"):  # 100 Hz labels given to a label_rate=50 model
        align_labels(torch.zeros(1, 98, dtype=torch.long), torch.tensor([98]), torch.tensor([49]), 49, 1.0)


def tone_batch(n_utts=2, seconds=1.0, num_classes=8, seed=0):
    """Waveforms made of 100 ms tone segments; the 100 Hz label of a frame is its segment's tone."""
    g = torch.Generator().manual_seed(seed)
    n = int(16000 * seconds)
    wav = torch.zeros(n_utts, n)
    labels = []
    t = torch.arange(n) / 16000
    for b in range(n_utts):
        seg = torch.randint(0, num_classes, (n // 1600 + 1,), generator=g)
        per_sample = seg[torch.arange(n) // 1600]
        wav[b] = 0.5 * torch.sin(2 * math.pi * (200.0 + 150.0 * per_sample) * t)
        centres = torch.arange(mfcc_frames(n)) * 160 + 200
        labels.append(per_sample[centres])
    labels = torch.stack(labels)
    return {"wav": wav, "wav_lens": torch.full((n_utts,), n), "labels": labels,
            "label_lens": torch.full((n_utts,), labels.size(1)), "utt_ids": [f"u{i}" for i in range(n_utts)]}


def test_forward_contract_and_stats():
    torch.manual_seed(0)
    model = tiny()
    batch = tone_batch()
    loss, stats, sample_size = model(batch)
    assert loss.dim() == 0 and loss.requires_grad
    for key in ("loss", "loss_m", "acc_m", "acc_u", "features_pen", "sample_size", "loss_sum"):
        assert key in stats, key
    assert sample_size == stats["count_m"] > 0  # unmasked frames carry no weight by default
    assert 0.0 <= stats["acc_m"] <= 1.0
    assert stats["loss"] == pytest.approx(stats["loss_m"] + 10.0 * stats["features_pen"], rel=1e-4)
    # with pred_nomask_weight the unmasked frames join the loss and the sample size
    model.config.pred_nomask_weight = 1.0
    torch.manual_seed(0)
    _, stats_u, size_u = model(batch)
    assert size_u == stats_u["count_m"] + stats_u["count_u"] == 2 * 49


def test_loss_decreases_overfitting_one_batch():
    torch.manual_seed(0)
    model = tiny()
    batch = tone_batch()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses, accs = [], []
    for _ in range(30):
        loss, stats, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(stats["loss_m"])
        accs.append(stats["acc_m"])
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, losses
    assert sum(accs[-5:]) / 5 > sum(accs[:5]) / 5 + 0.2, accs


def test_feature_grad_mult_scales_extractor_gradient():
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(0)
        model = tiny(feature_grad_mult=mult)
        torch.manual_seed(1)  # same masks
        loss, _, _ = model(tone_batch())
        loss.backward()
        grads[mult] = (model.hubert.feature_extractor.conv_layers[2].conv.weight.grad.clone(),
                       model.hubert.feature_projection.projection.weight.grad.clone())
    assert torch.allclose(grads[0.1][0], 0.1 * grads[1.0][0], rtol=1e-3, atol=1e-8)
    assert torch.allclose(grads[0.1][1], grads[1.0][1], rtol=1e-4, atol=1e-7)  # above the extractor: unscaled


def test_presets():
    base, large, xlarge = HUBERT_PRESETS["base"], HUBERT_PRESETS["large"], HUBERT_PRESETS["xlarge"]
    assert (base.encoder.num_layers, base.encoder.embed_dim, base.encoder.ffn_dim, base.encoder.num_heads) == \
        (12, 768, 3072, 12)
    assert not base.encoder.layer_norm_first and base.encoder.extractor_mode == "group" and base.final_dim == 256
    assert (large.encoder.num_layers, large.encoder.embed_dim, large.encoder.ffn_dim, large.encoder.num_heads) == \
        (24, 1024, 4096, 16)
    assert large.encoder.layer_norm_first and large.encoder.extractor_mode == "layer" and large.encoder.conv_bias
    assert large.final_dim == 768
    assert (xlarge.encoder.num_layers, xlarge.encoder.embed_dim, xlarge.encoder.ffn_dim) == (48, 1280, 5120)
    t = HUBERT_PRESETS["tiny"].encoder
    assert [s for _, _, s in t.conv_layers] == [5, 2, 2, 2, 2, 2, 2]  # stride 320 kept


def test_config_resolution_and_errors():
    cfg = resolve_config({"arch": "hubert", "preset": "tiny", "num_classes": 50, "mask_prob": 0.65,
                          "encoder": {"num_layers": 3}})
    assert cfg.num_classes == 50 and cfg.encoder.mask_prob == 0.65 and cfg.encoder.num_layers == 3
    assert cfg.encoder.embed_dim == 64  # from the preset
    with pytest.raises(ValueError, match="mask_prb"):
        resolve_config({"arch": "hubert", "preset": "tiny", "mask_prb": 0.5})
    with pytest.raises(ValueError, match="unknown or missing arch"):
        resolve_config({"arch": "hubret"})
    with pytest.raises(ValueError, match="preset"):
        resolve_config({"arch": "hubert", "preset": "huge"})
    # the resolved dict round-trips (this is what checkpoints store)
    assert resolve_config(cfg.to_dict()) == cfg


def save_ckpt(path, model, **extra):
    state = {"model": model.state_dict(), "model_config": model.config.to_dict(), "train_config": {},
             "num_updates": 3, "epoch": 1, **extra}
    torch.save(state, path)
    return state


def test_load_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    save_ckpt(tmp_path / "ckpt.pt", model)
    loaded = load_pretrained(tmp_path / "ckpt.pt")
    assert isinstance(loaded, HubertPretrainModel) and not loaded.training
    wav = torch.randn(2, 8000)
    model.eval()
    with torch.no_grad():
        a, la = model.extract_features(wav, torch.tensor([8000, 6000]))
        b, lb = loaded.extract_features(wav, torch.tensor([8000, 6000]))
    assert torch.equal(la, lb) and len(a) == len(b) == 3
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # the short (preset) form of model_config works too; DDP "module." prefixes are stripped
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "model_config": {"arch": "hubert", "preset": "tiny", "num_classes": 8, "label_rate": 100.0,
                                 "encoder": {"dropout": 0.0}}}, tmp_path / "short.pt")
    assert isinstance(load_pretrained(tmp_path / "short.pt"), HubertPretrainModel)


def test_load_pretrained_errors(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    good = tmp_path / "good.pt"
    save_ckpt(good, model)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedLoadError, match="trunc.pt"):
        load_pretrained(tmp_path / "trunc.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    with pytest.raises(PretrainedLoadError, match="text.pt"):
        load_pretrained(tmp_path / "text.pt")
    with pytest.raises(PretrainedLoadError, match="not found"):
        load_pretrained(tmp_path / "absent.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "nocfg.pt")
    with pytest.raises(PretrainedLoadError, match=r"nocfg.pt.*model_config"):
        load_pretrained(tmp_path / "nocfg.pt")
    # incompatible: 8 classes saved, 16 in the config -> shape mismatch named
    state = save_ckpt(tmp_path / "shape.pt", model)
    state["model_config"]["num_classes"] = 16
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(PretrainedLoadError, match=r"shape.pt.*label_embs_concat"):
        load_pretrained(tmp_path / "shape.pt")
    state = save_ckpt(tmp_path / "missing.pt", model)
    del state["model"]["final_proj.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(PretrainedLoadError, match=r"missing.pt.*final_proj.weight"):
        load_pretrained(tmp_path / "missing.pt")
    state["model_config"]["arch"] = "nope"
    torch.save(state, tmp_path / "arch.pt")
    with pytest.raises(PretrainedLoadError, match=r"arch.pt.*nope"):
        load_pretrained(tmp_path / "arch.pt")


def test_build_model_dispatch():
    m = build_model({"arch": "hubert", "preset": "tiny"})
    assert isinstance(m, HubertPretrainModel) and m.config.num_classes == 100
