"""The shared SSL speech encoder: conv extractor -> feature projection -> (masking) -> transformer.

This is the body of HuBERT, wav2vec 2.0, WavLM and data2vec (fairseq) and of HF's `Wav2Vec2Model` /
`HubertModel`; the objectives (heads, quantizers, teachers) wrap it. Top-level names match HF
(`feature_extractor`, `feature_projection`, `masked_spec_embed`, `encoder`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .config_utils import config_from_dict, config_to_dict
from .conv_extractor import DEFAULT_CONV_LAYERS, ConvFeatureExtractor, ConvSpec, lengths_to_padding_mask
from .dropout import Dropout
from .masking import compute_channel_mask, compute_mask_indices
from .transformer import TransformerEncoder


@dataclass
class EncoderConfig:
    # conv feature extractor
    conv_layers: list[ConvSpec] = field(default_factory=lambda: list(DEFAULT_CONV_LAYERS))
    extractor_mode: str = "group"  # "group" (Base) | "layer" (Large)
    conv_bias: bool = False
    feature_grad_mult: float = 0.1  # scale of the gradient into the extractor; 0 freezes it
    # transformer
    embed_dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    layer_norm_first: bool = False  # False: post-LN (Base); True: pre-LN (Large)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1.0e-5
    # regularisation (fairseq names)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.1  # after the feature projection (HF feat_proj_dropout)
    dropout_features: float = 0.1  # on the unmasked local features returned for targets (wav2vec 2.0)
    layerdrop: float = 0.05
    # time masking (fairseq compute_mask_indices) and channel masking
    mask_prob: float = 0.8
    mask_length: int = 10
    mask_min_masks: int = 2
    mask_require_same: bool = True
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 10
    mask_channel_min_masks: int = 0
    # waveform normalisation inside the model: each utterance to zero mean / unit variance over its valid
    # samples before the conv extractor (fairseq `task.normalize`, HF feature extractor `do_normalize`).
    # Models pre-trained on normalised audio (wav2vec 2.0 LV-60, HuBERT/WavLM Large) need it at every use;
    # applying it here, not in a data loader, means no caller can forget it.
    normalize: bool = False

    def __post_init__(self) -> None:
        self.conv_layers = [tuple(int(v) for v in spec) for spec in self.conv_layers]  # YAML gives lists
        for spec in self.conv_layers:
            if len(spec) != 3:
                raise ValueError(f"conv_layers entries must be (channels, kernel, stride), got {spec}")
        if self.extractor_mode not in ("group", "layer"):
            raise ValueError(f"extractor_mode must be 'group' or 'layer', got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")


@dataclass
class EncoderOutput:
    x: Tensor  # (B, T', D) encoder output
    hidden_states: list[Tensor]  # L+1 (or k+1) tensors (B, T', D); [i] is the input to layer i
    frame_lens: Tensor  # (B,) valid frames
    padding_mask: Tensor | None  # (B, T') True at padding, None when nothing is padded
    mask_indices: Tensor | None  # (B, T') True where masked_spec_embed replaced the input
    features: Tensor  # (B, T', C) local features after LayerNorm and dropout_features, unmasked (w2v2 targets)
    features_pen: Tensor  # scalar: mean square of the conv output over valid frames


NORMALIZE_EPS = 1e-7  # HF Wav2Vec2FeatureExtractor's epsilon on the variance (fairseq's F.layer_norm: 1e-5)


def normalize_waveform(wav: Tensor, wav_lens: Tensor | None = None, eps: float = NORMALIZE_EPS) -> Tensor:
    """(B, T) zero-padded waveforms -> each row's valid samples at zero mean and unit variance, padding 0.

    (x - mean) / sqrt(var + eps) with the population variance over the first wav_lens[b] samples, as HF's
    `Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm` with an attention mask (fairseq normalises each
    utterance before padding: the same statistics with eps 1e-5, a relative difference of about
    0.5 * 1e-5 / var: 5e-4 for speech at -20 dBFS RMS, 5e-3 at -30 dBFS). Statistics in fp32, so fp16/bf16
    input does not overflow the sum of squares.
    """
    x = wav.float()
    if wav_lens is None:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return ((x - mean) * torch.rsqrt(var + eps)).to(wav.dtype)
    valid = ~lengths_to_padding_mask(wav_lens.to(x.device), x.size(1))  # (B, T) True at samples
    n = valid.sum(dim=1, keepdim=True).clamp(min=1).float()
    mean = (x * valid).sum(dim=1, keepdim=True) / n
    var = ((x - mean).pow(2) * valid).sum(dim=1, keepdim=True) / n
    return ((x - mean) * torch.rsqrt(var + eps) * valid).to(wav.dtype)


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient scaled by `scale` backward (fairseq's feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


class FeatureProjection(nn.Module):
    """LayerNorm(C) -> Linear(C, D) -> dropout. Returns (projected, normed) - the normed local features
    are wav2vec 2.0's quantizer input."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=eps)
        self.projection = nn.Linear(in_dim, out_dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (B, T, C) -> (B, T, D), (B, T, C)
        normed = self.layer_norm(x)
        return self.dropout(self.projection(normed)), normed


class SSLEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureExtractor(cfg.conv_layers, cfg.extractor_mode, cfg.conv_bias)
        c = self.feature_extractor.out_channels
        self.feature_projection = FeatureProjection(c, cfg.embed_dim, cfg.dropout_input, cfg.layer_norm_eps)
        self.masked_spec_embed = nn.Parameter(torch.empty(cfg.embed_dim).uniform_())
        self.encoder = TransformerEncoder(
            cfg.embed_dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim,
            layer_norm_first=cfg.layer_norm_first, pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout, layerdrop=cfg.layerdrop, eps=cfg.layer_norm_eps,
        )
        self.dropout_features = Dropout(cfg.dropout_features)

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def upstream_spec(self) -> dict[str, Any]:
        """What rebuilds this encoder's architecture (speechkit.models.registry.build_upstream); subclasses
        with more structure than EncoderConfig (WavLM's relative bias) return their own type and fields."""
        return {"type": "encoder", "encoder": config_to_dict(self.cfg)}

    @classmethod
    def from_upstream_spec(cls, spec: dict[str, Any]) -> "SSLEncoder":
        return cls(config_from_dict(EncoderConfig, spec["encoder"], "upstream.encoder"))

    def frame_lengths(self, wav_lens: Tensor) -> Tensor:
        """(B,) samples -> (B,) 50 Hz frames (exact conv arithmetic)."""
        return self.feature_extractor.output_lengths(wav_lens)

    def local_features(self, wav: Tensor, wav_lens: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Conv features with feature_grad_mult applied: ((B, T', C), frame_lens (B,), features_pen)."""
        if wav_lens is None:
            wav_lens = torch.full((wav.size(0),), wav.size(1), dtype=torch.long, device=wav.device)
        if self.cfg.normalize:
            wav = normalize_waveform(wav, wav_lens)
        mult = self.cfg.feature_grad_mult
        if mult > 0:
            feats, frame_lens = self.feature_extractor(wav, wav_lens)
            if mult != 1.0:
                feats = GradMultiply.apply(feats, mult)
        else:
            with torch.no_grad():
                feats, frame_lens = self.feature_extractor(wav, wav_lens)
        assert frame_lens is not None
        if bool((frame_lens <= 0).any()):
            bad = [i for i, n in enumerate(frame_lens.tolist()) if n <= 0]
            raise ValueError(f"utterance(s) at batch index {bad} are too short for the conv extractor "
                             f"(lengths {wav_lens[bad].tolist()} samples; need >= "
                             f"{self.min_samples()} samples for one frame)")
        # feats: (B, T', C)
        # feature penalty over valid frames only, so it does not depend on how the batch was padded
        sq = feats.float().pow(2).mean(dim=2)  # (B, T')
        valid = ~lengths_to_padding_mask(frame_lens, feats.size(1))
        features_pen = (sq * valid).sum() / valid.sum().clamp(min=1) if not bool(valid.all()) else sq.mean()
        return feats, frame_lens, features_pen

    def min_samples(self) -> int:
        n = 1
        for _, kernel, stride in reversed(self.feature_extractor.specs):
            n = (n - 1) * stride + kernel
        return n

    def apply_mask(self, x: Tensor, padding_mask: Tensor | None, mask_indices: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Replace masked frames by masked_spec_embed (time) and zero masked channels."""
        b, t, d = x.shape
        cfg = self.cfg
        if mask_indices is None and cfg.mask_prob > 0:
            mask_indices = compute_mask_indices(
                (b, t), None if padding_mask is None else padding_mask.cpu(), cfg.mask_prob, cfg.mask_length,
                cfg.mask_min_masks, cfg.mask_require_same, generator)
        if mask_indices is not None:
            mask_indices = mask_indices.to(x.device)
            x = torch.where(mask_indices[:, :, None], self.masked_spec_embed.to(x.dtype), x)
        if cfg.mask_channel_prob > 0:
            ch = compute_channel_mask(b, d, cfg.mask_channel_prob, cfg.mask_channel_length,
                                      cfg.mask_channel_min_masks, generator).to(x.device)
            x = x.masked_fill(ch[:, None, :], 0.0)
        return x, mask_indices

    def forward(self, wav: Tensor, wav_lens: Tensor | None = None, mask: bool = False,
                mask_indices: Tensor | None = None, num_layers: int | None = None,
                generator: torch.Generator | None = None) -> EncoderOutput:
        """wav: (B, T) zero-padded; wav_lens: (B,) samples. `mask=True` draws span masks (or uses the
        given `mask_indices`, (B, T') bool); `num_layers=k` stops after k layers."""
        feats, frame_lens, features_pen = self.local_features(wav, wav_lens)
        t = feats.size(1)
        padding_mask = lengths_to_padding_mask(frame_lens, t)
        if not bool(padding_mask.any()):
            padding_mask = None
        x, normed = self.feature_projection(feats)  # (B, T', D), (B, T', C)
        features = self.dropout_features(normed)
        if mask or mask_indices is not None:
            x, mask_indices = self.apply_mask(x, padding_mask, mask_indices, generator)
        x, hidden_states = self.encoder(x, padding_mask, num_layers)
        return EncoderOutput(x=x, hidden_states=hidden_states, frame_lens=frame_lens,
                             padding_mask=padding_mask, mask_indices=mask_indices, features=features,
                             features_pen=features_pen)

    def extract_features(self, wav: Tensor, wav_lens: Tensor | None = None,
                         layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """speechkit's upstream call: (L+1 hidden states (B, T', D), frame lengths (B,)). Entry i is the input
        to layer i (after the positional conv), the last the encoder output - the states, order and count of
        HF's `output_hidden_states=True` and of s3prl's hubert/wav2vec2 `hidden_states` (the calling
        conventions differ: HF takes padded input + attention mask, s3prl a list of unpadded waveforms -
        see `speechkit.models.upstream.S3PRLUpstream`). With `layer=k` only k layers run and k+1 entries
        come back (entry k is layer k's output in 1-based counting, fairseq's `output_layer=k`). No
        masking; the waveform is normalised first when `cfg.normalize`."""
        out = self.forward(wav, wav_lens, mask=False, num_layers=layer)
        return out.hidden_states, out.frame_lens


def find_encoder(module: nn.Module) -> SSLEncoder | None:
    """The SSLEncoder inside ``module`` (itself, or the first one among its submodules), or None."""
    for sub in module.modules():  # module itself comes first
        if isinstance(sub, SSLEncoder):
            return sub
    return None
