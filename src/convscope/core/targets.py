"""Targets: what score of the model's output an explanation is about.

A target is one of

* an ``int`` — the same class index for every sample, score ``outputs[:, c]``;
* a sequence or 1-D integer tensor of length N — one class per sample, ``outputs[i, c_i]``;
* a callable ``outputs -> scores`` returning a tensor of shape ``(N,)``, for anything else
  (a softmax probability, a margin between two classes, a region of a segmentation map).

:func:`resolve_target` validates the target against the actual outputs and returns the
per-sample scores, so every method reports a bad target the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convscope.core.errors import TargetError

__all__ = ["Target", "TargetLike", "as_target", "resolve_target"]

TargetLike = int | Sequence[int] | torch.Tensor | np.ndarray | Callable[[Any], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """A validated target: ``index`` (int or per-sample tensor) or a ``function``."""

    index: int | torch.Tensor | None = None
    function: Callable[[Any], torch.Tensor] | None = None

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-sample scores of shape ``(N,)`` taken from model ``outputs``."""
        return resolve_target(self, outputs)

    def subset(self, index: slice | torch.Tensor) -> Target:
        """The target restricted to a batch of samples (per-sample indices are sliced)."""
        if isinstance(self.index, torch.Tensor):
            return Target(index=self.index[index])
        return self

    def indices(self, n: int) -> torch.Tensor:
        """Class index of each of ``n`` samples (not defined for callable targets)."""
        if self.function is not None or self.index is None:
            raise TargetError(
                "This method needs class indices, but the target is a callable. "
                "Pass an int or one class index per sample."
            )
        if isinstance(self.index, torch.Tensor):
            return self.index
        return torch.full((n,), self.index, dtype=torch.long)


def as_target(target: TargetLike | Target) -> Target:
    """Convert any accepted target form to a :class:`Target` (shape checks come later)."""
    if isinstance(target, Target):
        return target
    if isinstance(target, (bool, np.bool_)):
        raise TargetError(f"target must be a class index, got the boolean {target!r}.")
    if isinstance(target, (int, np.integer)):
        return Target(index=int(target))
    if callable(target) and not isinstance(target, (torch.Tensor, np.ndarray)):
        return Target(function=target)
    if isinstance(target, (torch.Tensor, np.ndarray, list, tuple)):
        try:
            tensor = torch.as_tensor(
                np.asarray(target) if not isinstance(target, torch.Tensor) else target
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TargetError(
                f"A per-sample target must hold integer class indices; {str(target)[:60]} does "
                "not convert to an integer tensor. Map class names to indices first, e.g. "
                "[class_names.index(c) for c in names]."
            ) from exc
        if tensor.ndim > 1 or tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise TargetError(
                f"A target must be an integer class index or a 1-D sequence of them, got "
                f"shape {tuple(tensor.shape)} and dtype {tensor.dtype}. "
                "Pass one class index per input image, e.g. target=[3, 1, 0]."
            )
        if tensor.ndim == 0:
            return Target(index=int(tensor.item()))
        return Target(index=tensor.long())
    raise TargetError(
        f"Unsupported target of type {type(target).__name__}. Pass an int class index, one "
        "index per sample, or a callable mapping the model outputs to scores of shape (N,)."
    )


def check_target_count(target: TargetLike | Target, n: int) -> Target:
    """Validate a target before running the model: one index per input (``n`` inputs), and
    no negative class index (the upper bound needs the outputs, see :func:`resolve_target`)."""
    tgt = as_target(target)
    if isinstance(tgt.index, torch.Tensor) and tgt.index.shape[0] != n:
        raise TargetError(
            f"Got {tgt.index.shape[0]} per-sample targets for {n} inputs. Pass one class index "
            "per input image, or a single int for all."
        )
    if tgt.index is not None and bool((torch.as_tensor(tgt.index) < 0).any()):
        shown = tgt.index if isinstance(tgt.index, int) else tgt.index.tolist()[:10]
        raise TargetError(
            f"Target class indices must be 0 or more, got {shown}. Class c of C outputs is "
            "index c, from 0 to C-1."
        )
    return tgt


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__


def resolve_target(
    target: TargetLike | Target, outputs: Any, *, n: int | None = None
) -> torch.Tensor:
    """Validate ``target`` against model ``outputs`` and return the scores, shape ``(N,)``.

    Parameters
    ----------
    target
        A class index, one index per sample, or a callable on the outputs.
    outputs
        The model's outputs: an N×C tensor for index targets; anything the callable accepts
        (a tensor, a dict of tensors, ...) for callable targets.
    n
        The number of inputs; taken from ``outputs`` when it is a tensor.

    Raises
    ------
    TargetError
        If a class index is out of range (valid indices are 0 to C-1), the number of per-sample
        targets differs from the batch size, the outputs are not 2-D for an index target, or a
        callable returns a tensor of the wrong shape.
    """
    tgt = as_target(target)
    if n is None and isinstance(outputs, torch.Tensor):
        n = outputs.shape[0]
    if tgt.function is not None:
        scores = tgt.function(outputs)
        expected = (n,) if n is not None else None
        if (
            not isinstance(scores, torch.Tensor)
            or scores.ndim != 1
            or (expected is not None and tuple(scores.shape) != expected)
        ):
            raise TargetError(
                f"A callable target must return one score per sample, shape "
                f"({n if n is not None else 'N'},); it returned {_describe(scores)}. Reduce "
                "the outputs per sample, e.g. lambda out: out[:, 3]."
            )
        return scores
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
        raise TargetError(
            f"A class-index target needs outputs of shape (N, classes); the model returned "
            f"{_describe(outputs)}. Pass a callable target that reduces the outputs to one "
            "score per sample."
        )
    assert n is not None
    n_classes = outputs.shape[1]
    index = tgt.index
    if isinstance(index, int):
        if not 0 <= index < n_classes:
            raise TargetError(
                f"Target class {index} is out of range: the model has {n_classes} outputs "
                f"(valid indices 0 to {n_classes - 1})."
            )
        return outputs[:, index]
    assert isinstance(index, torch.Tensor)
    check_target_count(tgt, n)
    bad = (index < 0) | (index >= n_classes)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0].item())
        raise TargetError(
            f"Target class {int(index[first])} (sample {first}) is out of range: the model has "
            f"{n_classes} outputs (valid indices 0 to {n_classes - 1})."
        )
    return outputs.gather(1, index.to(outputs.device).view(-1, 1)).squeeze(1)
