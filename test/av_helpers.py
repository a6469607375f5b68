"""Tiny audio-visual data dirs for the AV dataset and seq2seq tests: tone audio (downstream_helpers) and
mouth-ROI clips whose brightness follows the spoken character, stored as .npz (lossless, fast)."""
from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf

from downstream_helpers import SR, TONE_S, TONES, tone_audio

ROI = 24  # stored ROI side; tests crop 16


def stand_in_audio_features(wav: np.ndarray) -> np.ndarray:
    """wav -> (ceil(N / 640), 104): per-640-sample block log energies of 104 sub-blocks (a simple, real
    function of the audio standing in for the stacked log-fbank of speechkit.features.av_audio)."""
    n = -(-len(wav) // 640)
    x = np.zeros(n * 640, np.float32)
    x[: len(wav)] = wav
    blocks = x.reshape(n, 640)[:, :624].reshape(n, 104, 6)
    return np.log(np.mean(blocks ** 2, axis=2) + 1e-6).astype(np.float32)


def roi_clip(text: str, num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(90, 110, size=(num_frames, ROI, ROI)).astype(np.float32)
    per = TONE_S * 25
    for i, ch in enumerate(text.replace(" ", "")):
        a, b = int(round((0.05 * 25) + i * per)), int(round((0.05 * 25) + (i + 1) * per))
        level = 40.0 * (1 + list(TONES).index(ch))
        frames[a:b, 8:16, 6:18] += level
    return np.clip(frames, 0, 255).astype(np.uint8)


def make_av_data_dir(root: pathlib.Path, texts: dict[str, tuple[int, str]], *, km_rate: int | None = None,
                     missing_roi: tuple[str, ...] = (), video_frames_delta: dict[str, int] | None = None) -> pathlib.Path:
    """texts: utt -> (speaker, text). Writes wav.scp, video.scp (.npz ROIs), utt2num_frames, utt2num_samples,
    text, utt2spk, spk2utt and, with km_rate, km.test labels at that rate."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    (root / "roi").mkdir(exist_ok=True)
    delta = video_frames_delta or {}
    tables: dict[str, list[str]] = {k: [] for k in ("wav.scp", "video.scp", "utt2num_frames", "utt2num_samples",
                                                   "text", "utt2spk", "km.test")}
    for i, (utt, (spk, words)) in enumerate(sorted(texts.items())):
        x = tone_audio(words, spk, i)
        sf.write(root / "wav" / f"{utt}.flac", x, SR)
        nv = int(round(len(x) / SR * 25)) + delta.get(utt, 0)
        tables["wav.scp"].append(f"{utt} {root / 'wav' / f'{utt}.flac'}")
        tables["utt2num_samples"].append(f"{utt} {len(x)}")
        tables["text"].append(f"{utt} {words}")
        tables["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        if utt not in missing_roi:
            np.savez_compressed(root / "roi" / f"{utt}.npz", frames=roi_clip(words, nv, i))
            tables["video.scp"].append(f"{utt} {root / 'roi' / f'{utt}.npz'}")
            tables["utt2num_frames"].append(f"{utt} {nv}")
        if km_rate:
            n = nv * km_rate // 25
            tables["km.test"].append(f"{utt} " + " ".join(str((j // 3) % 7) for j in range(n)))
    for name, lines in tables.items():
        if lines:
            (root / name).write_text("\n".join(lines) + "\n")
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(texts):
        spk2utt.setdefault(utt.split("-")[0], []).append(utt)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    return root
