"""Learning-rate schedules as pure functions of the update count.

A schedule maps ``num_updates`` (updates already done) to the lr of the next update. Being a pure
function makes resume exact for free: the checkpoint only needs the update count. Semantics follow
fairseq's schedulers so published hyper-parameters transfer:

- ``polynomial_decay``: linear warmup from 0 to ``lr`` over ``warmup_updates``, then
  ``(lr - end_lr) * (1 - progress) ** power + end_lr`` until ``total_updates``, then ``end_lr``.
  As in fairseq the very first update (num_updates = 0) uses ``lr / warmup_updates``.
- ``linear``: polynomial_decay with power 1.
- ``cosine``: linear warmup, then half a cosine from ``lr`` to ``end_lr``.
- ``tri_stage`` (wav2vec 2.0 fine-tuning): linear warmup from ``init_lr_scale * lr`` to ``lr``,
  hold, exponential decay to ``final_lr_scale * lr``, then constant.
- ``constant``: linear warmup, then ``lr``.
"""
from __future__ import annotations

import logging
import math

import torch

from speechkit.train.config import ScheduleConfig

SCHEDULES = ("polynomial_decay", "linear", "cosine", "tri_stage", "constant")


class LRSchedule:
    """``lr_at(n)``: the lr for the update after ``n`` updates; ``step(optimizer, n)`` applies it."""

    def __init__(self, cfg: ScheduleConfig, peak_lr: float, max_updates: int):
        if cfg.name not in SCHEDULES:
            raise ValueError(f"schedule.name: unknown schedule {cfg.name!r}; expected one of {SCHEDULES}")
        self.cfg = cfg
        self.peak = float(peak_lr)
        self.total = int(cfg.total_updates or max_updates)
        self.warmup = int(cfg.warmup_updates)
        if cfg.name == "tri_stage":
            if cfg.phase_ratio is not None:
                if len(cfg.phase_ratio) != 3 or abs(sum(cfg.phase_ratio) - 1.0) > 1e-6:
                    raise ValueError(f"schedule.phase_ratio must be 3 fractions summing to 1, got {cfg.phase_ratio}")
                self.warmup = int(self.total * cfg.phase_ratio[0])
                self.hold = int(self.total * cfg.phase_ratio[1])
                self.decay = int(self.total * cfg.phase_ratio[2])
            else:
                self.hold, self.decay = int(cfg.hold_updates), int(cfg.decay_updates)
            self.init_lr = cfg.init_lr_scale * self.peak
            self.final_lr = cfg.final_lr_scale * self.peak
        elif self.warmup > self.total and cfg.name != "constant":
            raise ValueError(f"schedule: warmup_updates {self.warmup} > total_updates {self.total}")

    def lr_at(self, num_updates: int) -> float:
        n = int(num_updates)
        c = self.cfg
        if c.name == "tri_stage":
            return self._tri_stage(n)
        if self.warmup > 0 and n <= self.warmup:
            # fairseq sets lr/warmup at construction and num_updates/warmup after each update.
            return self.peak * max(n, 1) / self.warmup
        if c.name == "constant":
            return self.peak
        if n >= self.total:
            return c.end_lr
        progress = (n - self.warmup) / max(1, self.total - self.warmup)
        if c.name == "cosine":
            return c.end_lr + 0.5 * (self.peak - c.end_lr) * (1.0 + math.cos(math.pi * progress))
        power = 1.0 if c.name == "linear" else c.power
        return (self.peak - c.end_lr) * (1.0 - progress) ** power + c.end_lr

    def _tri_stage(self, n: int) -> float:
        if n < self.warmup:
            return self.init_lr + (self.peak - self.init_lr) * n / self.warmup
        n -= self.warmup
        if n < self.hold:
            return self.peak
        n -= self.hold
        if n <= self.decay and self.decay > 0:
            # exp decay chosen so that it reaches final_lr exactly at the end of the decay stage.
            return self.peak * math.exp(math.log(self.cfg.final_lr_scale) * n / self.decay)
        return self.final_lr

    def step(self, optimizer: torch.optim.Optimizer, num_updates: int) -> float:
        lr = self.lr_at(num_updates)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        # Nothing to restore (pure function of num_updates); kept so a resumed run can check
        # that the schedule did not change under it.
        return {"name": self.cfg.name, "peak": self.peak, "total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        if state != mine:
            logging.getLogger(__name__).warning(
                "learning-rate schedule differs from the checkpoint's (%s -> %s); continuing with the new one",
                state, mine,
            )
