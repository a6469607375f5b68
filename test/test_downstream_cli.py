"""The downstream CLIs end to end on tiny tone data: fine-tune (freeze, resume), decode + score, speaker ID,
embeddings + trials + EER, RESULTS.md."""
from __future__ import annotations

import json

import pytest
import torch

from downstream_helpers import make_data_dir, tiny_hubert_checkpoint, write_config
from speechkit.results import read_result_json

WORDS = ["AB CD", "DA BC", "CAB", "BAD", "DC", "ABCD"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    train = {f"spk{s}-1-{i:04d}": (s, WORDS[(i + s) % len(WORDS)]) for s in range(3) for i in range(4)}
    test = {f"spk{s}-2-{i:04d}": (s, WORDS[(2 * i + s + 1) % len(WORDS)]) for s in range(3) for i in range(2)}
    from speechkit.text.tokenizer import train_tokenizer

    tok = train_tokenizer([w for _, w in train.values()], "char")
    tok.save(root / "token_char")
    return {"train": make_data_dir(root / "train", train), "test": make_data_dir(root / "test", test),
            "tok": root / "token_char", "ckpt": tiny_hubert_checkpoint(root / "pt" / "checkpoint_best.pt"),
            "root": root}


def encoder_params(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_finetune_freeze_resume_decode(data, tmp_path):
    from speechkit.bin import decode_ctc, finetune_ctc

    conf = write_config(tmp_path / "ft.yaml", "  freeze_finetune_updates: 2\n  encoder: {mask_prob: 0.3, "
                        "mask_channel_prob: 0.2, mask_channel_length: 4}", max_updates=2)
    exp = tmp_path / "exp" / "ft"
    args = ["--config", str(conf), "--init", str(data["ckpt"]), "--tokenizer", str(data["tok"]),
            "--train-data", str(data["train"]), "--valid-data", str(data["test"]), "--exp-dir", str(exp)]
    assert finetune_ctc.main(args) == 0
    pre = encoder_params(torch.load(data["ckpt"], weights_only=True)["model"], "hubert.")
    s2 = torch.load(exp / "checkpoint_last.pt", weights_only=True)
    assert s2["model_config"]["arch"] == "ctc" and s2["num_updates"] == 2
    enc2 = encoder_params(s2["model"], "encoder.")
    # 2 updates with freeze_finetune_updates 2: only the CTC head moved
    assert all(torch.equal(enc2[k], v) for k, v in pre.items())
    # resume to 4 updates: the transformer trains now, the conv extractor never does
    assert finetune_ctc.main(args + ["--resume", "auto", "--set", "trainer.max_updates=4"]) == 0
    s4 = torch.load(exp / "checkpoint_last.pt", weights_only=True)
    assert s4["num_updates"] == 4
    enc4 = encoder_params(s4["model"], "encoder.")
    conv = [k for k in pre if k.startswith("feature_extractor.")]
    trans = [k for k in pre if k.startswith("encoder.layers.")]
    assert conv and all(torch.equal(enc4[k], pre[k]) for k in conv)
    assert trans and any(not torch.equal(enc4[k], pre[k]) for k in trans)
    info = json.loads((exp / "downstream_info.json").read_text())
    assert info["labeled utts"] == 12 and info["updates"] == 4 and info["task"] == "ctc"
    assert (exp / "tokenizer" / "tokenizer.json").is_file()

    out = tmp_path / "exp" / "ft" / "decode_test"
    assert decode_ctc.main(["--model", str(exp / "checkpoint_last.pt"), "--data-dir", str(data["test"]),
                            "--out", str(out), "--cer"]) == 0
    hyp = (out / "hyp").read_text().splitlines()
    assert [line.split()[0] for line in hyp] == sorted(u.split()[0] for u in (data["test"] / "text").read_text().splitlines())
    rec = read_result_json(out / "result.json")
    assert rec.metric == "WER" and rec.values["Snt"] == 6
    assert rec.info["labeled utts"] == 12 and rec.info["updates"] == 4 and rec.info["decode"] == "greedy"
    assert rec.info["peak lr"] == 2.0e-3  # a number: decode_ctc hands the facts to the scorer, not through argv
    for name in ("result.txt", "alignment.txt", "result_cer.json"):
        assert (out / name).is_file(), name
    out_b = tmp_path / "exp" / "ft" / "decode_test_beam"
    assert decode_ctc.main(["--model", str(exp / "checkpoint_last.pt"), "--data-dir", str(data["test"]),
                            "--out", str(out_b), "--beam", "4"]) == 0
    assert read_result_json(out_b / "result.json").info["decode"] == "beam 4"
    assert len((out_b / "hyp").read_text().splitlines()) == 6


def test_from_scratch_cli_same_architecture(data, tmp_path):
    from speechkit.bin import finetune_ctc

    conf = write_config(tmp_path / "ft.yaml", "  encoder: {mask_prob: 0.3}", max_updates=1)
    common = ["--config", str(conf), "--init", str(data["ckpt"]), "--tokenizer", str(data["tok"]),
              "--train-data", str(data["train"])]
    assert finetune_ctc.main(common + ["--exp-dir", str(tmp_path / "a")]) == 0
    assert finetune_ctc.main(common + ["--exp-dir", str(tmp_path / "b"), "--from-scratch"]) == 0
    a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=True)
    assert a["model_config"]["encoder"] == b["model_config"]["encoder"] | {"feature_grad_mult": 0.0}
    assert a["model_config"]["vocab_size"] == b["model_config"]["vocab_size"]
    # the baseline trains everything from the first update, the fine-tuned model keeps fairseq's freezing
    assert b["model_config"]["freeze_feature_extractor"] is False and b["model_config"]["freeze_finetune_updates"] == 0
    assert a["model_config"]["freeze_feature_extractor"] is True
    assert {k: v.shape for k, v in a["model"].items()} == {k: v.shape for k, v in b["model"].items()}
    assert json.loads((tmp_path / "b" / "downstream_info.json").read_text())["init"] == "scratch"


def test_sid_probe_embeddings_eer_results(data, tmp_path, capsys):
    from speechkit.bin import compute_eer, eval_sid, extract_embeddings, make_results, make_trials, train_downstream

    exp = tmp_path / "exp"
    conf = write_config(tmp_path / "sid.yaml", "  embed_dim: 8", max_updates=3)
    assert train_downstream.main(["--task", "sid", "--config", str(conf), "--init", str(data["ckpt"]),
                                  "--train-data", str(data["train"]), "--exp-dir", str(exp / "sid")]) == 0
    assert "layer weights" in capsys.readouterr().out
    lw = json.loads((exp / "sid" / "layer_weights.json").read_text())
    assert len(lw["layer_weights"]) == 3 and sum(lw["layer_weights"]) == pytest.approx(1.0)
    assert eval_sid.main(["--model", str(exp / "sid" / "checkpoint_last.pt"), "--data-dir", str(data["test"]),
                          "--out", str(exp / "sid" / "eval_test")]) == 0
    rec = read_result_json(exp / "sid" / "eval_test" / "result_sid.json")
    assert rec.task == "sid" and rec.values["Utts"] == 6 and rec.info["labeled utts"] == 12
    assert len((exp / "sid" / "eval_test" / "predictions").read_text().splitlines()) == 6

    trials = tmp_path / "trials"
    assert make_trials.main(["--data-dir", str(data["test"]), "--out", str(trials), "--num-target", "3",
                             "--num-nontarget", "6"]) == 0
    assert len(trials.read_text().splitlines()) == 9
    emb = exp / "sid" / "embed_test"
    assert extract_embeddings.main(["--model", str(exp / "sid" / "checkpoint_last.pt"), "--data-dir",
                                    str(data["test"]), "--out", str(emb)]) == 0
    assert compute_eer.main(["--trials", str(trials), "--embeddings", str(emb / "embeddings.scp"),
                             "--out", str(exp / "sid" / "sv_test")]) == 0
    assert read_result_json(exp / "sid" / "sv_test" / "result_sv.json").values["Trials"] == 9
    # a plain upstream checkpoint gives pooled-layer embeddings too
    up_emb = tmp_path / "up_embed"
    assert extract_embeddings.main(["--model", str(data["ckpt"]), "--data-dir", str(data["test"]), "--out",
                                    str(up_emb), "--layer", "1"]) == 0
    from speechkit.io.ark import read_scp

    vecs = read_scp(up_emb / "embeddings.scp")
    assert len(vecs) == 6 and next(iter(vecs.values())).shape == (128,)

    # probe: frozen upstream, learned layer weights, decodable
    pconf = write_config(tmp_path / "probe.yaml", "  head: linear", max_updates=2)
    assert train_downstream.main(["--task", "probe_ctc", "--config", str(pconf), "--init", str(data["ckpt"]),
                                  "--tokenizer", str(data["tok"]), "--train-data", str(data["train"]),
                                  "--exp-dir", str(exp / "probe")]) == 0
    assert (exp / "probe" / "layer_weights.json").is_file()
    from speechkit.bin import decode_ctc

    assert decode_ctc.main(["--model", str(exp / "probe" / "checkpoint_last.pt"), "--data-dir", str(data["test"]),
                            "--out", str(exp / "probe" / "decode_test")]) == 0
    assert make_results.main(["--exp-dir", str(exp), "--out", str(tmp_path / "RESULTS.md")]) == 0
    md = (tmp_path / "RESULTS.md").read_text()
    assert "exp/sid" in md and "exp/probe" in md and "labeled utts" in md
