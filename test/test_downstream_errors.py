"""Downstream inputs a user gets wrong: unknown characters, truncated checkpoints, unknown config keys,
utterances too short for the encoder, a resume into a different model (issue 14, items 5 and 10)."""
from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from downstream_helpers import make_data_dir, tiny_hubert_checkpoint, write_config
from speechkit.downstream.tasks import build_task
from speechkit.models import load_pretrained
from speechkit.models import PretrainedLoadError
from speechkit.train.config import ConfigError, TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from speechkit.text.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("dserr")
    train = make_data_dir(root / "train", {"spk0-1-0000": (0, "AB CD"), "spk0-1-0001": (0, "DA BC"),
                                           "spk1-1-0000": (1, "CAB")})
    train_tokenizer(["AB C", "CAB"], "char").save(root / "tok")  # no "D": it becomes <unk>
    ckpt = tiny_hubert_checkpoint(root / "pt" / "checkpoint_best.pt")
    truncated = root / "pt" / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a copy cut off mid-way
    return {"root": root, "train": train, "tok": root / "tok", "ckpt": ckpt, "truncated": truncated}


def _cfg(tmp_path, model: str, name: str = "ft.yaml") -> tuple[TrainConfig, str]:
    path = write_config(tmp_path / name, model, max_updates=1)
    return TrainConfig.from_yaml(path), str(path)


def test_unknown_characters_are_counted_and_reported(env, tmp_path, caplog):
    cfg, src = _cfg(tmp_path, "  final_dropout: 0.0")
    with caplog.at_level(logging.WARNING):
        setup = build_task("ctc", cfg, str(env["train"]), None, init=str(env["ckpt"]), tokenizer_dir=str(env["tok"]),
                           source=src)
    # "AB CD" and "DA BC": two D's in two of three utterances, each silently <unk> before
    assert setup.info["unknown characters"] == {"count": 2, "chars": "D"}
    assert re.search(r"train/text: 2 character\(s\) in 2 of 3 utterance\(s\) are not in the tokenizer's "
                     r"vocabulary and become <unk>: 'D' x2 \(e\.g\. spk0-1-0000\)", caplog.text)


def test_truncated_checkpoint_names_the_file(env, tmp_path):
    from speechkit.bin import decode_ctc

    cfg, src = _cfg(tmp_path, "  final_dropout: 0.0")
    pattern = re.escape(str(env["truncated"])) + r": cannot read checkpoint .*truncated"
    with pytest.raises(PretrainedLoadError, match=pattern):  # finetune_ctc --init
        build_task("ctc", cfg, str(env["train"]), None, init=str(env["truncated"]), tokenizer_dir=str(env["tok"]),
                   source=src)
    with pytest.raises(SystemExit, match=pattern):  # decode_ctc --model: a usage error naming the file
        decode_ctc.main(["--model", str(env["truncated"]), "--data-dir", str(env["train"]),
                         "--out", str(tmp_path / "dec")])
    with pytest.raises(PretrainedLoadError, match=pattern):
        load_pretrained(env["truncated"])


@pytest.mark.parametrize("task,model,init,message", [
    ("ctc", "  final_dropot: 0.1", True, r"model\.final_dropot: unknown option for task 'ctc'; known: \['blank'"),
    ("ctc", "  encoder: {mask_pro: 0.3}", True, r"model\.encoder: \['mask_pro'\] cannot be changed"),
    ("ctc", "  preset: tiny\n  final_dropot: 0.1", False, r"model: .*unknown key\(s\) \['final_dropot'\].*CTC head options: \['blank'"),
    ("probe_ctc", "  hiden_dim: 8", True, r"model\.hiden_dim: unknown option for task 'probe_ctc'"),
    ("sid", "  embed_dims: 8", True, r"model\.embed_dims: unknown option for task 'sid'"),
])
def test_unknown_model_option_names_the_config_file(env, tmp_path, task, model, init, message):
    cfg, src = _cfg(tmp_path, model)
    with pytest.raises(ConfigError, match=re.escape(src) + ": " + message):
        build_task(task, cfg, str(env["train"]), None, init=str(env["ckpt"]) if init else None,
                   tokenizer_dir=None if task == "sid" else str(env["tok"]), source=src)


def test_too_short_utterances_are_dropped_up_front_by_id(env, tmp_path, caplog):
    texts = {"spk0-1-0000": (0, "AB C"), "spk0-1-0001": (0, "CAB"), "spk1-1-0000": (1, "A")}
    data = make_data_dir(tmp_path / "short", texts)
    sf.write(data / "wav" / "spk1-1-0000.flac", np.zeros(300, np.float32), 16000)  # < 400 samples: no frame
    nums = (data / "utt2num_samples").read_text()
    (data / "utt2num_samples").write_text(re.sub(r"spk1-1-0000 \d+", "spk1-1-0000 300", nums))
    cfg, src = _cfg(tmp_path, "  final_dropout: 0.0")
    with caplog.at_level(logging.WARNING):
        setup = build_task("ctc", cfg, str(data), str(data), init=str(env["ckpt"]), tokenizer_dir=str(env["tok"]),
                           source=src)
    assert "dropped 1 of 3 utterance(s) shorter than 400 samples (less than one frame of the conv feature " \
           "extractor), e.g. spk1-1-0000" in caplog.text
    assert setup.info["labeled utts"] == 2 and "spk1-1-0000" not in setup.train_set.utt_ids
    assert "spk1-1-0000" not in setup.valid_set.utt_ids
    assert setup.train_set.dropped == ["spk1-1-0000"]
    # before: training stopped at the first batch holding it with "utterance(s) at batch index [0] are too short"
    wavs = [setup.train_set[i]["wav"] for i in range(len(setup.train_set))]
    lens = torch.tensor([len(w) for w in wavs])
    batch = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = torch.as_tensor(w)
    setup.model.encoder.local_features(batch, lens)  # every kept utterance makes at least one frame


def test_resume_mismatch_names_the_differing_field():
    from speechkit.train.checkpoint import CheckpointError, check_model_config

    enc = {"embed_dim": 64, "num_layers": 2, "dropout": 0.1, "mask_prob": 0.65, "conv_layers": [[32, 10, 5]]}
    saved = {"arch": "ctc", "vocab_size": 7, "encoder": enc}
    with pytest.raises(CheckpointError) as e:
        check_model_config("exp/checkpoint_last.pt", saved, {**saved, "encoder": {**enc, "dropout": 0.2}})
    msg = str(e.value)
    assert msg == ("exp/checkpoint_last.pt: checkpoint was made with a different model config "
                   "(encoder.dropout: checkpoint 0.1 vs now 0.2)")
    check_model_config("x", saved, {**saved, "encoder": dict(enc)})  # equal: no error
