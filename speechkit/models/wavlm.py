"""WavLM (Chen et al., 2022): HuBERT's masked prediction with a gated relative position bias in the
encoder and utterance mixing ("denoising masked prediction") of the input.

Gated relative position bias. Layer 0 owns an embedding `rel_attn_embed` of 320 buckets x H heads;
the relative distance j - i between key j and query i is bucketed as in T5's bidirectional scheme
(half the buckets per direction; distances below a quarter of the buckets are exact, the rest
log-spaced up to `max_distance` = 800 frames, beyond which they share the last bucket). This ungated
bias (H, T, T) is computed once and handed to every layer; each layer gates it per head and query
frame from its attention input split into heads, x_h (head_dim):
    a, b = sigmoid(sum over pairs of gru_rel_pos_linear(x_h) (8 -> 2 x 4)),
    gate = a * (b * gru_rel_pos_const_h - 1) + 2,     bias_h(i, j) = gate_h(i) * d_h(j - i)
and adds it to the attention logits. Names are HF transformers' (`rel_attn_embed`, `gru_rel_pos_linear`,
`gru_rel_pos_const`; the original code's `relative_attention_bias`, `grep_linear`, `grep_a`).

Utterance mixing. While training, each utterance is, with probability `mix_prob`, overlapped with a
random segment of another utterance of the batch: segment length uniform in [1, `mix_max_ratio` x its
length) (shorter than half), placed at a random offset, scaled so that the energy ratio primary /
secondary is uniform in `mix_energy_db` dB (-5..5). The targets stay the primary utterance's units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .config_utils import config_from_dict, config_to_dict
from .encoder import EncoderConfig, SSLEncoder
from .hubert import HubertConfig, HubertPretrainModel
from .registry import register_encoder
from .transformer import SelfAttention, TransformerEncoder


def relative_position_bucket(relative: Tensor, num_buckets: int = 320, max_distance: int = 800) -> Tensor:
    """T5 bidirectional buckets: relative = key - query positions (any int shape) -> bucket ids."""
    half = num_buckets // 2
    buckets = (relative > 0).long() * half  # positive distances use the upper half
    dist = relative.abs()
    max_exact = half // 2
    small = dist < max_exact
    # log-spaced buckets from max_exact to max_distance (clamped to the last bucket)
    large = max_exact + (torch.log(dist.float().clamp(min=1) / max_exact)
                         / math.log(max_distance / max_exact) * (half - max_exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(small, dist, large)


class WavLMAttention(SelfAttention):
    """Self-attention whose additive bias is the shared relative position bias, gated per query."""

    def __init__(self, dim: int, num_heads: int, dropout: float, num_buckets: int, max_distance: int,
                 has_relative_bias: bool) -> None:
        super().__init__(dim, num_heads, dropout)
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        if has_relative_bias:
            self.rel_attn_embed = nn.Embedding(num_buckets, num_heads)

    def compute_bias(self, t: int) -> Tensor:
        """Ungated bias (1, H, T, T) from this layer's bucket embedding."""
        pos = torch.arange(t, device=self.rel_attn_embed.weight.device)
        bucket = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.rel_attn_embed(bucket).permute(2, 0, 1)[None]  # (T, T, H) -> (1, H, T, T)

    def gate(self, x: Tensor) -> Tensor:
        """x: (B, T, D) attention input -> (B, H, T, 1) per-query gate."""
        b, t, _ = x.shape
        xh = x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        proj = self.gru_rel_pos_linear(xh).view(b, self.num_heads, t, 2, 4).sum(dim=-1)  # (B, H, T, 2)
        a, g = torch.sigmoid(proj).chunk(2, dim=-1)  # (B, H, T, 1) each
        return a * (g * self.gru_rel_pos_const - 1.0) + 2.0

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None,
                attn_bias: Tensor | None = None) -> Tensor:
        if attn_bias is None:
            raise ValueError("WavLM attention needs the relative position bias (WavLMTransformerEncoder)")
        return super().forward(x, key_padding_mask, self.gate(x) * attn_bias)  # (B, H, T, T) bias


class WavLMTransformerEncoder(TransformerEncoder):
    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, *, num_buckets: int = 320,
                 max_distance: int = 800, attention_dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(dim, num_layers, num_heads, ffn_dim, attention_dropout=attention_dropout, **kwargs)
        for i, layer in enumerate(self.layers):
            layer.attention = WavLMAttention(dim, num_heads, attention_dropout, num_buckets, max_distance,
                                             has_relative_bias=i == 0)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, num_layers: int | None = None,
                attn_bias: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        bias = self.layers[0].attention.compute_bias(x.size(1)).to(x.dtype)
        if attn_bias is not None:
            bias = bias + attn_bias
        return super().forward(x, padding_mask, num_layers, attn_bias=bias)


