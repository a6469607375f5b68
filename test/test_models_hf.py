"""Equivalence with HF transformers' HubertModel (built offline from configs, random weights)."""
import pytest
import torch

from speechkit.models import ENCODER_PRESETS, SSLEncoder
from speechkit.models.import_hf import convert_hf_state_dict, encoder_config_from_hf, load_hf_encoder

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_hf(stable: bool):
    """Base-like (post-LN, group norm) or Large-like (pre-LN, layer norm, conv bias) in miniature."""
    cfg = transformers.HubertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group", conv_bias=stable)
    torch.manual_seed(0)
    model = transformers.HubertModel(cfg).eval()
    # perturb every parameter so that swapped norms / biases / gains cannot go unnoticed
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln_group", "pre_ln_layer"])
def test_hidden_states_equal_hf(stable):
    hf = small_hf(stable)
    enc = load_hf_encoder(hf).eval()
    assert enc.cfg.layer_norm_first == stable
    torch.manual_seed(1)
    wav = torch.randn(2, 9600)
    with torch.no_grad():
        ref = hf(wav, output_hidden_states=True).hidden_states
        ours, lens = enc.extract_features(wav, torch.tensor([9600, 9600]))
    assert len(ours) == len(ref) == 3  # L + 1
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4), (i, float((a - b).abs().max()))
    # layer=k runs k layers and returns the same first k + 1 states
    with torch.no_grad():
        part, _ = enc.extract_features(wav, None, layer=1)
    assert len(part) == 2 and torch.allclose(part[1], ref[1], atol=1e-4)


def test_padded_batch_equal_hf_with_attention_mask():
    """Layer-norm extractor: no statistic over time, so HF's attention_mask path is comparable."""
    hf = small_hf(True)
    enc = load_hf_encoder(hf).eval()
    torch.manual_seed(2)
    wav = torch.randn(2, 9600)
    wav[1, 6000:] = 0
    att = torch.ones(2, 9600, dtype=torch.long)
    att[1, 6000:] = 0
    with torch.no_grad():
        ref = hf(wav, attention_mask=att, output_hidden_states=True).hidden_states
        ours, lens = enc.extract_features(wav, torch.tensor([9600, 6000]))
    n = int(lens[1])
    for a, b in zip(ours, ref):
        assert torch.allclose(a[0], b[0], atol=1e-4)
        assert torch.allclose(a[1, :n], b[1, :n], atol=1e-4)


@pytest.mark.parametrize("preset", ["tiny", "tiny_prenorm"])
def test_padded_batch_equals_unpadded_utterances(preset):
    """Key padding masks (and the per-utterance GroupNorm): each utterance of a padded batch gets the
    hidden states it gets alone."""
    torch.manual_seed(3)
    enc = SSLEncoder(ENCODER_PRESETS[preset]).eval()
    lens = [16000, 12345, 7000]
    singles = [0.3 * torch.randn(1, n) for n in lens]
    wav = torch.zeros(3, max(lens))
    for i, s in enumerate(singles):
        wav[i, : lens[i]] = s[0]
    with torch.no_grad():
        batched, blens = enc.extract_features(wav, torch.tensor(lens))
        for i, s in enumerate(singles):
            alone, alens = enc.extract_features(s, torch.tensor([lens[i]]))
            n = int(alens[0])
            assert int(blens[i]) == n and alone[0].shape[1] == n
            for layer, (a, b) in enumerate(zip(batched, alone)):
                assert torch.allclose(a[i, :n], b[0], atol=1e-4), (i, layer, float((a[i, :n] - b[0]).abs().max()))


def test_base_parameter_count_matches_hf():
    enc = SSLEncoder(ENCODER_PRESETS["base"])
    ours = sum(p.numel() for name, p in enc.named_parameters() if name != "masked_spec_embed")
    assert ours == 94_370_944
    hf = transformers.HubertModel(transformers.HubertConfig())
    assert ours == sum(p.numel() for p in hf.parameters()) - hf.masked_spec_embed.numel()
    # and the names are HF's: the state dict keys coincide (so import is the identity table + aliases)
    assert set(enc.state_dict()) == set(hf.state_dict())
    # the architecture read from HF's default config is our Base
    got, want = encoder_config_from_hf(hf.config), ENCODER_PRESETS["base"]
    for name in ("conv_layers", "extractor_mode", "conv_bias", "embed_dim", "num_layers", "num_heads", "ffn_dim",
                 "layer_norm_first", "pos_conv_kernel", "pos_conv_groups", "layer_norm_eps"):
        assert getattr(got, name) == getattr(want, name), name


def test_legacy_weight_norm_names_and_prefixes():
    sd = {"hubert.encoder.pos_conv_embed.conv.weight_g": torch.zeros(1), "hubert.encoder.pos_conv_embed.conv.weight_v":
          torch.zeros(1), "hubert.masked_spec_embed": torch.zeros(1), "lm_head.weight": torch.zeros(1)}
    out, leftover = convert_hf_state_dict(sd)
    assert set(out) == {"encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                        "encoder.pos_conv_embed.conv.parametrizations.weight.original1", "masked_spec_embed"}
    assert leftover == ["lm_head.weight"]
