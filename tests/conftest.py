"""Shared fixtures: tiny CPU models with known structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv -> in-place ReLU -> conv -> ReLU -> global pool -> linear, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.bn(self.conv2(x)))
        return self.fc(self.flatten(self.pool(x)))


class ReusedReLU(nn.Module):
    """A model that calls the same ReLU object twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():  # non-trivial BN statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def reused_relu_model() -> ReusedReLU:
    torch.manual_seed(0)
    return ReusedReLU().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
