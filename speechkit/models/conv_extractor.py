"""Waveform convolutional feature extractor (wav2vec 2.0 / HuBERT / WavLM / data2vec front end).

Seven 1-D convolutions `[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2` turn 16 kHz audio into
512-dim frames at 50 Hz (total stride 320, receptive field 400 samples).

Parameter names follow HF transformers (`conv_layers.N.conv`, `conv_layers.N.layer_norm`), which are
also fairseq's `conv_layers.N.0` / `conv_layers.N.2` under a fixed renaming, so checkpoint import is a
table of names.

Two normalisation modes, as in fairseq's `extractor_mode`:
- "group" (Base): GroupNorm(C, C) after the first conv only, i.e. every channel normalised over time.
  With a padded batch the time statistics would include the padding, so this module computes them over
  each utterance's valid frames only. Without padding it is exactly GroupNorm, so pretrained weights and
  HF/fairseq outputs agree; with padding the outputs equal the per-utterance (unpadded) outputs, which the
  reference implementations do not give.
- "layer" (Large): LayerNorm over channels after every conv (per frame, so padding cannot leak).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ConvSpec = tuple[int, int, int]  # (out_channels, kernel, stride)

DEFAULT_CONV_LAYERS: tuple[ConvSpec, ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


def conv_output_lengths(lengths: Tensor, conv_layers: Sequence[ConvSpec]) -> Tensor:
    """Number of valid output frames for inputs of `lengths` samples (no padding in the convs).

    Each layer maps n -> floor((n - kernel) / stride) + 1; too-short inputs give 0, never negative.
    """
    out = lengths.long()
    for _, kernel, stride in conv_layers:
        out = torch.div(out - kernel, stride, rounding_mode="floor") + 1
        out = out.clamp(min=0)
    return out


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool, True at padded positions (fairseq convention)."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, T)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _MaskedGroupNorm(torch.autograd.Function):
    """Per-channel normalisation over the valid frames, with a hand-written backward.

    Autograd's graph of the same formula makes about ten full passes over the (B, C, T) tensor in backward
    (one per elementwise op and batched product); this runs on the longest tensor of the model (the first
    conv layer's output), so the closed form, with half as many, is worth its lines. With ``h = xhat * w + b``,
    ``xhat = (x - mu) * s`` and statistics over the valid frames (``m_t``, ``n`` of them):

        dL/dx_t = s * (w g_t - m_t / n * (sum_u w g_u + xhat_t * sum_u w g_u xhat_u))

    where the sums run over all frames (padded outputs depend on x through mu and s too).
    """

    @staticmethod
    def forward(ctx, x: Tensor, valid: Tensor, count: Tensor, weight: Tensor | None, bias: Tensor | None,
                eps: float) -> Tensor:
        # fp32 throughout (autocast off: it would run the batched products in bf16/fp16)
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float()
            # masked sums over time as batched products with the 0/1 mask (B, T, 1): one read each
            mean = torch.bmm(xf, valid) / count  # (B, C, 1)
            xhat = xf - mean
            var = torch.bmm(xhat.square(), valid) / count  # biased, as GroupNorm
            scale = torch.rsqrt(var + eps)
            xhat.mul_(scale)
            ctx.save_for_backward(xhat, scale, valid, count, weight)
            ctx.x_dtype = x.dtype
            if weight is None:
                return xhat.to(x.dtype, copy=True)  # a copy: xhat is saved for backward
            return torch.addcmul(bias.float()[None, :, None], xhat, weight.float()[None, :, None]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        with torch.autocast(grad.device.type, enabled=False):
            return _MaskedGroupNorm._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad: Tensor):
        xhat, scale, valid, count, weight = ctx.saved_tensors
        g = grad.float()
        sum_g = g.sum(dim=2, keepdim=True)  # (B, C, 1)
        sum_gx = (g * xhat).sum(dim=2, keepdim=True)
        grad_w = grad_b = None
        if weight is not None:
            grad_w = sum_gx.sum(dim=0).flatten().to(weight.dtype)
            grad_b = sum_g.sum(dim=0).flatten().to(weight.dtype)
            w = weight.float()[None, :, None]
            a, sum_g, sum_gx = scale * w, sum_g * w, sum_gx * w
        else:
            a = scale
        grad_x = None
        if ctx.needs_input_grad[0]:
            k = scale / count  # (B, C, 1)
            corr = torch.addcmul(sum_g * k, xhat, sum_gx * k)  # (B, C, T)
            corr.mul_(valid.transpose(1, 2))
            grad_x = torch.mul(g, a).sub_(corr).to(ctx.x_dtype)
        return grad_x, None, None, grad_w, grad_b, None


def masked_group_norm(x: Tensor, lengths: Tensor, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm(C, C) whose per-channel time statistics use only the first `lengths[b]` frames.

    x: (B, C, T). Frames beyond the length are normalised with the same statistics; their values only
    reach output frames that are padding themselves (the convs have no padding).
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("masked_group_norm supports only one group per channel (fairseq's extractor)")
    valid = (torch.arange(x.size(2), device=x.device)[None, :] < lengths[:, None]).float()  # (B, T)
    count = valid.sum(dim=1).clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    return _MaskedGroupNorm.apply(x, valid[:, :, None], count, weight, bias, norm.eps)


class ConvLayer(nn.Module):
    """Parameters of one conv block: `conv` (Conv1d weights) and `layer_norm` (GroupNorm, channel
    LayerNorm, or absent). The computation lives in ConvFeatureExtractor, which runs the whole stack."""

    def __init__(self, in_channels: int, spec: ConvSpec, bias: bool, norm: str | None) -> None:
        super().__init__()
        out_channels, kernel, stride = spec
        self.kernel_size = kernel
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)  # as fairseq's extractor
        self.layer_norm: nn.Module | None
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.layer_norm = ChannelLayerNorm(out_channels, elementwise_affine=True)
        elif norm is None:
            self.layer_norm = None
        else:
            raise ValueError(f"unknown conv norm {norm!r}; expected 'group', 'layer' or None")

    def out_lengths(self, lengths: Tensor) -> Tensor:
        return (torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1).clamp(min=0)

    def group_norm(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """x: (B, C, T); per-utterance statistics when the batch is padded."""
        assert isinstance(self.layer_norm, nn.GroupNorm)
        if lengths is not None and bool((lengths < x.size(2)).any()):
            return masked_group_norm(x, lengths, self.layer_norm)
        return self.layer_norm(x)


class ConvFeatureExtractor(nn.Module):
    """(B, T) waveform -> (B, T', C) frames, plus valid frame counts.

    On CPU the convolutions run as unfold + GEMM in a time-major layout: the 512-channel layers have
    kernel <= 3 and stride 2, so one matrix multiply over the unfolded windows does the same FLOPs as
    the direct convolution and was as fast or slightly faster than mkldnn's Conv1d here (Base, 2 x 4 s,
    forward + backward, one thread: 2.15 s vs 2.30 s CPU), and the result is already (B, T', C) for the
    projection, which saves the final transpose. Narrower stacks are faster through mkldnn's Conv1d
    (extractor forward + backward, 2 x 4 s, one thread: 64 channels 0.14 s vs 0.18 s by GEMM, 256
    channels 0.91 s vs 1.09 s, 512 channels 3.80 s vs 3.71 s), so "auto" picks the GEMM path only for
    stacks of 512 or more channels. The
    GroupNorm of the first layer needs per-channel statistics over time, so that layer is produced
    channel-major (B, C, T) and the next layer unfolds it in place of a transpose. On CUDA (cuDNN) the
    plain Conv1d path is used. Both give the same numbers (tested).
    """

    def __init__(self, conv_layers: Sequence[ConvSpec] = DEFAULT_CONV_LAYERS, mode: str = "group",
                 conv_bias: bool = False) -> None:
        super().__init__()
        if mode not in ("group", "layer"):
            raise ValueError(f"extractor mode must be 'group' or 'layer', got {mode!r}")
        self.mode = mode
        self.specs: list[ConvSpec] = [tuple(s) for s in conv_layers]  # type: ignore[misc]
        layers = []
        in_ch = 1
        for i, spec in enumerate(self.specs):
            norm = ("group" if i == 0 else None) if mode == "group" else "layer"
            layers.append(ConvLayer(in_ch, spec, conv_bias, norm))
            in_ch = spec[0]
        self.conv_layers = nn.ModuleList(layers)
        self.out_channels = in_ch
        self.impl = "auto"  # "auto" | "gemm" | "conv"; auto = gemm on CPU for >= 512 channels, else conv

    @property
    def total_stride(self) -> int:
        stride = 1
        for _, _, s in self.specs:
            stride *= s
        return stride

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return conv_output_lengths(lengths, self.specs)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """wav: (B, T) float, lengths: (B,) samples or None -> ((B, T', C), (B,) frames or None)."""
        if wav.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(wav.shape)}")
        if int(conv_output_lengths(torch.tensor([wav.size(1)]), self.specs)[0]) <= 0:
            raise ValueError(f"waveform of {wav.size(1)} samples is too short for the conv extractor "
                             f"(kernels/strides {self.specs})")
        if self.impl != "auto":
            impl = self.impl
        else:
            impl = "gemm" if not wav.is_cuda and max(c for c, _, _ in self.specs) >= 512 else "conv"
        if impl == "conv":
            return self._forward_conv(wav, lengths)
        return self._forward_gemm(wav, lengths)

    def _forward_conv(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = wav[:, None, :]  # (B, 1, T)
        for layer in self.conv_layers:
            x = layer.conv(x)  # (B, C, T')
            if lengths is not None:
                lengths = layer.out_lengths(lengths)
            if isinstance(layer.layer_norm, nn.GroupNorm):
                x = layer.group_norm(x, lengths)
            elif layer.layer_norm is not None:
                x = layer.layer_norm(x)
            x = F.gelu(x)
        return x.transpose(1, 2), lengths

    def _forward_gemm(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = wav
        channel_major = False  # layout of x: (B, C, T) if True else (B, T, C); the waveform is (B, T)
        for i, layer in enumerate(self.conv_layers):
            conv = layer.conv
            k, s = layer.kernel_size, layer.stride
            c_out = conv.out_channels
            if lengths is not None:
                lengths = layer.out_lengths(lengths)
            if i == 0:
                if conv.in_channels != 1:
                    raise ValueError("the first conv layer must take the 1-channel waveform")
                windows = x.unfold(1, k, s)  # (B, T', k)
                w = conv.weight.view(c_out, k)
                if isinstance(layer.layer_norm, nn.GroupNorm):
                    # channel-major output for the per-channel statistics over time
                    x = torch.matmul(w, windows.transpose(1, 2))  # (B, C, T')
                    if conv.bias is not None:
                        x = x + conv.bias[None, :, None]
                    x = F.gelu(layer.group_norm(x, lengths))
                    channel_major = True
                    continue
                x = F.linear(windows, w, conv.bias)  # (B, T', C)
            else:
                if channel_major:
                    windows = x.unfold(2, k, s).permute(0, 2, 1, 3)  # (B, C, T', k) -> (B, T', C, k)
                else:
                    windows = x.unfold(1, k, s)  # (B, T', C, k)
                b, t = windows.shape[:2]
                x = F.linear(windows.reshape(b, t, -1), conv.weight.reshape(c_out, -1), conv.bias)  # (B, T', C)
                channel_major = False
            if isinstance(layer.layer_norm, ChannelLayerNorm):
                x = F.layer_norm(x, (c_out,), layer.layer_norm.weight, layer.layer_norm.bias, layer.layer_norm.eps)
            elif layer.layer_norm is not None:
                raise ValueError("GroupNorm is only supported on the first conv layer")
            x = F.gelu(x)
        if channel_major:  # a one-layer stack
            x = x.transpose(1, 2)
        return x, lengths
