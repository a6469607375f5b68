"""fairseq / unilm checkpoint import.

fairseq itself is not installed, so the checkpoints are written by this test: an HF model (built offline,
random weights) is renamed key by key into fairseq's layout with the table below - written out by hand
from fairseq's module names, independently of speechkit's import table - and saved as a dict with
`model` and `cfg` (hydra style) or `args` (argparse style), as fairseq saves them. Importing it must
reproduce the HF model's hidden states, so the import table is checked against HF's naming, not against
itself. Real fairseq files also pickle omegaconf objects; that path is only covered for its error.
"""
from __future__ import annotations

import argparse
import re

import pytest
import torch

from speechkit.bin import convert_checkpoint
from speechkit.models import load_pretrained
from speechkit.models.import_fairseq import import_fairseq, parse_conv_layers

transformers = pytest.importorskip("transformers")

from test_interop_hf import SMALL, assert_states_equal, hf_hidden, small_hf  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's spinning makes
    a training step up to 100x slower (measured: 1.5 s vs 16 ms); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"


def hf_to_fairseq(sd: dict[str, torch.Tensor], layer_mode: bool, finetuned: bool = False) -> dict[str, torch.Tensor]:
    """HF key names -> fairseq's (Wav2Vec2Model / HubertModel / unilm WavLM module names)."""
    out = {}
    layer_renames = {"attention.q_proj": "self_attn.q_proj", "attention.k_proj": "self_attn.k_proj",
                     "attention.v_proj": "self_attn.v_proj", "attention.out_proj": "self_attn.out_proj",
                     "layer_norm": "self_attn_layer_norm", "feed_forward.intermediate_dense": "fc1",
                     "feed_forward.output_dense": "fc2", "final_layer_norm": "final_layer_norm",
                     "attention.rel_attn_embed": "self_attn.relative_attention_bias",
                     "attention.gru_rel_pos_linear": "self_attn.grep_linear",
                     "attention.gru_rel_pos_const": "self_attn.grep_a"}
    fixed = {"masked_spec_embed": "mask_emb", "feature_projection.layer_norm.weight": "layer_norm.weight",
             "feature_projection.layer_norm.bias": "layer_norm.bias",
             "feature_projection.projection.weight": "post_extract_proj.weight",
             "feature_projection.projection.bias": "post_extract_proj.bias",
             "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder.pos_conv.0.weight_g",
             "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder.pos_conv.0.weight_v",
             "encoder.pos_conv_embed.conv.bias": "encoder.pos_conv.0.bias",
             "encoder.layer_norm.weight": "encoder.layer_norm.weight", "encoder.layer_norm.bias": "encoder.layer_norm.bias",
             "quantizer.codevectors": "quantizer.vars", "quantizer.weight_proj.weight": "quantizer.weight_proj.weight",
             "quantizer.weight_proj.bias": "quantizer.weight_proj.bias", "project_q.weight": "project_q.weight",
             "project_q.bias": "project_q.bias", "project_hid.weight": "final_proj.weight",
             "project_hid.bias": "final_proj.bias"}
    for key, v in sd.items():
        k = re.sub(r"^(wav2vec2|hubert|wavlm)\.", "", key)
        if k.startswith("lm_head."):
            out["w2v_encoder.proj." + k.split(".")[-1]] = v
            continue
        if k in fixed:
            name = fixed[k]
        elif m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)$", k):
            i, part, p = m.groups()
            # fairseq: Sequential(conv, dropout, norm, gelu); the layer-norm mode nests
            # Sequential(TransposeLast, LayerNorm, TransposeLast) at index 2
            name = f"feature_extractor.conv_layers.{i}." + ("0" if part == "conv" else "2.1" if layer_mode else "2") + f".{p}"
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", k):
            i, mod, p = m.groups()
            name = f"encoder.layers.{i}.{layer_renames[mod]}.{p}"
        elif m := re.match(r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const$", k):
            name = f"encoder.layers.{m.group(1)}.self_attn.grep_a"
        else:
            raise KeyError(f"test table lacks {key}")
        out[("w2v_encoder.w2v_model." if finetuned else "") + name] = v
    return out


def fairseq_cfg(stable: bool, **extra):
    return dict(extractor_mode="layer_norm" if stable else "default", conv_feature_layers=CONV, conv_bias=stable,
                encoder_embed_dim=SMALL["hidden_size"], encoder_layers=SMALL["num_hidden_layers"],
                encoder_attention_heads=SMALL["num_attention_heads"], encoder_ffn_embed_dim=SMALL["intermediate_size"],
                layer_norm_first=stable, conv_pos=16, conv_pos_groups=4, activation_fn="gelu", dropout=0.1,
                mask_prob=0.65, **extra)


def test_parse_conv_layers():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2") == \
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(ValueError, match="unsupported"):
        parse_conv_layers("__import__('os').system('true')")


def test_wav2vec2_pretraining_checkpoint_hydra_cfg(tmp_path):
    hf = small_hf("Wav2Vec2ForPreTraining", stable=False)
    cfg = {"model": fairseq_cfg(False, _name="wav2vec2", final_dim=24, latent_dim=32, latent_vars=16, latent_groups=2,
                                latent_temp="(2.0, 0.5, 0.999995)", logit_temp=0.1, num_negatives=100),
           "task": {"_name": "audio_pretraining"}}
    path = tmp_path / "w2v.pt"
    torch.save({"model": hf_to_fairseq(hf.state_dict(), layer_mode=False), "cfg": cfg}, path)
    conv = import_fairseq(path)
    assert conv.model_config["arch"] == "wav2vec2" and conv.initialised == []
    assert conv.model_config["encoder"]["mask_prob"] == 0.65 and conv.model_config["final_dim"] == 24
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(hf, wav))
    sd = conv.model.state_dict()
    assert torch.equal(sd["quantizer.codevectors"], hf.quantizer.codevectors)
    assert torch.equal(sd["quantizer.weight_proj.weight"], hf.quantizer.weight_proj.weight)
    assert torch.equal(sd["final_proj.bias"], hf.project_hid.bias)


