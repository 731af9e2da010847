"""Architectures of the embedded models and of the CIFAR ResNets that benchmarks use.

``ShapesCNN`` is the small CNN trained on the shapes world (:mod:`convscope.data.world`):
four conv-BN-ReLU blocks (16, 32, 64, 128 channels, 3×3 kernels, max-pooling after the first
three), global average pooling and a linear classifier. Every operation is its own module with
a readable name (``features.conv3``, ``features.relu4``, ``classifier``), so every layer can be
probed, and no module runs twice in a forward pass. Global pooling makes it accept any image
size; it was trained on 64×64 images.

``cifar_resnet(depth)`` is the CIFAR variant of He et al. (2016) with option-A shortcuts, the
architecture of the BSD-licensed CIFAR-10 checkpoints by Y. Idelbayev.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.errors import InputError

__all__ = ["CifarResNet", "ShapesCNN", "cifar_resnet"]


class ShapesCNN(nn.Module):
    """Small CNN for the shapes world: 4 conv blocks, global average pooling, linear head.

    Parameters
    ----------
    num_classes
        Number of outputs.
    widths
        Channels of the four convolutional blocks.
    """

    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for i, out_ch in enumerate(widths, start=1):
            layers[f"conv{i}"] = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
            layers[f"bn{i}"] = nn.BatchNorm2d(out_ch)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            if i < len(widths):
                layers[f"pool{i}"] = nn.MaxPool2d(2)
            in_ch = out_ch
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(in_ch, num_classes)
        self.num_classes = num_classes
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class _OptionAShortcut(nn.Module):
    """Identity shortcut that subsamples by 2 and zero-pads the new channels on both sides."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = (
            _OptionAShortcut((out_ch - in_ch) // 2)
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet (6n+2 layers, 16/32/64 channels, option-A shortcuts)."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        stages = []
        in_ch = 16
        for out_ch, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(_BasicBlock(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.flatten(self.avgpool(out)))


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    """CIFAR ResNet of ``depth`` = 6n + 2 layers (20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise InputError(f"A CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110); got {depth}.")
    return CifarResNet((depth - 2) // 6, num_classes)
