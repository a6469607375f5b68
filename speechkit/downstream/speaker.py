"""Speaker identification head and utterance embeddings for verification.

upstream (frozen by default) -> softmax-weighted sum of its L+1 hidden states (zero-initialised
weights) -> statistics pooling (mean and standard deviation over the valid frames) -> BatchNorm ->
optional linear embedding layer -> linear classifier over the training speakers.

Speaker verification uses the same network: an utterance embedding is the pooled statistics or,
when the model has one, the embedding layer's output (the classifier's input); trials are scored
by cosine similarity (:mod:`speechkit.downstream.metrics`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.models import register_model
from speechkit.models.config_utils import ModelConfig
from speechkit.models.dropout import Dropout

from .featurizer import Upstream, WeightedSumFeaturizer, build_upstream, frames_mask, upstream_module, upstream_spec


def statistics_pooling(x: Tensor, lens: Tensor | None = None, eps: float = 1.0e-5) -> Tensor:
    """(B, T, D) frames, (B,) valid lengths -> (B, 2D) = [mean, std] over the valid frames only.

    Padded frames take no part (their values do not matter); the std is the population std with
    a floor ``eps`` on the variance so that its gradient stays finite for constant inputs.
    """
    b, t, _ = x.shape
    if lens is None:
        lens = torch.full((b,), t, dtype=torch.long, device=x.device)
    if bool((lens <= 0).any()):
        raise ValueError(f"statistics pooling needs at least one valid frame per utterance, got lengths {lens.tolist()}")
    mask = frames_mask(lens.to(x.device), t).to(x.dtype)[:, :, None]  # (B, T, 1)
    n = mask.sum(dim=1)  # (B, 1)
    mean = (x * mask).sum(dim=1) / n  # (B, D)
    var = (((x - mean[:, None, :]) ** 2) * mask).sum(dim=1) / n  # (B, D)
    return torch.cat([mean, var.clamp(min=eps).sqrt()], dim=1)


class PooledBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that falls back to its running statistics for a one-utterance training batch
    (dynamic batching can produce one; batch statistics of a single row are undefined)."""

    def forward(self, x: Tensor) -> Tensor:  # (B, C) -> (B, C)
        if self.training and x.size(0) == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


@dataclass
class SpeakerIDConfig(ModelConfig):
    upstream: dict[str, Any] = field(default_factory=dict)  # featurizer.upstream_spec() of the upstream
    speakers: list[str] = field(default_factory=list)  # class i is speakers[i]
    freeze_upstream: bool = True
    embed_dim: int = 0  # 0: classify the pooled statistics directly (a linear probe)
    layer_norm: bool = False  # layer-norm each hidden state before the weighted sum
    dropout: float = 0.0  # on the pooled statistics / embedding, training only
    # BatchNorm on the pooled statistics (as x-vector / ECAPA heads): utterance-level statistics of
    # layer-normed frames differ little between utterances, and a linear layer learns slowly on them
    batch_norm: bool = True
    arch: str = "sid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError("SpeakerIDConfig.speakers has duplicates")


