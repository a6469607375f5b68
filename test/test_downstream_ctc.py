"""CTC fine-tuning model: frozen-parameter semantics, masking, overfitting, init from a checkpoint or scratch."""
from __future__ import annotations

import pytest
import torch

from downstream_helpers import TONES, tiny_hubert_checkpoint, tone_audio
from speechkit.downstream.ctc_decode import ctc_greedy_decode
from speechkit.downstream.ctc_model import CTCConfig, CTCModel, build_ctc_model
from speechkit.downstream.tasks import load_upstream
from speechkit.models import encoder_preset, load_pretrained
from speechkit.models.encoder import SSLEncoder

VOCAB = ["<blank>", "A", "B", "C", "D"]


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: thread start-up and spinning cost more than they save, badly so on a shared 2-core box
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_model(freeze: int = 0, **enc) -> CTCModel:
    torch.manual_seed(0)
    cfg = encoder_preset("tiny", dropout=0.0, attention_dropout=0.0, dropout_input=0.0, **enc)
    return build_ctc_model(len(VOCAB), encoder_config=cfg, freeze_finetune_updates=freeze)


def batch_of(texts: list[str]) -> dict:
    wavs = [torch.from_numpy(tone_audio(t, 0, i)) for i, t in enumerate(texts)]
    lens = torch.tensor([len(w) for w in wavs])
    wav = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        wav[i, : len(w)] = w
    ids = [[VOCAB.index(c) for c in t] for t in texts]
    labels = torch.full((len(ids), max(map(len, ids))), -100)
    for i, s in enumerate(ids):
        labels[i, : len(s)] = torch.tensor(s)
    return {"wav": wav, "wav_lens": lens, "labels": labels, "label_lens": torch.tensor([len(s) for s in ids]),
            "utt_ids": [f"u{i}" for i in range(len(texts))]}


def grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None for p in module.parameters()]


def test_extractor_always_frozen_and_transformer_frozen_for_n_updates():
    model = tiny_model(freeze=3, mask_prob=0.3)
    model.train()
    batch = batch_of(["AB", "CAD"])
    enc = model.encoder
    assert not any(p.requires_grad for p in enc.feature_extractor.parameters())
    assert model.config.encoder.feature_grad_mult == 0.0
    rest = [p for n, p in enc.named_parameters() if not n.startswith("feature_extractor.")]
    assert rest and all(p.requires_grad for p in rest)  # still in the optimizer, only without grads
    for updates, transformer_trains in ((0, False), (2, False), (3, True), (10, True)):
        model.zero_grad(set_to_none=True)
        model.set_num_updates(updates)
        loss, _, n = model(batch)
        loss.backward()
        assert n == 5
        assert not any(grads(enc.feature_extractor)), "conv extractor must never get gradients"
        assert all(grads(model.lm_head))
        got = [p.grad is not None for p in rest]
        assert all(got) if transformer_trains else not any(got), (updates, got)


def test_masking_only_in_training(monkeypatch):
    model = tiny_model(mask_prob=0.5, mask_channel_prob=0.3, mask_channel_length=4)
    calls = {"time": 0, "channel": 0}
    import speechkit.models.encoder as encmod

    orig_time, orig_chan = encmod.compute_mask_indices, encmod.compute_channel_mask

    def spy_time(*a, **k):
        calls["time"] += 1
        return orig_time(*a, **k)

    def spy_chan(*a, **k):
        calls["channel"] += 1
        return orig_chan(*a, **k)

    monkeypatch.setattr(encmod, "compute_mask_indices", spy_time)
    monkeypatch.setattr(encmod, "compute_channel_mask", spy_chan)
    batch = batch_of(["ABC", "DA"])
    model.eval()
    with torch.no_grad():
        a, _ = model.log_probs(batch["wav"], batch["wav_lens"])
        b, _ = model.log_probs(batch["wav"], batch["wav_lens"])
    assert calls == {"time": 0, "channel": 0}
    torch.testing.assert_close(a, b)  # eval is deterministic: no masks drawn
    model.train()
    with torch.no_grad():
        c, _ = model.log_probs(batch["wav"], batch["wav_lens"])
    assert calls == {"time": 1, "channel": 1}
    assert not torch.allclose(a, c)


