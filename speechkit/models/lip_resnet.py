"""Visual frontend for lip reading: a 3-D conv stem and a per-frame ResNet-18 (Stafylakis & Tzimiropoulos, 2017;
the frontend of AV-HuBERT and of most LRS3 lip readers).

    (B, 1, T, H, W) mouth ROIs
      -> frontend3D: Conv3d(1, 64, (5, 7, 7), stride (1, 2, 2), pad (2, 3, 3), no bias) + BatchNorm3d + PReLU
                     + MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))     time kept, space / 4 (88 -> 22)
      -> trunk: every frame through 2-D BasicBlocks [2, 2, 2, 2], channels 64/128/256/512, strides 1/2/2/2,
                PReLU, 1x1 conv + BN shortcut where the shape changes, global average pool
    -> (B, T, 512)

The stem's 5-frame temporal kernel is the only place where frames meet; the trunk sees single frames. Module
names follow the released AV-HuBERT checkpoints (`frontend3D.0`, `trunk.layer1.0.conv1`, `.bn1`, `.relu1`,
`.downsample.0`, ...) so their weights load by name. `width` scales every channel count (0.125 gives 8..64
channels and a 64-d output) for tiny CPU models; 1.0 is the published network.

Computation: the stem's Conv3d weights are applied as a 2-D conv over each frame's 5-frame window (the
same arithmetic: channel j of the window is frame t - 2 + j, zeros beyond the clip), because the CPU
backward of Conv3d with one input channel took about twice as long as this here (bench/avhubert_throughput.py).
Everything runs only on valid frames (those under `lengths`): padded frames cost nothing, do not enter the
BatchNorm statistics, and a clip's output does not depend on what the batch padded it with.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = (2, 2, 2, 2)  # ResNet-18


def scaled(channels: int, width: float) -> int:
    """Channel count under the width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; PReLU after the first and after the residual sum."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.PReLU(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C', H', W')
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(y + shortcut)


class ResNetTrunk(nn.Module):
    """Four stages of BasicBlocks + global average pool: (N, C0, H, W) -> (N, C4)."""

    def __init__(self, in_ch: int, width: float = 1.0) -> None:
        super().__init__()
        ch = in_ch
        for i, (planes, stride, blocks) in enumerate(zip(STAGE_CHANNELS, STAGE_STRIDES, BLOCKS_PER_STAGE)):
            out = scaled(planes, width)
            stage = [BasicBlock(ch, out, stride)] + [BasicBlock(out, out) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            ch = out
        self.out_channels = ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(len(STAGE_CHANNELS)):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.avgpool(x).flatten(1)


class LipResNet(nn.Module):
    """(B, 1, T, H, W) float ROIs + (B,) lengths -> (B, T, out_dim) frame embeddings (zero at padding)."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"LipResNet width must be positive, got {width}")
        stem = scaled(STEM_CHANNELS, width)
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, stem, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(stem),
            nn.PReLU(stem),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk(stem, width)
        self.out_dim = self.trunk.out_channels
        # He init of the 2-D convs (fan-out, as the lip-reading ResNets); BN starts as the identity
        for m in self.trunk.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, video: Tensor, lengths: Tensor | None = None) -> Tensor:
        if video.dim() != 5 or video.size(1) != 1:
            raise ValueError(f"video must be (B, 1, T, H, W) grayscale clips, got shape {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        if h < 8 or w < 8:
            raise ValueError(f"video frames of {h}x{w} pixels are too small for the ResNet frontend (>= 8x8)")
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=video.device)
        valid = torch.arange(t, device=video.device)[None, :] < lengths.to(video.device)[:, None]  # (B, T)
        frames = self.stem(video, valid)  # (N_valid, C, H/4, W/4)
        feats = self.trunk(frames)  # (N_valid, out_dim): the trunk sees single frames
        out = feats.new_zeros(b, t, feats.size(1))
        out[valid] = feats
        return out

    def stem(self, video: Tensor, valid: Tensor) -> Tensor:
        """frontend3D on the valid frames: (B, 1, T, H, W), (B, T) bool -> (N_valid, C, H', W')."""
        conv, bn, act, pool = self.frontend3D
        kt, pt = conv.kernel_size[0], conv.padding[0]
        x = video[:, 0]
        if not bool(valid.all()):  # zero the padding: it is the temporal kernel's context at a clip's end
            x = x * valid[:, :, None, None].to(x.dtype)
        x = F.pad(x, (0, 0, 0, 0, pt, pt))  # (B, T + 2 pt, H, W)
        windows = x.unfold(1, kt, 1)[valid]  # (N_valid, H, W, kt): frames t - pt .. t + pt
        windows = windows.permute(0, 3, 1, 2).contiguous()  # (N_valid, kt, H, W)
        y = F.conv2d(windows, conv.weight.flatten(1, 2), None, conv.stride[1:], conv.padding[1:])
        y = act(bn(y.unsqueeze(2)).squeeze(2))  # BatchNorm3d over (N, C, 1, h, w): the same statistics
        return F.max_pool2d(y, pool.kernel_size[1:], pool.stride[1:], pool.padding[1:])
