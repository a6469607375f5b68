"""Import of fairseq AV-HuBERT checkpoints (pre-trained and fine-tuned), on state dicts written here in the
released files' key layout (avhubert/hubert.py, resnet.py, hubert_asr.py of facebookresearch/av_hubert)."""
import argparse

import pytest
import torch

from speechkit.bin.convert_checkpoint import main as convert_main
from speechkit.models import load_pretrained
from speechkit.models.import_fairseq import import_fairseq


def bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def fairseq_avhubert_shapes(d=64, layers=2, ffn=128, stem=8, classes=100, final_dim=32, kernel=16, groups=4,
                            mask_dim=104, heads=True):
    """Key -> shape of an av_hubert model's state dict, written from the fairseq module structure."""
    s = {"feature_extractor_audio.proj.weight": (d, 104), "feature_extractor_audio.proj.bias": (d,)}
    r = "feature_extractor_video.resnet"
    s[f"{r}.frontend3D.0.weight"] = (stem, 1, 5, 7, 7)
    s.update(bn(f"{r}.frontend3D.1", stem))
    s[f"{r}.frontend3D.2.weight"] = (stem,)
    cin = stem
    for i, planes in enumerate((stem, 2 * stem, 4 * stem, 8 * stem)):
        for j in range(2):
            p = f"{r}.trunk.layer{i + 1}.{j}"
            i_ch = cin if j == 0 else planes
            s[f"{p}.conv1.weight"] = (planes, i_ch, 3, 3)
            s.update(bn(f"{p}.bn1", planes))
            s[f"{p}.relu1.weight"] = (planes,)
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            s.update(bn(f"{p}.bn2", planes))
            s[f"{p}.relu2.weight"] = (planes,)
            if j == 0 and i > 0:
                s[f"{p}.downsample.0.weight"] = (planes, i_ch, 1, 1)
                s.update(bn(f"{p}.downsample.1", planes))
        cin = planes
    s["feature_extractor_video.proj.weight"] = (d, 8 * stem)
    s["feature_extractor_video.proj.bias"] = (d,)
    s.update({"layer_norm.weight": (2 * d,), "layer_norm.bias": (2 * d,), "post_extract_proj.weight": (d, 2 * d),
              "post_extract_proj.bias": (d,), "mask_emb": (mask_dim,),
              "encoder.pos_conv.0.bias": (d,), "encoder.pos_conv.0.weight_g": (1, 1, kernel),
              "encoder.pos_conv.0.weight_v": (d, d // groups, kernel),
              "encoder.layer_norm.weight": (d,), "encoder.layer_norm.bias": (d,)})
    for n in range(layers):
        p = f"encoder.layers.{n}"
        for proj in "kvq":
            s[f"{p}.self_attn.{proj}_proj.weight"] = (d, d)
            s[f"{p}.self_attn.{proj}_proj.bias"] = (d,)
        s.update({f"{p}.self_attn.out_proj.weight": (d, d), f"{p}.self_attn.out_proj.bias": (d,),
                  f"{p}.self_attn_layer_norm.weight": (d,), f"{p}.self_attn_layer_norm.bias": (d,),
                  f"{p}.fc1.weight": (ffn, d), f"{p}.fc1.bias": (ffn,), f"{p}.fc2.weight": (d, ffn),
                  f"{p}.fc2.bias": (d,), f"{p}.final_layer_norm.weight": (d,), f"{p}.final_layer_norm.bias": (d,)})
    if heads:
        s.update({"final_proj.weight": (final_dim, d), "final_proj.bias": (final_dim,),
                  "label_embs_concat": (classes, final_dim)})
    return s


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(*shape, generator=g))
            for k, shape in shapes.items()}


MODEL_CFG = dict(_name="av_hubert", encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                 encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, layer_norm_first=True,
                 label_rate=100, masking_type="input", mask_prob_image=0.3, mask_length_image=5,
                 mask_prob_audio=0.8, mask_length_audio=10, modality_dropout=0.5, audio_dropout=0.5,
                 modality_fuse="concat", final_dim=32, feature_grad_mult=0.1, encoder_layerdrop=0.05,
                 untie_final_proj=True, selection_type="same_seq", sim_type="cosine", audio_feat_dim=104)

EXPECTED = {  # fairseq key -> speechkit key, a sample of every kind
    "feature_extractor_audio.proj.weight": "avhubert.feature_extractor_audio.proj.weight",
    "feature_extractor_video.resnet.frontend3D.0.weight": "avhubert.feature_extractor_video.resnet.frontend3D.0.weight",
    "feature_extractor_video.resnet.frontend3D.2.weight": "avhubert.feature_extractor_video.resnet.frontend3D.2.weight",
    "feature_extractor_video.resnet.trunk.layer1.0.conv1.weight":
        "avhubert.feature_extractor_video.resnet.trunk.layer1.0.conv1.weight",
    "feature_extractor_video.resnet.trunk.layer3.0.downsample.1.running_var":
        "avhubert.feature_extractor_video.resnet.trunk.layer3.0.downsample.1.running_var",
    "feature_extractor_video.proj.bias": "avhubert.feature_extractor_video.proj.bias",
    "layer_norm.weight": "avhubert.layer_norm.weight",
    "post_extract_proj.weight": "avhubert.post_extract_proj.weight",
    "mask_emb": "avhubert.mask_emb",
    "encoder.pos_conv.0.weight_g": "avhubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv.0.weight_v": "avhubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    "encoder.layers.1.self_attn.q_proj.weight": "avhubert.encoder.layers.1.attention.q_proj.weight",
    "encoder.layers.0.self_attn_layer_norm.bias": "avhubert.encoder.layers.0.layer_norm.bias",
    "encoder.layers.1.fc1.weight": "avhubert.encoder.layers.1.feed_forward.intermediate_dense.weight",
    "encoder.layers.0.fc2.bias": "avhubert.encoder.layers.0.feed_forward.output_dense.bias",
    "encoder.layers.1.final_layer_norm.weight": "avhubert.encoder.layers.1.final_layer_norm.weight",
    "encoder.layer_norm.bias": "avhubert.encoder.layer_norm.bias",
    "final_proj.weight": "final_proj.weight",
    "label_embs_concat": "label_embs_concat",
}


