"""Waveform normalisation (EncoderConfig.normalize) end to end, and the masks HF export writes.

The reference for normalisation is HF's Wav2Vec2FeatureExtractor(do_normalize=True) in front of a HF model
built offline from a small config; fairseq checkpoints are written by test_interop_fairseq's renaming table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging

import pytest
import torch

from speechkit.models import ENCODER_PRESETS, SSLEncoder, build_model
from speechkit.models.encoder import normalize_waveform

LENS = [9600, 6001, 7000]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def raw_wavs(seed: int = 0) -> list[torch.Tensor]:
    """Utterances at different levels and offsets, so normalisation changes what a model sees."""
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, generator=g) + offset
            for n, scale, offset in zip(LENS, (0.02, 0.3, 0.005), (0.01, -0.2, 0.0))]


def padded(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), torch.tensor([len(w) for w in wavs])


def feature_extractor(transformers, return_attention_mask: bool = True):
    return transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                 do_normalize=True, return_attention_mask=return_attention_mask)


def hf_inputs(fe, wavs):
    enc = fe([w.numpy() for w in wavs], sampling_rate=16000, padding=True, return_tensors="pt")
    return enc["input_values"], enc.get("attention_mask")


def test_normalize_waveform_is_hf_feature_extractor():
    transformers = pytest.importorskip("transformers")
    wavs = raw_wavs()
    wav, lens = padded(wavs)
    ours = normalize_waveform(wav, lens)
    ref, _ = hf_inputs(feature_extractor(transformers), wavs)  # per-utterance statistics, padding set to 0
    assert ours.shape == ref.shape
    assert float((ours - ref).abs().max()) < 1e-5
    for i, n in enumerate(LENS):  # zero mean, unit variance over the valid samples only (up to the epsilon)
        v = float(wavs[i].double().var(unbiased=False))
        assert abs(float(ours[i, :n].mean())) < 1e-5
        assert abs(float(ours[i, :n].double().var(unbiased=False)) - v / (v + 1e-7)) < 1e-5
        assert float(ours[i, n:].abs().sum()) == 0.0


@pytest.mark.parametrize("preset", ["tiny", "tiny_prenorm"])
def test_encoder_normalises_in_forward(preset):
    """Every objective goes through SSLEncoder.local_features: with normalize the model ignores the input's
    level and offset, and a padded batch gives each utterance what it gets alone."""
    torch.manual_seed(0)
    enc = SSLEncoder(dataclasses.replace(ENCODER_PRESETS[preset], normalize=True)).eval()
    raw = SSLEncoder(ENCODER_PRESETS[preset]).eval()
    raw.load_state_dict(enc.state_dict())
    wavs = raw_wavs(1)
    wav, lens = padded(wavs)
    with torch.no_grad():
        batched, flens = enc.extract_features(wav, lens)
        louder, _ = enc.extract_features(5.0 * wav + 0.3 * (wav != 0), lens)
        for i, w in enumerate(wavs):
            alone, _ = enc.extract_features(w[None], None)
            n = int(flens[i])
            assert float((batched[-1][i, :n] - alone[-1][0]).abs().max()) < 1e-4
        no_norm, _ = raw.extract_features(wav, lens)
        pre_normalised, _ = raw.extract_features(normalize_waveform(wav, lens), lens)
    n = int(flens[1])
    assert float((batched[-1][1, :n] - louder[-1][1, :n]).abs().max()) < 1e-3
    assert float((batched[-1][1, :n] - pre_normalised[-1][1, :n]).abs().max()) < 1e-5
    if preset == "tiny_prenorm":  # layer-norm extractor with conv bias: raw input really differs
        assert float((batched[-1][1, :n] - no_norm[-1][1, :n]).abs().max()) > 1e-2


def test_hf_model_with_feature_extractor_equals_imported(tmp_path):
    """A HF folder with preprocessor_config.json do_normalize=True: the imported model on raw audio gives the
    hidden states HF gives on its feature extractor's output (batched, attention mask, layer-norm model)."""
    transformers = pytest.importorskip("transformers")
    from test_interop_hf import small_hf

    from speechkit.models.import_hf_models import import_hf

    hf = small_hf("Wav2Vec2Model", stable=True, seed=2)
    hf.save_pretrained(tmp_path / "hf")
    fe = feature_extractor(transformers)
    fe.save_pretrained(tmp_path / "hf")
    conv = import_hf(tmp_path / "hf")
    assert conv.model_config["encoder"]["normalize"] is True
    wavs = raw_wavs(3)
    wav, lens = padded(wavs)
    values, att = hf_inputs(fe, wavs)
    with torch.no_grad():
        ref = hf(values, attention_mask=att, output_hidden_states=True).hidden_states
        ours, flens = conv.model.extract_features(wav, lens)
        raw_ref = hf(wav, attention_mask=att, output_hidden_states=True).hidden_states
    assert len(ours) == len(ref)
    for layer, (a, b) in enumerate(zip(ours, ref)):
        for i in range(len(wavs)):
            n = int(flens[i])
            err = float((a[i, :n] - b[i, :n]).abs().max())
            assert err < 1e-4, (layer, i, err)
    # the comparison has teeth: HF on raw audio is far from it
    assert float((ours[-1][0, :int(flens[0])] - raw_ref[-1][0, :int(flens[0])]).abs().max()) > 1e-2


