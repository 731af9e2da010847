"""Outputs, predictions and accuracy of a classifier, in bounded batches, in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.batching import forward_batched
from convscope.core.errors import InputError
from convscope.core.state import inference_state
from convscope.core.validation import check_images

__all__ = ["accuracy", "outputs", "predict"]


def outputs(
    model: nn.Module,
    input: torch.Tensor,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Model outputs for ``input`` in eval mode (the model's mode is restored), on the CPU."""
    check_images(input)
    with inference_state(model):
        result = forward_batched(model, input, batch_size=batch_size, progress=progress)
    return result.cpu()


def predict(
    model: nn.Module,
    input: torch.Tensor,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Predicted class of each image (argmax of the outputs), on the CPU."""
    return outputs(model, input, batch_size=batch_size, progress=progress).argmax(1)


def accuracy(
    model: nn.Module,
    input: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> float:
    """Fraction of images in ``input`` whose predicted class equals ``labels``."""
    check_images(input)
    labels = torch.as_tensor(labels)
    if labels.shape != (input.shape[0],):
        raise InputError(
            f"Got labels of shape {tuple(labels.shape)} for {input.shape[0]} images; pass one "
            "integer class label per image."
        )
    preds = predict(model, input, batch_size=batch_size, progress=progress)
    return float((preds == labels.cpu()).float().mean())
