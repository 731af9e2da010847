"""Variance-based sensitivity analysis: pick-freeze designs, Sobol' indices, Shapley effects.

* :mod:`~convscope.sensitivity.designs` — scrambled Sobol', random and Latin-hypercube
  pick-freeze designs A, B, AB_j, BA_j with groups, bounds and SALib's row layout;
* :mod:`~convscope.sensitivity.estimators` — streaming Sobol' estimators (first, total,
  second order, closed indices) for outputs of any shape, with bootstrap and
  randomised-QMC intervals; accumulators save, load and merge;
* :func:`sobol_indices` — the one-call API (design, batched evaluation, streaming).
"""

from convscope.sensitivity.designs import (
    DESIGN_METHODS,
    ROW_LAYOUTS,
    PickFreezeDesign,
    pick_freeze_design,
)
from convscope.sensitivity.estimators import (
    FIRST_ORDER_ESTIMATORS,
    TOTAL_ORDER_ESTIMATORS,
    SobolAccumulator,
    SobolIndices,
    SobolIntervals,
    bootstrap_intervals,
    closed_index,
    replicate_intervals,
)
from convscope.sensitivity.sobol import SobolResult, sobol_indices

__all__ = [
    "DESIGN_METHODS",
    "FIRST_ORDER_ESTIMATORS",
    "ROW_LAYOUTS",
    "TOTAL_ORDER_ESTIMATORS",
    "PickFreezeDesign",
    "SobolAccumulator",
    "SobolIndices",
    "SobolIntervals",
    "SobolResult",
    "bootstrap_intervals",
    "closed_index",
    "pick_freeze_design",
    "replicate_intervals",
    "sobol_indices",
]
