"""Optimizers for training: Adam / AdamW over a model's trainable parameters."""
from __future__ import annotations

import torch
from torch import nn

from speechkit.train.config import OptimConfig

OPTIMIZERS = ("adam", "adamw")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the parameters that require grad.

    fairseq's "adam" applies weight decay decoupled from the gradient (AdamW); published HuBERT /
    wav2vec 2.0 settings (``weight_decay: 0.01``) therefore mean ``adamw`` here.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    if len(cfg.betas) != 2:
        raise ValueError(f"optim.betas: expected two numbers, got {cfg.betas}")
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in params):
        # torch's fused CPU kernel: one pass per tensor instead of a dozen foreach passes (the mini
        # recipe's 0.67M-parameter model: 0.9 ms per step instead of 5.1 ms, one thread), same update
        # to ~1e-8. CUDA keeps the default (foreach), which this machine cannot test.
        kwargs["fused"] = True
    name = cfg.name.lower()
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"optim.name: unknown optimizer {cfg.name!r}; expected one of {OPTIMIZERS}")
