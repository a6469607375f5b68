"""AV-HuBERT: lip frontend, fusion, modality dropout, both masking modes, label alignment, presets."""
import pytest
import torch

from speechkit.models import build_model, resolve_config
from speechkit.models.av_presets import avhubert_preset
from speechkit.models.avhubert import AVHubertPretrainModel, span_sources
from speechkit.models.lip_resnet import LipResNet

QUIET = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, layerdrop=0.0)


def tiny(**overrides):
    enc = overrides.pop("encoder", {})
    torch.manual_seed(0)
    return AVHubertPretrainModel(avhubert_preset("tiny", encoder=dict(QUIET, **enc), **overrides))


def make_batch(b=2, t=8, size=88, lengths=(8, 6), label_rate=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths)
    per = 4 if label_rate == 100 else 1
    audio = torch.randn(b, t, 104, generator=g)
    video = torch.randn(b, 1, t, size, size, generator=g)
    for i, n in enumerate(lengths):
        audio[i, n:] = 0
        video[i, :, n:] = 0
    return dict(audio_feats=audio, video=video, lengths=lens,
                labels=torch.randint(0, 100, (b, t * per), generator=g), label_lens=lens * per,
                utt_ids=[f"utt{i}" for i in range(b)])


# ------------------------------------------------------------------ visual frontend
def test_lip_resnet_shapes_and_names():
    net = LipResNet(width=1.0).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 2, 88, 88))
    assert out.shape == (1, 2, 512)
    names = set(dict(net.named_parameters()))
    for key in ("frontend3D.0.weight", "frontend3D.1.weight", "frontend3D.2.weight",
                "trunk.layer1.0.conv1.weight", "trunk.layer1.0.bn1.bias", "trunk.layer1.0.relu1.weight",
                "trunk.layer2.0.downsample.0.weight", "trunk.layer2.0.downsample.1.weight",
                "trunk.layer4.1.relu2.weight"):
        assert key in names, key
    assert "trunk.layer1.0.downsample.0.weight" not in names  # 64 -> 64, stride 1: identity shortcut
    stem = net.frontend3D[0]
    assert (stem.kernel_size, stem.stride, stem.padding, stem.bias) == ((5, 7, 7), (1, 2, 2), (2, 3, 3), None)
    assert LipResNet(width=0.125).out_dim == 64


def test_stem_as_windowed_conv2d_equals_conv3d_sequential():
    torch.manual_seed(2)
    net = LipResNet(width=0.125)
    clip = torch.randn(2, 1, 6, 32, 32)
    valid = torch.ones(2, 6, dtype=torch.bool)
    for train in (True, False):  # batch statistics and running statistics
        net.train(train)
        ref = net.frontend3D(clip).transpose(1, 2).reshape(12, 8, 8, 8)  # the modules as declared
        torch.testing.assert_close(net.stem(clip, valid), ref, rtol=1e-4, atol=1e-5)


def test_lip_resnet_padding_does_not_leak():
    net = LipResNet(width=0.125).eval()
    torch.manual_seed(1)
    clip = torch.randn(1, 1, 5, 88, 88)
    padded = torch.cat([clip, torch.randn(1, 1, 3, 88, 88)], dim=2)  # garbage after the clip
    with torch.no_grad():
        alone = net(clip)
        both = net(torch.cat([padded, torch.randn(1, 1, 8, 88, 88)]), torch.tensor([5, 8]))
    torch.testing.assert_close(both[0, :5], alone[0], rtol=1e-5, atol=1e-5)
    assert not both[0, 5:].any()
    with pytest.raises(ValueError, match="too small"):
        net(torch.randn(1, 1, 2, 4, 4))


# ------------------------------------------------------------------ model forward / loss
def test_forward_backward_reaches_both_frontends():
    model = tiny(modality_dropout=0.0)
    model.train()
    loss, stats, n = model(make_batch())
    assert torch.isfinite(loss) and n == stats["count_m"] > 0
    loss.backward()
    assert model.avhubert.feature_extractor_audio.proj.weight.grad.abs().sum() > 0
    assert model.avhubert.feature_extractor_video.resnet.frontend3D[0].weight.grad.abs().sum() > 0
    assert model.avhubert.mask_emb.shape == (104,) and model.avhubert.mask_emb.grad.abs().sum() > 0


def test_registry_and_config_round_trip():
    cfg = resolve_config({"arch": "avhubert", "preset": "tiny", "masking_type": "feature", "mask_prob": 0.5,
                          "label_rate": 25})
    assert cfg.masking_type == "feature" and cfg.encoder.mask_prob == 0.5 and cfg.label_rate == 25
    model = build_model(cfg.to_dict())
    assert model.avhubert.mask_emb.shape == (64,)  # feature masking: a D-dim embedding
    with pytest.raises(ValueError, match="masking_type"):
        resolve_config({"arch": "avhubert", "preset": "tiny", "masking_type": "both"})