def test_hf_normalize_sources(tmp_path, caplog):
    """do_normalize beats feat_extract_norm; without a preprocessor config, layer-norm extractors are taken as
    normalised (loudly); an explicit argument wins."""
    pytest.importorskip("transformers")
    from test_interop_hf import small_hf

    from speechkit.models.import_hf_models import import_hf

    hf = small_hf("HubertModel", stable=True, seed=4)
    hf.save_pretrained(tmp_path / "bare")
    with caplog.at_level(logging.WARNING, logger="speechkit.models.import_hf_models"):
        assert import_hf(tmp_path / "bare").model_config["encoder"]["normalize"] is True
    assert "zero mean and unit variance" in caplog.text and "feat_extract_norm='layer'" in caplog.text
    hf.save_pretrained(tmp_path / "raw")
    (tmp_path / "raw" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert import_hf(tmp_path / "raw").model_config["encoder"]["normalize"] is False
    assert import_hf(tmp_path / "bare", normalize=False).model_config["encoder"]["normalize"] is False
    group = small_hf("HubertModel", stable=False, seed=4)
    assert import_hf(group).model_config["encoder"]["normalize"] is False
    (tmp_path / "raw" / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor_config.json"):
        import_hf(tmp_path / "raw")


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning")  # inside HF's WavLM
@pytest.mark.parametrize("arch,normalize", [("wav2vec2", True), ("hubert", False), ("wavlm", True)])
def test_export_import_round_trip(arch, normalize, tmp_path):
    """Export writes HF's fine-tuning SpecAugment (HF's own defaults, as published configs), keeps the
    pre-training masks apart, writes do_normalize in preprocessor_config.json; import restores both."""
    transformers = pytest.importorskip("transformers")
    from speechkit.models.export_hf import export_hf
    from speechkit.models.import_hf_models import import_hf

    torch.manual_seed(5)
    model = build_model({"arch": arch, "preset": "tiny_prenorm",
                         "encoder": {"normalize": normalize, "mask_prob": 0.7, "mask_length": 7}}).eval()
    out = export_hf(model, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    hf_cfg_cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig,
                  "wavlm": transformers.WavLMConfig}[arch]
    defaults = hf_cfg_cls()
    for key in ("mask_time_prob", "mask_time_length", "mask_time_min_masks", "mask_feature_prob",
                "mask_feature_length"):
        assert config[key] == getattr(defaults, key), key
    assert config["mask_time_prob"] == 0.05 and config["apply_spec_augment"] is True
    assert config["speechkit_pretraining_masks"]["mask_prob"] == 0.7
    fe = transformers.AutoFeatureExtractor.from_pretrained(out)
    assert isinstance(fe, transformers.Wav2Vec2FeatureExtractor)
    assert fe.do_normalize is normalize and fe.return_attention_mask is True and fe.sampling_rate == 16000
    back = import_hf(out)
    enc = back.model_config["encoder"]
    assert enc["normalize"] is normalize and enc["mask_prob"] == 0.7 and enc["mask_length"] == 7
    (out / "preprocessor_config.json").rename(tmp_path / "kept.json")  # config.json alone says it too
    assert import_hf(out).model_config["encoder"]["normalize"] is normalize
    (tmp_path / "kept.json").rename(out / "preprocessor_config.json")
    # HF's model behind HF's feature extractor = our model on raw audio
    hf = getattr(transformers, {"wav2vec2": "Wav2Vec2ForPreTraining", "hubert": "HubertModel",
                                "wavlm": "WavLMModel"}[arch]).from_pretrained(out).eval()
    assert hf.config.mask_time_prob == 0.05
    base = getattr(hf, "wav2vec2", hf)
    wavs = raw_wavs(6)
    wav, lens = padded(wavs)
    values, att = hf_inputs(fe, wavs)
    with torch.no_grad():
        ref = base(values, attention_mask=att, output_hidden_states=True).hidden_states
        ours, flens = model.extract_features(wav, lens)
    for a, b in zip(ours, ref):
        for i in range(len(wavs)):
            n = int(flens[i])
            assert float((a[i, :n] - b[i, :n]).abs().max()) < 1e-4


def test_published_hf_config_masks_are_not_pretraining_masks():
    """A published-style config (mask_time_prob 0.05, no speechkit key) imports with the arch's pre-training
    masks, not 5 %."""
    from speechkit.models.import_hf_models import config_from_hf

    from speechkit.models.export_hf import hf_config_dict

    model = build_model({"arch": "hubert", "preset": "tiny"})
    published = hf_config_dict(model.config)
    del published["speechkit_pretraining_masks"]
    published.update(mask_time_prob=0.05, mask_time_length=10, mask_feature_prob=0.0)
    enc = config_from_hf(published)["encoder"]
    assert enc["mask_prob"] == 0.8 and enc["mask_length"] == 10
    published["model_type"], published["architectures"] = "wav2vec2", ["Wav2Vec2Model"]
    assert config_from_hf(published)["encoder"]["mask_prob"] == 0.65


def _fairseq_ckpt(style: str, normalize: bool | None):
    from test_interop_fairseq import fairseq_cfg, hf_to_fairseq
    from test_interop_hf import small_hf

    hf = small_hf("HubertModel", stable=True, seed=8)
    state = hf_to_fairseq(hf.state_dict(), layer_mode=True)
    task = {} if normalize is None else {"normalize": normalize}
    if style == "hydra":
        return hf, {"model": state, "cfg": {"model": fairseq_cfg(True, _name="hubert"),
                                            "task": {"_name": "hubert_pretraining", **task}}}
    if style == "args":
        return hf, {"model": state, "args": argparse.Namespace(arch="hubert", **fairseq_cfg(True), **task)}
    if style == "unilm":  # flat cfg
        return hf, {"model": state, "cfg": fairseq_cfg(True, **task)}
    ft_state = hf_to_fairseq(hf.state_dict(), layer_mode=True, finetuned=True)  # hydra fine-tuned wrapper
    inner = {"model": fairseq_cfg(True, _name="hubert"), "task": dict(task)}
    return hf, {"model": ft_state, "cfg": {"model": {"_name": "hubert_ctc", "w2v_args": inner}, "task": task}}


@pytest.mark.parametrize("style", ["hydra", "args", "unilm", "finetuned"])
def test_fairseq_task_normalize_is_imported(style, caplog):
    transformers = pytest.importorskip("transformers")
    from speechkit.models.import_fairseq import import_fairseq

    hf, ckpt = _fairseq_ckpt(style, True)
    with caplog.at_level(logging.WARNING, logger="speechkit.models.import_hf_models"):
        conv = import_fairseq(ckpt)
    assert conv.model_config["encoder"]["normalize"] is True
    assert "zero mean and unit variance" in caplog.text
    wavs = raw_wavs(9)[:1]
    values, _ = hf_inputs(feature_extractor(transformers), wavs)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wavs[0][None])
        ref = hf(values, output_hidden_states=True).hidden_states
    assert float((ours[-1] - ref[-1]).abs().max()) < 1e-4
    _, off = _fairseq_ckpt(style, False)
    assert import_fairseq(off).model_config["encoder"]["normalize"] is False
    assert import_fairseq(ckpt, normalize=False).model_config["encoder"]["normalize"] is False


def test_fairseq_without_normalize_warns_and_cli_override(tmp_path, caplog):
    pytest.importorskip("transformers")
    from speechkit.bin import convert_checkpoint
    from speechkit.models import load_pretrained
    from speechkit.models.import_fairseq import import_fairseq

    _, ckpt = _fairseq_ckpt("hydra", None)
    with caplog.at_level(logging.WARNING, logger="speechkit.models.import_hf_models"):
        assert import_fairseq(ckpt).model_config["encoder"]["normalize"] is False
    assert "records no task.normalize" in caplog.text
    torch.save(ckpt, tmp_path / "hubert.pt")
    assert convert_checkpoint.main([str(tmp_path / "hubert.pt"), str(tmp_path / "sk.pt"), "--normalize", "on"]) == 0
    model = load_pretrained(tmp_path / "sk.pt")
    assert model.config.encoder.normalize is True
    assert convert_checkpoint.main([str(tmp_path / "sk.pt"), str(tmp_path / "out"), "--to", "hf"]) == 0
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["do_normalize"] is True
