"""speechkit.cli: the job options every parallel CLI shares, and device + model loading of the inference CLIs."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch

from speechkit.bin import decode_ctc, dump_features, dump_layer_features, eval_sid, extract_embeddings, extract_mouth_roi

PARALLEL = {
    dump_features: ["--data-dir", "d", "--out", "o"],
    dump_layer_features: ["--checkpoint", "c.pt", "--layer", "1", "--data-dir", "d", "--out", "o"],
    extract_mouth_roi: ["d", "o"],
}


def _option_help(module, option: str) -> str:
    parser = module.get_parser()
    action = next(a for a in parser._actions if option in a.option_strings)
    return f"{action.default!r} {action.type} " + (action.help or "").replace("shard", "job")


@pytest.mark.parametrize("option", ["--nj", "--job", "--cmd"])
def test_parallel_clis_share_the_job_options(option):
    helps = {m.__name__: _option_help(m, option) for m in PARALLEL}
    assert len(set(helps.values())) == 1, helps


@pytest.mark.parametrize("module", list(PARALLEL), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_job_outside_nj_is_a_usage_error(module):
    with pytest.raises(SystemExit, match=r"--job 3 is outside 1\.\.2 \(--nj\)"):
        module.main(PARALLEL[module] + ["--nj", "2", "--job", "3"])
    with pytest.raises(SystemExit, match="--nj must be >= 1, got 0"):
        module.main(PARALLEL[module] + ["--nj", "0"])


def test_inference_clis_share_model_data_device_options():
    for module in (decode_ctc, eval_sid, extract_embeddings):
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(SystemExit):
            module.get_parser().parse_args(["--help"])
        text = " ".join(out.getvalue().split())
        for option in ("--model", "--data-dir", "--out", "--max-tokens", "--device"):
            assert option in text, (module.__name__, option)
        assert "(default: cuda if available, else cpu)" in text


def test_bad_device_and_bad_checkpoints_are_usage_errors_naming_the_file(tmp_path):
    from speechkit.cli import load_model, pick_device
    from speechkit.downstream.speaker import SpeakerIDModel
    from speechkit.models import build_model

    with pytest.raises(SystemExit, match="--device 'gpu'"):
        pick_device("gpu")
    assert pick_device("cpu") == torch.device("cpu")
    torch.manual_seed(0)
    sid = SpeakerIDModel.from_upstream(build_model({"arch": "hubert", "preset": "tiny"}), ["a", "b"])
    path = tmp_path / "sid.pt"
    torch.save({"model": sid.state_dict(), "model_config": sid.model_config()}, path)
    model, state = load_model(path, torch.device("cpu"))
    assert isinstance(model, SpeakerIDModel) and not model.training and state["model_config"]["arch"] == "sid"
    args = ["--model", str(path), "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--device", "cpu"]
    with pytest.raises(SystemExit, match=r"sid\.pt: holds a 'sid' model, not a CTC model"):
        decode_ctc.main(args)
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SystemExit, match=r"cut\.pt: cannot read checkpoint"):
        eval_sid.main(["--model", str(truncated), "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
