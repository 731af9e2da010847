"""Device and dtype follow the model: inputs are moved to the model, never the reverse."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["model_device", "model_dtype", "to_model"]


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    return itertools.chain(model.parameters(), model.buffers())


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first floating parameter or buffer (else its first tensor, else
    the CPU)."""
    first: torch.Tensor | None = None
    for tensor in _tensors(model):
        if tensor.is_floating_point():
            return tensor.device
        first = first if first is not None else tensor
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Dtype of the model's first floating parameter or buffer (float32 if it has none)."""
    for tensor in _tensors(model):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def to_model(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Move a floating tensor to the model's device and dtype (no copy when already there)."""
    return x.to(device=model_device(model), dtype=model_dtype(model))