class WavLMEncoder(SSLEncoder):
    """SSLEncoder with the gated relative position bias in every attention layer."""

    def __init__(self, cfg: EncoderConfig, num_buckets: int = 320, max_distance: int = 800) -> None:
        super().__init__(cfg)
        self.encoder = WavLMTransformerEncoder(
            cfg.embed_dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, num_buckets=num_buckets,
            max_distance=max_distance, layer_norm_first=cfg.layer_norm_first,
            pos_conv_kernel=cfg.pos_conv_kernel, pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
            layerdrop=cfg.layerdrop, eps=cfg.layer_norm_eps,
        )
        self.num_buckets, self.max_distance = num_buckets, max_distance

    def upstream_spec(self) -> dict[str, Any]:
        """What rebuilds this encoder (a plain EncoderConfig lacks the bias's buckets and distance)."""
        return {"type": "wavlm_encoder", "encoder": config_to_dict(self.cfg), "num_buckets": self.num_buckets,
                "max_distance": self.max_distance}

    @classmethod
    def from_upstream_spec(cls, spec: dict[str, Any]) -> "WavLMEncoder":
        return cls(config_from_dict(EncoderConfig, spec["encoder"], "upstream.encoder"), int(spec["num_buckets"]),
                   int(spec["max_distance"]))


register_encoder("wavlm_encoder", WavLMEncoder.from_upstream_spec)


@dataclass
class WavLMConfig(HubertConfig):
    num_buckets: int = 320
    max_distance: int = 800
    mix_prob: float = 0.2  # chance that an utterance gets a segment of another one overlaid
    mix_max_ratio: float = 0.5  # the overlaid segment is shorter than this fraction of the primary
    mix_energy_db: list[float] = field(default_factory=lambda: [-5.0, 5.0])  # primary / secondary energy
    arch: str = "wavlm"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.mix_prob <= 1.0 or not 0.0 < self.mix_max_ratio <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1] and mix_max_ratio in (0, 1], got "
                             f"{self.mix_prob}, {self.mix_max_ratio}")
        self.mix_energy_db = [float(v) for v in self.mix_energy_db]


def mix_utterances(wav: Tensor, wav_lens: Tensor, prob: float, max_ratio: float = 0.5,
                   energy_db: tuple[float, float] = (-5.0, 5.0),
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Overlay, on each utterance with probability `prob`, a segment of another utterance of the batch.

    wav: (B, T) zero-padded, wav_lens: (B,). Returns (mixed (B, T), (B,) bool: which were mixed). Sources
    are the unmixed inputs; nothing is written into padding. Randomness from `generator` (or torch's
    global RNG, which the trainer checkpoints, so resume is exact).
    """
    b = wav.size(0)
    mixed = wav.clone()
    flags = torch.zeros(b, dtype=torch.bool)
    if b < 2 or prob <= 0:
        return mixed, flags
    lens = wav_lens.tolist()
    rand = lambda: float(torch.rand((), generator=generator))  # noqa: E731
    for i in range(b):
        if rand() >= prob:
            continue
        j = int(torch.randint(0, b - 1, (), generator=generator))
        j += j >= i  # another utterance
        n_i, n_j = int(lens[i]), int(lens[j])
        max_len = min(int(n_i * max_ratio), n_j)
        if max_len < 2:
            continue
        seg_len = int(torch.randint(1, max_len, (), generator=generator))  # < max_ratio * n_i
        src = int(torch.randint(0, n_j - seg_len + 1, (), generator=generator))
        dst = int(torch.randint(0, n_i - seg_len + 1, (), generator=generator))
        seg = wav[j, src:src + seg_len]
        ratio_db = energy_db[0] + (energy_db[1] - energy_db[0]) * rand()
        e_primary = wav[i, :n_i].float().pow(2).mean()
        e_seg = seg.float().pow(2).mean().clamp(min=1e-10)
        scale = torch.sqrt(e_primary / (e_seg * 10.0 ** (ratio_db / 10.0)))
        mixed[i, dst:dst + seg_len] += (scale * seg.float()).to(wav.dtype)
        flags[i] = True
    return mixed, flags


class WavLMPretrainModel(HubertPretrainModel):
    """HuBERT's loss and head (`final_proj`, `label_embs_concat`) on a WavLM encoder (`wavlm.*`)."""

    encoder_attr = "wavlm"

    def __init__(self, cfg: WavLMConfig) -> None:
        super().__init__(cfg, encoder=WavLMEncoder(cfg.encoder, cfg.num_buckets, cfg.max_distance))

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float], int]:
        cfg = self.config
        mixed = 0
        if self.training and cfg.mix_prob > 0:
            wav, flags = mix_utterances(batch["wav"], batch["wav_lens"], cfg.mix_prob, cfg.mix_max_ratio,
                                        tuple(cfg.mix_energy_db))  # type: ignore[arg-type]
            batch = dict(batch, wav=wav)
            mixed = int(flags.sum())
        loss, stats, n = super().forward(batch)
        stats["mixed_frac"] = mixed / batch["wav"].size(0)
        return loss, stats, n
