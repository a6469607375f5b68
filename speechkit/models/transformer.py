"""Transformer encoder of the wav2vec 2.0 family: conv positional embedding, post-LN / pre-LN layers,
LayerDrop, attention through `F.scaled_dot_product_attention` with key padding masks.

Module and parameter names are HF transformers' (`pos_conv_embed.conv`, `layers.N.attention.q_proj`,
`layers.N.layer_norm`, `layers.N.feed_forward.intermediate_dense`, `layers.N.final_layer_norm`, ...),
so importing HF or fairseq weights is a renaming table (see speechkit.models.import_hf).

Two layer orders:
- post-LN (`layer_norm_first=False`, Base): x = LN(x + Attn(x)); x = LN(x + FFN(x)). The encoder's own
  `layer_norm` is applied once, *before* the first layer (after adding the positional embedding).
- pre-LN (`layer_norm_first=True`, Large, "stable layer norm"): x = x + Attn(LN(x)); x = x + FFN(LN(x)).
  The encoder's `layer_norm` is applied once, *after* the last layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .dropout import Dropout, attention


class ConvPositionalEmbedding(nn.Module):
    """Relative positional information from a wide grouped conv over time (wav2vec 2.0).

    kernel 128 with padding 64 gives T + 1 outputs; the last is dropped ("same" length for even kernels).
    The weight is weight-normalised over dim 2 (one gain per kernel tap), as fairseq and HF do.
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16) -> None:
        super().__init__()
        if dim % groups != 0:
            raise ValueError(f"pos conv: embed dim {dim} is not divisible by {groups} groups")
        conv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups)
        # fairseq's init: normal with std sqrt(4 / (kernel * dim)), zero bias, then weight norm
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.num_pad_remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        if x.device.type == "cpu":
            # (B, T, D) seen as (B, D, 1, T) is channels-last: mkldnn convolves it as it lies, and its
            # output is channels-last too, so (B, T, D) comes back without a transpose (HuBERT Base,
            # 2 x 4 s, 2 threads: the training step 2.66 -> 2.52 s)
            conv = self.conv
            y = F.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
                         padding=(0, conv.padding[0]), groups=conv.groups).squeeze(2)
        else:
            y = self.conv(x.transpose(1, 2))  # (B, D, T + 1) for even kernels
        if self.num_pad_remove:
            y = y[:, :, : -self.num_pad_remove]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (HF/fairseq layout)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"attention: dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None,
                attn_bias: Tensor | None = None) -> Tensor:
        """x: (B, T, D); key_padding_mask: (B, T) True at padding; attn_bias: additive (B|1, H, T, T)
        float (e.g. WavLM's relative position bias). Returns (B, T, D)."""
        b, t, d = x.shape
        # one GEMM for q, k and v (their weights concatenated on the fly; the parameters stay separate
        # so names map onto HF/fairseq): measurably faster than three on CPU, and no slower on GPU
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3D, D)
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(x, w, bias).view(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
        mask: Tensor | None = None
        if attn_bias is not None:
            mask = attn_bias.to(q.dtype)
            if key_padding_mask is not None:
                mask = mask.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        elif key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # bool, True = may attend; (B, 1, 1, T)
        y = attention(q, k, v, mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.out_proj(y)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float, dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, ffn_dim)
        self.intermediate_dropout = Dropout(activation_dropout)
        self.output_dense = nn.Linear(ffn_dim, dim)
        self.output_dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, activation_dropout: float = 0.0,
                 layer_norm_first: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.attention = SelfAttention(dim, num_heads, attention_dropout)
        self.dropout = Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.feed_forward = FeedForward(dim, ffn_dim, activation_dropout, dropout)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None,
                attn_bias: Tensor | None = None) -> Tensor:  # (B, T, D) -> (B, T, D)
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), key_padding_mask, attn_bias))
            x = x + self.feed_forward(self.final_layer_norm(x))
        else:
            x = self.layer_norm(x + self.dropout(self.attention(x, key_padding_mask, attn_bias)))
            x = self.final_layer_norm(x + self.feed_forward(x))
        return x


class TransformerEncoder(nn.Module):
    """pos conv + layers (+ the encoder-level LayerNorm before or after them)."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_dim: int, *,
                 layer_norm_first: bool = False, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
                 dropout: float = 0.1, attention_dropout: float = 0.1, activation_dropout: float = 0.0,
                 layerdrop: float = 0.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.pos_conv_embed = ConvPositionalEmbedding(dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = Dropout(dropout)
        self.layers = nn.ModuleList([
            EncoderLayer(dim, num_heads, ffn_dim, dropout, attention_dropout, activation_dropout,
                         layer_norm_first, eps)
            for _ in range(num_layers)
        ])
        # fairseq's init_bert_params for the layers (HF uses the same): N(0, 0.02) weights, zero biases
        for module in self.layers.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None,
                num_layers: int | None = None, attn_bias: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """x: (B, T, D), padding_mask: (B, T) True at padding; attn_bias: additive attention bias
        (B|1, H, T, T) given to every layer (WavLM's relative position bias, see speechkit.models.wavlm).

        Returns (output, hidden_states). hidden_states[i] is the input to layer i; the last entry is the
        output. With `num_layers=k < L` only layers 0..k-1 run, the result has k+1 entries and the
        output is layer k-1's raw output (no final LayerNorm, as fairseq's `output_layer`).
        """
        total = len(self.layers)
        k = total if num_layers is None else num_layers
        if not 0 <= k <= total:
            raise ValueError(f"num_layers must be in [0, {total}], got {num_layers}")
        if padding_mask is not None:
            # zero the padding so the pos conv does not smear it into valid frames
            x = x.masked_fill(padding_mask[:, :, None], 0.0)
            if not bool(padding_mask.any()):
                padding_mask = None  # lets SDPA pick its fastest (mask-free) kernel
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden_states: list[Tensor] = []
        for i, layer in enumerate(self.layers[:k]):
            hidden_states.append(x)
            # LayerDrop: skip whole layers while training; torch's global RNG so that resume is exact
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, padding_mask, attn_bias)
        if k == total and self.layer_norm_first:
            x = self.layer_norm(x)
        hidden_states.append(x)
        return x, hidden_states
