"""SUPERB-style featurizer: a learnable softmax-weighted sum over an upstream's L+1 hidden states.

SUPERB (Yang et al., 2021) freezes the upstream and lets each task learn one scalar per hidden state
(the input to layer 1 up to the last layer's output, ``L + 1`` in all); the softmax of those scalars
mixes the layers. The weights start at zero, so training starts from the plain average and the learned
weights show which layers a task uses (s3prl's Featurizer does the same sum: softmax over zero-initialised
weights, optional parameter-free LayerNorm of each state first). :class:`Upstream` wraps any module with
speechkit's ``extract_features(wav, wav_lens) -> (hidden_states, frame_lens)`` call on padded batches
(the hidden states are HF's ``output_hidden_states`` and s3prl's ``hidden_states``; the calls differ, and
:class:`speechkit.models.upstream.S3PRLUpstream` offers s3prl's list-of-waveforms one) and, when frozen,
runs it under ``torch.no_grad`` in eval mode: no graph is kept for the encoder, which is most of the
compute saved on a CPU.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.models import build_upstream, find_encoder

__all__ = ["WeightedSumFeaturizer", "Upstream", "upstream_spec", "upstream_module", "build_upstream", "find_encoder",
           "frames_mask"]


class WeightedSumFeaturizer(nn.Module):
    """(L+1) x (B, T, D) hidden states -> (B, T, D) = sum_l softmax(w)_l * h_l (optionally layer-normed)."""

    def __init__(self, num_states: int, layer_norm: bool = False) -> None:
        super().__init__()
        if num_states < 1:
            raise ValueError(f"WeightedSumFeaturizer needs at least one hidden state, got {num_states}")
        self.num_states = num_states
        self.layer_norm = layer_norm  # s3prl's `normalize`: each state layer-normed (no affine) first
        self.weights = nn.Parameter(torch.zeros(num_states))  # zero init: a uniform average at the start

    def forward(self, hidden_states: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        if len(hidden_states) != self.num_states:
            raise ValueError(f"featurizer was built for {self.num_states} hidden states (L+1), got "
                             f"{len(hidden_states)}; was the upstream changed?")
        stacked = torch.stack(list(hidden_states), dim=0)  # (L+1, B, T, D)
        if self.layer_norm:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        w = F.softmax(self.weights, dim=0).to(stacked.dtype)  # (L+1,)
        return (w[:, None, None, None] * stacked).sum(dim=0)  # (B, T, D)

    def layer_weights(self) -> list[float]:
        """The softmax-normalised weights, entry i for hidden state i (0: the input to layer 1)."""
        return [float(v) for v in F.softmax(self.weights.detach().float(), dim=0)]

    def format_weights(self) -> str:
        w = self.layer_weights()
        best = max(range(len(w)), key=w.__getitem__)
        return " ".join(f"{i}:{v:.3f}" for i, v in enumerate(w)) + f" (largest: hidden state {best})"

    def save_weights(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> pathlib.Path:
        """JSON ``{"layer_weights": [...], "raw_weights": [...], ...extra}`` written atomically."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"layer_weights": self.layer_weights(),
                "raw_weights": [float(v) for v in self.weights.detach().float()],
                "num_states": self.num_states, **(extra or {})}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def upstream_spec(module: nn.Module) -> dict[str, Any]:
    """A plain-dict description from which :func:`build_upstream` rebuilds the same architecture.

    The bare encoder is kept when there is one (objective heads are not needed downstream), described by
    its own ``upstream_spec()``; any other model exposing ``extract_features`` and ``model_config()`` is
    rebuilt by the registry from its model_config.
    """
    if hasattr(module, "upstream_spec"):  # parameter-free baselines (speechkit.downstream.baseline_upstream)
        return module.upstream_spec()
    enc = find_encoder(module)
    if enc is not None:
        return enc.upstream_spec()
    if hasattr(module, "extract_features") and hasattr(module, "model_config"):
        return {"type": "model", "model_config": module.model_config()}
    raise TypeError(f"{type(module).__name__} has no SSLEncoder and no model_config(): cannot describe it as an "
                    "upstream (a downstream checkpoint must be able to rebuild its upstream)")


