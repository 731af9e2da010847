"""Bounded batches: one ``batch_size`` bounds the samples per forward pass everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.progress import progress_bar

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "batch_slices",
    "check_batch_size",
    "forward_batched",
    "map_batches",
]

T = TypeVar("T")

#: Samples per forward pass when the caller does not say.
DEFAULT_BATCH_SIZE = 64


def check_batch_size(batch_size: int | None) -> int:
    """Validate ``batch_size`` (None means :data:`DEFAULT_BATCH_SIZE`)."""
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    if (
        isinstance(batch_size, (bool, np.bool_))
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


def batch_slices(n: int, batch_size: int | None) -> list[slice]:
    """Consecutive slices covering ``range(n)`` with at most ``batch_size`` items each."""
    size = check_batch_size(batch_size)
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def map_batches(
    fn: Callable[[slice], T],
    n: int,
    *,
    batch_size: int | None = None,
    grad: bool = False,
    progress: bool | None = None,
    desc: str = "",
) -> Iterator[tuple[slice, T]]:
    """Run ``fn(batch)`` over the slices of ``range(n)``, yielding ``(slice, result)``.

    The calls run under ``torch.no_grad()``, or under ``torch.enable_grad()`` with
    ``grad=True`` (also inside a caller's ``no_grad`` block). Results are yielded, not
    stored, so callers can stream statistics instead of keeping every output.
    """
    slices = batch_slices(n, batch_size)
    for sl in progress_bar(slices, total=len(slices), desc=desc, show=progress):
        with torch.enable_grad() if grad else torch.no_grad():
            result = fn(sl)
        yield sl, result  # outside the context: the caller's code keeps its own grad mode


def forward_batched(
    model: nn.Module,
    input: torch.Tensor,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    desc: str = "forward",
) -> torch.Tensor:
    """Model outputs for ``input``, at most ``batch_size`` samples per forward, no gradients.

    Each batch is moved to the model's device and dtype; the outputs stay there.
    """
    device, dtype = model_device(model), model_dtype(model)
    outs = [
        out
        for _, out in map_batches(
            lambda sl: model(input[sl].to(device=device, dtype=dtype)),
            input.shape[0],
            batch_size=batch_size,
            progress=progress,
            desc=desc,
        )
    ]
    if not outs:
        raise InputError("No input: the batch is empty (N = 0).")
    return torch.cat(outs)