class SpeakerIDModel(nn.Module):
    """Trainer contract: ``forward(batch)`` with ``labels`` (B, 1) speaker indices -> (loss, stats, B)."""

    def __init__(self, cfg: SpeakerIDConfig, upstream: nn.Module | None = None) -> None:
        super().__init__()
        if len(cfg.speakers) < 2:
            raise ValueError(f"speaker ID needs at least 2 speakers, got {len(cfg.speakers)}")
        self.config = cfg
        model = upstream if upstream is not None else build_upstream(cfg.upstream)
        self.upstream = Upstream(model, freeze=cfg.freeze_upstream)
        self.featurizer = WeightedSumFeaturizer(self.upstream.num_states(), cfg.layer_norm)
        dim = _hidden_dim(model)
        pooled = 2 * dim
        self.norm = PooledBatchNorm(pooled) if cfg.batch_norm else nn.Identity()
        self.embed = nn.Linear(pooled, cfg.embed_dim) if cfg.embed_dim > 0 else None
        self.dropout = Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.embed_dim if cfg.embed_dim > 0 else pooled, len(cfg.speakers))

    @classmethod
    def from_upstream(cls, upstream: nn.Module, speakers: list[str], **kwargs: Any) -> "SpeakerIDModel":
        core = upstream_module(upstream)
        return cls(SpeakerIDConfig(upstream=upstream_spec(upstream), speakers=list(speakers), **kwargs), core)

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> "SpeakerIDModel":
        return cls(SpeakerIDConfig.from_dict(data))

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def pooled(self, wav: Tensor, wav_lens: Tensor) -> Tensor:
        """(B, 2D) statistics of the weighted-sum features (batch-normalised when configured)."""
        hs, lens = self.upstream(wav, wav_lens)
        return self.norm(statistics_pooling(self.featurizer(hs), lens))

    def embedding(self, wav: Tensor, wav_lens: Tensor, kind: str = "auto") -> Tensor:
        """Utterance embeddings: ``pooled`` statistics, ``embed`` layer output, or ``auto`` (embed if any)."""
        p = self.pooled(wav, wav_lens)
        if kind == "pooled" or (kind == "auto" and self.embed is None):
            return p
        if self.embed is None:
            raise ValueError("this speaker model has no embedding layer (embed_dim 0): use kind='pooled'")
        if kind not in ("auto", "embed"):
            raise ValueError(f"embedding kind must be auto, pooled or embed, got {kind!r}")
        return self.embed(p)

    def pooled_from_moments(self, mean: Tensor, cov: Tensor, eps: float = 1.0e-5) -> Tensor:
        """(B, 2D) statistics from cached per-state moments (:mod:`speechkit.downstream.head_cache`):
        ``mean`` (B, S, D) and the covariance triangle ``cov`` (B, S(S+1)/2, D) of the S hidden states.
        Equal to :meth:`pooled` on the whole utterances the moments were computed from."""
        from .head_cache import triu_pairs

        s = mean.shape[1]
        if s != self.featurizer.num_states:
            raise ValueError(f"cached moments have {s} hidden states, the featurizer {self.featurizer.num_states}")
        w = F.softmax(self.featurizer.weights, dim=0).to(mean.dtype)  # (S,)
        li, mi = triu_pairs(s)
        pair_w = w[li] * w[mi] * torch.where(li == mi, 1.0, 2.0).to(mean.dtype)  # off-diagonal pairs count twice
        mu = torch.einsum("s,bsd->bd", w, mean)
        var = torch.einsum("p,bpd->bd", pair_w, cov)
        return self.norm(torch.cat([mu, var.clamp(min=eps).sqrt()], dim=1))

    def classify(self, pooled: Tensor) -> Tensor:
        """(B, 2D) pooled statistics -> (B, num_speakers) logits."""
        x = pooled
        if self.embed is not None:
            x = F.relu(self.embed(x))
        return self.classifier(self.dropout(x))

    def logits(self, wav: Tensor, wav_lens: Tensor) -> Tensor:
        return self.classify(self.pooled(wav, wav_lens))  # (B, num_speakers)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        if "labels" not in batch:
            raise KeyError("speaker ID needs batch['labels'] (B, 1) speaker indices")
        target = batch["labels"][:, 0]
        logits = self.logits(batch["wav"], batch["wav_lens"])
        loss = F.cross_entropy(logits.float(), target)
        acc = float((logits.detach().argmax(-1) == target).float().mean())
        b = int(target.numel())
        return loss, {"loss": float(loss.detach()), "acc": acc}, b


def _hidden_dim(model: nn.Module) -> int:
    if hasattr(model, "hidden_dim"):
        return int(model.hidden_dim)
    enc_cfg = getattr(upstream_module(model), "cfg", None)
    if enc_cfg is not None and hasattr(enc_cfg, "embed_dim"):
        return int(enc_cfg.embed_dim)
    p = next(model.parameters())
    with torch.no_grad():
        was = model.training
        model.eval()
        hs, _ = model.extract_features(torch.zeros(1, 16000, device=p.device), torch.tensor([16000], device=p.device))
        model.train(was)
    return int(hs[-1].shape[-1])


register_model("sid", SpeakerIDConfig, SpeakerIDModel)
