"""Residual-encoder 3-D U-Net: prompts enter as input channels beside the image.

Plain torch (no MONAI import on the inference path: it costs seconds of cold start per step).
Instance norm keeps every sample of a batch independent, so batching the classes of a case
gives exactly what one forward pass per class gives.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import ModelConfig


def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm3d(ch, affine=True, eps=1e-5)


class ResBlock(nn.Module):
    """conv-norm-act-conv-norm plus a (strided, projected when needed) skip, then act."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), _norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.skip(x))


class ConvBlock(nn.Sequential):
    """Decoder block: two conv-norm-act layers."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class ResEncUNet(nn.Module):
    """Encoder of residual stages (stride 2 between stages), light decoder, one logit channel."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        feats, blocks = config.features, config.blocks_per_stage
        if len(feats) != len(blocks):
            raise ValueError("features and blocks_per_stage must have the same length")
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, feats[0], 3, padding=1, bias=False),
            _norm(feats[0]),
            nn.LeakyReLU(0.01, inplace=True),
        )
        self.stages = nn.ModuleList()
        cin = feats[0]
        for i, (f, n) in enumerate(zip(feats, blocks, strict=True)):
            layers = [ResBlock(cin, f, stride=1 if i == 0 else 2)]
            layers += [ResBlock(f, f) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*layers))
            cin = f
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(len(feats) - 1, 0, -1):
            self.ups.append(nn.ConvTranspose3d(feats[i], feats[i - 1], 2, stride=2))
            self.decoders.append(ConvBlock(2 * feats[i - 1], feats[i - 1]))
        self.head = nn.Conv3d(feats[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
