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


class _WaveformConv(torch.autograd.Function):
    """The first conv layer (1 input channel, kernel k, stride s) on CPU: Conv1d forward, GEMM weight gradient.

    mkldnn's weight gradient of a 1-channel strided Conv1d is slow (the mini recipe's 10 s batch, 64 channels,
    one thread: forward + backward 11.3 ms, of which the forward is 1.4 ms; Base's 512 channels on 2 x 4 s:
    58 ms, forward 9.3 ms). Here it is one batched GEMM of the output gradient with the (k, T') window
    matrix, ``dL/dW = sum_b g_b @ windows_b^T`` (3.9 and 25 ms forward + backward). The windows come from
    the waveform cut into s phases, ``p[c, j] = x[s j + c]`` (a reshape, no gather): row ``s i + c`` of the
    window matrix is phase c shifted by i, ``x[s (t + i) + c]``, kernel tap ``s i + c`` (the kernel
    zero-padded to a multiple of s).
    """

    @staticmethod
    def forward(ctx, wav: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        ctx.save_for_backward(wav, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv1d(wav[:, None, :], weight, bias, stride)  # (B, C, T')

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        wav, weight = ctx.saved_tensors
        k, s = weight.size(2), ctx.stride
        grad_wav = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_wav = torch.nn.grad.conv1d_input((wav.size(0), 1, wav.size(1)), weight, grad, stride=s)[:, 0]
        if ctx.needs_input_grad[1]:
            taps, t_out = -(-k // s), grad.size(2)
            need = (t_out + taps - 1) * s  # samples the phases cover; the zero taps may reach past the end
            x = wav[:, :need] if wav.size(1) >= need else F.pad(wav, (0, need - wav.size(1)))
            phases = x.reshape(wav.size(0), -1, s).transpose(1, 2)  # (B, s, T' + taps - 1)
            windows = torch.cat([phases[:, :, i:i + t_out] for i in range(taps)], dim=1)  # (B, taps * s, T')
            grad_w = torch.matmul(grad, windows.transpose(1, 2)).sum(dim=0)[:, None, :k].to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        return grad_wav, grad_w, grad_b, None


def waveform_conv(wav: Tensor, conv: nn.Conv1d) -> Tensor:
    """(B, T) waveform through a 1-channel Conv1d -> (B, C, T'); on CPU with the GEMM weight gradient."""
    if wav.is_cuda or torch.is_autocast_enabled(wav.device.type) or not (
            torch.is_grad_enabled() and conv.weight.requires_grad):  # no weight gradient to compute
        return conv(wav[:, None, :])
    return _WaveformConv.apply(wav, conv.weight, conv.bias, conv.stride[0])


class _TimeMajorConv(torch.autograd.Function):
    """A conv layer on a time-major (B, T, C) input as k matrix products over strided views, no unfold.

    Tap j of the kernel sees the frames ``x[b, j + s t]``, a (T', C) view whose rows are s * C apart, which
    BLAS reads in place; ``y_b = sum_j x_b[j::s] W_j^T``. The unfold alternative copies k overlapping
    windows per output frame (1.5x the input for kernel 3, stride 2), keeps that copy for the weight
    gradient, and scatters its gradient back with ``unfold_backward``. Here only the input is kept, and the
    input gradient is accumulated in place through the same views. HuBERT Base, 2 x 4 s, 2 threads, forward +
    backward: layer 2 alone 500 -> 422 ms, layer 3 223 -> 178 ms; the whole extractor 1.15 -> 1.07 s (group
    norm mode) and 1.14 -> 1.00 s (layer norm mode, conv bias), against the unfold version.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        b, t, _ = x.shape
        c_out, _, k = weight.shape
        t_out = (t - k) // stride + 1
        taps = weight.permute(2, 1, 0).contiguous()  # (k, C_in, C_out)
        y = x.new_empty(b, t_out, c_out)
        span = (t_out - 1) * stride + 1
        for i in range(b):
            torch.mm(x[i, 0:span:stride], taps[0], out=y[i])
            for j in range(1, k):
                y[i].addmm_(x[i, j:j + span:stride], taps[j])
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        s, k = ctx.stride, weight.size(2)
        t_out = grad.size(1)
        span = (t_out - 1) * s + 1
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # input frame r + s m gets tap r + s q from output frame m - q: per residue r, the first tap writes
            # its frames, the later ones add to them; only frames no first tap reaches are zeroed
            taps = weight.permute(2, 0, 1).contiguous()  # (k, C_out, C_in)
            grad_x = torch.empty_like(x)
            for r in range(s):
                rows = grad_x[:, r::s]  # (B, frames of residue r, C_in)
                if r >= k:
                    rows.zero_()
                    continue
                rows[:, t_out:].zero_()
                for i in range(x.size(0)):
                    torch.mm(grad[i], taps[r], out=rows[i, :t_out])
                    for j in range(r + s, k, s):
                        rows[i, j // s:j // s + t_out].addmm_(grad[i], taps[j])
        if ctx.needs_input_grad[1]:
            taps_grad = weight.new_empty(k, weight.size(0), weight.size(1))  # (k, C_out, C_in), summed over the batch
            for j in range(k):
                torch.mm(grad[0].t(), x[0, j:j + span:s], out=taps_grad[j])
                for i in range(1, x.size(0)):
                    taps_grad[j].addmm_(grad[i].t(), x[i, j:j + span:s])
            grad_w = taps_grad.permute(1, 2, 0).contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 1))
        return grad_x, grad_w, grad_b, None


def time_major_conv(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """(B, T, C_in) -> (B, T', C_out): ``conv`` (no padding, no dilation) without unfolding its windows."""
    if torch.is_autocast_enabled(x.device.type):  # the in-place products take one dtype; autocast mixes them
        b = x.size(0)
        windows = x.unfold(1, conv.kernel_size[0], conv.stride[0])  # (B, T', C, k)
        return F.linear(windows.reshape(b, windows.size(1), -1), conv.weight.reshape(conv.out_channels, -1), conv.bias)
    return _TimeMajorConv.apply(x.contiguous(), conv.weight, conv.bias, conv.stride[0])


class _MaskedGroupNorm(torch.autograd.Function):
    """Per-channel normalisation over the valid frames, with a hand-written backward.

    With ``xhat = (x - mu) * s`` (``mu``, ``s`` from the first ``n`` frames of the utterance) and
    ``h = xhat * w + b``, the forward runs torch's GroupNorm kernel on each utterance's valid frames (the
    padded frames get ``x * (s w) + (b - mu s w)``, from the same statistics); autograd's graph of the formula makes
    about ten full passes over the (B, C, T) tensor in backward, and this runs on the longest tensor of the
    model (the first conv layer's output). The backward is the closed form

        dL/dx_t = s * (w g_t - [t < n] / n * (sum_u w g_u + xhat_t * sum_u w g_u xhat_u))

    where the sums run over all frames (padded outputs depend on x through mu and s too); ``xhat`` is not
    kept but recomputed inside the sums (``sum_u g_u xhat_u = s * (sum_u g_u x_u - mu sum_u g_u)``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, lengths: list[int], weight: Tensor | None, bias: Tensor | None,
                eps: float) -> Tensor:
        # fp32 throughout (autocast off: it would run the products in bf16/fp16)
        with torch.autocast(x.device.type, enabled=False):
            xf = x.float()
            w = None if weight is None else weight.float()
            b_ = None if bias is None else bias.float()
            bsz, ch, t = xf.shape
            out = torch.empty_like(xf)
            mean, scale = xf.new_zeros(bsz, ch, 1), xf.new_full((bsz, ch, 1), eps ** -0.5)
            for b, n in enumerate(lengths):
                if n > 0:  # torch's own GroupNorm kernel on the valid frames: exactly the unpadded utterance's output
                    y, m, r = torch.native_group_norm(xf[b:b + 1, :, :n].contiguous(), w, b_, 1, ch, n, ch, eps)
                    out[b, :, :n] = y[0]
                    mean[b, :, 0], scale[b, :, 0] = m[0], r[0]
                if n < t:  # padding: the same statistics
                    a = scale[b] if w is None else scale[b] * w[:, None]
                    c = -mean[b] * a if b_ is None else b_[:, None] - mean[b] * a
                    torch.addcmul(c, xf[b, :, n:], a, out=out[b, :, n:])
            ctx.save_for_backward(x, mean, scale, weight)
            ctx.lengths = lengths
            return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        with torch.autocast(grad.device.type, enabled=False):
            return _MaskedGroupNorm._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad: Tensor):
        x, mean, scale, weight = ctx.saved_tensors
        g, xf = grad.float(), x.float()
        sum_g = g.sum(dim=2, keepdim=True)  # (B, C, 1)
        sum_gx = (g * xf).sum(dim=2, keepdim=True)  # sum_u g_u x_u
        sum_gxhat = (sum_gx - mean * sum_g) * scale
        grad_w = grad_b = None
        if weight is not None:
            grad_w = sum_gxhat.sum(dim=0).flatten().to(weight.dtype)
            grad_b = sum_g.sum(dim=0).flatten().to(weight.dtype)
            w = weight.float()[None, :, None]
            a, sum_g, sum_gxhat = scale * w, sum_g * w, sum_gxhat * w
        else:
            a = scale
        grad_x = None
        if ctx.needs_input_grad[0]:
            # the correction on the valid frames, x * alpha + beta, in place on those frames
            count = torch.tensor(ctx.lengths, dtype=g.dtype, device=g.device).clamp(min=1.0)[:, None, None]
            k = scale / count
            alpha = k * sum_gxhat * scale
            beta = k * sum_g - mean * alpha
            grad_x = g * a
            for b, n in enumerate(ctx.lengths):
                if n > 0:
                    grad_x[b, :, :n].addcmul_(xf[b, :, :n], alpha[b], value=-1.0).sub_(beta[b])
            grad_x = grad_x.to(x.dtype)
        return grad_x, None, grad_w, grad_b, None


class _WaveformConvGroupNormGELU(torch.autograd.Function):
    """The first conv layer, its GroupNorm(C, C) and GELU, time-major: (B, S) waveform -> (B, T', C), each
    utterance normalised with the statistics of its first ``lengths[b]`` frames (the padded frames after
    them with the same statistics, as ``masked_group_norm``).

    Normalising each channel of one utterance over time is batch norm (training statistics) of its (T', C)
    frame matrix, and torch's CPU batch-norm kernels are vectorised over the contiguous channels of such a
    matrix. So the layer is computed time-major and normalised as it lies: the channel-major GroupNorm
    needed a transposing copy of its output in forward and one of its gradient in backward, the two
    slowest passes over the largest tensor of the model. The conv is one product per utterance with the
    (T', k) window matrix. GELU runs in place on the normalised frames, which are not kept: backward
    recomputes one utterance's at a time from the kept conv output (``y * scale + shift``), takes the GELU
    gradient in the same buffer, and sends the norm's input gradient straight into the weight gradient's
    product, so no batch-sized gradient is assembled. The padded frames' share of the statistics' gradient
    is added in closed form. HuBERT Base, 2 x 4 s, the layer forward + backward: 160 -> 73 ms on 2 threads,
    266 -> 107 ms on 1, against Conv1d + GroupNorm + transpose + GELU.
    """

    @staticmethod
    def forward(ctx, wav: Tensor, weight: Tensor, norm_weight: Tensor, norm_bias: Tensor, stride: int,
                eps: float, lengths: list[int]) -> Tensor:
        c, _, k = weight.shape
        windows = wav.unfold(1, k, stride)  # (B, T', k) view
        taps = weight.view(c, k).t()  # (k, C)
        y = wav.new_empty(wav.size(0), windows.size(1), c)  # the conv output, kept for backward
        z = torch.empty_like(y)
        mean, invstd = wav.new_empty(wav.size(0), c), wav.new_empty(wav.size(0), c)
        for i, n in enumerate(lengths):
            torch.mm(windows[i], taps, out=y[i])
            torch.ops.aten.native_batch_norm.out(y[i, :n], norm_weight, norm_bias, None, None, True, 0.0, eps,
                                                 out=z[i, :n], save_mean=mean[i], save_invstd=invstd[i])
        scale = invstd * norm_weight  # (B, C): z = y * scale + shift
        shift = norm_bias - mean * scale
        for i, n in enumerate(lengths):
            if n < y.size(1):  # padding: normalised with the valid frames' statistics
                torch.addcmul(shift[i], y[i, n:], scale[i], out=z[i, n:])
        ctx.save_for_backward(wav, weight, y, norm_weight, mean, invstd, scale, shift)
        ctx.stride, ctx.eps, ctx.lengths = stride, eps, lengths
        return torch.ops.aten.gelu_(z)  # the normalised frames are recomputed in backward, not kept

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        wav, weight, y, norm_weight, mean, invstd, scale, shift = ctx.saved_tensors
        c, _, k = weight.shape
        windows = wav.unfold(1, k, ctx.stride)
        grad = grad.contiguous()
        need_w, need_nw, need_nb = ctx.needs_input_grad[1:4]
        grad_taps = weight.new_zeros(c, k)
        grad_nw, grad_nb = weight.new_zeros(c), weight.new_zeros(c)
        gz = torch.empty_like(y[0])  # one utterance's GELU input, then its gradient, reused
        for i, n in enumerate(ctx.lengths):
            torch.addcmul(shift[i], y[i], scale[i], out=gz)
            torch.ops.aten.gelu_backward.grad_input(grad[i], gz, grad_input=gz)
            gy, gnw, gnb = torch.ops.aten.native_batch_norm_backward(
                gz[:n], y[i, :n], norm_weight, None, None, mean[i], invstd[i], True, ctx.eps,
                [need_w, need_nw, need_nb])
            if n < y.size(1):
                # padded outputs depend on their own frames (times the scale) and, through the mean and the
                # inverse std, on every valid frame: with P1 = sum_pad g and P2 = sum_pad g (y - mean),
                # valid frame t gets -(scale P1 + w P2 s^3 (y_t - mean)) / n; w gets s P2 and the bias P1
                g_pad, y_pad = gz[n:], y[i, n:]
                p1 = g_pad.sum(0)
                p2 = (g_pad * (y_pad - mean[i])).sum(0)
                if need_w:
                    slope = norm_weight * p2 * invstd[i].pow(3) / n
                    gy.sub_(scale[i] * p1 / n - slope * mean[i]).addcmul_(y[i, :n], slope, value=-1.0)
                    grad_taps.addmm_((g_pad * scale[i]).t(), windows[i, n:])
                if need_nw:
                    gnw = gnw + invstd[i] * p2
                if need_nb:
                    gnb = gnb + p1
            if need_w:
                grad_taps.addmm_(gy.t(), windows[i, :n])
            if need_nw:
                grad_nw += gnw
            if need_nb:
                grad_nb += gnb
        return (None, grad_taps.view_as(weight) if need_w else None, grad_nw if need_nw else None,
                grad_nb if need_nb else None, None, None, None)


def _fits_time_major_first_layer(conv: nn.Conv1d, norm: nn.Module | None) -> bool:
    """Whether ``waveform_conv_group_norm_gelu`` computes this layer: fairseq's group-mode first layer."""
    return isinstance(norm, nn.GroupNorm) and norm.affine and norm.num_groups == norm.num_channels \
        and conv.bias is None


def waveform_conv_group_norm_gelu(wav: Tensor, conv: nn.Conv1d, norm: nn.GroupNorm,
                                  lengths: Tensor | None = None) -> Tensor:
    """(B, S) waveform -> (B, T', C): ``gelu(norm(conv(wav)))``, time-major, the norm's statistics over each
    utterance's first ``lengths[b]`` frames (all frames when None; padded frames are normalised with them).
    ``conv`` without bias, ``norm`` GroupNorm(C, C) with affine parameters (fairseq's first extractor layer)."""
    if not _fits_time_major_first_layer(conv, norm):
        raise ValueError("waveform_conv_group_norm_gelu needs a conv without bias and an affine GroupNorm(C, C)")
    frames = int(conv_output_lengths(torch.tensor([wav.size(1)]), [(conv.out_channels, conv.kernel_size[0],
                                                                      conv.stride[0])])[0])
    lens = [frames] * wav.size(0) if lengths is None else [min(int(n), frames) for n in lengths.tolist()]
    if min(lens) < 1:
        raise ValueError(f"waveform_conv_group_norm_gelu: every utterance needs a frame, got {lens}")
    return _WaveformConvGroupNormGELU.apply(wav.contiguous(), conv.weight, norm.weight, norm.bias, conv.stride[0],
                                            norm.eps, lens)


def masked_group_norm(x: Tensor, lengths: Tensor, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm(C, C) whose per-channel time statistics use only the first `lengths[b]` frames.

    x: (B, C, T). Frames beyond the length are normalised with the same statistics; their values only
    reach output frames that are padding themselves (the convs have no padding).
    """
    if norm.num_groups != norm.num_channels:
        raise ValueError("masked_group_norm supports only one group per channel (fairseq's extractor)")
    lens = [min(int(n), x.size(2)) for n in lengths.tolist()]
    weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    return _MaskedGroupNorm.apply(x, lens, weight, bias, norm.eps)


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

    On CPU ("gemm", what "auto" picks there) the layers run as matrix products in a time-major layout, and
    the result is already (B, T', C) for the projection, which saves the final transpose:
    - the first layer (1 input channel) as conv + GroupNorm (each utterance's statistics over its valid
      frames) + GELU in one time-major function (``waveform_conv_group_norm_gelu``); what that does not
      cover (autocast, a waveform that needs a gradient, an empty utterance, a norm without affine
      parameters) is produced channel-major (B, C, T), normalised by ``masked_group_norm`` and transposed
      once (its weight gradient by one GEMM, ``waveform_conv``); the "layer" mode's first layer is one
      product with the unfolded (B, T', k) windows;
    - the later layers by ``time_major_conv``: one product per kernel tap over a strided view of the input,
      no unfolded copy.
    Extractor forward + backward, Conv1d vs GEMM path, 2026-12-05, an AVX-512 2-core machine: 64 channels,
    3 x 3.3 s, one thread: 57 vs 32 ms (one utterance 3/4 padded: 58 vs 32 ms; two threads: 32 vs 21 ms);
    128 channels, one thread: 172 vs 95 ms; 256 channels, 2 x 4 s: 382 vs 255 ms on one thread, 204 vs
    140 ms on two; 512 channels, two threads: 632 vs 446 ms. Forward only (no graph), 64 channels: 20 vs
    13 ms. (Before the time-major first layer, on the slower machine of earlier sessions, Conv1d won below
    512 channels, e.g. 92 vs 102 ms for 64 channels, and "auto" kept those stacks on Conv1d.)
    On CUDA (cuDNN) the plain Conv1d path is used. All give the same numbers (tested).
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
        self.impl = "auto"  # "auto" | "gemm" | "conv"; auto = gemm on CPU, conv elsewhere

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
            impl = "gemm" if wav.device.type == "cpu" else "conv"
        if impl == "conv":
            return self._forward_conv(wav, lengths)
        return self._forward_gemm(wav, lengths)

    def _forward_conv(self, wav: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = wav
        for i, layer in enumerate(self.conv_layers):
            x = waveform_conv(x, layer.conv) if i == 0 else layer.conv(x)  # (B, C, T')
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
        for i, layer in enumerate(self.conv_layers):
            conv = layer.conv
            k, s = layer.kernel_size, layer.stride
            c_out = conv.out_channels
            if lengths is not None:
                lengths = layer.out_lengths(lengths)
            if i == 0:
                if conv.in_channels != 1:
                    raise ValueError("the first conv layer must take the 1-channel waveform")
                norm = layer.layer_norm
                if _fits_time_major_first_layer(conv, norm) and not x.requires_grad \
                        and not torch.is_autocast_enabled(x.device.type) \
                        and (lengths is None or int(lengths.min()) > 0):
                    x = waveform_conv_group_norm_gelu(x, conv, norm, lengths)  # (B, T', C), time-major throughout
                    continue
                if isinstance(norm, nn.GroupNorm):
                    # what the time-major function does not cover (autocast, a waveform that needs a gradient,
                    # an empty utterance, a norm without affine parameters): channel-major, then one transpose
                    x = layer.group_norm(waveform_conv(x, conv), lengths)  # (B, C, T')
                    x = F.gelu(x.transpose(1, 2).contiguous())  # (B, T', C)
                    continue
                x = F.linear(x.unfold(1, k, s), conv.weight.view(c_out, k), conv.bias)  # (B, T', C)
            else:
                x = time_major_conv(x, conv)  # (B, T', C)
            if isinstance(layer.layer_norm, ChannelLayerNorm):
                x = F.layer_norm(x, (c_out,), layer.layer_norm.weight, layer.layer_norm.bias, layer.layer_norm.eps)
            elif layer.layer_norm is not None:
                raise ValueError("GroupNorm is only supported on the first conv layer")
            x = F.gelu(x)
        return x, lengths
