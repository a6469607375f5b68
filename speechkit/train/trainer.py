"""The training loop shared by every speechkit model: DDP, AMP, accumulation, exact resume.

Usage::

    trainer = Trainer(model, cfg, exp_dir, train_set, valid_set, model_config={"arch": "hubert", ...})
    trainer.maybe_resume("auto")     # or a checkpoint path, or None
    trainer.train()

The model follows the batch contract (:mod:`speechkit.models.contract`, CONTRACT.md):
``model(batch) -> (loss, stats, sample_size)``. As in speechkit's models, ``loss`` is by default the
*mean* over ``sample_size`` units (its sum is ``loss * sample_size``); a model whose loss is already a
sum sets ``loss_reduction = "sum"``. Either way the trainer back-propagates the summed loss and
divides the gradients by the total sample size of the update across accumulation steps and ranks
(fairseq's normalisation), so ``update_freq=2`` with half batches is the same update as one full batch.

Optional model hooks: ``set_num_updates(n)`` after every update and after a resume, ``after_update(n)``
once after every update, ``has_unused_parameters()`` for DDP (LayerDrop is detected here). Batches come
from ``collater`` (default: :func:`make_collater` of the config: audio and frame labels); downstream
tasks pass their own (e.g. one adding transcripts as labels).

Stats are averaged weighted by sample size; keys ``sample_size``, ``*_sum`` and ``count_*`` are
totals and are not logged.

Exactness of resume rests on three things: batches are a pure function of (seed, epoch) and
crops of (seed, epoch, utterance index); the checkpoint records the position in the epoch and
every RNG state; validation runs under a saved-and-restored RNG so it does not shift training.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
import random
import shutil
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechkit.models.contract import AfterUpdate, DeclaresUnusedParameters, UpdateCounter
from speechkit.train import checkpoint as ckpt
from speechkit.train.batching import BucketBatchSampler, Collater
from speechkit.train.config import TrainConfig
from speechkit.train.dataset import AudioLabelDataset
from speechkit.train.distributed import DistInfo, all_gather_object, all_reduce_sum, barrier
from speechkit.train.optim import build_optimizer
from speechkit.train.schedule import LRSchedule

logger = logging.getLogger(__name__)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_collater(cfg: TrainConfig, train_set: AudioLabelDataset) -> Collater:
    """The trainer's default collater: crop/pad audio and frame labels as ``cfg.data`` says."""
    dc = cfg.data
    return Collater(dc.sample_rate, dc.max_sample_size, label_rates=train_set.label_rates, pad_audio=dc.pad_audio,
                    random_crop=dc.random_crop, seed=cfg.trainer.seed)


