"""Images and regions: file IO, the normalization wrapper, region partitions, the shapes world.

* :mod:`~convscope.data.io` — load images into N×3×H×W float tensors in [0, 1], save PNGs;
* :mod:`~convscope.data.normalization` — :func:`with_normalization` so models take [0, 1]
  images, ImageNet constants, :func:`check_images`;
* :mod:`~convscope.data.regions` — grids, label maps from masks, SLIC superpixels,
  foreground/background, per-region means and heatmaps;
* :mod:`~convscope.data.filters` — separable Gaussian blur with a chosen padding;
* :mod:`~convscope.data.world` — the procedural ground-truth shapes world
  (public entry point :func:`convscope.datasets.shapes`).
"""

from convscope.data.filters import gaussian_blur, gaussian_kernel1d
from convscope.data.io import load_image, load_images, save_image, to_uint8_hwc
from convscope.data.normalization import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    NormalizedModel,
    check_images,
    normalization_mean,
    with_normalization,
)
from convscope.data.regions import (
    Regions,
    foreground_background,
    grid_regions,
    n_selected,
    region_heatmap,
    region_means,
    regions_from_masks,
    superpixel_regions,
)
from convscope.data.world import ShapesWorld, shapes

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "NormalizedModel",
    "Regions",
    "ShapesWorld",
    "check_images",
    "foreground_background",
    "gaussian_blur",
    "gaussian_kernel1d",
    "grid_regions",
    "load_image",
    "load_images",
    "n_selected",
    "normalization_mean",
    "region_heatmap",
    "region_means",
    "regions_from_masks",
    "save_image",
    "shapes",
    "superpixel_regions",
    "to_uint8_hwc",
    "with_normalization",
]
