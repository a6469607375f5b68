"""Hand-crafted "upstreams" for the baseline rows of downstream tables (SUPERB reports FBANK).

:class:`SpectralUpstream` exposes the same ``extract_features(wav, wav_lens) -> (hidden_states, lens)``
contract as an SSL encoder, with one hidden state: Kaldi log mel filterbank (``fbank``, 80 bins) or
MFCC + deltas (``mfcc``, 39 dims), 100 Hz. It has no parameters, so a speaker head or a probe on top
of it measures what the task gets from the spectrum alone. Downstream checkpoints describe it with
:meth:`upstream_spec` (``{"type": "fbank"}``), from which :func:`build_spectral_upstream` rebuilds it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from speechkit.models.registry import register_encoder

KINDS = ("fbank", "mfcc")


class SpectralUpstream(nn.Module):
    def __init__(self, kind: str = "fbank", sample_rate: int = 16000) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"spectral upstream: unknown kind {kind!r}; expected one of {KINDS}")
        from speechkit.features.kaldi import Fbank
        from speechkit.features.mfcc import Mfcc

        self.kind = kind
        self.sample_rate = sample_rate
        self.extractor = Fbank(sample_rate=sample_rate) if kind == "fbank" else Mfcc(sample_rate=sample_rate)
        self.hidden_dim = int(self.extractor.dim)
        self.num_hidden_states = 1

    def upstream_spec(self) -> dict[str, Any]:
        return {"type": self.kind, "sample_rate": self.sample_rate}

    @torch.no_grad()
    def extract_features(self, wav: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        """(B, T) float audio in [-1, 1], (B,) lengths -> [(B, F, D)], (B,) frame counts (Kaldi framing)."""
        wavs = [wav[i, : int(n)].float().cpu().numpy().astype(np.float32) for i, n in enumerate(wav_lens.tolist())]
        feats = self.extractor.batch(wavs)
        lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        out = torch.zeros(len(feats), max(int(lens.max()), 1), self.hidden_dim)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = torch.from_numpy(f)
        return [out.to(wav.device)], lens.to(wav.device)


def build_spectral_upstream(spec: dict[str, Any]) -> SpectralUpstream:
    return SpectralUpstream(spec["type"], int(spec.get("sample_rate", 16000)))


for _kind in KINDS:
    register_encoder(_kind, build_spectral_upstream)
