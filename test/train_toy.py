"""A toy model, a tiny data dir and a training worker for the trainer's tests.

Not collected by pytest (no ``test_`` prefix). Run as a script, it trains the toy model in a
subprocess (``python test/train_toy.py --data D --exp E [--resume auto] [--kill-at N]``) so tests
can SIGKILL it; ``--kill-at N`` makes the worker SIGKILL itself right after update N, a real
uncatchable kill at a deterministic point.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import signal
import sys
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]


def worker_env() -> dict[str, str]:
    """Environment for a training worker process whose weights a test compares bit for bit with a run
    in the test process: speechkit importable, no inherited torchrun variables, and as many intra-op
    threads as the test process (CPU kernels may split work differently with another thread count)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch.get_num_threads())
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from speechkit.io.datadir import write_data_dir  # noqa: E402
from speechkit.train.config import TrainConfig  # noqa: E402

SR = 16000
HOP = 320  # the toy conv has the HuBERT extractor's total stride: 50 Hz frames


def toy_frames(num_samples: int) -> int:
    return (num_samples - 400) // HOP + 1


class ToyModel(nn.Module):
    """conv (400/320, 50 Hz) -> dropout -> random frame masking -> linear over ``num_classes``.

    Follows speechkit's model convention: loss is the mean over predicted frames, stats carry
    ``loss_sum`` and ``sample_size``. Dropout and masking draw from the torch RNG, so an inexact
    RNG restore on resume changes the weights.
    """

    def __init__(self, num_classes: int = 10, dim: int = 16, label_rate: int = 50, random: bool = True):
        super().__init__()
        self.random = random
        self.conv = nn.Conv1d(1, dim, kernel_size=400, stride=HOP)
        self.mask_emb = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, num_classes)
        self.drop = nn.Dropout(0.1 if random else 0.0)
        self.ratio = label_rate // 50

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float], int]:
        x = self.conv(batch["wav"].unsqueeze(1)).transpose(1, 2)  # (B, T', D)
        x = self.drop(torch.tanh(x))
        if self.random:
            mask = torch.rand(x.shape[:2], device=x.device) < 0.5
        else:  # deterministic: every other frame
            mask = (torch.arange(x.size(1), device=x.device) % 2 == 0)[None, :].expand(x.shape[:2])
        x = torch.where(mask[..., None], self.mask_emb.expand_as(x), x)
        T = x.size(1)
        labels = batch["labels"][:, :: self.ratio][:, :T]
        if labels.size(1) < T:
            labels = F.pad(labels, (0, T - labels.size(1)), value=-100)
        frame_lens = (batch["wav_lens"] - 400) // HOP + 1
        valid = (torch.arange(T)[None, :] < frame_lens[:, None]) & (labels != -100) & mask
        logits = self.proj(x[valid])
        target = labels[valid]
        n = int(valid.sum())
        loss_sum = F.cross_entropy(logits, target, reduction="sum")
        loss = loss_sum / max(n, 1)
        acc = float((logits.argmax(-1) == target).float().mean()) if n else 0.0
        stats = {"loss": float(loss.detach()), "acc_m": acc, "loss_sum": float(loss_sum.detach()), "sample_size": float(n)}
        return loss, stats, n


def make_data_dir(path: pathlib.Path, durations_s: list[float], seed: int = 0, num_classes: int = 10,
                  label_rate: int = 50, tag: str = "toy") -> pathlib.Path:
    """Random-audio utterances (flac) with random labels at ``label_rate`` (Kaldi frame counts)."""
    rng = np.random.default_rng(seed)
    audio = path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    wav_scp, n_samples, labels = {}, {}, {}
    for i, dur in enumerate(durations_s):
        utt = f"spk{i % 2}-utt{i:03d}"
        n = int(dur * SR)
        wav = (rng.standard_normal(n) * 0.1).astype(np.float32)
        f = audio / f"{utt}.flac"
        sf.write(f, wav, SR)
        wav_scp[utt] = str(f)
        n_samples[utt] = n
        n_lab = toy_frames(n) if label_rate == 50 else 1 + (n - 400) // 160
        labels[utt] = " ".join(map(str, rng.integers(0, num_classes, n_lab)))
    return write_data_dir(path, wav_scp=wav_scp, utt2spk={u: u.split("-")[0] for u in wav_scp},
                          utt2num_samples=n_samples, extra={f"km.{tag}": labels})


def toy_config(**trainer: Any) -> TrainConfig:
    raw = {
        "model": {"arch": "toy", "num_classes": 10},
        "data": {"max_sample_size": 16000, "min_sample_size": 4000, "max_tokens": 32000, "num_workers": 0,
                 "label_rate": 50},
        "optim": {"name": "adamw", "lr": 1.0e-2, "weight_decay": 0.01, "clip_norm": 1.0},
        "schedule": {"name": "polynomial_decay", "warmup_updates": 3},
        "trainer": {"max_updates": 12, "log_interval": 2, "valid_interval": 4, "save_interval": 3,
                    "keep_last": 2, "seed": 3, **trainer},
    }
    return TrainConfig.from_dict(raw)


def build(cfg: TrainConfig, data: pathlib.Path, exp: pathlib.Path, valid: pathlib.Path | None = None,
          hooks=None, dist_info=None):
    from speechkit.train.dataset import AudioLabelDataset
    from speechkit.train.trainer import Trainer, set_seed

    dc = cfg.data
    kw = dict(sample_rate=SR, min_sample_size=dc.min_sample_size, max_sample_size=dc.max_sample_size)
    train_set = AudioLabelDataset(data, ["toy"], [dc.label_rate], **kw)
    valid_set = AudioLabelDataset(valid, ["toy"], [dc.label_rate], **kw) if valid else None
    set_seed(cfg.trainer.seed)  # identical initial weights in every run
    model = ToyModel(num_classes=cfg.model["num_classes"], label_rate=dc.label_rate)
    return Trainer(model, cfg, exp, train_set, valid_set, model_config=dict(cfg.model), hooks=hooks,
                   dist_info=dist_info)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--valid")
    p.add_argument("--exp", required=True)
    p.add_argument("--resume", default=None)
    p.add_argument("--kill-at", type=int, default=0)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    from speechkit.log import setup_logging
    from speechkit.train.config import apply_override

    setup_logging()
    raw = toy_config().to_dict()
    for ov in args.set:
        apply_override(raw, ov)
    cfg = TrainConfig.from_dict(raw)

    def killer(trainer) -> None:
        if trainer.num_updates == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    from speechkit.train.distributed import cleanup, init_distributed

    info = init_distributed()  # torchrun's env vars, or a single process
    trainer = build(cfg, pathlib.Path(args.data), pathlib.Path(args.exp),
                    pathlib.Path(args.valid) if args.valid else None, hooks=[killer] if args.kill_at else None,
                    dist_info=info)
    trainer.maybe_resume(args.resume)
    trainer.train()
    torch.save(trainer.model.state_dict(), pathlib.Path(args.exp) / f"final_weights_rank{info.rank}.pt")
    cleanup(info)


if __name__ == "__main__":
    main()
