"""Variance-based sensitivity analysis: pick-freeze designs, Sobol' indices, Shapley effects.

* :mod:`~convscope.sensitivity.designs` — scrambled Sobol', random and Latin-hypercube
  pick-freeze designs A, B, AB_j, BA_j with groups, bounds and SALib's row layout;
* :mod:`~convscope.sensitivity.estimators` — streaming Sobol' estimators (first, total,
  second order, closed indices) for outputs of any shape, with bootstrap and
  randomised-QMC intervals; accumulators save, load and merge;
* :func:`sobol_indices` — the one-call API (design, batched evaluation, streaming);
* :func:`shapley_effects` — Shapley effects: exact from all closed indices (k ≤ 10),
  Song–Nelson–Staum random permutations, Goda's pick-freeze permutations.
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
from convscope.sensitivity.shapley import (
    MAX_EXACT_PLAYERS,
    SHAPLEY_METHODS,
    ShapleyResult,
    shapley_effects,
)
from convscope.sensitivity.sobol import SobolResult, sobol_indices

__all__ = [
    "DESIGN_METHODS",
    "FIRST_ORDER_ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "ROW_LAYOUTS",
    "SHAPLEY_METHODS",
    "TOTAL_ORDER_ESTIMATORS",
    "PickFreezeDesign",
    "ShapleyResult",
    "SobolAccumulator",
    "SobolIndices",
    "SobolIntervals",
    "SobolResult",
    "bootstrap_intervals",
    "closed_index",
    "pick_freeze_design",
    "replicate_intervals",
    "shapley_effects",
    "sobol_indices",
]
