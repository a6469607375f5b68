"""wav2vec 2.0: Gumbel product quantizer, distractor sampling, contrastive loss, Base size, training."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechkit.models import build_model, load_pretrained
from speechkit.models.quantizer import GumbelVectorQuantizer, gumbel_temperature, perplexity
from speechkit.models.wav2vec2 import contrastive_logits, sample_negatives


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
    from speechkit.models.export_hf import hf_state_dict

    ours = build_model({"arch": "wav2vec2", "preset": "base"})
    n = sum(p.numel() for p in ours.parameters())
    assert n == 95_044_608  # published 95.04M
    hf = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config())
    assert n == sum(p.numel() for p in hf.parameters())
    assert set(hf_state_dict(ours)) == set(hf.state_dict())  # same tensors under HF's names
    cfg = ours.config
    assert (cfg.num_groups, cfg.num_vars, cfg.final_dim, cfg.num_negatives) == (2, 320, 256, 100)
    assert (cfg.encoder.mask_prob, cfg.encoder.mask_length) == (0.65, 10)
    assert cfg.latent_temp == [2.0, 0.5, 0.999995] and cfg.diversity_weight == 0.1 and cfg.feature_pen_weight == 10.0
    book = ours.quantizer.codevectors.detach()
    assert cfg.codevector_init == "uniform" and float(book.min()) >= 0 and float(book.max()) <= 1  # fairseq's init


def test_temperature_schedule():
    assert gumbel_temperature(0, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(100_000, 2.0, 0.5, 0.999995) == pytest.approx(2.0 * 0.999995 ** 100_000)
    assert gumbel_temperature(400_000, 2.0, 0.5, 0.999995) == 0.5  # 2 * 0.135 < 0.5: floored
    q = GumbelVectorQuantizer(8, 2, 5, 6)
    q.set_num_updates(1000)
    assert q.curr_temp == pytest.approx(2.0 * 0.999995 ** 1000)


def test_quantizer_hard_straight_through_and_perplexity():
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(in_dim=8, num_groups=2, num_vars=5, codevector_dim=6).train()
    x = torch.randn(50, 8, requires_grad=True)
    out = q(x)
    book = q.codevectors.view(2, 5, 3)
    # every output group is exactly one codeword (hard), the one the codes name
    for g in range(2):
        assert torch.allclose(out.quantized[:, 3 * g:3 * g + 3], book[g][out.codes[:, g]])
    # ... yet gradients reach the logits projection and the input (straight-through)
    out.quantized.sum().backward()
    assert q.weight_proj.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    # eval: deterministic arg-max
    q.eval()
    a, b = q(x.detach()), q(x.detach())
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(a.codes, q.weight_proj(x.detach()).view(50, 2, 5).argmax(-1))
    # perplexity: G * V for uniform use, G for a collapsed codebook
    assert float(perplexity(torch.full((4, 2, 5), 0.2))) == pytest.approx(10.0, rel=1e-5)
    assert float(perplexity(F.one_hot(torch.zeros(4, 2, dtype=torch.long), 5).float())) == pytest.approx(2.0, rel=1e-5)


def test_negatives_come_from_other_masked_frames_of_the_same_utterance():
    g = torch.Generator().manual_seed(0)
    counts = [7, 1, 4]
    idx = sample_negatives(counts, 200, g)
    assert idx.shape == (12, 200)
    starts = [0, 7, 8]
    for b, (s, m) in enumerate(zip(starts, counts)):
        for t in range(m):
            row = idx[s + t]
            if m == 1:
                assert (row == -1).all()  # nothing to contrast with
                continue
            assert ((row >= s) & (row < s + m)).all(), "distractor from another utterance"
            assert (row != s + t).all(), "the positive itself was sampled"
            assert set(row.tolist()) == set(range(s, s + m)) - {s + t}  # every other frame can be drawn


def test_contrastive_logits_cosine_and_duplicates():
    torch.manual_seed(1)
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    y[2] = y[0]  # frame 2 has the same quantized vector as frame 0
    neg = torch.tensor([[1, 2], [0, 3], [0, 1], [0, -1]])
    logits = contrastive_logits(x, y, neg, 0.1)
    assert logits.shape == (4, 3)
    assert torch.allclose(logits[1, 0], F.cosine_similarity(x[1], y[1], dim=0) / 0.1)
    assert torch.allclose(logits[1, 2], F.cosine_similarity(x[1], y[3], dim=0) / 0.1)
    assert logits[0, 2] == float("-inf") and logits[2, 1] == float("-inf")  # distractor == positive
    assert logits[3, 2] == float("-inf")  # absent distractor
    assert torch.isfinite(logits[0, 1])


def tiny_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([16000, 13000, 11000])
    wav = torch.randn(3, 16000, generator=g) * 0.3
    for i, n in enumerate(lens.tolist()):
        wav[i, n:] = 0
    return {"wav": wav, "wav_lens": lens, "utt_ids": ["a", "b", "c"]}


def test_quantizer_reads_unmasked_normalised_features():
    torch.manual_seed(2)
    model = build_model({"arch": "wav2vec2", "preset": "tiny", "mask_length": 3, "dropout_features": 0.0,
                         "dropout_input": 0.0})
    model.train()
    seen = {}
    model.quantizer.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    masks = {}
    model.wav2vec2.encoder.register_forward_hook(lambda m, i, o: masks.update(x=i[0]))
    batch = tiny_batch()
    torch.manual_seed(3)
    loss, stats, n = model(batch)
    enc = model.wav2vec2
    with torch.no_grad():
        feats, lens, _ = enc.local_features(batch["wav"], batch["wav_lens"])
        normed = enc.feature_projection.layer_norm(feats)
        masked = (masks["x"] == enc.masked_spec_embed).all(-1)  # where the encoder saw the mask embedding
        valid = torch.arange(feats.size(1))[None] < lens[:, None]
    assert n == int((masked & valid).sum()) == seen["x"].shape[0]
    assert torch.allclose(seen["x"], normed[masked & valid], atol=1e-6)
    assert math.isclose(stats["loss"], float(loss.detach())) and stats["acc"] <= 1.0


def chirps(n=3, samples=8000):
    """Frequency sweeps: every frame differs from its neighbours, and context predicts it."""
    t = torch.arange(samples) / 16000
    out = []
    for i in range(n):
        f0, f1 = 200 + 300 * i, 3000 - 400 * i
        out.append(0.5 * torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1]))))
    return torch.stack(out)


def test_loss_composition_and_training_falls():
    torch.manual_seed(4)
    model = build_model({"arch": "wav2vec2", "preset": "tiny", "mask_length": 3, "num_negatives": 10,
                         "dropout": 0.0, "attention_dropout": 0.0})
    batch = {"wav": chirps(), "wav_lens": torch.full((3,), 8000)}
    model.train()
    loss, s, n = model(batch)
    assert model.config.feature_pen_weight == 0.0  # the tiny preset drops it (see ssl_presets)
    model.config.feature_pen_weight = 10.0
    loss, s, n = model(batch)
    expected = s["loss_contrastive"] + 0.1 * s["diversity"] + 10.0 * s["features_pen"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert 0 <= s["diversity"] <= 1 and s["temp"] == 2.0
    # trained with the paper's penalty: on these clean sweeps it keeps the codebook in use

    def evaluate():  # eval mode: arg-max codes; same masks and distractors each time
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            _, stats, _ = model(batch)
        model.train()
        return stats

    before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(30):
        loss, s, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.set_num_updates(step + 1)
    after = evaluate()
    assert after["loss_contrastive"] < 0.8 * before["loss_contrastive"], (before, after)
    assert after["loss_contrastive"] < math.log(11)  # better than chance among 1 + 10 candidates
    assert model.quantizer.curr_temp == pytest.approx(2.0 * 0.999995 ** 30)


def test_checkpoint_keeps_temperature(tmp_path):
    model = build_model({"arch": "wav2vec2", "preset": "tiny"})
    model.set_num_updates(200_000)
    torch.save({"model": model.state_dict(), "model_config": model.model_config()}, tmp_path / "c.pt")
    again = load_pretrained(tmp_path / "c.pt")
    assert int(again.num_updates) == 200_000
    assert again.quantizer.curr_temp == pytest.approx(model.quantizer.curr_temp)
    hidden, lens = again.extract_features(torch.randn(1, 8000))
    assert len(hidden) == 3 and hidden[-1].shape == (1, int(lens[0]), 64)


def test_pretrain_cli_without_labels(tmp_path):
    """The recipe path: speechkit.bin.pretrain builds arch wav2vec2 through the registry, no label files;
    the trainer reports updates to the model (temperature), and the checkpoint loads for feature dumping."""
    from speechkit.bin import pretrain
    from speechkit.train.checkpoint import load_checkpoint
    from train_toy import make_data_dir

    data = make_data_dir(tmp_path / "train", [0.6, 0.8, 1.0, 0.7])
    conf = tmp_path / "w2v.yaml"
    conf.write_text("model: {arch: wav2vec2, preset: tiny, mask_length: 3}\n"
                    "data: {max_sample_size: 16000, min_sample_size: 4000, max_tokens: 32000, num_workers: 0}\n"
                    "trainer: {max_updates: 3, log_interval: 1, valid_interval: 0, save_interval: 3}\n")
    assert pretrain.main(["--config", str(conf), "--train-data", str(data), "--exp-dir", str(tmp_path / "exp")]) == 0
    ckpt = load_checkpoint(tmp_path / "exp" / "checkpoint_last.pt")
    assert ckpt["model_config"]["arch"] == "wav2vec2" and int(ckpt["model"]["num_updates"]) == 3
    model = load_pretrained(tmp_path / "exp" / "checkpoint_last.pt")
    assert model.quantizer.curr_temp == pytest.approx(2.0 * 0.999995 ** 3)
    assert "loss_contrastive" in (tmp_path / "exp" / "train.log").read_text()
