"""Every shipped recipe config (egs/*/*/conf/*.yaml) loads and is consistent with itself.

Consistency: the encoder is fine-tuned at some point (freeze_finetune_updates < max_updates: several of
the AV-HuBERT anchor's files freeze it for the whole run), warmup (and the tri-stage phases) fit in the run,
AV-HuBERT model sections build their config (presets and overrides known), and the full-scale AV configs
name the anchor file they take their values from in a header comment.
Every recipe's path.sh takes a preset SPEECHKIT_ROOT (a recipe copied out of the tree finds the venv).
"""
from __future__ import annotations

import pathlib
import re

import pytest

from recipe_helpers import ROOT

CONFIGS = sorted(ROOT.glob("egs/*/*/conf/*.yaml"))
AV_ANCHORED = [p for p in CONFIGS if p.parts[-4] in ("lrs3", "voxceleb2") and "tiny" not in p.name]


def test_there_are_configs():
    assert len(CONFIGS) > 10 and AV_ANCHORED


def _load(path: pathlib.Path):
    from speechkit.train.config import TrainConfig

    return TrainConfig.from_yaml(path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_config_is_consistent(path):
    cfg = _load(path)
    model, total = dict(cfg.model), cfg.trainer.max_updates
    assert total > 0, f"{path}: trainer.max_updates must be positive"
    freeze = model.get("freeze_finetune_updates", 0)
    assert freeze < total, f"{path}: encoder frozen for {freeze} of {total} updates: never fine-tuned"
    sc = cfg.schedule
    if sc.name == "tri_stage" and not sc.phase_ratio:
        assert sc.warmup_updates + sc.hold_updates < total, f"{path}: the run ends before the tri-stage decay"
        used = sc.warmup_updates + sc.hold_updates + sc.decay_updates
        # LibriSpeech's HuBERT 10 h file keeps fairseq's own overrun (documented there); ours must fit
        if path in AV_ANCHORED:
            assert used <= total, f"{path}: tri-stage phases take {used} updates, the run has {total}"
    assert sc.warmup_updates < total or total <= 3, f"{path}: warmup {sc.warmup_updates} >= {total} updates"
    if model.get("arch") == "avhubert":
        from speechkit.models.av_presets import avhubert_preset
        from speechkit.train.av_pretrain import split_av_data

        model, av = split_av_data(model, str(path))
        model.pop("arch")
        enc = model.pop("encoder", None)
        avhubert_preset(model.pop("preset", "base"), enc, **model)  # unknown fields raise
        assert cfg.data.label_rate in (25, 100), f"{path}: AV labels are 100 Hz (MFCC) or 25 Hz (AV units)"
        assert cfg.data.max_tokens >= 100, f"{path}: data.max_tokens counts 25 Hz frames for AV-HuBERT"
    if "decoder" in model:
        from speechkit.downstream.seq2seq_task import _split_model_section

        _split_model_section(model, str(path))


@pytest.mark.parametrize("path", AV_ANCHORED, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_av_configs_name_their_source(path):
    header = "".join(ln for ln in path.read_text().splitlines(keepends=True) if ln.startswith("#"))
    assert re.search(r"Source: av_hubert, avhubert/conf/\S+\.yaml", header), f"{path}: no anchor file named"


def test_lrs3_values_are_the_anchors():
    conf = ROOT / "egs" / "lrs3" / "avhubert1" / "conf"
    for name in ("pretrain_avhubert_base_iter.yaml", "pretrain_avhubert_base_last.yaml"):
        c = _load(conf / name)
        assert (c.optim.lr, c.optim.betas, c.optim.eps, c.optim.weight_decay) == (5.0e-4, [0.9, 0.98], 1.0e-6, 0.01)
        assert (c.trainer.max_updates, c.schedule.warmup_updates, c.data.max_tokens) == (400000, 32000, 1000)
        assert c.trainer.amp == "fp16"
    last = _load(conf / "pretrain_avhubert_base_last.yaml").model
    assert last["masking_type"] == "input" and last["modality_dropout"] == 0.5
    vsr = _load(conf / "finetune_vsr_base_30h.yaml")
    assert (vsr.optim.lr, vsr.trainer.max_updates, vsr.schedule.warmup_updates, vsr.schedule.decay_updates) == \
        (1.0e-3, 30000, 10000, 20000)
    assert vsr.model["label_smoothing"] == 0.1 and vsr.schedule.name == "tri_stage"


@pytest.mark.parametrize("ssl", ["hubert", "wavlm"])
def test_mini_recipe_default_layer_exists_in_every_iterated_objective(ssl):
    """`./run.sh --ssl <ssl>` clusters layer $layer of iteration 1 (stage 7): the model must have it (the
    WavLM config once had 2 layers, so the default run stopped there)."""
    from speechkit.models.registry import resolve_config

    recipe = ROOT / "egs/mini_synth/ssl1"
    run_sh = (recipe / "run.sh").read_text()
    layer = int(re.search(r"^layer=(\d+)", run_sh, re.M).group(1))
    conf = re.search(rf"^  {ssl}\) : \"\$\{{pretrain1_config:=(\S+?)\}}\"", run_sh, re.M).group(1)
    layers = resolve_config(dict(_load(recipe / conf).model)).encoder.num_layers
    assert layers >= layer, f"{conf}: {layers} layers, but run.sh clusters layer {layer}"


PATH_SH = sorted(ROOT.glob("egs/*/*/path.sh"))


@pytest.mark.parametrize("path", PATH_SH, ids=lambda p: str(p.relative_to(ROOT / "egs")))
def test_path_sh_honours_a_preset_speechkit_root(path, tmp_path):
    """A recipe copied elsewhere (README: "Adapting a recipe") finds the venv through SPEECHKIT_ROOT."""
    import subprocess

    root = tmp_path / "root"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
    (root / ".venv" / "bin" / "python").chmod(0o755)
    copy = tmp_path / "elsewhere" / "recipe"
    copy.mkdir(parents=True)
    (copy / "path.sh").write_text(path.read_text())
    out = subprocess.run(["bash", "-c", ". ./path.sh && echo \"$PATH\""], cwd=copy, capture_output=True,
                         text=True, env={"SPEECHKIT_ROOT": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(":")[0] == f"{root}/.venv/bin", (path, out.stdout, out.stderr)
