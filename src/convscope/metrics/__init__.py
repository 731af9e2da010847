"""Evaluation of attribution maps: pointing game, deletion/insertion, sanity checks.

* :mod:`~convscope.metrics.pointing` — the pointing game with TorchRay's semantics (15 px
  tolerance, per-class mean and global accuracy, skipped pairs, difficult subsets, the centre
  baseline) and the conversion of extremal-perturbation masks into a saliency map;
* :mod:`~convscope.metrics.deletion` — deletion and insertion curves and their AUC, with the
  ``"rise"`` and ``"xplique"`` protocols, batched on the model's device;
* :mod:`~convscope.metrics.sanity` — model parameter randomisation (cascading and
  independent) and class sensitivity, by Spearman rank correlation.
"""

from convscope.metrics.deletion import (
    PROTOCOLS,
    InsertionDeletionResult,
    deletion_curve,
    insertion_curve,
    normalization_mean,
    rise_blur,
    rise_blur_kernel,
)
from convscope.metrics.pointing import (
    PointingGame,
    PointingGameResult,
    center_baseline,
    center_points,
    masks_to_saliency,
    pointing_game,
    pointing_game_from_points,
    pointing_hits,
    saliency_to_point,
)
from convscope.metrics.regions import (
    DEFAULT_FRACTIONS,
    RegionMaskingResult,
    SensitivityNResult,
    fraction_pir_above_one,
    importance_difference,
    mean_top_pir,
    n_selected,
    region_heatmap,
    region_masking,
    region_overlap,
    sensitivity_n,
)
from convscope.metrics.sanity import (
    ClassSensitivityResult,
    SaliencyFunction,
    SanityResult,
    class_sensitivity,
    parameter_randomization,
    randomize_module,
    spearman,
)

__all__ = [
    "DEFAULT_FRACTIONS",
    "PROTOCOLS",
    "ClassSensitivityResult",
    "InsertionDeletionResult",
    "PointingGame",
    "PointingGameResult",
    "RegionMaskingResult",
    "SaliencyFunction",
    "SanityResult",
    "SensitivityNResult",
    "center_baseline",
    "center_points",
    "class_sensitivity",
    "deletion_curve",
    "fraction_pir_above_one",
    "importance_difference",
    "insertion_curve",
    "masks_to_saliency",
    "mean_top_pir",
    "n_selected",
    "normalization_mean",
    "parameter_randomization",
    "pointing_game",
    "pointing_game_from_points",
    "pointing_hits",
    "randomize_module",
    "region_heatmap",
    "region_masking",
    "region_overlap",
    "rise_blur",
    "rise_blur_kernel",
    "saliency_to_point",
    "sensitivity_n",
    "spearman",
]