def test_import_pretrained_maps_every_key():
    state = random_state(fairseq_avhubert_shapes())
    conv = import_fairseq({"model": state, "cfg": {"model": MODEL_CFG, "task": {"label_rate": 100}}})
    cfg = conv.model.config
    assert (cfg.encoder.embed_dim, cfg.encoder.num_layers, cfg.encoder.num_heads, cfg.encoder.ffn_dim) == (64, 2, 4, 128)
    assert cfg.resnet_width == 0.125 and cfg.masking_type == "input" and cfg.num_classes == 100
    assert (cfg.mask_prob_video, cfg.mask_length_video, cfg.encoder.mask_prob) == (0.3, 5, 0.8)
    assert cfg.modality_dropout == 0.5 and cfg.final_dim == 32 and cfg.encoder.layer_norm_first
    own = conv.model.state_dict()
    for theirs, ours in EXPECTED.items():
        assert torch.equal(own[ours], state[theirs].to(own[ours].dtype)), theirs
    assert conv.initialised == [] and conv.extra == {}
    assert len(own) == len(state)  # one to one
    b = 1
    with torch.no_grad():
        hs, lens = conv.model.extract_features(torch.randn(b, 6, 104), torch.randn(b, 1, 6, 24, 24))
    assert hs[-1].shape == (1, 6, 64)


def test_import_finetuned_seq2seq_and_ctc():
    body = random_state(fairseq_avhubert_shapes(heads=False), seed=1)
    decoder = {"decoder.embed_tokens.weight": torch.randn(10, 64), "decoder.layers.0.fc1.weight": torch.randn(8, 64),
               "decoder.version": torch.tensor([3.0]), "decoder.embed_positions._float_tensor": torch.zeros(1)}
    state = {f"encoder.w2v_model.{k}": v for k, v in body.items()}
    state.update(decoder)
    cfg = {"model": {"_name": "av_hubert_seq2seq", "w2v_args": {"model": MODEL_CFG, "task": {}}}}
    conv = import_fairseq({"model": state, "cfg": cfg})
    assert conv.initialised == ["final_proj.bias", "final_proj.weight", "label_embs_concat"]
    assert sorted(conv.extra) == ["decoder.embed_tokens.weight", "decoder.layers.0.fc1.weight"]
    own = conv.model.state_dict()
    assert torch.equal(own["avhubert.encoder.layers.1.attention.k_proj.weight"],
                       body["encoder.layers.1.self_attn.k_proj.weight"])
    ctc = {f"w2v_encoder.w2v_model.{k}": v for k, v in body.items()}
    ctc.update({"w2v_encoder.proj.weight": torch.randn(30, 64), "w2v_encoder.proj.bias": torch.randn(30)})
    conv = import_fairseq({"model": ctc, "args": argparse.Namespace(
        arch="av_hubert_ctc", w2v_args={"model": MODEL_CFG})})
    assert sorted(conv.extra) == ["ctc_head.bias", "ctc_head.weight"]


def test_feature_masking_detected_from_mask_emb_and_errors():
    state = random_state(fairseq_avhubert_shapes(mask_dim=64))
    conv = import_fairseq({"model": state, "cfg": {"model": dict(MODEL_CFG, masking_type="input")}})
    assert conv.model.config.masking_type == "feature"
    with pytest.raises(ValueError, match="modality_fuse"):
        import_fairseq({"model": state, "cfg": {"model": dict(MODEL_CFG, modality_fuse="add")}})
    odd = dict(state, **{"feature_extractor_audio.encoder.layers.0.fc1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="does not know"):
        import_fairseq({"model": odd, "cfg": {"model": MODEL_CFG}})
    two_sets = dict(state, **{"final_proj.weight": torch.zeros(64, 64), "final_proj.bias": torch.zeros(64)})
    with pytest.raises(ValueError, match="label sets"):
        import_fairseq({"model": two_sets, "cfg": {"model": MODEL_CFG}})


def test_convert_checkpoint_cli_round_trip(tmp_path):
    state = random_state(fairseq_avhubert_shapes(), seed=2)
    src = tmp_path / "avhubert_tiny.pt"
    torch.save({"model": state, "args": argparse.Namespace(**{k: v for k, v in MODEL_CFG.items() if k != "_name"},
                                                          arch="av_hubert")}, src)
    dst = tmp_path / "sk.pt"
    assert convert_main([str(src), str(dst)]) == 0
    model = load_pretrained(dst)
    assert model.config.arch == "avhubert"
    assert torch.equal(model.state_dict()["avhubert.feature_extractor_video.resnet.trunk.layer4.1.relu2.weight"],
                       state["feature_extractor_video.resnet.trunk.layer4.1.relu2.weight"])
