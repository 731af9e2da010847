"""Evaluate a user function on design rows in bounded chunks, without gradients."""

from __future__ import annotations

from collections.abc import Callable

import torch

from convscope.core.errors import InputError

__all__ = ["BatchedEvaluator"]


class BatchedEvaluator:
    """Calls ``func`` in chunks of at most ``batch_size`` rows, flattening outputs to (m, P)."""

    def __init__(self, func: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> None:
        self.func = func
        self.batch_size = batch_size
        self.out_shape: tuple[int, ...] | None = None
        self.count = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, x.shape[0], self.batch_size):
            chunk = x[start : start + self.batch_size]
            with torch.no_grad():
                y = self.func(chunk)
            if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != chunk.shape[0]:
                got = type(y).__name__ if not isinstance(y, torch.Tensor) else tuple(y.shape)
                raise InputError(
                    f"func must map an (m, d) tensor to an (m, ...) tensor with m rows, one row "
                    f"per input row; for m={chunk.shape[0]} it returned {got}."
                )
            shape = tuple(y.shape[1:])
            if self.out_shape is None:
                self.out_shape = shape
            elif shape != self.out_shape:
                raise InputError(
                    f"func returned outputs of shape {shape} after {self.out_shape}; every "
                    "output row must have the same shape."
                )
            outs.append(y.detach().reshape(chunk.shape[0], -1).to(torch.float64))
            self.count += chunk.shape[0]
        return torch.cat(outs)