def test_input_masking_audio_mask_emb_and_video_spans_from_same_clip():
    model = tiny(modality_dropout=0.0, mask_prob_video=0.5, mask_length_video=2)
    seen = {}
    model.avhubert.feature_extractor_audio.register_forward_hook(lambda m, i, o: seen.update(audio=i[0]))
    model.avhubert.feature_extractor_video.register_forward_hook(lambda m, i, o: seen.update(video=i[0]))
    batch = make_batch(t=12, lengths=(12, 10), size=16)
    batch["video"] = torch.arange(12.0)[None, None, :, None, None].expand(2, 1, 12, 16, 16).clone()
    batch["video"][1, :, 10:] = 0
    torch.manual_seed(3)
    out = model.avhubert(batch["audio_feats"], batch["video"], batch["lengths"], mask=True)
    m = out.mask_indices
    a, v = seen["audio"], seen["video"][:, 0, :, 0, 0]  # (B, T) frame ids after masking
    a_masked = (a == model.avhubert.mask_emb).all(-1)
    v_moved = v != torch.arange(12.0)[None, :]
    v_moved[1, 10:] = False
    assert a_masked.any() and v_moved.any()
    assert torch.equal(m, a_masked | v_moved)  # the loss's masked frames: union of both streams
    assert not m[1, 10:].any()  # never padding
    assert (v[1, :10] < 10).all()  # copies come from the clip's own valid frames


def test_span_sources_do_not_overlap_their_span():
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 4:9] = True
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        src = span_sources(mask, torch.tensor([20]), g)[0]
        p = int(src[4])
        assert torch.equal(src[4:9], torch.arange(p, p + 5)) and (p + 5 <= 4 or p >= 9)
        assert torch.equal(src[:4], torch.arange(4)) and torch.equal(src[9:], torch.arange(9, 20))


def test_feature_masking_uses_fused_mask_embedding():
    model = tiny(masking_type="feature", modality_dropout=0.0)
    seen = {}
    model.avhubert.encoder.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    b = make_batch()
    torch.manual_seed(0)
    out = model.avhubert(b["audio_feats"], b["video"], b["lengths"], mask=True)
    m = out.mask_indices
    assert m is not None and m.any() and not m[1, 6:].any()
    is_emb = (seen["x"] == model.avhubert.mask_emb).all(-1)  # (B, T): rows replaced by the D-dim embedding
    assert torch.equal(is_emb, m)
    unmasked = model.avhubert(b["audio_feats"], b["video"], b["lengths"], mask=False)
    assert unmasked.mask_indices is None


def test_modality_dropout_frequencies_and_effect():
    model = tiny(modality_dropout=0.5, audio_dropout=0.5)
    model.train()
    b = make_batch(size=16)
    counts = {None: 0, "audio": 0, "video": 0}
    torch.manual_seed(0)
    for _ in range(100):
        out = model.avhubert(b["audio_feats"], b["video"], b["lengths"], num_layers=0)
        counts[out.dropped] += 1
    # expected 50 / 25 / 25; the bounds are 3.5 standard deviations away
    assert 32 < counts[None] < 68 and 10 < counts["audio"] < 40 and 10 < counts["video"] < 40, counts
    # a dropped stream is exactly a missing one (zero-filled features)
    always_audio = tiny(modality_dropout=1.0, audio_dropout=1.0).train()
    video_only = always_audio.avhubert(None, b["video"], b["lengths"])
    dropped = always_audio.avhubert(b["audio_feats"], b["video"], b["lengths"])
    assert dropped.dropped == "audio" and video_only.dropped == "audio"
    torch.testing.assert_close(dropped.x, video_only.x)
    model.eval()  # no dropout at evaluation
    assert model.avhubert(b["audio_feats"], b["video"], b["lengths"]).dropped is None


def test_missing_modality_and_bad_input_errors():
    model = tiny(modality_dropout=0.0)
    b = make_batch()
    audio_only = dict(b, video=None)
    loss, _, _ = model(audio_only)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="neither"):
        model(dict(b, video=None, audio_feats=None))
    with pytest.raises(ValueError, match="disagree"):
        model(dict(b, video=b["video"][:, :, :6]))
    with pytest.raises(KeyError, match="labels"):
        model({k: v for k, v in b.items() if k != "labels"})


