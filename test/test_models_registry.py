"""One registry for every arch (pre-training and downstream), the model contract, the config base, and the
package's import structure (no import cycles, no downward layer importing an upper one)."""
from __future__ import annotations

import ast
import dataclasses
import pathlib
import subprocess
import sys

import pytest
import torch

from speechkit.models import build_model, build_upstream, load_pretrained, register_encoder
from speechkit.models.config_utils import ModelConfig
from speechkit.models.contract import AfterUpdate, PretrainModel, UpdateCounter
from train_toy import ROOT, worker_env

PRETRAIN_ARCHS = ("hubert", "wav2vec2", "wavlm", "data2vec")


def tiny(arch: str) -> torch.nn.Module:
    return build_model({"arch": arch, "preset": "tiny", **({"num_classes": 10} if arch in ("hubert", "wavlm") else {})})


def _save(model: torch.nn.Module, path: pathlib.Path) -> pathlib.Path:
    torch.save({"model": model.state_dict(), "model_config": model.model_config(), "num_updates": 0}, path)
    return path


def test_downstream_checkpoints_load_in_a_fresh_process_without_importing_downstream_first(tmp_path):
    """`ctc`, `probe_ctc`, `sid` checkpoints load through load_pretrained (and LayerFeatures) in a process that
    imported only speechkit.models; importing speechkit.models alone does not import speechkit.downstream."""
    from speechkit.downstream.ctc_model import ProbeCTCModel, build_ctc_model
    from speechkit.downstream.speaker import SpeakerIDModel

    torch.manual_seed(0)
    pre = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 10})
    _save(build_ctc_model(6, init=pre), tmp_path / "ctc.pt")
    _save(ProbeCTCModel.from_upstream(pre, 6, head="linear"), tmp_path / "probe.pt")
    _save(SpeakerIDModel.from_upstream(pre, ["a", "b"]), tmp_path / "sid.pt")
    script = f"""
import sys, torch
import speechkit.models
from speechkit.features.layer_features import LayerFeatures
assert not any(m.startswith("speechkit.downstream") for m in sys.modules), "speechkit.models imported downstream"
from speechkit.models import load_pretrained
for name, arch in (("ctc", "CTCModel"), ("probe", "ProbeCTCModel"), ("sid", "SpeakerIDModel")):
    m = load_pretrained(r"{tmp_path}/" + name + ".pt")
    assert type(m).__name__ == arch, type(m)
lf = LayerFeatures(r"{tmp_path}/ctc.pt", layer=1)
assert lf.batch([torch.zeros(8000).numpy()])[0].shape == (24, 64)
assert LayerFeatures(r"{tmp_path}/sid.pt", layer=2).dim == 64
print("ok")
"""
    env = worker_env()
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_every_arch_round_trips_through_build_and_load(tmp_path):
    from speechkit.downstream.ctc_model import build_ctc_model

    torch.manual_seed(1)
    models = {arch: tiny(arch) for arch in PRETRAIN_ARCHS}
    models["ctc"] = build_ctc_model(6, init=models["wavlm"])
    for arch, model in models.items():
        loaded = load_pretrained(_save(model, tmp_path / f"{arch}.pt"))
        assert type(loaded) is type(model), arch
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items()), arch
    with pytest.raises(ValueError, match=r"unknown or missing arch 'nope'; known: \[.*'ctc'.*'probe_ctc'.*'sid'"):
        build_model({"arch": "nope"})


def test_encoder_kinds_are_registered_and_rebuilt_by_the_downstream_featurizer():
    """A new encoder kind (AV-HuBERT's, say) registers once; downstream code rebuilds it from its spec."""
    from speechkit.downstream.featurizer import build_upstream as featurizer_build, upstream_spec
    from speechkit.models.encoder import SSLEncoder

    class WideEncoder(SSLEncoder):
        def upstream_spec(self):
            return {**super().upstream_spec(), "type": "test_wide"}

    register_encoder("test_wide", lambda spec: WideEncoder(SSLEncoder.from_upstream_spec(spec).cfg))
    enc = WideEncoder(build_model({"arch": "hubert", "preset": "tiny"}).encoder.cfg)
    assert isinstance(featurizer_build(upstream_spec(enc)), WideEncoder)
    wavlm = build_model({"arch": "wavlm", "preset": "tiny"})
    assert type(build_upstream(upstream_spec(wavlm))).__name__ == "WavLMEncoder"
    with pytest.raises(ValueError, match="unknown type 'nope'"):
        build_upstream({"type": "nope"})