def upstream_module(module: nn.Module) -> nn.Module:
    """The part of ``module`` that :func:`upstream_spec` describes (its SSLEncoder when it has one)."""
    enc = find_encoder(module)
    return enc if enc is not None else module


class Upstream(nn.Module):
    """Any ``extract_features`` module; frozen (no grads, eval mode, no graph) or trainable."""

    def __init__(self, model: nn.Module, freeze: bool = True, cache: bool = False) -> None:
        super().__init__()
        if not hasattr(model, "extract_features"):
            raise TypeError(f"{type(model).__name__} does not expose extract_features(wav, wav_lens)")
        if cache and not freeze:
            raise ValueError("only a frozen upstream's hidden states can be cached")
        self.model = model
        self.freeze = freeze
        # utt id -> (L+1, T, D) hidden states on the CPU: a frozen upstream in eval mode gives the same
        # states for the same (uncropped) utterance every epoch, so after the first epoch the head
        # trains without running the encoder. Memory: 4 * (L+1) * D bytes per frame.
        self._cache: dict[str, Tensor] | None = {} if cache else None
        if freeze:
            model.requires_grad_(False)
            model.eval()

    def train(self, mode: bool = True) -> "Upstream":
        super().train(mode)
        if self.freeze:  # dropout / layerdrop stay off in a frozen upstream
            self.model.eval()
        return self

    def forward(self, wav: Tensor, wav_lens: Tensor, utt_ids: list[str] | None = None) -> tuple[list[Tensor], Tensor]:
        if self._cache is not None and utt_ids is not None:
            return self._cached(wav, wav_lens, utt_ids)
        if self.freeze:
            with torch.no_grad():
                hs, lens = self.model.extract_features(wav, wav_lens)
            return [h.detach() for h in hs], lens
        return self.model.extract_features(wav, wav_lens)

    def _cached(self, wav: Tensor, wav_lens: Tensor, utt_ids: list[str]) -> tuple[list[Tensor], Tensor]:
        cache = self._cache
        assert cache is not None
        missing = [i for i, u in enumerate(utt_ids) if u not in cache]
        if missing:
            idx = torch.tensor(missing, device=wav.device)
            sub_lens = wav_lens[idx]
            with torch.no_grad():
                hs, lens = self.model.extract_features(wav[idx, : int(sub_lens.max())], sub_lens)
            stacked = torch.stack([h.detach() for h in hs], dim=0)  # (S, b, T, D)
            for j, i in enumerate(missing):
                cache[utt_ids[i]] = stacked[:, j, : int(lens[j])].to("cpu", copy=True)
        states = [cache[u] for u in utt_ids]
        lens = torch.tensor([s.shape[1] for s in states], device=wav.device)
        t = int(lens.max())
        out = states[0].new_zeros(states[0].shape[0], len(states), t, states[0].shape[2])
        for j, st in enumerate(states):
            out[:, j, : st.shape[1]] = st
        out = out.to(wav.device)
        return list(out.unbind(0)), lens

    @torch.no_grad()
    def num_states(self) -> int:
        """L+1, found by running a short dummy input (works for any upstream)."""
        enc = find_encoder(self.model)
        if enc is not None:
            return enc.num_layers + 1
        if hasattr(self.model, "num_hidden_states"):
            return int(self.model.num_hidden_states)
        p = next(self.model.parameters())
        was = self.model.training
        self.model.eval()
        wav = torch.zeros(1, 16000, device=p.device)
        hs, _ = self.model.extract_features(wav, torch.tensor([16000], device=p.device))
        self.model.train(was)
        return len(hs)


def frames_mask(lens: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True at valid frames."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]
