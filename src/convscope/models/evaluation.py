"""Accuracy of a classifier on a batch of images, in bounded batches."""

from __future__ import annotations

import torch
from torch import nn

from convscope.core.batching import forward_batched
from convscope.core.errors import InputError
from convscope.core.state import inference_state
from convscope.core.validation import check_images

__all__ = ["accuracy", "predict"]


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int | None = 256,
    progress: bool | None = None,
) -> torch.Tensor:
    """Predicted class of each image (argmax of the outputs), on the CPU."""
    check_images(images)
    with inference_state(model):
        logits = forward_batched(
            model, images, batch_size=batch_size, progress=progress, desc="predict"
        )
    return logits.argmax(1).cpu()


def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int | None = 256,
    progress: bool | None = None,
) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    if labels.shape[0] != images.shape[0]:
        raise InputError(f"Got {labels.shape[0]} labels for {images.shape[0]} images.")
    preds = predict(model, images, batch_size=batch_size, progress=progress)
    return float((preds == labels.cpu()).float().mean())
