"""HF transformers interop: import (Wav2Vec2Model / ForPreTraining / ForCTC, HubertModel, WavLMModel) gives
equal hidden states; export loads back with from_pretrained and gives equal outputs; the CLI round trip
produces checkpoints load_pretrained reads. Models are built offline from small configs, random weights."""
from __future__ import annotations

import pytest
import torch

from speechkit.bin import convert_checkpoint
from speechkit.models import load_pretrained
from speechkit.models.export_hf import export_hf
from speechkit.models.import_hf_models import import_hf, read_hf_folder
from speechkit.models.safetensors_io import load_safetensors, save_safetensors

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's spinning makes
    a training step up to 100x slower (measured: 1.5 s vs 16 ms); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
W2V_HEADS = dict(codevector_dim=32, proj_codevector_dim=24, num_codevectors_per_group=16)
WAVLM_BIAS = dict(num_buckets=32, max_bucket_distance=48)


def small_hf(cls_name: str, stable: bool, seed: int = 0):
    """Base-like (post-LN, group norm) or Large-like (pre-LN, layer-norm extractor, conv bias) miniature."""
    cls = getattr(transformers, cls_name)
    cfg_cls = {"Wav2Vec2": transformers.Wav2Vec2Config, "Hubert": transformers.HubertConfig,
               "WavLM": transformers.WavLMConfig}[next(p for p in ("Wav2Vec2", "Hubert", "WavLM") if cls_name.startswith(p))]
    extra = W2V_HEADS if cfg_cls is transformers.Wav2Vec2Config else WAVLM_BIAS if cfg_cls is transformers.WavLMConfig else {}
    cfg = cfg_cls(**SMALL, **extra, do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group",
                  conv_bias=stable, vocab_size=12)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():  # perturb everything, so a swapped norm / bias / gain cannot go unnoticed
        for name, p in model.named_parameters():
            p.add_((1.0 if "rel_attn_embed" in name or "gru_rel_pos" in name else 0.05) * torch.randn_like(p))
    return model


def hf_hidden(model, wav):
    base = getattr(model, "wav2vec2", None) or getattr(model, "hubert", None) or getattr(model, "wavlm", None) or model
    with torch.no_grad():
        return base(wav, output_hidden_states=True).hidden_states


def assert_states_equal(ours, ref, tol=1e-4):
    assert len(ours) == len(ref) == SMALL["num_hidden_layers"] + 1
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, i
        err = float((a - b).abs().max())
        assert err < tol, f"hidden state {i}: max abs diff {err}"


CASES = [("Wav2Vec2Model", "wav2vec2"), ("Wav2Vec2ForPreTraining", "wav2vec2"), ("Wav2Vec2ForCTC", "wav2vec2"),
         ("HubertModel", "hubert"), ("WavLMModel", "wavlm")]


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("cls_name,arch", CASES, ids=[c for c, _ in CASES])
def test_import_hidden_states_equal(cls_name, arch, stable):
    hf = small_hf(cls_name, stable)
    conv = import_hf(hf, normalize=False)  # HF's model itself takes the waveform as given
    assert conv.model_config["arch"] == arch
    assert conv.model_config["encoder"]["layer_norm_first"] == stable
    torch.manual_seed(1)
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wav, torch.tensor([8000, 8000]))
    assert_states_equal(ours, hf_hidden(hf, wav))
    if cls_name == "Wav2Vec2ForPreTraining":
        assert conv.initialised == []  # every head weight came from HF
        sd = conv.model.state_dict()
        assert torch.equal(sd["quantizer.codevectors"], hf.quantizer.codevectors)
        assert torch.equal(sd["final_proj.weight"], hf.project_hid.weight)
        assert torch.equal(sd["project_q.bias"], hf.project_q.bias)
    if cls_name == "Wav2Vec2ForCTC":
        assert torch.equal(conv.extra["ctc_head.weight"], hf.lm_head.weight)
        assert "project_q.weight" in conv.initialised
    if arch == "wavlm":  # the relative bias is really in play: without it the outputs change
        with torch.no_grad():
            conv.model.wavlm.encoder.layers[0].attention.rel_attn_embed.weight.zero_()
            changed, _ = conv.model.extract_features(wav)
        assert float((changed[-1] - ours[-1]).abs().max()) > 1e-2


