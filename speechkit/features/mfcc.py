"""MFCC + deltas exactly as fairseq's HuBERT recipe makes first-iteration targets.

fairseq ``examples/hubert/simple_kmeans/dump_mfcc_feature.py`` reads audio with
soundfile as float in [-1, 1] and passes it *unscaled* (no 32768 factor) to
``torchaudio.compliance.kaldi.mfcc(x, sample_frequency=16000, use_energy=False)``
(13 cepstra from 23 mel bins, povey window, lifter 22, dither 0), then stacks
``compute_deltas`` applied once and twice: 39 dims at 100 Hz. ``Mfcc`` here
takes the same [-1, 1] float input and reproduces those numbers to ~1e-6.
``fairseq_reference_mfcc`` is that reference path, kept for tests and bench.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from speechkit.features.kaldi import FbankConfig, KaldiFrontEnd, _split


def dct_matrix(num_ceps: int, num_mel_bins: int) -> torch.Tensor:
    """Kaldi's DCT-II (orthonormal, first column sqrt(1/M)), shape (num_mel_bins, num_ceps)."""
    # same float32 construction as torchaudio.functional.create_dct(norm="ortho") so rounding matches
    n = torch.arange(float(num_mel_bins))
    k = torch.arange(float(num_mel_bins)).unsqueeze(1)
    dct = torch.cos(math.pi / float(num_mel_bins) * (n + 0.5) * k)  # (k, n)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / float(num_mel_bins))
    m = dct.t().contiguous()
    m[:, 0] = math.sqrt(1.0 / float(num_mel_bins))
    return m[:, :num_ceps].contiguous()


def lifter_coeffs(num_ceps: int, cepstral_lifter: float) -> torch.Tensor:
    i = torch.arange(num_ceps)
    return 1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * i / cepstral_lifter)


def deltas_segmented(x: torch.Tensor, counts: Sequence[int], order: int = 2, win: int = 2) -> torch.Tensor:
    """Deltas of stacked utterances (N, D) -> (N, D * (order + 1)).

    Equivalent to ``torchaudio.functional.compute_deltas`` (win_length=5,
    replicate padding) applied per utterance: the neighbour indices are
    clamped to each utterance's own first/last frame, so one gather handles
    all utterances at once.
    """
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1] * (order + 1))
    counts_t = torch.tensor(list(counts), dtype=torch.long, device=x.device)
    nz = counts_t > 0
    starts = torch.cumsum(counts_t, 0) - counts_t
    seg_start = torch.repeat_interleave(starts[nz], counts_t[nz])
    seg_end = seg_start + torch.repeat_interleave(counts_t[nz], counts_t[nz]) - 1
    t = torch.arange(x.shape[0], device=x.device)
    idx = {k: torch.minimum(torch.maximum(t + k, seg_start), seg_end) for k in range(-win, win + 1) if k}
    denom = win * (win + 1) * (2 * win + 1) / 3
    outs, cur = [x], x
    for _ in range(order):
        # conv1d order of the reference: sum_k k * x[t+k], k = -win..win, then / denom
        acc = None
        for k in range(-win, win + 1):
            if k == 0:
                continue
            term = cur[idx[k]] * float(k)
            acc = term if acc is None else acc + term
        cur = acc / denom
        outs.append(cur)
    return torch.cat(outs, dim=1)


class Mfcc:
    """Kaldi MFCC (13 ceps, 23 mel bins, no energy) + delta + delta-delta: a ``FeatureExtractor``.

    Input: float waveform in [-1, 1] at ``sample_rate`` (as fairseq passes it).
    ``batch`` processes several utterances in one framing/FFT/matmul pass.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_ceps: int = 13,
        num_mel_bins: int = 23,
        cepstral_lifter: float = 22.0,
        delta_order: int = 2,
        device: str = "cpu",
    ):
        if num_ceps > num_mel_bins:
            raise ValueError(f"num_ceps ({num_ceps}) cannot exceed num_mel_bins ({num_mel_bins})")
        self.cfg = FbankConfig(num_mel_bins=num_mel_bins, sample_rate=sample_rate)
        self.front = KaldiFrontEnd(self.cfg, device)
        self.dct = dct_matrix(num_ceps, num_mel_bins).to(self.front.device)  # (num_mel_bins, num_ceps)
        # applied after the DCT (not folded into it) to keep the reference's rounding
        self.lifter = lifter_coeffs(num_ceps, cepstral_lifter).to(self.front.device) if cepstral_lifter else None
        self.delta_order = delta_order
        self.dim = num_ceps * (delta_order + 1)
        self.frame_rate = 1000.0 / self.cfg.frame_shift_ms

    def batch(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            logmel, counts = self.front.log_mel_batch(wavs)  # (N, num_mel_bins)
            ceps = logmel @ self.dct  # (N, num_ceps)
            if self.lifter is not None:
                ceps *= self.lifter
            feats = deltas_segmented(ceps, counts, self.delta_order) if self.delta_order else ceps
            return _split(feats.cpu().numpy(), counts)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return self.batch([wav])[0]


def fairseq_reference_mfcc(wav: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """The per-utterance reference: fairseq dump_mfcc_feature.py's computation, verbatim in effect."""
    import torchaudio  # only the pure-python compliance/functional parts

    with torch.no_grad():
        x = torch.from_numpy(np.asarray(wav)).float().view(1, -1)
        mfccs = torchaudio.compliance.kaldi.mfcc(waveform=x, sample_frequency=sample_rate, use_energy=False)
        mfccs = mfccs.transpose(0, 1)  # (freq, time)
        deltas = torchaudio.functional.compute_deltas(mfccs)
        ddeltas = torchaudio.functional.compute_deltas(deltas)
        return torch.cat([mfccs, deltas, ddeltas], dim=0).transpose(0, 1).contiguous().numpy()
