"""AV-HuBERT's audio input: 26 log-mel filterbanks at 100 Hz, 4 frames stacked into 104 dims at 25 Hz.

The filterbank is python_speech_features' ``logfbank`` with its defaults (what AV-HuBERT computes), which
differs from Kaldi's fbank (speechkit.features.kaldi) in every detail, hence a module of its own:

* samples on the int16 scale (float audio in [-1, 1] x 32768), pre-emphasis 0.97 over the whole signal
  (``y[0] = x[0]``, ``y[n] = x[n] - 0.97 x[n-1]``), no dithering, no DC removal;
* frames of 400 samples every 160 (25 ms / 10 ms at 16 kHz), rectangular window (none); the count is
  ``1 + ceil((N - 400) / 160)`` (one frame when N <= 400) and the last frame is zero-padded;
* power spectrum ``|rfft(frame, 512)|^2 / 512``;
* 26 triangular filters between 0 Hz and Nyquist with edges at ``floor(513 * mel2hz(m) / sr)`` for 28
  mel points equally spaced on ``2595 log10(1 + f / 700)``; natural log, with 0 replaced by float64 eps.

Then (AV-HuBERT's loader): stack 4 consecutive frames into one 104-d frame (zero frames appended so the
count is a multiple of 4), trim or zero-pad to the number of video frames, and layer-normalise each
104-d frame (mean 0, variance 1, eps 1e-5, no affine). Zero padding frames stay zero under that norm, so
normalising before or after the trim/pad gives the same result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

STACK = 4  # 100 Hz filterbank frames per 25 Hz video frame


def _hz2mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel2hz(mel: np.ndarray | float) -> np.ndarray | float:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def filterbank_matrix(num_filters: int = 26, nfft: int = 512, sample_rate: int = 16000,
                      low_hz: float = 0.0, high_hz: float | None = None) -> np.ndarray:
    """(num_filters, nfft // 2 + 1) triangular mel filters on integer FFT-bin edges."""
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    mels = np.linspace(_hz2mel(low_hz), _hz2mel(high_hz), num_filters + 2)
    edges = np.floor((nfft + 1) * _mel2hz(mels) / sample_rate).astype(np.int64)
    bins = np.arange(nfft // 2 + 1)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    # rising edge lo <= k < mid, falling edge mid <= k < hi (empty when two edges coincide)
    rise = np.where((bins >= lo) & (bins < mid), (bins - lo) / np.maximum(mid - lo, 1), 0.0)
    fall = np.where((bins >= mid) & (bins < hi), (hi - bins) / np.maximum(hi - mid, 1), 0.0)
    return rise + fall


def logfbank(wav: np.ndarray, sample_rate: int = 16000, win: int = 400, hop: int = 160, nfft: int = 512,
             num_filters: int = 26, preemph: float = 0.97) -> np.ndarray:
    """(N,) samples on the int16 scale -> (T, num_filters) float64 log mel energies at 100 Hz."""
    x = np.asarray(wav, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("logfbank: empty waveform")
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    n = x.size
    num = 1 if n <= win else 1 + int(np.ceil((n - win) / hop))
    padded = np.zeros((num - 1) * hop + win)
    padded[:n] = x
    idx = np.arange(win)[None, :] + hop * np.arange(num)[:, None]
    frames = padded[idx]  # (T, win), rectangular window
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energies = power @ filterbank_matrix(num_filters, nfft, sample_rate).T
    energies = np.where(energies == 0.0, np.finfo(float).eps, energies)
    return np.log(energies)


def stack_frames(feats: np.ndarray, stack: int = STACK) -> np.ndarray:
    """(T, F) -> (ceil(T / stack), stack * F): consecutive frames side by side, zeros appended at the end."""
    t, f = feats.shape
    extra = (-t) % stack
    if extra:
        feats = np.concatenate([feats, np.zeros((extra, f), dtype=feats.dtype)])
    return feats.reshape(-1, stack * f)


def fit_to_video(feats: np.ndarray, num_video_frames: int) -> np.ndarray:
    """Trim or zero-pad (T, D) 25 Hz audio features to ``num_video_frames`` rows (AV-HuBERT's rule; the
    caller checks that the two streams belong together, e.g. with speechkit.io.video.check_av_sync)."""
    t = len(feats)
    if t >= num_video_frames:
        return feats[:num_video_frames]
    return np.concatenate([feats, np.zeros((num_video_frames - t, feats.shape[1]), dtype=feats.dtype)])


def layer_norm_frames(feats: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Normalise each row to mean 0 / variance 1 (biased variance), as torch's layer_norm without affine."""
    x = feats.astype(np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def av_audio_features(wav: np.ndarray, num_video_frames: int | None = None, sample_rate: int = 16000,
                      int16_scale: bool = False) -> np.ndarray:
    """Waveform -> (T_video, 104) float32 AV-HuBERT audio features.

    wav: float audio in [-1, 1] (scaled by 32768 here) or, with ``int16_scale=True``, already on the int16
    scale. ``num_video_frames`` trims/pads to the clip's video; None keeps ceil(T_100Hz / 4) frames.
    """
    x = np.asarray(wav, dtype=np.float64)
    if not int16_scale:
        x = x * 32768.0
    feats = stack_frames(logfbank(x, sample_rate))
    if num_video_frames is not None:
        feats = fit_to_video(feats, num_video_frames)
    return layer_norm_frames(feats).astype(np.float32)


@dataclass
class AVFbank:
    """speechkit.features' FeatureExtractor protocol for the dumper (``--feat avfbank``): 104-d at 25 Hz,
    untrimmed (the AV dataset fits them to the video with :func:`fit_to_video`, which commutes with the
    per-frame norm)."""

    sample_rate: int = 16000
    dim: int = 26 * STACK
    frame_rate: float = 25.0

    def __post_init__(self) -> None:
        if self.sample_rate != 16000:
            raise ValueError(f"AV-HuBERT audio features are defined at 16 kHz, got sample_rate={self.sample_rate}")

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return av_audio_features(wav, None, self.sample_rate)

    def batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self(w) for w in wavs]
