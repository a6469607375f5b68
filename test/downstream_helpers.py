"""Tiny audio data dirs and models for the downstream tests (no corpus generation, no downloads).

Utterances are sequences of pure tones, one tone per character ("A" -> 300 Hz, ...), 0.16 s each,
with a speaker-specific amplitude envelope and noise level, so that CTC can learn the characters and
speaker ID the speakers from a handful of updates.
"""
from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf
import torch

SR = 16000
TONES = {"A": 300.0, "B": 700.0, "C": 1200.0, "D": 1900.0}
TONE_S = 0.16


def tone_audio(text: str, speaker: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([speaker, seed])
    n = int(TONE_S * SR)
    t = np.arange(n) / SR
    parts = [np.zeros(int(0.05 * SR))]
    for ch in text.replace(" ", ""):
        f = TONES[ch] * (1.0 + 0.15 * speaker)  # speakers differ in "pitch"
        parts.append(0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) * np.hanning(n) ** 0.3)
    parts.append(np.zeros(int(0.05 * SR)))
    x = np.concatenate(parts)
    return (x + 0.003 * rng.standard_normal(len(x))).astype(np.float32)


def make_data_dir(root: pathlib.Path, texts: dict[str, tuple[int, str]]) -> pathlib.Path:
    """texts: utt -> (speaker index, text). Writes flac files + wav.scp/text/utt2spk/utt2num_samples."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    wav_scp, text, utt2spk, nums = [], [], [], []
    for i, (utt, (spk, words)) in enumerate(sorted(texts.items())):
        x = tone_audio(words, spk, i)
        path = root / "wav" / f"{utt}.flac"
        sf.write(path, x, SR)
        wav_scp.append(f"{utt} {path}")
        text.append(f"{utt} {words}")
        utt2spk.append(f"{utt} {utt.split('-')[0]}")
        nums.append(f"{utt} {len(x)}")
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk), ("utt2num_samples", nums)):
        (root / name).write_text("\n".join(lines) + "\n")
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(texts):
        spk2utt.setdefault(utt.split("-")[0], []).append(utt)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    return root


def tiny_hubert_checkpoint(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A speechkit pre-training checkpoint of the tiny HuBERT preset with random weights."""
    from speechkit.models import build_model

    torch.manual_seed(seed)
    model = build_model({"arch": "hubert", "preset": "tiny", "num_classes": 10})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "model_config": model.model_config(), "num_updates": 0}, path)
    return path


def write_config(path: pathlib.Path, model: str, max_updates: int, extra: str = "") -> pathlib.Path:
    path.write_text(f"""model:
{model}
data:
  max_sample_size: 160000
  min_sample_size: 0
  max_tokens: 64000
  pad_audio: true
  random_crop: false
  num_workers: 0
optim:
  lr: 2.0e-3
  weight_decay: 0.0
schedule:
  name: constant
trainer:
  max_updates: {max_updates}
  log_interval: 1
  valid_interval: {max_updates}
  save_interval: 0
  keep_last: 1
{extra}""")
    return path
