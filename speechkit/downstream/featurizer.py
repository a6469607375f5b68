"""SUPERB-style featurizer: a learnable softmax-weighted sum over an upstream's L+1 hidden states.

SUPERB (Yang et al., 2021) freezes the upstream and lets each task learn one scalar per hidden state
(the input to layer 1 up to the last layer's output, ``L + 1`` in all); the softmax of those scalars
mixes the layers. The weights start at zero, so training starts from the plain average and the learned
weights show which layers a task uses. :class:`Upstream` wraps any module with the s3prl/HF
``extract_features(wav, wav_lens) -> (hidden_states, lens)`` contract and, when frozen, runs it under
``torch.no_grad`` in eval mode: no graph is kept for the encoder, which is most of the compute saved
on a CPU.
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

    def __init__(self, model: nn.Module, freeze: bool = True) -> None:
        super().__init__()
        if not hasattr(model, "extract_features"):
            raise TypeError(f"{type(model).__name__} does not expose extract_features(wav, wav_lens)")
        self.model = model
        self.freeze = freeze
        if freeze:
            model.requires_grad_(False)
            model.eval()

    def train(self, mode: bool = True) -> "Upstream":
        super().train(mode)
        if self.freeze:  # dropout / layerdrop stay off in a frozen upstream
            self.model.eval()
        return self

    def forward(self, wav: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        if self.freeze:
            with torch.no_grad():
                hs, lens = self.model.extract_features(wav, wav_lens)
            return [h.detach() for h in hs], lens
        return self.model.extract_features(wav, wav_lens)

    @torch.no_grad()
    def num_states(self) -> int:
        """L+1, found by running a short dummy input (works for any upstream)."""
        enc = find_encoder(self.model)
        if enc is not None:
            return enc.num_layers + 1
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
