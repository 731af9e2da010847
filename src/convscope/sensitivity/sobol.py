r"""Sobol' indices of any function of independent uniform inputs: the one-call API.

For :math:`Y = f(X_1, \dots, X_d)` with independent inputs, the first-order index of input
(or group) :math:`j` is the share of the variance explained by :math:`X_j` alone and the total
index the share that involves :math:`X_j` at all,

.. math::

    S_j = \frac{\operatorname{Var}(\mathbb E[Y \mid X_j])}{\operatorname{Var}(Y)}, \qquad
    S^T_j = \frac{\mathbb E[\operatorname{Var}(Y \mid X_{\sim j})]}{\operatorname{Var}(Y)}.

They are estimated by pick-freeze: two independent samples A and B, and for each :math:`j`
the sample :math:`A_B^{(j)}` (A with column :math:`j` from B); for example (Saltelli 2010,
Jansen 1999)

.. math::

    \hat S_j = \frac{\frac1N\sum_i f(B)_i\,(f(A_B^{(j)})_i - f(A)_i)}{\hat V}, \qquad
    \hat S^T_j = \frac{\frac1{2N}\sum_i (f(A)_i - f(A_B^{(j)})_i)^2}{\hat V}.

:func:`sobol_indices` draws the design (:mod:`~convscope.sensitivity.designs`), evaluates
``func`` in batches of at most ``batch_size`` rows, and streams the outputs into a
:class:`~convscope.sensitivity.estimators.SobolAccumulator`, so outputs of any shape (a
score, a vector, a whole activation map) never need to be stored. With ``replicates > 1`` it
repeats the design with independent scramblings: the point estimate pools them and the
interval is the Student-t interval across them (randomised QMC).

Reference: A. Saltelli et al., Variance based sensitivity analysis of model output, Computer
Physics Communications 181 (2010); the interface follows ``scipy.stats.sobol_indices``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from convscope.core.batching import check_batch_size
from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.sensitivity.designs import pick_freeze_design
from convscope.sensitivity.estimators import (
    SobolAccumulator,
    SobolIndices,
    replicate_intervals,
)
from convscope.sensitivity.evaluation import BatchedEvaluator, pick_freeze_stream

__all__ = ["SobolResult", "sobol_indices"]


@dataclass
class SobolResult(Result):
    """Sobol' indices with their intervals and cost.

    Attributes
    ----------
    first_order, total_order
        ``(k, *out)`` indices for the k inputs or groups (negative estimates kept).
    second_order
        ``(k, k, *out)`` or None.
    variance, zero_variance
        ``(*out)`` output variance and the flag of constant outputs (indices 0 there).
    first_order_interval, total_order_interval
        ``(k, 2, *out)`` lower/upper bounds across replicates, or None with one replicate.
    n, n_evaluations
        Base rows per replicate and model evaluations in total.
    settings
        The arguments that produced the result.
    """

    first_order: torch.Tensor
    total_order: torch.Tensor
    second_order: torch.Tensor | None
    variance: torch.Tensor
    zero_variance: torch.Tensor
    first_order_interval: torch.Tensor | None
    total_order_interval: torch.Tensor | None
    n: int
    n_evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)

    def plot(self, names: Sequence[str] | None = None) -> Any:
        """Bar chart of first-order and total indices (scalar outputs)."""
        from matplotlib.figure import Figure

        if self.first_order.ndim != 1:
            raise InputError(
                "plot() draws one bar per input for a scalar output; index the result's "
                "arrays (e.g. result.first_order[:, 0]) for a vector output."
            )
        k = self.first_order.shape[0]
        labels = list(names) if names is not None else [f"x{j + 1}" for j in range(k)]
        fig = Figure(figsize=(max(3.0, 0.6 * k + 1.5), 2.8))
        ax = fig.add_subplot(1, 1, 1)
        pos = torch.arange(k, dtype=torch.float64).numpy()
        for offset, values, interval, label in (
            (-0.2, self.first_order, self.first_order_interval, "first order"),
            (0.2, self.total_order, self.total_order_interval, "total"),
        ):
            err = None
            if interval is not None:
                err = torch.stack([values - interval[:, 0], interval[:, 1] - values]).numpy()
            ax.bar(pos + offset, values.numpy(), width=0.4, yerr=err, label=label, capsize=2)
        ax.set_xticks(pos, labels)
        ax.set_ylabel("Sobol' index")
        ax.legend(frameon=False, fontsize=8)
        return fig


def sobol_indices(
    func: Callable[[torch.Tensor], torch.Tensor],
    bounds: Sequence[Sequence[float]] | torch.Tensor,
    n: int,
    *,
    second_order: bool = False,
    first_order: str = "saltelli2010",
    total_order: str = "jansen",
    groups: Sequence[Sequence[int]] | None = None,
    method: str = "sobol",
    replicates: int = 1,
    level: float = 0.95,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> SobolResult:
    """Sobol' indices of ``func`` over independent uniform inputs on ``bounds``.

    Parameters
    ----------
    func
        Maps an ``(m, d)`` tensor of inputs to ``(m, ...)`` outputs (a score, a vector, a map).
    bounds
        ``(d, 2)`` lower and upper bounds of the inputs.
    n
        Base rows N per replicate (a power of two for ``method="sobol"``); the cost is
        ``N (k + 2)`` evaluations, ``N (2k + 2)`` with second order.
    second_order
        Also estimate the second-order indices (Saltelli 2002).
    first_order, total_order
        Estimators: ``"saltelli2010"``, ``"janon"``, ``"martinez"``; ``"jansen"``,
        ``"homma"``, ``"martinez"``.
    groups
        Groups of input indices swapped together (one index per group then).
    method
        Design: ``"sobol"`` (scrambled QMC), ``"random"`` or ``"lhs"``.
    replicates
        Independent scramblings; with 2 or more, Student-t intervals at ``level``.
    batch_size
        Rows per call of ``func``.
    seed
        Seed of the first replicate (replicate r uses ``seed + r``).
    device
        Device of the inputs given to ``func``.
    progress
        Show a progress bar (None: automatic).

    Returns
    -------
    SobolResult
    """
    if int(replicates) != replicates or replicates < 1:
        raise InputError(f"replicates must be a positive integer, got {replicates}.")
    per_call = check_batch_size(batch_size)
    bounds_t = torch.as_tensor(bounds, dtype=torch.float64)
    if bounds_t.ndim != 2 or bounds_t.shape[1] != 2:
        raise InputError(
            f"bounds must have shape (d, 2) (one [low, high] per input), got "
            f"{tuple(bounds_t.shape)}."
        )
    d = bounds_t.shape[0]
    evaluate = BatchedEvaluator(func, per_call)
    results: list[SobolIndices] = []
    pooled: SobolAccumulator | None = None
    evaluations = 0
    for r in range(replicates):
        design = pick_freeze_design(
            d, n, groups=groups, second_order=second_order, method=method,
            bounds=bounds_t, seed=seed + r, device=device,
        )  # fmt: skip

        def evaluate_rows(rows: torch.Tensor, _: int) -> torch.Tensor:
            return evaluate(rows).reshape(len(rows), *(evaluate.out_shape or ()))

        acc = pick_freeze_stream(
            design, evaluate_rows,
            SobolAccumulator(design.k, None, second_order=second_order),
            batch_size=per_call, progress=progress, desc="sobol",
        )  # fmt: skip
        evaluations += design.n_evaluations
        results.append(acc.indices(first_order, total_order))  # type: ignore[arg-type]
        pooled = acc if pooled is None else pooled.merge(acc)
    assert pooled is not None
    est = pooled.indices(first_order, total_order)  # type: ignore[arg-type]
    first_iv = total_iv = None
    if replicates > 1:
        iv = replicate_intervals(results, level)
        first_iv = torch.stack([iv.first_order_low, iv.first_order_high], dim=1)
        total_iv = torch.stack([iv.total_order_low, iv.total_order_high], dim=1)
    settings = {
        "d": d, "k": est.first_order.shape[0], "second_order": second_order,
        "first_order": first_order, "total_order": total_order,
        "groups": None if groups is None else [list(g) for g in groups], "method": method,
        "replicates": replicates, "level": level, "batch_size": per_call, "seed": seed,
        "bounds": bounds_t.tolist(),
    }  # fmt: skip
    return SobolResult(
        first_order=est.first_order.cpu(),
        total_order=est.total_order.cpu(),
        second_order=None if est.second_order is None else est.second_order.cpu(),
        variance=est.variance.cpu(),
        zero_variance=est.zero_variance.cpu(),
        first_order_interval=None if first_iv is None else first_iv.cpu(),
        total_order_interval=None if total_iv is None else total_iv.cpu(),
        n=n,
        n_evaluations=evaluations,
        settings=settings,
    )
