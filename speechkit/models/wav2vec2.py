"""wav2vec 2.0 pre-training: contrastive prediction of quantized local features (Baevski et al., 2020).

Per utterance, at every masked frame t the encoder output c_t (projected by `final_proj` to `final_dim`)
must pick the quantized local feature q_t (the Gumbel quantizer over the *unmasked* extractor features
after `dropout_features`, projected by `project_q`) among q_t and K distractors: quantized features
of other masked frames of the same utterance, drawn uniformly with replacement, never the frame itself
(fairseq's `sample_negatives`: index r ~ U{0..M-2}, shifted by one when r >= t). Scores are cosine
similarities / 0.1; a distractor whose vector equals the positive (same codewords) is set to -inf.

loss = [CE_sum + 0.1 * (GV - perplexity) / GV * N + 10 * mean(conv features^2) * N] / N
over N masked frames; the forward returns this mean (stats carry the summed form too).

Names: the encoder is `wav2vec2.*` (HF names), heads `quantizer.*` (HF), `project_q`, `final_proj`
(fairseq; HF's `project_hid`). The temperature follows `set_num_updates` (a persistent `num_updates`
buffer keeps it in checkpoints, so resume is exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config_utils import ModelConfig
from .encoder import EncoderConfig, SSLEncoder
from .quantizer import GumbelVectorQuantizer


@dataclass
class Wav2Vec2Config(ModelConfig):
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(mask_prob=0.65, mask_length=10))
    final_dim: int = 256  # contrastive space (Base 256, Large 768)
    codevector_dim: int = 256  # quantizer output (fairseq latent_dim; 0 there means final_dim)
    num_groups: int = 2  # G
    num_vars: int = 320  # V
    latent_temp: list[float] = field(default_factory=lambda: [2.0, 0.5, 0.999995])  # start, end, decay
    num_negatives: int = 100  # K distractors per masked frame
    codevector_init: str = "uniform"  # fairseq/HF U(0, 1); or "normal" N(0, 1)
    logit_temp: float = 0.1
    diversity_weight: float = 0.1
    feature_pen_weight: float = 10.0
    sample_rate: int = 16000
    arch: str = "wav2vec2"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.latent_temp = [float(t) for t in self.latent_temp]
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")


def sample_negatives(counts: list[int], num: int, generator: torch.Generator | None = None) -> Tensor:
    """Distractor indices for masked frames grouped by utterance.

    counts[b] = M_b masked frames of utterance b, stored consecutively (offsets = cumsum). Returns
    (N, num) long indices into the N = sum(M_b) frames: for frame t of utterance b, `num` draws from the
    utterance's other frames, uniform with replacement (fairseq: randint(0, M_b - 1), +1 if >= t).
    Utterances with a single masked frame have no distractor: their rows are -1.
    """
    rows = []
    start = 0
    for m in counts:
        if m <= 1:
            rows.append(torch.full((m, num), -1, dtype=torch.long))
        else:
            r = torch.randint(0, m - 1, (m, num), generator=generator)
            own = torch.arange(m)[:, None]
            r = r + (r >= own).long()  # skip the positive itself
            rows.append(r + start)
        start += m
    return torch.cat(rows) if rows else torch.empty(0, num, dtype=torch.long)


def contrastive_logits(x: Tensor, y: Tensor, neg_idx: Tensor, temp: float) -> Tensor:
    """x: (N, D) predictions, y: (N, D) targets, neg_idx: (N, K) indices into y (-1 = none).

    Returns (N, 1 + K) fp32 logits: column 0 the positive; distractors equal to the positive or absent
    are -inf (so they neither help nor hurt, as fairseq's neg_is_pos)."""
    x, y = x.float(), y.float()
    safe = neg_idx.clamp(min=0)
    negs = y[safe]  # (N, K, D)
    targets = torch.cat([y[:, None, :], negs], dim=1)  # (N, 1 + K, D)
    logits = F.cosine_similarity(x[:, None, :], targets, dim=-1) / temp
    invalid = (negs == y[:, None, :]).all(dim=-1) | (neg_idx < 0)  # (N, K)
    return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(invalid, float("-inf"))], dim=1)


class Wav2Vec2PretrainModel(nn.Module):
    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.config = cfg
        enc = cfg.encoder
        self.wav2vec2 = SSLEncoder(enc)
        c = self.wav2vec2.feature_extractor.out_channels
        self.quantizer = GumbelVectorQuantizer(c, cfg.num_groups, cfg.num_vars, cfg.codevector_dim,
                                               tuple(cfg.latent_temp), cfg.codevector_init)  # type: ignore[arg-type]
        self.project_q = nn.Linear(cfg.codevector_dim, cfg.final_dim)
        self.final_proj = nn.Linear(enc.embed_dim, cfg.final_dim)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.loss_reduction = "mean"

    def model_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_num_updates(self, num_updates: int) -> None:
        """Called by the trainer after every optimizer update (fairseq convention)."""
        self.num_updates.fill_(int(num_updates))
        self.quantizer.set_num_updates(int(num_updates))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.quantizer.set_num_updates(int(self.num_updates))  # temperature follows the loaded count

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        return self.wav2vec2.extract_features(wav, wav_lens, layer)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        cfg = self.config
        out = self.wav2vec2(batch["wav"], batch["wav_lens"], mask=True)
        if out.mask_indices is None:
            raise ValueError("wav2vec 2.0 needs masked frames: set encoder.mask_prob > 0")
        mask = out.mask_indices
        if out.padding_mask is not None:
            mask = mask & ~out.padding_mask
        counts = mask.sum(dim=1).tolist()  # masked frames per utterance, in batch order
        n = int(sum(counts))
        if n == 0:
            raise ValueError(f"no masked frame in this batch; utterances: {batch.get('utt_ids')}")
        q = self.quantizer(out.features[mask])  # (N, codevector_dim); row-major = grouped by utterance
        y = self.project_q(q.quantized)  # (N, final_dim)
        x = self.final_proj(out.x[mask])  # (N, final_dim)
        neg_idx = sample_negatives(counts, cfg.num_negatives).to(x.device)
        logits = contrastive_logits(x, y, neg_idx, cfg.logit_temp)  # (N, 1 + K)
        target = torch.zeros(n, dtype=torch.long, device=x.device)
        ce = F.cross_entropy(logits, target, reduction="sum")

        gv = self.quantizer.total_vars
        diversity = (gv - q.prob_perplexity) / gv
        pen = out.features_pen.float()
        loss_sum = ce + cfg.diversity_weight * diversity * n + cfg.feature_pen_weight * pen * n
        loss = loss_sum / n
        with torch.no_grad():
            acc = float((logits.argmax(dim=-1) == 0).float().mean())
        stats = dict(loss=float(loss.detach()), loss_sum=float(loss_sum.detach()),
                     loss_contrastive=float(ce.detach()) / n, acc=acc, diversity=float(diversity.detach()),
                     prob_perplexity=float(q.prob_perplexity.detach()),
                     code_perplexity=float(q.code_perplexity), temp=q.temperature,
                     features_pen=float(pen.detach()), sample_size=float(n))
        return loss, stats, n
