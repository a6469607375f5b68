"""s3prl's upstream interface over any speechkit model, so s3prl-style downstream code runs on it unchanged.

s3prl (the SUPERB toolkit) calls an upstream with a *list* of unpadded 16 kHz waveforms and reads a dict:

    upstream = S3PRLUpstream(load_pretrained("exp/hubert_iter2/checkpoint_best.pt"))
    out = upstream([wav_a, wav_b])                # wav_*: (T_i,) float tensors, any lengths
    out["hidden_states"]                          # L+1 tensors (B, T', D), T' = frames of the longest wav
    upstream.get_downsample_rates("hidden_states")  # 320 samples per frame

What each part of that contract means here:
- Padding: the wavs are zero-padded to the longest (s3prl's `pad_sequence`) and their lengths go to the
  model, which masks the padding (key padding masks, per-utterance GroupNorm statistics), so an
  utterance's valid frames are the same in any batch. Frames past an utterance's end hold whatever the
  model computes there; s3prl's featurizer cuts each utterance to `round(len(wav) / downsample_rate)`
  frames (at most one frame more than the exact conv count, which `frame_lens` gives).
- hidden_states: entry 0 is the input to the first transformer layer (after the positional conv),
  entry i the output of layer i, the last the encoder output (final LayerNorm included for pre-LN
  models) - the states s3prl's hubert/wav2vec2 experts collect with hooks on the layers' inputs and the
  encoder's output, and the ones HF returns with `output_hidden_states=True`. LayerDrop skips a layer's
  computation but not its entry, so there are always L+1 (s3prl's weighted sum needs a fixed count).
- Waveform normalisation is the model's own (`EncoderConfig.normalize`, as s3prl's experts apply
  `task.normalize`), so raw waveforms go in.
- Also returned: `last_hidden_state`, `hidden_state_{i}` (what s3prl's UpstreamBase adds) and
  `frame_lens` (B,), the exact valid frames (a speechkit extra; s3prl ignores unknown keys).

This is a different call from speechkit's own `extract_features(wav, wav_lens) -> (hidden_states,
frame_lens)` on padded batches (`speechkit.downstream.featurizer.Upstream`), which this class wraps.
The train/eval mode and gradients are left to the caller, as s3prl's runner sets them.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from .encoder import SSLEncoder

SAMPLE_RATE = 16000


def _find_encoder(model: nn.Module) -> SSLEncoder | None:
    if isinstance(model, SSLEncoder):
        return model
    return next((m for m in model.modules() if isinstance(m, SSLEncoder)), None)


class S3PRLUpstream(nn.Module):
    """`forward(wavs: list[Tensor]) -> {"hidden_states": [L+1 x (B, T', D)], ...}` and
    `get_downsample_rates(key)` over a module with speechkit's `extract_features(wav, wav_lens)`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not hasattr(model, "extract_features"):
            raise TypeError(f"{type(model).__name__} has no extract_features(wav, wav_lens): not a speechkit upstream")
        self.model = model
        enc = _find_encoder(model)
        # the conv stack's total stride: one frame per 320 samples for every wav2vec 2.0-style extractor
        self.downsample_rate = enc.feature_extractor.total_stride if enc is not None else None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "S3PRLUpstream":
        """From any checkpoint `speechkit.models.load_pretrained` reads (pre-trained, imported)."""
        from .registry import load_pretrained

        return cls(load_pretrained(path, map_location=map_location))

    def get_downsample_rates(self, key: str = "hidden_states") -> int:
        """Input samples per output frame of feature `key` (the same for every key here)."""
        if self.downsample_rate is None:  # an upstream without an SSLEncoder: measure one second
            self.downsample_rate = self._measure_downsample_rate()
        return int(self.downsample_rate)

    @torch.no_grad()
    def _measure_downsample_rate(self) -> int:
        p = next(self.model.parameters())
        hs, _ = self.model.extract_features(torch.zeros(1, SAMPLE_RATE, device=p.device),
                                            torch.tensor([SAMPLE_RATE], device=p.device))
        return round(SAMPLE_RATE / hs[-1].size(1))

    def forward(self, wavs: list[Tensor] | tuple[Tensor, ...]) -> dict[str, Any]:
        if not isinstance(wavs, (list, tuple)) or not wavs:
            raise TypeError("S3PRLUpstream expects a non-empty list of 1-D waveforms (T_i,), as s3prl passes them")
        for i, w in enumerate(wavs):
            if not isinstance(w, Tensor) or w.dim() != 1 or not w.is_floating_point():
                what = f"a {w.dim()}-D {w.dtype} tensor" if isinstance(w, Tensor) else type(w).__name__
                raise ValueError(f"wavs[{i}]: expected a 1-D float waveform (T,) at {SAMPLE_RATE} Hz, got {what}")
        lens = torch.tensor([w.numel() for w in wavs], dtype=torch.long, device=wavs[0].device)
        padded = pad_sequence(list(wavs), batch_first=True)  # (B, T) zero-padded
        hidden_states, frame_lens = self.model.extract_features(padded, lens)
        hidden_states = list(hidden_states)
        out: dict[str, Any] = {"hidden_states": hidden_states, "last_hidden_state": hidden_states[-1],
                               "frame_lens": frame_lens}
        out.update({f"hidden_state_{i}": h for i, h in enumerate(hidden_states)})
        return out
