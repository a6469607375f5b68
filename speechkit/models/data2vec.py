"""data2vec (audio) pre-training: regress a teacher's contextualised targets (Baevski et al., 2022).

Student: the shared encoder on masked input (mask_prob 0.65, length 10), a linear head `final_proj`
(D -> D) at masked frames. Teacher: an exponential moving average of the student's transformer
(`ema_encoder`: pos conv, layers, encoder LayerNorm; fairseq's `ema_transformer_only`), run in eval
mode without gradient on the *unmasked* projected features (the student's extractor and projection,
before input dropout). Targets: for each of the top K (8) teacher layers, the output of its FFN block
before the residual add and the final LayerNorm (fairseq's `layer_result`, the paper's "FFN output
prior to the last residual connection"), instance-normalised over time per utterance and channel,
then averaged over the K layers. Unlike `F.instance_norm` over a padded batch (fairseq), the statistics
use each utterance's valid frames only.

Loss over the N masked frames: sum over dims of smooth L1 (beta `loss_beta`) or, with loss_beta 0, the
squared error; scaled by `loss_scale` (default 1/sqrt(D), as fairseq); reported per frame.

EMA: tau = end - (end - start) * (1 - n / ema_anneal_end_step) for n < ema_anneal_end_step, then end
(0.999 -> 0.9999). With `ema_layers_only` (fairseq's default for audio) the positional conv is copied
from the student instead of averaged. The teacher is updated in `after_update(n)`, which the trainer calls
once after each optimizer update (fairseq does it in `set_num_updates`; here that only records the count,
so calling it again, e.g. on resume, cannot move the teacher): teacher <- tau * teacher + (1 - tau) * student.
The teacher's weights and the `num_updates` buffer are part of the state dict, so checkpoints resume exactly.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config_utils import ModelConfig
from .conv_extractor import lengths_to_padding_mask
from .encoder import EncoderConfig, SSLEncoder


@dataclass
class Data2VecConfig(ModelConfig):
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(mask_prob=0.65, mask_length=10))
    average_top_k_layers: int = 8
    instance_norm_target_layer: bool = True
    loss_beta: float = 0.25  # 0: L2; > 0: smooth L1 with this beta
    loss_scale: float | None = None  # None: 1 / sqrt(embed_dim)
    ema_decay: float = 0.999
    ema_end_decay: float = 0.9999
    ema_anneal_end_step: int = 30000
    ema_layers_only: bool = True  # fairseq default: the teacher's pos conv is copied, not averaged
    feature_pen_weight: float = 0.0  # data2vec does not use wav2vec 2.0's feature penalty
    sample_rate: int = 16000
    arch: str = "data2vec"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.average_top_k_layers <= self.encoder.num_layers:
            raise ValueError(f"average_top_k_layers must be in [1, {self.encoder.num_layers}] (encoder layers), "
                             f"got {self.average_top_k_layers}")
        if not 0.0 <= self.ema_decay <= self.ema_end_decay <= 1.0:
            raise ValueError(f"need 0 <= ema_decay <= ema_end_decay <= 1, got {self.ema_decay}, {self.ema_end_decay}")


def ema_decay_at(num_updates: int, start: float, end: float, anneal_end_step: int) -> float:
    """Linear anneal start -> end over anneal_end_step updates, then constant (fairseq get_annealed_rate)."""
    if num_updates >= anneal_end_step or start == end:
        return end
    return end - (end - start) * (1.0 - num_updates / anneal_end_step)


def masked_instance_norm(x: Tensor, valid: Tensor | None, eps: float = 1e-5) -> Tensor:
    """x: (B, T, C); normalise each (utterance, channel) over its valid frames (valid: (B, T) bool)."""
    x = x.float()
    if valid is None:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, unbiased=False, keepdim=True)
    else:
        w = valid[:, :, None].float()
        count = w.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (x * w).sum(dim=1, keepdim=True) / count
        var = (((x - mean) * w) ** 2).sum(dim=1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps)


class Data2VecPretrainModel(nn.Module):
    def __init__(self, cfg: Data2VecConfig) -> None:
        super().__init__()
        self.config = cfg
        self.data2vec = SSLEncoder(cfg.encoder)
        d = cfg.encoder.embed_dim
        self.final_proj = nn.Linear(d, d)
        self.ema_encoder = copy.deepcopy(self.data2vec.encoder)
        for p in self.ema_encoder.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.loss_reduction = "mean"

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        return self.data2vec.extract_features(wav, wav_lens, layer)

    def reset_teacher(self) -> None:
        """Teacher := student (e.g. after importing student weights from elsewhere)."""
        self.ema_encoder.load_state_dict(self.data2vec.encoder.state_dict())

    def current_decay(self) -> float:
        c = self.config
        return ema_decay_at(int(self.num_updates), c.ema_decay, c.ema_end_decay, c.ema_anneal_end_step)

    def set_num_updates(self, num_updates: int) -> None:
        """The update count (the EMA decay follows it); idempotent, so a resume may call it too."""
        self.num_updates.fill_(int(num_updates))

    @torch.no_grad()
    def after_update(self, num_updates: int) -> None:
        """The EMA step, once after optimizer update n (the trainer calls it; resume and validation do
        not): teacher <- tau(n) * teacher + (1 - tau(n)) * student."""
        c = self.config
        tau = ema_decay_at(int(num_updates), c.ema_decay, c.ema_end_decay, c.ema_anneal_end_step)
        if tau >= 1.0:
            return
        student = dict(self.data2vec.encoder.named_parameters())
        for name, t in self.ema_encoder.named_parameters():
            if c.ema_layers_only and name.startswith("pos_conv_embed."):
                t.copy_(student[name])
            else:
                t.mul_(tau).add_(student[name].detach().to(t.dtype), alpha=1.0 - tau)
        student_buffers = dict(self.data2vec.encoder.named_buffers())
        for name, b in self.ema_encoder.named_buffers():
            b.copy_(student_buffers[name])

    @torch.no_grad()
    def targets(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Teacher on unmasked projected features x (B, T, D) -> targets (B, T, D) fp32."""
        teacher = self.ema_encoder
        teacher.eval()  # no dropout / LayerDrop in the teacher
        k = self.config.average_top_k_layers
        layers = teacher.layers
        captured: list[Tensor] = []
        hooks = [layer.feed_forward.register_forward_hook(lambda _m, _i, out: captured.append(out))
                 for layer in layers[len(layers) - k:]]
        try:
            teacher(x, padding_mask)
        finally:
            for h in hooks:
                h.remove()
        if len(captured) != k:
            raise RuntimeError(f"data2vec: captured {len(captured)} teacher FFN outputs, expected {k}")
        valid = None if padding_mask is None else ~padding_mask
        if self.config.instance_norm_target_layer:
            captured = [masked_instance_norm(y, valid) for y in captured]
        return torch.stack([y.float() for y in captured]).mean(dim=0)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        cfg = self.config
        enc = self.data2vec
        feats, frame_lens, features_pen = enc.local_features(batch["wav"], batch["wav_lens"])
        padding_mask = lengths_to_padding_mask(frame_lens, feats.size(1))
        if not bool(padding_mask.any()):
            padding_mask = None
        normed = enc.feature_projection.layer_norm(feats)
        projected = enc.feature_projection.projection(normed)  # (B, T', D) before input dropout
        x = enc.feature_projection.dropout(projected)
        x, mask = enc.apply_mask(x, padding_mask)
        if mask is None:
            raise ValueError("data2vec needs masked frames: set encoder.mask_prob > 0")
        if padding_mask is not None:
            mask = mask & ~padding_mask
        x, _ = enc.encoder(x, padding_mask)
        n = int(mask.sum())
        if n == 0:
            raise ValueError(f"no masked frame in this batch; utterances: {batch.get('utt_ids')}")
        pred = self.final_proj(x[mask]).float()  # (N, D)
        y = self.targets(projected.detach(), padding_mask)[mask]  # (N, D)
        if cfg.loss_beta == 0:
            per_frame = F.mse_loss(pred, y, reduction="none").sum(dim=-1)
        else:
            per_frame = F.smooth_l1_loss(pred, y, reduction="none", beta=cfg.loss_beta).sum(dim=-1)
        scale = cfg.loss_scale if cfg.loss_scale is not None else pred.size(-1) ** -0.5
        loss_sum = per_frame.sum() * scale
        if cfg.feature_pen_weight > 0:
            loss_sum = loss_sum + cfg.feature_pen_weight * features_pen.float() * n
        loss = loss_sum / n
        with torch.no_grad():
            pred_var = float(pred.var(dim=0).mean()) if n > 1 else 0.0
            target_var = float(y.var(dim=0).mean()) if n > 1 else 0.0
        stats = dict(loss=float(loss.detach()), loss_sum=float(loss_sum.detach()),
                     loss_regression=float(per_frame.detach().mean()) * scale, ema_decay=self.current_decay(),
                     pred_var=pred_var, target_var=target_var, features_pen=float(features_pen.detach()),
                     sample_size=float(n))
        return loss, stats, n