def test_pretraining_models_follow_the_contract():
    for arch in PRETRAIN_ARCHS:
        model = tiny(arch)
        assert isinstance(model, PretrainModel), arch
        assert model.model_config()["arch"] == arch
        hs, lens = model.eval().extract_features(torch.zeros(2, 8000), torch.tensor([8000, 4000]), layer=1)
        assert len(hs) == 2 and hs[0].shape == (2, 24, 64) and lens.tolist() == [24, 12]
    assert isinstance(build_model({"arch": "wav2vec2", "preset": "tiny"}), UpdateCounter)
    assert isinstance(build_model({"arch": "data2vec", "preset": "tiny"}), AfterUpdate)
    assert not isinstance(build_model({"arch": "hubert", "preset": "tiny"}), AfterUpdate)


def test_hubert_takes_its_encoder_and_wavlm_keeps_its_names():
    from speechkit.models import HubertPretrainModel, hubert_preset
    from speechkit.models.wavlm import WavLMEncoder

    cfg = hubert_preset("tiny")
    enc = WavLMEncoder(cfg.encoder, 32, 64)
    model = HubertPretrainModel(cfg, encoder=enc)
    assert model.encoder is enc and model.hubert is enc
    wavlm = build_model({"arch": "wavlm", "preset": "tiny"})
    assert isinstance(wavlm.encoder, WavLMEncoder) and wavlm.encoder is wavlm.wavlm
    heads = {n for n in wavlm.state_dict() if not n.startswith("wavlm.")}
    assert heads == {"final_proj.weight", "final_proj.bias", "label_embs_concat"}


def test_model_configs_share_one_base():
    from speechkit.downstream.ctc_model import CTCConfig, ProbeCTCConfig
    from speechkit.downstream.speaker import SpeakerIDConfig
    from speechkit.models.data2vec import Data2VecConfig
    from speechkit.models.hubert import HubertConfig
    from speechkit.models.wav2vec2 import Wav2Vec2Config
    from speechkit.models.wavlm import WavLMConfig

    for cls in (HubertConfig, WavLMConfig, Wav2Vec2Config, Data2VecConfig, CTCConfig, ProbeCTCConfig, SpeakerIDConfig):
        assert issubclass(cls, ModelConfig), cls
        assert cls.to_dict is ModelConfig.to_dict and cls.from_dict.__func__ is ModelConfig.from_dict.__func__
    cfg = WavLMConfig.from_dict({"encoder": {"num_layers": 2, "embed_dim": 64, "num_heads": 4}, "num_buckets": 8})
    assert cfg.encoder.num_layers == 2 and dataclasses.is_dataclass(cfg.encoder)
    assert WavLMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="WavLMConfig.arch must be 'wavlm', got 'hubert'"):
        WavLMConfig(arch="hubert")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['mask_prb'\]"):
        HubertConfig.from_dict({"encoder": {"mask_prb": 0.5}})


# ---- import structure ----------------------------------------------------------------------------------
def _module_imports() -> dict[str, set[str]]:
    """speechkit module -> speechkit modules it imports at module level (not inside functions)."""
    pkg = ROOT / "speechkit"
    graph: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # top-level statements only
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                deps.add(base)
                deps |= {f"{base}.{a.name}" for a in node.names}
        graph[name] = {d for d in deps if d.startswith("speechkit")}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_import_cycles_between_modules():
    graph = _module_imports()
    # a package's __init__ importing its own submodules is not a cycle between modules
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "module-level import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_downward_only():
    """io knows no model; models know neither training, downstream nor the CLIs (DESIGN.md)."""
    graph = _module_imports()
    rules = {"speechkit.io": ("speechkit.models", "speechkit.train", "speechkit.downstream", "speechkit.bin"),
             "speechkit.models": ("speechkit.train", "speechkit.downstream", "speechkit.bin")}
    bad = [f"{m} -> {d}" for m, deps in graph.items() for layer, banned in rules.items() if m.startswith(layer)
           for d in deps if d.startswith(banned)]
    assert not bad, bad
