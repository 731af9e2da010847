"""Matplotlib figure helpers (no pyplot, no display needed).

Every plotting function returns a :class:`matplotlib.figure.Figure`; pass it to
:class:`convscope.report.Figure` or call ``fig.savefig(path)``.

Examples
--------
>>> import torch
>>> from convscope.plots import heatmap_overlay
>>> fig = heatmap_overlay(torch.rand(4, 3, 32, 32), torch.rand(4, 7, 7), titles=list("abcd"))
"""

from __future__ import annotations

from convscope.plots.attribution import (
    area_curves,
    area_sweep_strip,
    channel_curve,
    channel_saliency_overlay,
    mask_overlay,
    method_grid,
    optimisation_history,
    perturbation_panel,
    sanity_cascade,
)
from convscope.plots.images import (
    bar_chart,
    draw_mask,
    heatmap_overlay,
    image_grid,
    label_colors,
    label_map_grid,
    label_map_to_rgb,
    mask_outline,
    normalize_heatmap,
    overlay_array,
)
from convscope.plots.masking import (
    masking_dendrogram_plot,
    masking_matrix_plot,
)
from convscope.plots.regions import (
    importance_difference_plot,
    masking_slope_plot,
    region_index_panel,
    region_ranking_plot,
    sensitivity_n_plot,
    trend_plot,
)
from convscope.plots.sensitivity import (
    sensitivity_map_grid,
    unit_map_panel,
)
from convscope.plots.sensitivity_analysis import (
    confusion_heatmap,
    correlation_heatmap,
    decay_curves,
    dendrogram_plot,
    jaccard_table,
    top_classes_table,
)
from convscope.plots.single_augmentation import (
    accuracy_table,
)
from convscope.plots.viewer import (
    nmf_figure,
    similarity_figure,
    sweep_figure,
    upscale_map,
)

__all__ = [
    "accuracy_table",
    "area_curves",
    "area_sweep_strip",
    "bar_chart",
    "channel_curve",
    "channel_saliency_overlay",
    "confusion_heatmap",
    "correlation_heatmap",
    "decay_curves",
    "dendrogram_plot",
    "draw_mask",
    "heatmap_overlay",
    "image_grid",
    "importance_difference_plot",
    "jaccard_table",
    "label_colors",
    "label_map_grid",
    "label_map_to_rgb",
    "mask_outline",
    "mask_overlay",
    "masking_dendrogram_plot",
    "masking_matrix_plot",
    "masking_slope_plot",
    "method_grid",
    "nmf_figure",
    "normalize_heatmap",
    "optimisation_history",
    "overlay_array",
    "perturbation_panel",
    "region_index_panel",
    "region_ranking_plot",
    "sanity_cascade",
    "sensitivity_map_grid",
    "sensitivity_n_plot",
    "similarity_figure",
    "sweep_figure",
    "top_classes_table",
    "trend_plot",
    "unit_map_panel",
    "upscale_map",
]