def test_tiny_finetune_overfits_two_utterances():
    texts = ["ABCD", "DCA"]
    model = tiny_model(mask_prob=0.0)
    batch = batch_of(texts)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for step in range(80):
        opt.zero_grad()
        loss, _, _ = model(batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step >= 20 and step % 5 == 0:
            model.eval()
            with torch.no_grad():
                lp, lens = model.log_probs(batch["wav"], batch["wav_lens"])
            model.train()
            hyp = ["".join(VOCAB[i] for i in h) for h in ctc_greedy_decode(lp, lens)]
            if hyp == texts:
                break
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    assert hyp == texts, f"greedy decode {hyp} after {step + 1} steps (losses {losses[::10]})"


def test_from_checkpoint_and_from_scratch_share_the_architecture(tmp_path):
    ckpt = tiny_hubert_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    pre = load_pretrained(ckpt)
    up = load_upstream(ckpt)
    torch.manual_seed(1)
    ft = build_ctc_model(7, init=up, encoder_overrides={"mask_prob": 0.65})
    torch.manual_seed(1)
    scratch = build_ctc_model(7, init=up, from_scratch=True, encoder_overrides={"mask_prob": 0.65})
    sa, sb = ft.state_dict(), scratch.state_dict()
    assert list(sa) == list(sb)
    assert all(sa[k].shape == sb[k].shape for k in sa)
    assert ft.model_config()["encoder"] == scratch.model_config()["encoder"] | {"feature_grad_mult": 0.0}
    assert any(p.requires_grad for p in scratch.encoder.feature_extractor.parameters())  # the baseline trains it
    assert not any(p.requires_grad for p in ft.encoder.feature_extractor.parameters())
    # the fine-tuned encoder starts from the pre-trained weights, the scratch one does not
    for k, v in pre.hubert.state_dict().items():
        assert torch.equal(sa["encoder." + k], v), k
    differ = [k for k in pre.hubert.state_dict() if not torch.equal(sb["encoder." + k], pre.hubert.state_dict()[k])]
    assert len(differ) > 10
    # a fine-tuned model rebuilds from its own model_config (the registry knows arch "ctc")
    again = CTCModel(CTCConfig.from_dict(ft.model_config()))
    again.load_state_dict(sa)
    assert isinstance(find := again.encoder, SSLEncoder) and find.cfg.mask_prob == 0.65


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="mask_channel_length 64 must be smaller"):
        tiny_model(mask_channel_prob=0.5, mask_channel_length=64)
    with pytest.raises(ValueError, match="cannot be changed for fine-tuning"):
        build_ctc_model(5, encoder_config=encoder_preset("tiny"), encoder_overrides={"embed_dim": 32})


def test_tones_cover_vocab():
    assert set(TONES) == set(VOCAB[1:])


def test_wavlm_upstream_keeps_its_relative_bias_through_ctc_fine_tuning(tmp_path):
    from speechkit.models import build_model
    from speechkit.models.wavlm import WavLMEncoder

    torch.manual_seed(0)
    model = build_model({"arch": "wavlm", "preset": "tiny", "num_classes": 10})
    ckpt = tmp_path / "wavlm.pt"
    torch.save({"model": model.state_dict(), "model_config": model.model_config(), "num_updates": 0}, ckpt)
    ft = build_ctc_model(7, init=load_upstream(ckpt))
    assert isinstance(ft.encoder, WavLMEncoder)
    for k, v in model.encoder.state_dict().items():  # every weight, the relative bias included
        assert torch.equal(ft.state_dict()["encoder." + k], v), k
    # the saved fine-tuned model rebuilds as a WavLM encoder with the same outputs
    again = CTCModel(CTCConfig.from_dict(ft.model_config()))
    again.load_state_dict(ft.state_dict())
    ft.eval(), again.eval()
    wav = torch.randn(1, 8000)
    lens = torch.tensor([8000])
    a, _ = ft.encoder.extract_features(wav, lens)
    b, _ = again.encoder.extract_features(wav, lens)
    assert torch.allclose(a[-1], b[-1])