def unused_parameters_reason(model: nn.Module) -> str | None:
    """Why some trainable parameters of ``model`` may get no gradient in an update (None: every one always
    gets one). DDP must then look for them each step, or the next step fails with "Expected to have
    finished reduction in the prior iteration"."""
    if isinstance(model, DeclaresUnusedParameters) and model.has_unused_parameters():
        return f"{type(model).__name__} declares parameters without gradient in some updates"
    for name, module in model.named_modules():
        layerdrop = getattr(module, "layerdrop", 0.0)
        if isinstance(layerdrop, (int, float)) and layerdrop > 0 and any(
                p.requires_grad for p in module.parameters()):
            return f"layerdrop {layerdrop:g} in {name or type(model).__name__} skips whole layers"
    return None


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        exp_dir: str | os.PathLike,
        train_set: AudioLabelDataset,
        valid_set: AudioLabelDataset | None = None,
        *,
        dist_info: DistInfo | None = None,
        model_config: dict[str, Any] | None = None,
        hooks: list[Callable[["Trainer"], None]] | None = None,
        collater: Collater | Any = None,  # Collater-like: items -> batch dict, and set_epoch(epoch)
        valid_collater: Collater | Any = None,
    ):
        self.cfg = cfg
        self.tc = cfg.trainer
        self.info = dist_info or DistInfo()
        self.device = self.info.device
        self.exp_dir = pathlib.Path(exp_dir)
        self.model_config = dict(model_config or {})
        self.hooks = list(hooks or [])
        self.train_set, self.valid_set = train_set, valid_set

        self.model = model.to(self.device)
        self.loss_reduction = getattr(model, "loss_reduction", "mean")
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            reason = "trainer.find_unused_parameters" if self.tc.find_unused_parameters else \
                unused_parameters_reason(self.model)
            self._ddp_note = "" if reason is None else f"DDP looks for parameters without gradient each step ({reason})"
            self.ddp_model: nn.Module = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=reason is not None
            )
        else:
            self.ddp_model = self.model
            self._ddp_note = ""
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.schedule = LRSchedule(cfg.schedule, cfg.optim.lr, self.tc.max_updates)

        self.amp_dtype: torch.dtype | None = None
        if self.tc.amp not in ("none", *AMP_DTYPES):
            raise ValueError(f"trainer.amp: expected none, fp16 or bf16, got {self.tc.amp!r}")
        if self.tc.amp != "none":
            if self.device.type == "cuda":
                self.amp_dtype = AMP_DTYPES[self.tc.amp]
            else:
                logger.info("trainer.amp=%s is ignored on %s: training in fp32", self.tc.amp, self.device.type)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        dc = cfg.data
        self.train_sampler = BucketBatchSampler(
            train_set.batch_lengths(), dc.max_tokens, seed=self.tc.seed, shuffle=True,
            rank=self.info.rank, world_size=self.info.world_size,
        )
        # separate instances: set_epoch on the training one must not change validation crops
        self.collater = collater if collater is not None else make_collater(cfg, train_set)
        self.valid_collater = valid_collater if valid_collater is not None else make_collater(cfg, train_set)

        # Run state (saved in checkpoints).
        self.num_updates = 0
        self.epoch = 1
        self.batch_in_epoch = 0  # batches of this rank's epoch list already consumed
        self.best_valid_loss = math.inf
        self.last_valid: dict[str, float] | None = None
        self._valid_at = -1
        self._saved_at = -1
        self._bad_steps = 0
        self._interval: dict[str, float] = {}
        self._writer = None
        self._log_handler: logging.Handler | None = None
        # Different ranks draw different masks/dropout; identical seeds would correlate them.
        set_seed(self.tc.seed + self.info.rank)

    # ---- resume ---------------------------------------------------------------------------
    def maybe_resume(self, resume: str | None) -> bool:
        """``"auto"``: continue from exp_dir/checkpoint_last.pt if it exists; a path: from that file."""
        if resume is None or resume == "none":
            last = self.exp_dir / "checkpoint_last.pt"
            if last.exists():
                raise ckpt.CheckpointError(
                    f"{last}: the experiment directory already has checkpoints; pass --resume auto to continue "
                    "it or choose a new --exp-dir"
                )
            return False
        path = self.exp_dir / "checkpoint_last.pt" if resume == "auto" else pathlib.Path(resume)
        if resume == "auto" and not path.exists():
            logger.info("no %s: starting from scratch", path)
            return False
        self.load_state(path)
        return True

    def load_state(self, path: pathlib.Path) -> None:
        state = ckpt.load_checkpoint(path, map_location="cpu")
        ckpt.check_model_config(path, state["model_config"], self.model_config)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{path}: checkpoint does not fit this model/optimizer: {e}") from e
        self.schedule.load_state_dict(state["scheduler"])
        if state["scaler"] and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.num_updates = int(state["num_updates"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_valid_loss = float(state.get("best_valid_loss", math.inf))
        ranks = state["rng"]["ranks"]
        if len(ranks) != self.info.world_size:
            logger.warning("%s was written by %d processes, now %d: resume is not bit-exact", path,
                           len(ranks), self.info.world_size)
        ckpt.set_rng_state(ranks[self.info.rank % len(ranks)])
        if isinstance(self.model, UpdateCounter):  # temperatures, freezing: functions of the update count
            self.model.set_num_updates(self.num_updates)
        self._saved_at = self._valid_at = self.num_updates
        logger.info("resumed from %s: update %d, epoch %d, batch %d of the epoch", path, self.num_updates,
                    self.epoch, self.batch_in_epoch)

    def state_dict(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "model_config": self.model_config,
            "train_config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "num_updates": self.num_updates,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_valid_loss": self.best_valid_loss,
            "rng": {"ranks": rng_states},
            "world_size": self.info.world_size,
            "speechkit_version": ckpt.version(),
        }

    def save(self, best: bool = False) -> None:
        """checkpoint_<updates>.pt (rotated), checkpoint_last.pt and maybe checkpoint_best.pt."""
        with self._not_training("save"):
            self._save(best)

    def _save(self, best: bool) -> None:
        rng_states = all_gather_object(ckpt.get_rng_state(), self.info)  # every rank takes part
        if self.info.is_main:
            state = self.state_dict(rng_states)
            numbered = self.exp_dir / f"checkpoint_{self.num_updates}.pt"
            ckpt.save_atomic(state, numbered)
            _link_atomic(numbered, self.exp_dir / "checkpoint_last.pt")
            if best:
                _link_atomic(numbered, self.exp_dir / "checkpoint_best.pt")
            ckpt.rotate(self.exp_dir, self.tc.keep_last)
            logger.info("saved %s%s", numbered.name, " (best so far)" if best else "")
        self._saved_at = self.num_updates
        barrier(self.info)

    # ---- the loop -------------------------------------------------------------------------
    def train(self) -> None:
        self._open_logs()
        try:
            self._train()
        finally:
            self._close_logs()

    def _train(self) -> None:
        tc = self.tc
        self.schedule.step(self.optimizer, self.num_updates)
        self._t0 = self._t_interval = time.perf_counter()
        self._paused_s = 0.0
        self._updates_at_start = self.num_updates
        while self.num_updates < tc.max_updates and not (tc.max_epochs and self.epoch > tc.max_epochs):
            batches = self.train_sampler.batches(self.epoch)
            if self.batch_in_epoch < len(batches):
                if self.batch_in_epoch == 0 and self.info.is_main:
                    logger.info("epoch %d: %d batches per process", self.epoch, len(batches))
                self._run_epoch(batches)
            if self.num_updates >= tc.max_updates:
                break
            self.epoch += 1
            self.batch_in_epoch = 0
        if self._valid_at != self.num_updates:
            self.validate()
        if self._saved_at != self.num_updates:
            self.save(best=self._is_new_best())
        logger.info("training done: %d updates, %d epochs, best valid loss %.4f", self.num_updates, self.epoch,
                    self.best_valid_loss)

    def _run_epoch(self, batches: list[list[int]]) -> None:
        self.collater.set_epoch(self.epoch)
        todo = batches[self.batch_in_epoch :]
        loader = self._loader(self.train_set, todo, self.collater)
        group: list[dict[str, Any]] = []
        for i, batch in enumerate(loader):
            group.append(batch)
            if len(group) < self.tc.update_freq and i + 1 < len(todo):
                continue
            stepped = self.train_step(group)
            self.batch_in_epoch += len(group)
            group = []
            if stepped:
                self._after_update()
            if self.num_updates >= self.tc.max_updates:
                break

    def _loader(self, dataset, batches, collater) -> torch.utils.data.DataLoader:
        # An explicit generator: creating a DataLoader iterator otherwise draws a seed from the
        # global torch RNG, and a resumed run (which creates one more iterator) would drift.
        gen = torch.Generator().manual_seed(self.tc.seed * 1000003 + self.epoch)
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collater, num_workers=self.cfg.data.num_workers,
            generator=gen, pin_memory=self.device.type == "cuda",
        )

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        nb = self.device.type == "cuda"
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                out[k] = v.to(self.device, non_blocking=nb)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                out[k] = [t.to(self.device, non_blocking=nb) for t in v]
            else:
                out[k] = v
        return out

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def train_step(self, group: list[dict[str, Any]]) -> bool:
        """One optimizer update from ``len(group)`` batches; False when skipped (non-finite grads)."""
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        sample_size = 0.0
        audio = 0.0
        for i, batch in enumerate(group):
            batch = self._to_device(batch)
            last = i == len(group) - 1
            sync = contextlib.nullcontext() if (last or not self.info.distributed) else self.ddp_model.no_sync()
            with sync:
                with self._autocast():
                    loss, stats, n = self.ddp_model(batch)
                summed = loss * n if self.loss_reduction == "mean" else loss
                self.scaler.scale(summed).backward()
            _accumulate(sums, stats, loss, n, self.loss_reduction)
            sample_size += float(n)
            audio += float(batch["wav_lens"].sum())
        totals = self._reduce(sums, {"_sample_size": sample_size, "_audio": audio, "_batches": len(group)})

        self.scaler.unscale_(self.optimizer)
        # DDP averaged the gradients over ranks; turn that into sum / (total sample size).
        factor = self.info.world_size / max(totals["_sample_size"], 1.0)
        params = [p for p in self.model.parameters() if p.grad is not None]
        for p in params:
            p.grad.mul_(factor)
        clip = self.cfg.optim.clip_norm if self.cfg.optim.clip_norm > 0 else math.inf
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if not math.isfinite(gnorm):
            self._bad_steps += 1
            if self.scaler.is_enabled():
                self.scaler.update()  # lowers the loss scale; fp16 overflows are routine
                logger.info("fp16 gradient overflow at update %d: loss scale now %g", self.num_updates + 1,
                            self.scaler.get_scale())
            else:
                logger.warning("non-finite gradient norm at update %d: update skipped", self.num_updates + 1)
            if self._bad_steps >= 20:
                raise FloatingPointError(f"{self._bad_steps} consecutive updates had non-finite gradients")
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self._bad_steps = 0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.num_updates += 1
        if isinstance(self.model, UpdateCounter):  # annealed temperatures, encoder freezing (fairseq convention)
            self.model.set_num_updates(self.num_updates)
        if isinstance(self.model, AfterUpdate):  # EMA teachers: once per update, never on resume
            self.model.after_update(self.num_updates)
        lr = self.schedule.step(self.optimizer, self.num_updates)
        iv = self._interval
        for k, v in totals.items():
            iv[k] = iv.get(k, 0.0) + v
        iv["_gnorm"] = iv.get("_gnorm", 0.0) + gnorm
        iv["_updates"] = iv.get("_updates", 0.0) + 1
        iv["_lr"] = lr
        return True

    def _reduce(self, sums: dict[str, float], extra: dict[str, float]) -> dict[str, float]:
        keys = sorted(sums) + sorted(extra)
        t = torch.tensor([sums.get(k, extra.get(k)) for k in keys], dtype=torch.float64)
        if self.info.distributed:
            t = all_reduce_sum(t.to(self.device), self.info).cpu()
        return dict(zip(keys, t.tolist()))

    def _after_update(self) -> None:
        tc = self.tc
        if self.num_updates % tc.log_interval == 0 or self.num_updates == 1:
            self._log_progress()
        new_best = False
        if tc.valid_interval > 0 and self.num_updates % tc.valid_interval == 0 and self._valid_at != self.num_updates:
            self.validate()
            new_best = self._is_new_best()
        if (tc.save_interval > 0 and self.num_updates % tc.save_interval == 0) or new_best:
            self.save(best=new_best)
        for hook in self.hooks:
            hook(self)

    def _is_new_best(self) -> bool:
        if self.last_valid is None or self._valid_at != self.num_updates:
            return False
        loss = self.last_valid.get("loss", math.inf)
        if loss < self.best_valid_loss:
            self.best_valid_loss = loss
            return True
        return False

    # ---- validation -----------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        with self._not_training("valid"):
            return self._validate()

    @torch.no_grad()
    def _validate(self) -> dict[str, float] | None:
        self._valid_at = self.num_updates
        if self.valid_set is None:
            return None
        dc = self.cfg.data
        sampler = BucketBatchSampler(
            self.valid_set.batch_lengths(), dc.valid_max_tokens or dc.max_tokens, seed=self.tc.seed,
            shuffle=False, rank=self.info.rank, world_size=self.info.world_size,
        )
        self.model.eval()
        sums: dict[str, float] = {}
        sample_size = 0.0
        saved = ckpt.get_rng_state()
        try:
            # Same masks at every validation (comparable numbers), and training's RNG untouched.
            set_seed(self.tc.seed + 7919 * (self.info.rank + 1))
            for batch in self._loader(self.valid_set, sampler.batches(0), self.valid_collater):
                with self._autocast():
                    loss, stats, n = self.model(self._to_device(batch))
                _accumulate(sums, stats, loss, n, self.loss_reduction)
                sample_size += float(n)
        finally:
            ckpt.set_rng_state(saved)
            self.model.train()
        totals = self._reduce(sums, {"_sample_size": sample_size})
        ss = max(totals.pop("_sample_size"), 1.0)
        result = {k: v / ss for k, v in totals.items()}
        self.last_valid = result
        if self.info.is_main:
            logger.info("valid | update %d | %s", self.num_updates,
                        " | ".join(f"{k} {v:.4f}" for k, v in result.items()))
            if self._writer is not None:
                for k, v in result.items():
                    self._writer.add_scalar(f"valid/{k}", v, self.num_updates)
        return result

    # ---- logging --------------------------------------------------------------------------
    # Progress speed counts training only: time in validation and checkpointing is measured
    # apart, so upd/s does not drop at every validation, and the ETA adds the validations and
    # saves still to come at the cost the last one of each had.
    _paused_s = 0.0  # validation + checkpoint time since the last progress line
    _cost_s: dict[str, float] = {}  # last duration of a validation ("valid") and of a save ("save")

    @contextlib.contextmanager
    def _not_training(self, kind: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t
            self._paused_s += dt
            self._cost_s = {**self._cost_s, kind: dt}

    def _eta(self, ups: float) -> float:
        """Seconds to max_updates: updates at ``ups``, plus the validations and saves to come."""
        tc, now = self.tc, self.num_updates
        if ups <= 0:
            return math.inf

        def to_come(interval: int, done_at: int) -> int:
            # on the interval from now (this update's, unless done) to max_updates, plus the one
            # at the end when max_updates is off the interval
            n = tc.max_updates // interval - now // interval if interval > 0 else 0
            n += 1 if interval > 0 and now % interval == 0 and done_at != now else 0
            return n + (1 if interval <= 0 or tc.max_updates % interval else 0)

        return ((tc.max_updates - now) / ups + to_come(tc.valid_interval, self._valid_at) * self._cost_s.get("valid", 0.0)
                + to_come(tc.save_interval, self._saved_at) * self._cost_s.get("save", 0.0))

    def _log_progress(self) -> None:
        iv, self._interval = self._interval, {}
        now = time.perf_counter()
        elapsed = max(now - self._t_interval - self._paused_s, 1e-9)
        self._t_interval, self._paused_s = now, 0.0
        if not self.info.is_main or not iv:
            return
        n_up = iv.pop("_updates")
        ss = max(iv.pop("_sample_size"), 1.0)
        ups = n_up / elapsed
        audio_s = iv.pop("_audio") / self.cfg.data.sample_rate / elapsed
        gnorm = iv.pop("_gnorm") / n_up
        lr = iv.pop("_lr")
        iv.pop("_batches", None)
        stats = {k: v / ss for k, v in iv.items()}
        eta = self._eta(ups)
        logger.info(
            "epoch %d | update %d/%d | %s | lr %.3e | gnorm %.3f | %.2f upd/s | %.1f s audio/s | ETA %s",
            self.epoch, self.num_updates, self.tc.max_updates,
            " | ".join(f"{k} {v:.4f}" for k, v in stats.items()), lr, gnorm, ups, audio_s, format_duration(eta),
        )
        if self._writer is not None:
            w = self._writer
            for k, v in stats.items():
                w.add_scalar(f"train/{k}", v, self.num_updates)
            w.add_scalar("train/lr", lr, self.num_updates)
            w.add_scalar("train/gnorm", gnorm, self.num_updates)
            w.add_scalar("train/updates_per_s", ups, self.num_updates)
            w.add_scalar("train/audio_s_per_s", audio_s, self.num_updates)
            if self.scaler.is_enabled():
                w.add_scalar("train/loss_scale", self.scaler.get_scale(), self.num_updates)

    def _open_logs(self) -> None:
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        if not self.info.is_main:
            return
        ckpt.remove_stale_temporaries(self.exp_dir)
        self.cfg.save_yaml(self.exp_dir / "config.yaml")
        handler = logging.FileHandler(self.exp_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:  # train.log must get the progress lines
            root.setLevel(logging.INFO)
        self._log_handler = handler
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is slow to import

        self._writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info("model: %s, %.2fM parameters; %d processes on %s; amp %s; update_freq %d",
                    self.model_config.get("arch", type(self.model).__name__), n_params / 1e6,
                    self.info.world_size, self.device, self.amp_dtype or "off (fp32)", self.tc.update_freq)
        if self._ddp_note:
            logger.info("%s", self._ddp_note)
        from speechkit import runtime

        logger.info("threads: %d torch threads per process (OMP_NUM_THREADS=%s); %s", torch.get_num_threads(),
                    os.environ.get("OMP_NUM_THREADS", "unset"), runtime.describe())

    def _close_logs(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


def _is_total(key: str) -> bool:
    return key == "sample_size" or key.endswith("_sum") or key.startswith("count_")


def _accumulate(sums: dict[str, float], stats: dict[str, float], loss: torch.Tensor, n: int,
                reduction: str) -> None:
    """Add ``stats`` weighted by the sample size (so ratios average correctly over batches)."""
    stats = {k: v for k, v in stats.items() if not _is_total(k)}
    if "loss" not in stats:
        value = float(loss.detach())
        stats["loss"] = value / max(n, 1) if reduction == "sum" else value
    for k, v in stats.items():
        sums[k] = sums.get(k, 0.0) + float(v) * float(n)


def _link_atomic(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Point ``dst`` at ``src``'s contents atomically (hard link, or a copy where links fail)."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
