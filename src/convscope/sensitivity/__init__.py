"""Variance-based sensitivity analysis: pick-freeze designs, Sobol' indices, Shapley effects."""

from convscope.sensitivity.designs import (
    DESIGN_METHODS,
    ROW_LAYOUTS,
    PickFreezeDesign,
    pick_freeze_design,
)

__all__ = ["DESIGN_METHODS", "ROW_LAYOUTS", "PickFreezeDesign", "pick_freeze_design"]
