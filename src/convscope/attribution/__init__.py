"""Attribution: which pixels or regions drive a target score.

* :mod:`~convscope.attribution.extremal` — extremal perturbations (Fong et al. 2019), with
  :mod:`~convscope.attribution.masks` (smooth max-convolution masks, the area loss),
  :mod:`~convscope.attribution.perturbation` (the blur/fade pyramid) and
  :mod:`~convscope.attribution.area_sweep` (the extremal area :math:`a^*`);
* :mod:`~convscope.attribution.channel_extremal` — extremal perturbations over the channels
  of a layer;
* :mod:`~convscope.attribution.meaningful` — meaningful perturbations (Fong & Vedaldi 2017);
* :mod:`~convscope.attribution.baselines`, :mod:`~convscope.attribution.rise`,
  :mod:`~convscope.attribution.excitation` — gradient, guided backprop, deconvnet, Grad-CAM,
  linear approximation, integrated gradients, SmoothGrad, occlusion, RISE and (contrastive)
  excitation backprop, all with the call shape ``(model, input, target, ...)`` and N×1×H×W
  maps;
* :mod:`~convscope.attribution.region_sobol` — Sobol' indices of image regions (Sobol-SBSA),
  with :mod:`~convscope.attribution.region_baselines` (KernelSHAP, LIME, integrated gradients
  and random scores over the same regions);
* :data:`METHODS` — every method by name, as used by ``convscope explain --method``.

Masks follow one convention: 1 = kept, 0 = perturbed away.
"""

from convscope.attribution.area_sweep import (
    PAPER_AREAS,
    AreaSweepResult,
    extremal_area_sweep,
    monotonicity,
    optimal_area,
)
from convscope.attribution.baselines import (
    BASELINES,
    deconvnet,
    default_layer,
    grad_cam,
    gradient,
    guided_backprop,
    integrated_gradients,
    linear_approx,
    occlusion,
    smoothgrad,
)
from convscope.attribution.channel_extremal import (
    THESIS_CHANNEL_AREAS,
    ChannelExtremalResult,
    channel_extremal_perturbation,
    channel_saliency,
    default_channel_areas,
)
from convscope.attribution.excitation import (
    contrastive_excitation_backprop,
    excitation_backprop,
)
from convscope.attribution.extremal import (
    DELETE_VARIANT,
    DUAL_VARIANT,
    PRESERVE_VARIANT,
    EarlyStopping,
    ExtremalOptions,
    ExtremalResult,
    area_weight_schedule,
    contrastive_reward,
    extremal_perturbation,
    simple_reward,
)
from convscope.attribution.masks import MaskGenerator, area_loss, smax
from convscope.attribution.meaningful import (
    MeaningfulResult,
    meaningful_perturbation,
    meaningful_perturbation_preset,
)
from convscope.attribution.methods import METHODS, attribution_map
from convscope.attribution.perturbation import (
    BLUR_PERTURBATION,
    FADE_PERTURBATION,
    Perturbation,
)
from convscope.attribution.region_baselines import (
    REGION_METHODS,
    integrated_gradients_regions,
    kernel_shap_regions,
    lime_regions,
    random_regions,
)
from convscope.attribution.region_sobol import (
    PERTURBATIONS,
    RegionSobolResult,
    inpaint,
    primary_index_ratio,
    region_baseline,
    region_sobol,
)
from convscope.attribution.rise import rise, rise_masks

__all__ = [
    "BASELINES",
    "BLUR_PERTURBATION",
    "DELETE_VARIANT",
    "DUAL_VARIANT",
    "FADE_PERTURBATION",
    "METHODS",
    "PAPER_AREAS",
    "PERTURBATIONS",
    "PRESERVE_VARIANT",
    "REGION_METHODS",
    "THESIS_CHANNEL_AREAS",
    "AreaSweepResult",
    "ChannelExtremalResult",
    "EarlyStopping",
    "ExtremalOptions",
    "ExtremalResult",
    "MaskGenerator",
    "MeaningfulResult",
    "Perturbation",
    "RegionSobolResult",
    "area_loss",
    "area_weight_schedule",
    "attribution_map",
    "channel_extremal_perturbation",
    "channel_saliency",
    "contrastive_excitation_backprop",
    "contrastive_reward",
    "deconvnet",
    "default_channel_areas",
    "default_layer",
    "excitation_backprop",
    "extremal_area_sweep",
    "extremal_perturbation",
    "grad_cam",
    "gradient",
    "guided_backprop",
    "inpaint",
    "integrated_gradients",
    "integrated_gradients_regions",
    "kernel_shap_regions",
    "lime_regions",
    "linear_approx",
    "meaningful_perturbation",
    "meaningful_perturbation_preset",
    "monotonicity",
    "occlusion",
    "optimal_area",
    "primary_index_ratio",
    "random_regions",
    "region_baseline",
    "region_sobol",
    "rise",
    "rise_masks",
    "simple_reward",
    "smax",
    "smoothgrad",
]
