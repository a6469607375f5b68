"""Transformer decoder for attention encoder-decoder fine-tuning (AV-HuBERT's seq2seq head).

Parameter names are fairseq's ``TransformerDecoder`` / ``TransformerDecoderLayer`` ones, so a fine-tuned
AV-HuBERT checkpoint maps onto it by a prefix table (``decoder.`` in fairseq = ``decoder.`` here)::

    embed_tokens.weight                              (V, D)  tied with the output projection
    embed_out                                        (V, D)  only when untied (share_input_output_embed off)
    layers.N.self_attn.{q,k,v,out}_proj.{weight,bias}
    layers.N.self_attn_layer_norm.{weight,bias}
    layers.N.encoder_attn.{q,k,v,out}_proj.{weight,bias}
    layers.N.encoder_attn_layer_norm.{weight,bias}
    layers.N.fc1 / fc2 / final_layer_norm
    layer_norm                                       (final LN of a pre-LN decoder)
    embed_positions                                  sinusoidal, no parameters (fairseq's only entry is a
                                                     ``_float_tensor`` buffer, dropped on import)

As AV-HuBERT configures it: pre-LN layers (``decoder_normalize_before: true``), ReLU FFN, token embeddings
scaled by sqrt(D), fairseq's sinusoidal positions (first half sin, second half cos, positions counted from
``padding_idx + 1`` = 2 with fairseq's dictionary; ``pos_offset`` keeps that numbering so imported weights see
the same inputs). Presets: Base 6 x 768 (FFN 3072, 4 heads), Large 9 x 1024 (4096, 8 heads) - the anchor's
``decoder_*`` settings - and a tiny one for CPU tests.

Incremental decoding: :meth:`TransformerDecoder.forward` with a ``cache`` dict computes only the last
position, keeping each layer's self-attention keys/values and the encoder keys/values (computed once);
:meth:`TransformerDecoder.reorder_cache` follows the beam search's choice of hypotheses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechkit.models.config_utils import config_from_dict, config_to_dict
from speechkit.models.dropout import Dropout, attention


@dataclass
class DecoderConfig:
    num_layers: int = 6
    embed_dim: int = 768
    ffn_dim: int = 3072
    num_heads: int = 4
    dropout: float = 0.1  # anchor: decoder_dropout 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.1
    layerdrop: float = 0.0
    normalize_before: bool = True
    share_input_output_embed: bool = True
    scale_embedding: bool = True  # x sqrt(D), fairseq's default (no_scale_embedding: false)
    max_target_positions: int = 2048
    pos_offset: int = 2  # fairseq positions start at padding_idx + 1 (padding_idx 1)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"decoder: embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads")
        if self.embed_dim % 2:
            raise ValueError(f"decoder: embed_dim {self.embed_dim} must be even (sinusoidal positions)")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


DECODER_PRESETS: dict[str, DecoderConfig] = {
    "base": DecoderConfig(num_layers=6, embed_dim=768, ffn_dim=3072, num_heads=4),
    "large": DecoderConfig(num_layers=9, embed_dim=1024, ffn_dim=4096, num_heads=8),
    "tiny": DecoderConfig(num_layers=2, embed_dim=32, ffn_dim=64, num_heads=2, dropout=0.0, activation_dropout=0.0),
}


def decoder_config(spec: dict[str, Any] | DecoderConfig | None) -> DecoderConfig:
    """``{preset: base, dropout: 0.1, ...}`` or a resolved dict -> DecoderConfig."""
    if isinstance(spec, DecoderConfig):
        return spec
    spec = dict(spec or {})
    preset = spec.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in DECODER_PRESETS:
            raise ValueError(f"model.decoder.preset: unknown {preset!r}; known: {sorted(DECODER_PRESETS)}")
        base = config_to_dict(DECODER_PRESETS[preset])
    base.update(spec)
    return config_from_dict(DecoderConfig, base, "model.decoder")


def sinusoidal_positions(num: int, dim: int, offset: int) -> Tensor:
    """(num, dim) fairseq sinusoidal embeddings of positions offset .. offset + num - 1."""
    half = dim // 2
    scale = math.log(10000.0) / (half - 1) if half > 1 else 0.0
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -scale)
    pos = torch.arange(offset, offset + num, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(pos), torch.cos(pos)], dim=1)


class MultiheadAttention(nn.Module):
    """q/k/v/out projections (fairseq names); keys/values can come from a cache."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # fairseq's init: xavier with gain 1/sqrt(2) for q/k/v, plain xavier and zero bias for out_proj
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def split(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, d)
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.split(self.k_proj(x)), self.split(self.v_proj(x))

    def forward(self, q_in: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """q_in (B, Tq, D); k, v (B, H, Tk, d); mask broadcastable to (B, H, Tq, Tk), True = may attend."""
        q = self.split(self.q_proj(q_in))
        y = attention(q, k, v, mask, dropout_p=self.dropout if self.training else 0.0)
        b, _, tq, _ = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, tq, -1))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.normalize_before = cfg.normalize_before
        self.self_attn = MultiheadAttention(d, cfg.num_heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = MultiheadAttention(d, cfg.num_heads, cfg.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout = Dropout(cfg.dropout)
        self.activation_dropout = Dropout(cfg.activation_dropout)

    def _block(self, x: Tensor, ln: nn.LayerNorm, fn) -> Tensor:
        if self.normalize_before:
            return x + self.dropout(fn(ln(x)))
        return ln(x + self.dropout(fn(x)))

    def forward(self, x: Tensor, enc_kv: tuple[Tensor, Tensor], enc_mask: Tensor | None, self_mask: Tensor | None,
                cache: dict[str, Tensor] | None) -> Tensor:
        def self_attn(h: Tensor) -> Tensor:
            k, v = self.self_attn.project_kv(h)
            if cache is not None:  # incremental: append this step's key/value to the earlier ones
                if "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
            return self.self_attn(h, k, v, self_mask)

        x = self._block(x, self.self_attn_layer_norm, self_attn)
        x = self._block(x, self.encoder_attn_layer_norm, lambda h: self.encoder_attn(h, *enc_kv, enc_mask))
        return self._block(x, self.final_layer_norm,
                           lambda h: self.fc2(self.activation_dropout(F.relu(self.fc1(h)))))


class TransformerDecoder(nn.Module):
    """prev tokens (B, U) + encoder output (B, T, D_enc) -> (B, U, V) logits (fp32)."""

    def __init__(self, cfg: DecoderConfig, vocab_size: int, encoder_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.embed_tokens = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=d ** -0.5)  # fairseq's Embedding init
        self.embed_scale = math.sqrt(d) if cfg.scale_embedding else 1.0
        self.register_buffer("pos_table", sinusoidal_positions(cfg.max_target_positions, d, cfg.pos_offset),
                             persistent=False)
        # encoders wider/narrower than the decoder (e.g. a tiny test encoder) get a projection; AV-HuBERT's
        # widths match, and then there is none (fairseq has no such module either)
        self.encoder_proj = nn.Linear(encoder_dim, d) if encoder_dim != d else None
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.layer_norm = nn.LayerNorm(d) if cfg.normalize_before else None
        if cfg.share_input_output_embed:
            self.embed_out = None
        else:
            self.embed_out = nn.Parameter(torch.empty(vocab_size, d).normal_(0.0, d ** -0.5))
        self.dropout = Dropout(cfg.dropout)

    def encoder_states(self, enc: Tensor, enc_pad: Tensor | None) -> dict[str, Any]:
        """Per-layer encoder keys/values and the attention mask, computed once per utterance."""
        if self.encoder_proj is not None:
            enc = self.encoder_proj(enc)
        mask = None if enc_pad is None else (~enc_pad)[:, None, None, :]  # (B, 1, 1, T) True = attend
        return {"kv": [layer.encoder_attn.project_kv(enc) for layer in self.layers], "mask": mask}

    def forward(self, prev_tokens: Tensor, enc: Tensor | None = None, enc_pad: Tensor | None = None,
                cache: dict[str, Any] | None = None) -> Tensor:
        """Teacher forcing (cache None): logits for every position. Incremental (cache a dict, empty at the
        first step, holding ``enc_states`` or built from ``enc``): logits of the last position only."""
        u = prev_tokens.size(1)
        if u > self.cfg.max_target_positions:
            raise ValueError(f"decoder: {u} target positions > max_target_positions {self.cfg.max_target_positions}")
        if cache is not None:
            if "enc" not in cache:
                cache["enc"] = self.encoder_states(enc, enc_pad)
                cache["layers"] = [{} for _ in self.layers]
            states = cache["enc"]
            tokens, positions = prev_tokens[:, -1:], self.pos_table[u - 1: u]
            self_mask = None  # the one new query may see every cached position
        else:
            states = self.encoder_states(enc, enc_pad)
            tokens, positions = prev_tokens, self.pos_table[:u]
            self_mask = torch.ones(u, u, dtype=torch.bool, device=prev_tokens.device).tril()
        x = self.embed_scale * self.embed_tokens(tokens) + positions.to(self.embed_tokens.weight.dtype)
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            if self.training and cache is None and self.cfg.layerdrop > 0 and torch.rand(()) < self.cfg.layerdrop:
                continue
            x = layer(x, states["kv"][i], states["mask"], self_mask, None if cache is None else cache["layers"][i])
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        weight = self.embed_tokens.weight if self.embed_out is None else self.embed_out
        return F.linear(x, weight).float()

    @staticmethod
    def reorder_cache(cache: dict[str, Any], order: Tensor, encoder_too: bool = False) -> None:
        """Keep rows ``order`` (B * beam,) of the cached self-attention keys/values (in place). Beam search
        only moves hypotheses within an utterance, whose encoder rows are all the same, so the encoder
        keys/values stay put unless ``encoder_too``."""
        if encoder_too:
            enc = cache["enc"]
            enc["kv"] = [(k.index_select(0, order), v.index_select(0, order)) for k, v in enc["kv"]]
            if enc["mask"] is not None:
                enc["mask"] = enc["mask"].index_select(0, order)
        for layer in cache["layers"]:
            for key in list(layer):
                layer[key] = layer[key].index_select(0, order)
