"""Datasets with ground truth for explaining CNNs.

:func:`shapes` generates the embedded shape world (see :mod:`convscope.data.world`): images of
coloured shapes on textured backgrounds with labels, target masks, Broden-like concept maps and
every generative factor.
"""

from convscope.data.world import (
    CLASS_NAMES,
    COLOUR_NAMES,
    COLOUR_RGB,
    CONCEPT_CATEGORIES,
    CONCEPT_NAMES,
    SHAPE_AREA,
    SPURIOUS_TEXTURE,
    TEXTURE_NAMES,
    ShapesWorld,
    shapes,
)

__all__ = [
    "CLASS_NAMES",
    "COLOUR_NAMES",
    "COLOUR_RGB",
    "CONCEPT_CATEGORIES",
    "CONCEPT_NAMES",
    "SHAPE_AREA",
    "SPURIOUS_TEXTURE",
    "TEXTURE_NAMES",
    "ShapesWorld",
    "shapes",
]