def test_finetuned_ctc_checkpoint_with_args_namespace(tmp_path):
    """wav2vec_ctc (pre-LN, layer-norm extractor) saved with argparse args: prefixed keys, CTC head to extra."""
    hf = small_hf("Wav2Vec2ForCTC", stable=True)
    inner = argparse.Namespace(arch="wav2vec2", **fairseq_cfg(True, final_dim=24))
    args = argparse.Namespace(arch="wav2vec_ctc", w2v_args=inner, mask_prob=0.5)
    path = tmp_path / "ctc.pt"
    torch.save({"model": hf_to_fairseq(hf.state_dict(), layer_mode=True, finetuned=True), "args": args}, path)
    conv = import_fairseq(path)  # Namespace objects load under weights_only (an allow-listed class)
    assert conv.model_config["encoder"]["layer_norm_first"] is True
    assert torch.equal(conv.extra["ctc_head.weight"], hf.lm_head.weight)
    assert "quantizer.codevectors" in conv.initialised  # fine-tuned files drop the pre-training heads
    wav = torch.randn(1, 7000)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(hf, wav))


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln", "pre_ln"])
def test_hubert_checkpoint_with_heads(stable, tmp_path):
    hf = small_hf("HubertModel", stable=stable)
    state = hf_to_fairseq(hf.state_dict(), layer_mode=stable)
    state["final_proj.weight"], state["final_proj.bias"] = torch.randn(16, 64), torch.randn(16)
    state["label_embs_concat"] = torch.randn(37, 16)
    cfg = {"model": fairseq_cfg(stable, _name="hubert", final_dim=16, label_rate=50.0, logit_temp=0.1)}
    path = tmp_path / "hubert.pt"
    torch.save({"model": state, "cfg": cfg}, path)
    conv = import_fairseq(path)
    assert conv.model_config["arch"] == "hubert" and conv.model_config["num_classes"] == 37
    assert conv.model_config["label_rate"] == 50.0 and conv.initialised == []
    assert torch.equal(conv.model.state_dict()["label_embs_concat"], state["label_embs_concat"])
    wav = torch.randn(2, 6400)
    with torch.no_grad():
        ours, _ = conv.model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(hf, wav))


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln", "pre_ln"])
def test_unilm_wavlm_checkpoint_and_cli(stable, tmp_path):
    """unilm's WavLM files: flat cfg, relative_attention_bias / grep_linear / grep_a keys."""
    hf = small_hf("WavLMModel", stable=stable)
    cfg = fairseq_cfg(stable, relative_position_embedding=True, num_buckets=32, max_distance=48, gru_rel_pos=True)
    path = tmp_path / "WavLM-Tiny.pt"
    torch.save({"model": hf_to_fairseq(hf.state_dict(), layer_mode=stable), "cfg": cfg}, path)
    out = tmp_path / "wavlm_sk.pt"
    assert convert_checkpoint.main([str(path), str(out), "--num-classes", "20"]) == 0
    model = load_pretrained(out)
    assert model.config.arch == "wavlm" and model.config.num_buckets == 32 and model.config.max_distance == 48
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        ours, _ = model.extract_features(wav)
    assert_states_equal(ours, hf_hidden(hf, wav))
    if not stable:  # the imported checkpoint feeds the recipe's feature dumping like a trained one
        from speechkit.bin import dump_layer_features
        from speechkit.io.ark import read_scp
        from train_toy import make_data_dir

        data = make_data_dir(tmp_path / "data", [0.5, 0.7])
        assert dump_layer_features.main(["--checkpoint", str(out), "--layer", "2", "--data-dir", str(data),
                                         "--out", str(tmp_path / "dump"), "--nj", "1"]) == 0
        feats = read_scp(tmp_path / "dump" / "feats.scp")
        assert len(feats) == 2 and all(v.shape[1] == SMALL["hidden_size"] for v in feats.values())


class NotAllowed:  # stands for omegaconf's DictConfig: a pickled class outside the allow-list
    pass


def test_errors_name_the_problem(tmp_path):
    hf = small_hf("HubertModel", stable=False)
    state = hf_to_fairseq(hf.state_dict(), layer_mode=False)
    cfg = {"model": fairseq_cfg(False, _name="hubert")}
    with pytest.raises(ValueError, match="does not know.*encoder.layers.0.self_attn.mystery"):
        import_fairseq({"model": dict(state, **{"encoder.layers.0.self_attn.mystery": torch.zeros(1)}), "cfg": cfg})
    with pytest.raises(ValueError, match="data2vec.*not supported"):
        import_fairseq({"model": state, "cfg": {"model": fairseq_cfg(False, _name="data2vec_audio", pos_conv_depth=5)}})
    with pytest.raises(ValueError, match="no 'cfg' or 'args'"):
        import_fairseq({"model": state})
    path = tmp_path / "pickled.pt"
    torch.save({"model": state, "cfg": {"model": fairseq_cfg(False, _name="hubert")}, "other": NotAllowed()}, path)
    with pytest.raises(ValueError, match="trust_pickle"):
        import_fairseq(path)
    assert import_fairseq(path, trust_pickle=True).model_config["arch"] == "hubert"  # when the user says so
