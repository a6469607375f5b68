"""Seq2seq model: fairseq names, label smoothing, encoder freezing, modalities, batched decoding."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from av_helpers import StandInAVModel, StandInConfig, make_av_data_dir, register_stand_in, stand_in_audio_features
from speechkit.downstream.seq2seq import Seq2SeqConfig, Seq2SeqModel, build_seq2seq_model, label_smoothed_nll
from speechkit.train.av_dataset import AVCollater, AVDataset

TEXTS = {"s1-a": (0, "AB"), "s1-b": (0, "ABCD"), "s2-a": (1, "DCA"), "s2-b": (1, "BDA"), "s2-c": (1, "CAB")}
CHARS = {"A": 2, "B": 3, "C": 4, "D": 5}  # ids 0 (blank/EOS) and 1 (unk) reserved as in speechkit tokenizers


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def av_batch(tmp_path_factory):
    d = make_av_data_dir(tmp_path_factory.mktemp("s2s") / "av", TEXTS)
    targets = {u: [CHARS[c] for c in t] for u, (_, t) in TEXTS.items()}
    ds = AVDataset(d, targets=targets)
    col = AVCollater("audiovisual", stand_in_audio_features, crop_size=16, train=False, no_crop=True)
    return col([ds[i] for i in range(len(ds))])


def make_model(modalities="audiovisual", seed=0, **kw) -> Seq2SeqModel:
    register_stand_in()
    torch.manual_seed(seed)
    init = StandInAVModel(StandInConfig(dim=32))
    return build_seq2seq_model(6, init, decoder={"preset": "tiny"}, modalities=modalities, **kw)


def test_parameter_names_follow_fairseq():
    keys = set(make_model(ctc_weight=0.3).state_dict())
    for k in ("decoder.embed_tokens.weight", "decoder.layer_norm.weight",
              "decoder.layers.1.self_attn.k_proj.weight", "decoder.layers.1.self_attn.out_proj.bias",
              "decoder.layers.0.encoder_attn.q_proj.weight", "decoder.layers.0.encoder_attn_layer_norm.weight",
              "decoder.layers.0.self_attn_layer_norm.bias", "decoder.layers.0.fc1.weight", "decoder.layers.0.fc2.bias",
              "decoder.layers.0.final_layer_norm.weight", "encoder.w2v_model.audio_proj.weight", "ctc_proj.weight"):
        assert k in keys, k
    assert not any(k.startswith("final_proj") or ".final_proj" in k for k in keys)  # pre-training head dropped
    assert "decoder.embed_out" not in keys  # tied


def test_encoder_weights_come_from_the_pretrained_model():
    register_stand_in()
    torch.manual_seed(3)
    init = StandInAVModel(StandInConfig(dim=32))
    m = build_seq2seq_model(6, init, decoder={"preset": "tiny"})
    assert torch.equal(m.encoder.w2v_model.fuse.weight, init.avhubert.fuse.weight)
    scratch = build_seq2seq_model(6, init, decoder={"preset": "tiny"}, from_scratch=True,
                                  freeze_finetune_updates=5)
    assert not torch.equal(scratch.encoder.w2v_model.fuse.weight, init.avhubert.fuse.weight)
    assert scratch.config.freeze_finetune_updates == 0


def test_label_smoothing_is_fairseqs_formula():
    torch.manual_seed(0)
    lp = F.log_softmax(torch.randn(7, 5), dim=-1)
    tgt = torch.tensor([0, 3, -100, 4, 1, -100, 2])
    loss, nll, n = label_smoothed_nll(lp, tgt, 0.0)
    assert n == 5 and torch.allclose(loss, F.nll_loss(lp, tgt, reduction="sum", ignore_index=-100))
    loss, nll, n = label_smoothed_nll(lp, tgt, 0.1)
    valid = tgt != -100
    ref = sum(0.9 * -lp[i, tgt[i]] + 0.1 / 4 * -(lp[i].sum() - lp[i, tgt[i]]) for i in range(7) if valid[i])
    assert torch.allclose(loss, ref)


def test_encoder_frozen_for_n_updates(av_batch):
    m = make_model(freeze_finetune_updates=2).train()
    loss, stats, n = m(av_batch)
    loss.backward()
    assert all(p.grad is None for p in m.encoder.parameters())
    assert m.decoder.embed_tokens.weight.grad is not None
    assert n == int(av_batch["label_lens"].sum()) + 5  # tokens + one EOS per utterance
    m.zero_grad()
    m.set_num_updates(2)
    m(av_batch)[0].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_modalities_pick_streams_and_missing_ones_are_errors(av_batch):
    for mod, given in (("video", (False, True)), ("audio", (True, False)), ("audiovisual", (True, True))):
        m = make_model(mod).eval()
        m.encoder.w2v_model.calls.clear()
        m(av_batch)
        assert m.encoder.w2v_model.calls == [given]
    m = make_model("video")
    with pytest.raises(ValueError, match="no video"):
        m({k: v for k, v in av_batch.items() if k != "video"})


def test_training_fits_and_batched_decoding_equals_one_by_one(av_batch):
    m = make_model(ctc_weight=0.3, seed=1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    first = None
    for _ in range(80):  # lr 3e-3: memorises the 5 utterances by about update 60
        opt.zero_grad()
        loss, stats, _ = m(av_batch)
        loss.backward()
        opt.step()
        first = first if first is not None else stats["loss"]
    assert stats["loss"] < 0.5 * first
    assert stats["accuracy"] > 0.9
    refs = [av_batch["labels"][b, : int(av_batch["label_lens"][b])].tolist() for b in range(5)]
    hyps = m.decode(av_batch, beam=3, len_penalty=1.0)
    assert [h[0].tokens for h in hyps] == refs  # memorised
    # one utterance at a time: the same hypotheses and scores (padding and batching change nothing)
    for b in range(5):
        n = int(av_batch["lengths"][b])
        one = {"audio_feats": av_batch["audio_feats"][b:b + 1, :n], "video": av_batch["video"][b:b + 1, :, :n],
               "lengths": av_batch["lengths"][b:b + 1], "utt_ids": [av_batch["utt_ids"][b]]}
        h1 = m.decode(one, beam=3, len_penalty=1.0)[0][0]
        assert h1.tokens == hyps[b][0].tokens and h1.score == pytest.approx(hyps[b][0].score, abs=1e-4)
    joint = m.decode(av_batch, beam=3, ctc_weight=0.5)
    assert [h[0].tokens for h in joint] == refs
    with pytest.raises(ValueError, match="CTC head"):
        make_model().decode(av_batch, ctc_weight=0.5)


def test_config_checks():
    with pytest.raises(ValueError, match="modalities"):
        Seq2SeqConfig(modalities="lips")
    with pytest.raises(ValueError, match="ctc_weight"):
        Seq2SeqConfig(ctc_weight=1.5)
    with pytest.raises(ValueError, match="unknown"):
        Seq2SeqConfig(decoder={"preset": "huge"})


def test_fairseq_finetuned_state_maps_by_the_table():
    """A state dict in fairseq's av_hubert_seq2seq key layout (written from our own model, renamed the fairseq
    way: extra buffers, shuffled dictionary rows) loads into the model and gives the same outputs."""
    m = make_model().eval()
    ours = m.state_dict()
    perm = [2, 3, 5, 6, 7, 4]  # our id i lives at fairseq row perm[i]
    emb = torch.zeros(8, ours["decoder.embed_tokens.weight"].size(1))
    emb[perm] = ours["decoder.embed_tokens.weight"]
    fs = {k: v.clone() for k, v in ours.items()}
    fs["decoder.embed_tokens.weight"] = emb
    fs["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    fs["decoder.version"] = torch.tensor([3.0])
    from speechkit.downstream.seq2seq import fairseq_seq2seq_state

    m2 = make_model(seed=9).eval()
    m2.load_state_dict(fairseq_seq2seq_state(fs, vocab_rows=perm), strict=True)
    batch = {"audio_feats": torch.randn(2, 6, 104), "video": torch.randn(2, 1, 6, 16, 16),
             "lengths": torch.tensor([6, 4]), "labels": torch.tensor([[2, 3], [4, -100]]),
             "label_lens": torch.tensor([2, 1])}
    assert torch.allclose(m(batch)[0], m2(batch)[0])
    with pytest.raises(KeyError, match="unexpected key"):
        fairseq_seq2seq_state({"w2v_encoder.proj.weight": torch.zeros(1)})


def test_encoder_overrides_change_regularisation_and_survive_a_reload():
    """model.encoder_overrides (fairseq's w2v_args at fine-tuning): the values are in the fine-tuned model's
    config and modules, the pre-trained weights are kept, feature_grad_mult 0 freezes the frontends, and
    the architecture cannot be changed this way."""
    from speechkit.models import build_model
    from speechkit.models.lip_resnet import LipResNet

    torch.manual_seed(0)
    init = build_model({"arch": "avhubert", "preset": "tiny"})
    m = build_seq2seq_model(6, init, decoder={"preset": "tiny"}, modalities="video", ctc_weight=0.5,
                            encoder_overrides={"dropout": 0.3, "mask_prob": 0.25, "feature_grad_mult": 0.0,
                                               "modality_dropout": 0.0})
    enc = m.encoder.w2v_model
    assert enc.cfg.encoder.dropout == 0.3 and enc.cfg.encoder.mask_prob == 0.25 and enc.cfg.modality_dropout == 0.0
    assert any(isinstance(x, torch.nn.Dropout) and x.p == 0.3 for x in enc.encoder.modules())
    assert all(torch.equal(v, init.avhubert.state_dict()[k]) for k, v in enc.state_dict().items())
    assert init.avhubert.cfg.encoder.dropout != 0.3  # the pre-trained model is not touched
    again = Seq2SeqModel(Seq2SeqConfig.from_dict(m.config.to_dict()))  # what load_seq2seq does
    assert again.encoder.w2v_model.cfg.encoder.dropout == 0.3
    # feature_grad_mult 0: the video frontend gets no gradient, the transformer does
    m.train()
    video = torch.randn(2, 1, 6, 16, 16)
    batch = {"video": video, "lengths": torch.tensor([6, 5]), "labels": torch.tensor([[1, 2], [3, -100]]),
             "label_lens": torch.tensor([2, 1])}
    loss, _, _ = m(batch)
    loss.backward()
    frontend = [p for mod in enc.modules() if isinstance(mod, LipResNet) for p in mod.parameters()]
    assert frontend and all(p.grad is None for p in frontend)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.encoder.parameters())
    with pytest.raises(ValueError, match="encoder_overrides.embed_dim"):
        build_seq2seq_model(6, init, decoder={"preset": "tiny"}, encoder_overrides={"embed_dim": 32})


def test_avsr_fine_tuning_applies_modality_dropout_only_when_asked(av_batch):
    """The anchor fine-tunes AVSR without modality dropout (extract_finetune); model.modality_dropout opts in."""
    for opt_in, want in ((False, False), (True, None)):
        m = make_model("audiovisual", modality_dropout=opt_in)
        seen = []
        inner = m.encoder.w2v_model.forward

        def spy(*a, **kw):
            seen.append(kw["modality_dropout"])
            return inner(*a, **kw)

        m.encoder.w2v_model.forward = spy
        m.train()
        m(av_batch)
        m.eval()
        m.decode(av_batch, beam=1)
        assert seen == [want, False], (opt_in, seen)
