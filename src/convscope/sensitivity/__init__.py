"""Variance-based sensitivity analysis: pick-freeze designs, Sobol' indices, Shapley effects.

* :mod:`~convscope.sensitivity.designs` — scrambled Sobol', random and Latin-hypercube
  pick-freeze designs A, B, AB_j, BA_j with groups, bounds and SALib's row layout;
* :mod:`~convscope.sensitivity.estimators` — streaming Sobol' estimators (first, total,
  second order, closed indices) for outputs of any shape, with bootstrap and
  randomised-QMC intervals; accumulators save, load and merge;
* :func:`sobol_indices` — the one-call API (design, batched evaluation, streaming);
* :func:`shapley_effects` — Shapley effects: exact from all closed indices (k ≤ 10),
  Song–Nelson–Staum random permutations, Goda's pick-freeze permutations.

The augmentation pipeline of Kharyuk, Matveev and Oseledets
(:mod:`~convscope.sensitivity.augmentation`): sensitivity of every activation to
simultaneous augmentations:

* :mod:`~convscope.sensitivity.augmentation.augmentations` — the augmentation sets A1 and
  A2, composition in any order, user-defined augmentations;
* :func:`augmentation_sensitivity` — Sobol' indices or Shapley effects of every activation of
  chosen layers, streamed, resumable, sharded over ``torch.distributed``;
* :mod:`~convscope.sensitivity.augmentation.analysis` — unit-wise correlations, spatial
  correlation maps, LDA, hierarchical clustering;
  :mod:`~convscope.sensitivity.augmentation.masking` — guided masking of activations;
  :mod:`~convscope.sensitivity.augmentation.single_class` — sensitive classes, Jaccard and
  its null threshold.
"""

from convscope.sensitivity.augmentation.analysis import (
    ClusteringResult,
    CorrelationResult,
    LDAResult,
    coefficient_of_variation,
    correlation_distance,
    hierarchical_clustering,
    lda_confusion,
    spatial_correlation_map,
    spearman_across_units,
    unitwise_correlation,
)
from convscope.sensitivity.augmentation.augmentation_sensitivity import (
    AugmentationProblem,
    AugmentationSensitivityResult,
    ImageSource,
    augmentation_sensitivity,
)
from convscope.sensitivity.augmentation.augmentations import (
    A1,
    A2,
    AUGMENTATION_SETS,
    AUGMENTATIONS,
    Augmentation,
    FunctionAugmentation,
    Parameter,
    augmentation_set,
    compose,
    hsv_to_rgb,
    minmax_rescale,
    permutation_from_index,
    rgb_to_hsv,
)
from convscope.sensitivity.augmentation.experiments import (
    PredictionBiasResult,
    guided_masking,
    prediction_bias,
)
from convscope.sensitivity.augmentation.masking import (
    ALPHAS,
    MASK_CONFIGS,
    QUANTILES,
    MaskConfig,
    MaskedPredictionResult,
    activation_masking,
    mask_activations,
    mask_configs,
    mask_factor,
    masked_predictions,
    masking_clusters,
    masking_linkage,
    masking_pair_distances,
    masking_spearman_matrix,
    spearman_rows,
)
from convscope.sensitivity.augmentation.segments import (
    HSV_CHANNELS,
    SingleChannelSegment,
    first_conv_in_channels,
    multiplex_channel,
    segment,
)
from convscope.sensitivity.augmentation.single_augmentation import (
    ORIGINAL,
    SingleAugmentationAccuracy,
    labels_for,
    single_augmentation_accuracy,
    single_augmentation_inputs,
    single_augmentation_parameters,
)
from convscope.sensitivity.augmentation.single_class import (
    JaccardNull,
    TopClasses,
    jaccard_indices,
    jaccard_null,
    mean_jaccard,
    top_sensitive_classes,
)
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
    "A1",
    "A2",
    "ALPHAS",
    "AUGMENTATIONS",
    "AUGMENTATION_SETS",
    "DESIGN_METHODS",
    "FIRST_ORDER_ESTIMATORS",
    "HSV_CHANNELS",
    "MASK_CONFIGS",
    "MAX_EXACT_PLAYERS",
    "ORIGINAL",
    "QUANTILES",
    "ROW_LAYOUTS",
    "SHAPLEY_METHODS",
    "TOTAL_ORDER_ESTIMATORS",
    "Augmentation",
    "AugmentationProblem",
    "AugmentationSensitivityResult",
    "ClusteringResult",
    "CorrelationResult",
    "FunctionAugmentation",
    "ImageSource",
    "JaccardNull",
    "LDAResult",
    "MaskConfig",
    "MaskedPredictionResult",
    "Parameter",
    "PickFreezeDesign",
    "PredictionBiasResult",
    "ShapleyResult",
    "SingleAugmentationAccuracy",
    "SingleChannelSegment",
    "SobolAccumulator",
    "SobolIndices",
    "SobolIntervals",
    "SobolResult",
    "TopClasses",
    "activation_masking",
    "augmentation_sensitivity",
    "augmentation_set",
    "bootstrap_intervals",
    "closed_index",
    "coefficient_of_variation",
    "compose",
    "correlation_distance",
    "first_conv_in_channels",
    "guided_masking",
    "hierarchical_clustering",
    "hsv_to_rgb",
    "jaccard_indices",
    "jaccard_null",
    "labels_for",
    "lda_confusion",
    "mask_activations",
    "mask_configs",
    "mask_factor",
    "masked_predictions",
    "masking_clusters",
    "masking_linkage",
    "masking_pair_distances",
    "masking_spearman_matrix",
    "mean_jaccard",
    "minmax_rescale",
    "multiplex_channel",
    "permutation_from_index",
    "pick_freeze_design",
    "prediction_bias",
    "replicate_intervals",
    "rgb_to_hsv",
    "segment",
    "shapley_effects",
    "single_augmentation_accuracy",
    "single_augmentation_inputs",
    "single_augmentation_parameters",
    "sobol_indices",
    "spatial_correlation_map",
    "spearman_across_units",
    "spearman_rows",
    "top_sensitive_classes",
    "unitwise_correlation",
]
