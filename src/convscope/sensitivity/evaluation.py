"""Evaluation of design rows: bounded chunks without gradients, and the pick-freeze loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from convscope.core.errors import InputError
from convscope.core.fingerprint import RunFingerprint
from convscope.core.streaming import stream
from convscope.sensitivity.designs import PickFreezeDesign
from convscope.sensitivity.estimators import SobolAccumulator

__all__ = ["BatchedEvaluator", "pick_freeze_stream"]


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


def pick_freeze_stream(
    design: PickFreezeDesign,
    evaluate: Callable[[torch.Tensor, int], torch.Tensor],
    accumulator: SobolAccumulator,
    *,
    batch_size: int,
    resume: str | Path | None = None,
    run: RunFingerprint | None = None,
    progress: bool | None = None,
    desc: str = "sobol",
) -> SobolAccumulator:
    r"""The pick-freeze loop: design blocks → evaluations → a :class:`SobolAccumulator`.

    The design is cut into blocks of ``max(1, batch_size // (k + 2))`` base rows (``2k + 2``
    with second order), so that one block's rows fill about one forward pass; each block's
    rows :math:`[A; B; A_B^{(1..k)}; (B_A^{(1..k)})]` are evaluated by ``evaluate(rows,
    block_index)`` (``(m, *out)`` outputs) and split into :math:`f_A, f_B, f_{AB}, f_{BA}` for
    the accumulator. Runs on :func:`convscope.core.streaming.stream`: checkpointed after every
    block with ``resume``, and sharded over ``torch.distributed`` ranks.
    """
    base_rows = max(1, batch_size // design.evaluations_per_row)
    blocks = [sub for _, sub in design.blocks(base_rows)]

    def process(index: int, sub: PickFreezeDesign) -> None:
        rows = sub.rows()
        out = evaluate(rows, index)
        accumulator.update(*sub.split(out))

    return stream(
        blocks, process, accumulator, resume=resume, run=run, progress=progress, desc=desc
    )
