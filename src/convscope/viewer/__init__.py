"""Interactive similarity overlays (Fong, Mordvintsev, Vedaldi & Olah 2021; Fong 2020, ch. 6).

Pointing at a location of one image shows, on every image, the cosine similarity of a layer's
activation vector there to the vector at every location:
``s(u, v) = u·v / ((‖u‖ + ε)(‖v‖ + ε))`` with ε = 1e-4.

* :func:`similarity_overlay` — the viewer: one self-contained HTML file (or a folder for
  ``convscope overlay serve``), inline in Jupyter, with a size budget;
* :mod:`~convscope.viewer.similarity` — the maps as arrays (one query, all pairs, sprite
  sheets) and the normalised vectors the viewer embeds;
* :mod:`~convscope.viewer.nmf` — NMF components of all locations, a colour per component;
* :mod:`~convscope.viewer.transforms` — rotation and scale sweeps with grid correspondences
  and similarity curves;
* :mod:`~convscope.viewer.serve` — the 127.0.0.1-only folder server (``serve``, ``make_server``).
"""

from convscope.viewer.nmf import NMFComponents, component_colors, nmf_components
from convscope.viewer.overlay import (
    DEFAULT_MAX_BYTES,
    OverlayOptions,
    SimilarityOverlay,
    SizeEstimate,
    similarity_overlay,
)
from convscope.viewer.serve import make_server
from convscope.viewer.similarity import (
    DEFAULT_EPS,
    center_of,
    cosine_similarity_maps,
    layer_activations,
    normalized_features,
    query_maps,
    similarity_grids,
    sprite_sheet,
    synchronized_cell,
)
from convscope.viewer.transforms import (
    TransformSweep,
    rotate_images,
    rotation_correspondence,
    scale_correspondence,
    scale_images,
    transform_sweep,
)

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MAX_BYTES",
    "NMFComponents",
    "OverlayOptions",
    "SimilarityOverlay",
    "SizeEstimate",
    "TransformSweep",
    "center_of",
    "component_colors",
    "cosine_similarity_maps",
    "layer_activations",
    "make_server",
    "nmf_components",
    "normalized_features",
    "query_maps",
    "rotate_images",
    "rotation_correspondence",
    "scale_correspondence",
    "scale_images",
    "similarity_grids",
    "similarity_overlay",
    "sprite_sheet",
    "synchronized_cell",
    "transform_sweep",
]
