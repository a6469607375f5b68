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


def _delta_once(x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, win: int) -> torch.Tensor:
    """One delta order over stacked utterances: sum_k k * x[clamp(t + k)] / denom, k = -win..win.

    Interior frames use shifted slices of the whole stack (no gather); only the ``win``
    frames at each end of each utterance, where the shift would cross into a neighbour,
    are recomputed with indices clamped to the utterance (the reference's replicate padding).
    """
    n = x.shape[0]
    denom = win * (win + 1) * (2 * win + 1) / 3
    xp = torch.cat([x[:1].expand(win, -1), x, x[-1:].expand(win, -1)])  # edge rows: fixed below anyway
    acc = None
    for k in range(1, win + 1):  # k * (x[t+k] - x[t-k])
        term = (xp[win + k : win + k + n] - xp[win - k : win - k + n]) * float(k)
        acc = term if acc is None else acc + term
    out = acc / denom
    # rows within win of an utterance edge: their own clamped neighbours
    offs = torch.arange(win, device=x.device)
    edge = torch.cat([starts.unsqueeze(1) + offs, ends.unsqueeze(1) - offs], 1)  # (U, 2 win)
    lo, hi = starts.unsqueeze(1).expand_as(edge), ends.unsqueeze(1).expand_as(edge)
    edge, lo, hi = edge.reshape(-1), lo.reshape(-1), hi.reshape(-1)
    keep = (edge >= lo) & (edge <= hi)  # utterances shorter than 2 win frames
    edge, lo, hi = edge[keep], lo[keep], hi[keep]
    acc = None
    for k in range(1, win + 1):
        term = (x[torch.minimum(edge + k, hi)] - x[torch.maximum(edge - k, lo)]) * float(k)
        acc = term if acc is None else acc + term
    out[edge] = acc / denom
    return out


def deltas_segmented(x: torch.Tensor, counts: Sequence[int], order: int = 2, win: int = 2) -> torch.Tensor:
    """Deltas of stacked utterances (N, D) -> (N, D * (order + 1)).

    Equivalent to ``torchaudio.functional.compute_deltas`` (win_length=5,
    replicate padding) applied per utterance, for all utterances at once.
    """
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1] * (order + 1))
    counts_t = torch.tensor(list(counts), dtype=torch.long, device=x.device)
    counts_t = counts_t[counts_t > 0]
    ends = torch.cumsum(counts_t, 0) - 1
    starts = ends - counts_t + 1
    outs, cur = [x], x
    for _ in range(order):
        cur = _delta_once(cur, starts, ends, win)
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
