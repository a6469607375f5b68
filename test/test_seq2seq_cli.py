"""finetune_av + decode_seq2seq end to end on a few synthetic utterances: an audio SSL encoder (tiny HuBERT)
and an AV encoder (the registered stand-in), clean and noisy decoding with fixed seeds, scoring, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from av_helpers import make_av_data_dir, stand_in_checkpoint
from downstream_helpers import make_data_dir, tiny_hubert_checkpoint, write_config

TRAIN = {f"spk{s}-1-{i}": (s, ["AB", "BA", "CAD", "DCB"][(i + s) % 4]) for s in range(2) for i in range(3)}
TEST = {f"spk{s}-2-{i}": (s, ["AB", "DCB"][(i + s) % 2]) for s in range(2) for i in range(2)}
MODEL = """  decoder: {preset: tiny}
  modalities: MOD
  label_smoothing: 0.1
  ctc_weight: 0.3
  freeze_finetune_updates: 1"""


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from speechkit.text.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("tok") / "token_char"
    train_tokenizer([t for _, t in TRAIN.values()], "char").save(d)
    return d


def read_hyp(path) -> dict:
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in path.read_text().splitlines())


def test_audio_encoder_finetune_resume_decode_noisy(tmp_path, tok):
    from speechkit.bin import decode_seq2seq, finetune_av

    train = make_data_dir(tmp_path / "train", TRAIN)
    test = make_data_dir(tmp_path / "test", TEST)
    ckpt = tiny_hubert_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    conf = write_config(tmp_path / "s2s.yaml", MODEL.replace("MOD", "audio"), max_updates=2)
    exp = tmp_path / "exp"
    args = ["--config", str(conf), "--init", str(ckpt), "--tokenizer", str(tok), "--train-data", str(train),
            "--valid-data", str(test), "--exp-dir", str(exp)]
    assert finetune_av.main(args) == 0
    s2 = torch.load(exp / "checkpoint_last.pt", weights_only=True)
    assert s2["model_config"]["arch"] == "seq2seq" and s2["num_updates"] == 2
    pre = {k[len("hubert."):]: v for k, v in torch.load(ckpt, weights_only=True)["model"].items()
           if k.startswith("hubert.")}
    enc = {k[len("encoder.w2v_model."):]: v for k, v in s2["model"].items() if k.startswith("encoder.w2v_model.")}
    assert set(pre) == set(enc)
    assert not all(torch.equal(enc[k], pre[k]) for k in pre)  # frozen for 1 update only, then trained
    assert finetune_av.main(args + ["--resume", "auto", "--set", "trainer.max_updates=3"]) == 0
    info = json.loads((exp / "downstream_info.json").read_text())
    assert info["task"] == "seq2seq" and info["updates"] == 3 and info["encoder"] == "wav"

    model = str(exp / "checkpoint_last.pt")
    base = ["--model", model, "--data-dir", str(test), "--beam", "3", "--max-len-a", "0.2", "--max-len-b", "3"]
    assert decode_seq2seq.main(base + ["--out", str(tmp_path / "clean"), "--ctc-weight", "0.3"]) == 0
    result = json.loads((tmp_path / "clean" / "result.json").read_text())
    assert result["info"]["noise"] == "clean"
    noisy = ["--babble", str(train), "--babble-speakers", "3", "--snr", "0"]
    for out, seed in (("n0", "0"), ("n0b", "0"), ("n1", "1")):
        assert decode_seq2seq.main(base + noisy + ["--seed", seed, "--out", str(tmp_path / out)]) == 0
    assert (tmp_path / "n0" / "hyp").read_text() == (tmp_path / "n0b" / "hyp").read_text()
    assert set(read_hyp(tmp_path / "n0" / "hyp")) == set(TEST)
    assert json.loads((tmp_path / "n0" / "result.json").read_text())["info"]["noise"] == "babble 0 dB seed 0"
    with pytest.raises(SystemExit, match="need --snr"):
        decode_seq2seq.main(base + ["--babble", str(train), "--out", str(tmp_path / "x")])

    # word-level decoding of the CTC head: a grid of LM weights / word scores on one set, applied to another
    from speechkit.bin import train_word_lm

    lang = tmp_path / "lang"
    assert train_word_lm.main(["--text", str(train / "text"), "--tokenizer", str(tok), "--order", "2",
                               "--out", str(lang)]) == 0
    lex = ["--model", model, "--data-dir", str(test), "--lexicon", str(lang / "lexicon.txt"),
           "--lm", str(lang / "lm2.arpa")]
    assert decode_seq2seq.main(lex + ["--out", str(tmp_path / "lex_dev"), "--lm-weight", "0", "1",
                                      "--word-score", "0", "1"]) == 0
    grid = json.loads((tmp_path / "lex_dev" / "lm_grid.json").read_text())
    assert len(grid["grid"]) == 4 and grid["best"]["wer"] == min(g["wer"] for g in grid["grid"])
    assert decode_seq2seq.main(lex + noisy + ["--seed", "0", "--out", str(tmp_path / "lex_test"), "--tuned-from",
                                              str(tmp_path / "lex_dev")]) == 0
    hyps = read_hyp(tmp_path / "lex_test" / "hyp")
    assert set(hyps) == set(TEST) and {w for h in hyps.values() for w in h.split()} <= {"AB", "BA", "CAD", "DCB"}
    info = json.loads((tmp_path / "lex_test" / "result.json").read_text())["info"]
    assert info["decode"].startswith("CTC lexicon beam 50") and "tuned on lex_dev" in info["decode"]
    assert info["noise"] == "babble 0 dB seed 0"
    with pytest.raises(SystemExit, match="--ctc-weight applies to the attention"):
        decode_seq2seq.main(lex + ["--ctc-weight", "0.5", "--out", str(tmp_path / "y")])


def test_freezing_the_whole_run_is_rejected(tmp_path, tok):
    from speechkit.bin import finetune_av
    from speechkit.train.config import ConfigError

    train = make_data_dir(tmp_path / "train", TRAIN)
    ckpt = tiny_hubert_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    conf = write_config(tmp_path / "s2s.yaml", MODEL.replace("MOD", "audio").replace("updates: 1", "updates: 5"),
                        max_updates=5)
    with pytest.raises(ConfigError, match="never be fine-tuned"):
        finetune_av.main(["--config", str(conf), "--init", str(ckpt), "--tokenizer", str(tok), "--train-data",
                          str(train), "--exp-dir", str(tmp_path / "exp")])


def test_av_encoder_finetune_and_decode_each_modality(tmp_path, tok):
    from speechkit.bin import decode_seq2seq, finetune_av

    train = make_av_data_dir(tmp_path / "train", TRAIN)
    test = make_av_data_dir(tmp_path / "test", TEST)
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", 0.1 * np.sin(np.arange(8000) / 3.0), 16000)
    ckpt = stand_in_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    model_sec = MODEL.replace("MOD", "audiovisual") + """
  av_data:
    crop_size: 16
    max_frames: 100
    audio_features: "av_helpers:stand_in_audio_features"
    noise_prob: 0.5
    snrs: [0.0, 5.0]"""
    conf = write_config(tmp_path / "s2s.yaml", model_sec, max_updates=3)
    conf.write_text(conf.read_text().replace("max_tokens: 64000", "max_tokens: 200"))
    exp = tmp_path / "exp"
    assert finetune_av.main(["--config", str(conf), "--init", str(ckpt), "--tokenizer", str(tok), "--train-data",
                             str(train), "--valid-data", str(test), "--exp-dir", str(exp),
                             "--noise-dir", str(tmp_path / "noise")]) == 0
    info = json.loads((exp / "downstream_info.json").read_text())
    assert info["encoder"] == "av" and info["modalities"] == "audiovisual"
    model = str(exp / "checkpoint_last.pt")
    hyps = {}
    for mod in ("video", "audio", "audiovisual"):
        out = tmp_path / f"dec_{mod}"
        assert decode_seq2seq.main(["--model", model, "--data-dir", str(test), "--out", str(out), "--modalities", mod,
                                    "--beam", "2", "--max-len-a", "0.3"]) == 0
        hyps[mod] = read_hyp(out / "hyp")
        assert set(hyps[mod]) == set(TEST)
        assert json.loads((out / "result.json").read_text())["info"]["modalities"] == mod
    out = tmp_path / "dec_noisy"
    assert decode_seq2seq.main(["--model", model, "--data-dir", str(test), "--out", str(out), "--noise-dir",
                                str(tmp_path / "noise"), "--snr", "-5", "--seed", "3", "--beam", "2"]) == 0
    assert json.loads((out / "decode_info.json").read_text())["noise"] == "noise -5 dB seed 3"


def test_av_resume_is_bit_exact(tmp_path, tok):
    """3 updates in one go == 2 updates, then --resume auto to 3 (crops, flips and noise are seeded by
    (seed, epoch, utterance); the trainer restores the rest)."""
    from speechkit.bin import finetune_av

    train = make_av_data_dir(tmp_path / "train", TRAIN)
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", 0.1 * np.sin(np.arange(8000) / 3.0), 16000)
    ckpt = stand_in_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    model_sec = MODEL.replace("MOD", "audiovisual").replace("decoder: {preset: tiny}",
                                                            "decoder: {preset: tiny, dropout: 0.1}") + """
  av_data: {crop_size: 16, max_frames: 100, audio_features: "av_helpers:stand_in_audio_features", noise_prob: 0.5}"""
    conf = write_config(tmp_path / "s2s.yaml", model_sec, max_updates=3)
    conf.write_text(conf.read_text().replace("max_tokens: 64000", "max_tokens: 60"))
    common = ["--config", str(conf), "--init", str(ckpt), "--tokenizer", str(tok), "--train-data", str(train),
              "--noise-dir", str(tmp_path / "noise")]
    assert finetune_av.main(common + ["--exp-dir", str(tmp_path / "a")]) == 0
    assert finetune_av.main(common + ["--exp-dir", str(tmp_path / "b"), "--set", "trainer.max_updates=2"]) == 0
    assert finetune_av.main(common + ["--exp-dir", str(tmp_path / "b"), "--resume", "auto"]) == 0
    a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=True)
    assert a["num_updates"] == b["num_updates"] == 3 and a["epoch"] > 1  # crosses an epoch boundary
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_skipped_test_utterances_fail_scoring_unless_allowed(tmp_path, tok):
    from speechkit.bin import decode_seq2seq, finetune_av

    train = make_av_data_dir(tmp_path / "train", TRAIN)
    test = make_av_data_dir(tmp_path / "test", TEST)
    ckpt = stand_in_checkpoint(tmp_path / "pt" / "checkpoint_best.pt")
    model_sec = MODEL.replace("MOD", "video") + """
  av_data: {crop_size: 16, max_frames: 100}"""
    conf = write_config(tmp_path / "s2s.yaml", model_sec, max_updates=2)
    conf.write_text(conf.read_text().replace("max_tokens: 64000", "max_tokens: 200"))
    exp = tmp_path / "exp"
    assert finetune_av.main(["--config", str(conf), "--init", str(ckpt), "--tokenizer", str(tok), "--train-data",
                             str(train), "--exp-dir", str(exp)]) == 0
    lines = (test / "video.scp").read_text().splitlines()
    (test / "video.scp").write_text("\n".join(lines[1:]) + "\n")  # the first test clip lost its ROI
    args = ["--model", str(exp / "checkpoint_last.pt"), "--data-dir", str(test), "--beam", "2"]
    with pytest.raises(ValueError, match=lines[0].split()[0]):
        decode_seq2seq.main(args + ["--out", str(tmp_path / "d1")])
    assert decode_seq2seq.main(args + ["--out", str(tmp_path / "d2"), "--allow-missing"]) == 0
    assert len(read_hyp(tmp_path / "d2" / "hyp")) == len(TEST) - 1