def test_wavlm_bucket_function_matches_hf():
    from speechkit.models.wavlm import relative_position_bucket

    hf = transformers.WavLMModel(transformers.WavLMConfig(**SMALL, num_buckets=320, max_bucket_distance=800))
    att = hf.encoder.layers[0].attention
    rel = torch.arange(-1500, 1501)[None, :]
    assert torch.equal(relative_position_bucket(rel, 320, 800), att._relative_positions_bucket(rel))


@pytest.mark.parametrize("cls_name", ["Wav2Vec2ForPreTraining", "HubertModel", "WavLMModel"])
def test_export_loads_in_transformers(cls_name, tmp_path):
    hf = small_hf(cls_name, stable=cls_name == "WavLMModel", seed=3)
    model = import_hf(hf, normalize=False).model
    export_hf(model, tmp_path / "hf")
    back = getattr(transformers, cls_name).from_pretrained(tmp_path / "hf").eval()
    # every HF weight is the one we exported (nothing left at a random init)
    ref_sd, back_sd = hf.state_dict(), back.state_dict()
    assert set(ref_sd) == set(back_sd)
    for k in ref_sd:
        assert torch.equal(ref_sd[k], back_sd[k]), k
    torch.manual_seed(4)
    wav = torch.randn(1, 6000)
    with torch.no_grad():
        ours, _ = model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(back, wav))


def test_export_data2vec_as_wav2vec2_model(tmp_path):
    from speechkit.models import build_model

    torch.manual_seed(5)
    model = build_model({"arch": "data2vec", "preset": "tiny"}).eval()
    export_hf(model, tmp_path / "d2v")
    back = transformers.Wav2Vec2Model.from_pretrained(tmp_path / "d2v").eval()
    wav = torch.randn(1, 5000)
    with torch.no_grad():
        ours, _ = model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(back, wav))


def test_cli_hf_folder_roundtrip_and_load_pretrained(tmp_path):
    hf = small_hf("WavLMModel", stable=False, seed=6)
    hf.save_pretrained(tmp_path / "src")  # a local folder as published checkpoints come
    cfg, state = read_hf_folder(tmp_path / "src")
    assert cfg["model_type"] == "wavlm" and "encoder.layers.0.attention.rel_attn_embed.weight" in state
    ckpt = tmp_path / "wavlm.pt"
    assert convert_checkpoint.main([str(tmp_path / "src"), str(ckpt), "--num-classes", "50"]) == 0
    model = load_pretrained(ckpt)
    assert model.config.arch == "wavlm" and model.config.num_classes == 50
    wav = torch.randn(1, 7000)
    with torch.no_grad():
        ours, _ = model.extract_features(wav, torch.tensor([7000]), layer=1)
    ref = hf_hidden(hf, wav)
    assert len(ours) == 2  # layer=1: the input to layer 0 and layer 0's output (post-LN: no final norm)
    for a, b in zip(ours, ref[:2]):
        assert float((a - b).abs().max()) < 1e-4
    # and back out to HF
    assert convert_checkpoint.main([str(ckpt), str(tmp_path / "out"), "--to", "hf"]) == 0
    again = transformers.WavLMModel.from_pretrained(tmp_path / "out").eval()
    assert_states_equal(hf_hidden(again, wav), hf_hidden(hf, wav))


def test_pytorch_bin_folder_and_errors(tmp_path):
    hf = small_hf("HubertModel", stable=True, seed=7)
    hf.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").is_file()
    conv = import_hf(tmp_path / "bin", num_classes=30, final_dim=16, normalize=False)
    assert conv.model_config["num_classes"] == 30 and conv.model_config["final_dim"] == 16
    wav = torch.randn(1, 6000)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(hf, wav))
    with pytest.raises(FileNotFoundError, match="config.json"):
        import_hf(tmp_path / "nothing_here")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "data2vec-audio"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not supported"):
        import_hf(tmp_path / "bad")


def test_safetensors_io_roundtrip_against_reference(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).to(torch.bfloat16),
               "d": torch.tensor([True, False])}
    save_safetensors(tensors, tmp_path / "x.safetensors")
    ref = st.load_file(str(tmp_path / "x.safetensors"))  # the reference reader accepts our file
    st.save_file(tensors, str(tmp_path / "y.safetensors"))
    ours = load_safetensors(tmp_path / "y.safetensors")  # and we read the reference writer's
    for k, v in tensors.items():
        assert torch.equal(ref[k], v) and torch.equal(ours[k], v), k
