"""Device and dtype follow the model: inputs are moved to the model, never the reverse."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_device", "model_dtype", "to_model"]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter or buffer (float32 otherwise)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def to_model(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Move a floating tensor to the model's device and dtype (no copy when already there)."""
    return x.to(device=model_device(model), dtype=model_dtype(model))