def test_label_rates_100hz_subsampled_and_25hz_direct():
    model = tiny(modality_dropout=0.0)
    assert model.label_ratio == 4.0
    model(make_batch(label_rate=100))
    bad = make_batch(label_rate=100)
    bad["label_lens"] = torch.tensor([20, 24])  # utt0: 5 frames of labels for 8 video frames
    with pytest.raises(ValueError, match="utt0"):
        model(bad)
    m25 = tiny(modality_dropout=0.0, label_rate=25.0)
    assert m25.label_ratio == 1.0
    loss, _, _ = m25(make_batch(label_rate=25))
    assert torch.isfinite(loss)


def test_extract_features_layers_and_modalities():
    model = tiny().eval()
    b = make_batch()
    hs, lens = model.extract_features(b["audio_feats"], b["video"], b["lengths"], layer=1)
    assert len(hs) == 2 and hs[1].shape == (2, 8, 64) and lens.tolist() == [8, 6]
    hs_full, _ = model.extract_features(b["audio_feats"], b["video"], b["lengths"])
    assert len(hs_full) == 3
    hv, _ = model.extract_features(None, b["video"], b["lengths"], layer=1)
    assert not torch.allclose(hv[1], hs[1])


# ------------------------------------------------------------------ sizes
def resnet18_params(w: float = 1.0) -> int:
    c = lambda n: max(1, round(n * w))  # noqa: E731
    stem = c(64)
    total = stem * 5 * 7 * 7 + 2 * stem + stem  # conv3d (no bias) + BN3d + PReLU
    cin = stem
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        cout = c(planes)
        for k in range(2):
            i, s = (cin, stride) if k == 0 else (cout, 1)
            total += i * cout * 9 + cout * cout * 9 + 4 * cout + 2 * cout  # 2 convs, 2 BNs, 2 PReLUs
            if s != 1 or i != cout:
                total += i * cout + 2 * cout  # 1x1 conv + BN shortcut
        cin = cout
    return total


def avhubert_params(d: int, layers: int, ffn: int, classes: int, final_dim: int = 256, kernel: int = 128,
                    groups: int = 16) -> int:
    frontends = resnet18_params() + (512 * d + d) + (104 * d + d)
    fusion = 2 * (2 * d) + (2 * d * d + d) + 104  # layer_norm, post_extract_proj, mask_emb (input masking)
    pos_conv = d * (d // groups) * kernel + kernel + d  # weight_v, weight_g (one gain per tap), bias
    layer = 4 * (d * d + d) + 2 * (2 * d) + (d * ffn + ffn) + (ffn * d + d)
    head = d * final_dim + final_dim + classes * final_dim
    return frontends + fusion + pos_conv + layers * layer + 2 * d + head


@pytest.mark.parametrize("name,d,layers,ffn,classes,paper_m", [("base", 768, 12, 3072, 100, 103),
                                                               ("large", 1024, 24, 4096, 500, 325)])
def test_base_and_large_parameter_counts(name, d, layers, ffn, classes, paper_m):
    # torchvision's resnet18 (11,689,512) less its fc (513,000), 2-D stem conv (9,408) and BN (128), plus
    # our 2 x 1,920 PReLU slopes and the 3-D stem (15,680 + 128 + 64)
    assert resnet18_params() == 11_689_512 - 513_000 - 9_408 - 128 + 3_840 + 15_872
    with torch.device("meta"):
        model = build_model({"arch": "avhubert", "preset": name})
    got = sum(p.numel() for p in model.parameters())
    assert got == avhubert_params(d, layers, ffn, classes)
    assert round(got / 1e6) == paper_m  # AV-HuBERT paper: Base 103M, Large 325M
    cfg = model.config.encoder
    assert (cfg.embed_dim, cfg.num_layers, cfg.ffn_dim, cfg.num_heads) == (d, layers, ffn, d // 64)


def test_span_sources_long_runs_and_uniform_choice():
    g = torch.Generator().manual_seed(1)
    whole = torch.ones(1, 6, dtype=torch.bool)
    assert torch.equal(span_sources(whole, torch.tensor([6]), g)[0], torch.arange(6))  # nothing else to copy
    long = torch.zeros(1, 10, dtype=torch.bool)
    long[0, 2:8] = True  # 6 frames in a 10-frame clip: no non-overlapping start, so any start but 2
    starts = {int(span_sources(long, torch.tensor([10]), g)[0, 2]) for _ in range(60)}
    assert starts == {0, 1, 3, 4}
    short = torch.zeros(1, 12, dtype=torch.bool)
    short[0, 5:7] = True  # allowed starts 0..3 and 7..10, each about equally often
    counts = torch.zeros(12)
    for _ in range(400):
        counts[int(span_sources(short, torch.tensor([12]), g)[0, 5])] += 1
    assert counts[[4, 5, 6, 11]].sum() == 0 and counts[[0, 1, 2, 3, 7, 8, 9, 10]].min() > 25
