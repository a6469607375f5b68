"""HuBERT pre-training: masked prediction of hidden units (Hsu et al., 2021).

The encoder output at every frame is projected to `final_dim` and scored against a learned embedding per
cluster by cosine similarity / 0.1; cross-entropy on masked frames (weight `pred_masked_weight`) and
optionally on unmasked ones (`pred_nomask_weight`), plus `feature_pen_weight` * mean(conv features^2).

Names follow fairseq (`final_proj`, `label_embs_concat`) for the head; the encoder is `hubert.*` with HF
names, so a HF `HubertModel` state dict maps onto `hubert.` by a table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config_utils import ModelConfig
from .encoder import EncoderConfig, SSLEncoder

IGNORE = -100


@dataclass
class HubertConfig(ModelConfig):
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_classes: int = 100  # k-means clusters of the current iteration
    final_dim: int = 256
    logit_temp: float = 0.1
    label_rate: float = 100.0  # labels per second (100: MFCC frames; 50: model frames)
    sample_rate: int = 16000
    max_label_mismatch: int = 2  # tolerated |label frames - model frames|, counted in model frames
    pred_masked_weight: float = 1.0
    pred_nomask_weight: float = 0.0
    feature_pen_weight: float = 10.0
    arch: str = "hubert"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_rate <= 0:
            raise ValueError(f"label_rate must be positive, got {self.label_rate}")


def align_labels(labels: Tensor, label_lens: Tensor, frame_lens: Tensor, num_frames: int, ratio: float,
                 max_mismatch: int = 2, utt_ids: list[str] | None = None) -> Tensor:
    """Subsample frame labels to model frames, as fairseq (`label index = floor(frame * ratio)`).

    labels: (B, L) padded with -100; label_lens, frame_lens: (B,); ratio = label_rate / frame_rate
    (2 for 100 Hz MFCC labels at 50 Hz frames). Returns (B, num_frames) with -100 at padding and at the
    last frame or two when the labels fall short (fairseq drops them too). A mismatch larger than
    `max_mismatch` model frames means the labels belong to other audio: an error naming the utterance.
    """
    b = labels.size(0)
    label_frames = label_lens.to(frame_lens.device).double() / ratio  # label count in model frames
    diff = (label_frames - frame_lens.double()).abs()
    bad = torch.nonzero(diff > max_mismatch).flatten().tolist()
    if bad:
        i = bad[0]
        who = utt_ids[i] if utt_ids is not None else f"batch index {i}"
        raise ValueError(
            f"label/audio length mismatch for utterance {who}: {int(label_lens[i])} labels at ratio "
            f"{ratio:g} per frame ~ {float(label_frames[i]):.1f} frames, but the audio gives "
            f"{int(frame_lens[i])} frames (tolerance {max_mismatch}); check label_rate and the label file"
            + (f" ({len(bad)} utterances affected)" if len(bad) > 1 else ""))
    # frames whose label index falls past the last label are ignored
    usable = torch.minimum(frame_lens, torch.floor((label_lens.to(frame_lens.device) - 1) / ratio).long() + 1)
    positions = torch.arange(num_frames, device=labels.device)
    idx = torch.floor(positions.double() * ratio).long().clamp(max=max(labels.size(1) - 1, 0))
    gathered = labels.gather(1, idx[None, :].expand(b, -1))  # (B, T')
    valid = positions[None, :] < usable.to(labels.device)[:, None]
    return torch.where(valid, gathered, torch.full_like(gathered, IGNORE))


class HubertPretrainModel(nn.Module):
    """HuBERT's head and loss on an encoder: a plain SSLEncoder by default, or the one given (WavLM passes
    its relative-bias encoder). The encoder is stored under `encoder_attr` ("hubert"; WavLM: "wavlm"), the
    state-dict prefix that fairseq and HF use, and is reached as `self.encoder` whatever its name."""

    encoder_attr = "hubert"

    def __init__(self, cfg: HubertConfig, encoder: SSLEncoder | None = None) -> None:
        super().__init__()
        self.config = cfg
        setattr(self, self.encoder_attr, encoder if encoder is not None else SSLEncoder(cfg.encoder))
        self.final_proj = nn.Linear(cfg.encoder.embed_dim, cfg.final_dim)
        self.label_embs_concat = nn.Parameter(torch.empty(cfg.num_classes, cfg.final_dim).uniform_())
        frame_rate = cfg.sample_rate / self.encoder.feature_extractor.total_stride
        self.label_ratio = cfg.label_rate / frame_rate  # labels per model frame

    @property
    def encoder(self) -> SSLEncoder:
        return getattr(self, self.encoder_attr)

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        return self.encoder.extract_features(wav, wav_lens, layer)

    def logits(self, x: Tensor) -> Tensor:
        """(N, D) encoder frames -> (N, num_classes) cosine similarities / logit_temp (fp32)."""
        proj = F.normalize(self.final_proj(x).float(), dim=-1, eps=1e-8)
        embs = F.normalize(self.label_embs_concat.float(), dim=-1, eps=1e-8)
        return proj @ embs.t() / self.config.logit_temp

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        """Masked-prediction loss. Returns (loss, stats, sample_size).

        `loss` is the MEAN over predicted frames (fairseq's summed loss divided by sample_size), feature
        penalty included; `stats["loss_sum"]` is the summed form for trainers that normalise across
        accumulated batches / workers themselves. Losses are natural-log cross-entropies.
        """
        cfg = self.config
        wav, wav_lens = batch["wav"], batch["wav_lens"]
        if "labels" not in batch:
            raise KeyError("HuBERT pre-training needs batch['labels'] (k-means units) and batch['label_lens']")
        out = self.encoder(wav, wav_lens, mask=True)
        labels = align_labels(batch["labels"], batch["label_lens"], out.frame_lens, out.x.size(1),
                              self.label_ratio, cfg.max_label_mismatch, batch.get("utt_ids"))
        return masked_prediction_loss(self.logits, out.x, labels, out.mask_indices, out.features_pen, cfg,
                                      batch.get("utt_ids"))


def masked_prediction_loss(logits_fn, x: Tensor, labels: Tensor, mask_indices: Tensor | None, features_pen: Tensor,
                           cfg: Any, utt_ids: Any = None) -> tuple[Tensor, dict[str, float], int]:
    """HuBERT's objective, shared by the audio and the audio-visual model: cross-entropy of the unit
    predictions on masked frames (weight ``cfg.pred_masked_weight``) and on unmasked ones
    (``cfg.pred_nomask_weight``; with weight 0 only its accuracy is reported), plus the feature penalty.

    x (B, T, D) encoder output, labels (B, T) aligned units (IGNORE where none) -> (loss, stats, frames)."""
    valid = labels != IGNORE
    assert mask_indices is not None
    masked = mask_indices & valid
    unmasked = ~mask_indices & valid
    zero = x.new_zeros((), dtype=torch.float32)
    stats: dict[str, float] = {}
    loss_sum = zero
    sample_size = 0
    for name, sel, weight in (("m", masked, cfg.pred_masked_weight), ("u", unmasked, cfg.pred_nomask_weight)):
        n = int(sel.sum())
        if n == 0:
            continue
        if weight > 0:
            logits = logits_fn(x[sel])
        else:  # not trained on, but its accuracy is a useful diagnostic
            with torch.no_grad():
                logits = logits_fn(x[sel])
        target = labels[sel]
        ce = F.cross_entropy(logits, target, reduction="sum")
        if weight > 0:
            loss_sum = loss_sum + weight * ce
            sample_size += n
        stats[f"loss_{name}"] = float(ce.detach()) / n
        stats[f"acc_{name}"] = float((logits.detach().argmax(-1) == target).float().mean())
        stats[f"count_{name}"] = float(n)
    if sample_size == 0:
        raise ValueError(f"no frame to predict in this batch (all labels ignored or nothing masked); utterances: {utt_ids}")
    if cfg.feature_pen_weight > 0:
        loss_sum = loss_sum + cfg.feature_pen_weight * features_pen.float() * sample_size
    loss = loss_sum / sample_size
    stats.update(loss=float(loss.detach()), loss_sum=float(loss_sum.detach()),
                 features_pen=float(features_pen.detach()), sample_size=float(sample_size))
    return loss, stats, sample_size
