"""The embedded ground-truth image world: a fast procedural generator of shape images.

:func:`shapes` draws ``n`` RGB images of 1 to 3 coloured shapes on a textured background and
returns a :class:`ShapesWorld` that records *everything* that went into each image: the class
label, the exact pixel mask of the labelled object, per-pixel concept maps (shape, colour,
background texture, in the style of Broden) and every generative factor. Explanations of a model
trained on this world can therefore be checked against ground truth.

The world
---------
* **Classes** are shapes, :data:`CLASS_NAMES` = ``circle, square, triangle, star, cross, ring``.
  They differ under any rotation (no diamond, no hexagon).
* **Objects.** Each image has ``n_objects`` in ``[min_objects, max_objects]`` (uniform, at most
  3). Slot 0 is the **target**: its shape is the class. Slots 1 and 2 are distractors with a
  uniformly random shape. Each object has a named colour (:data:`COLOUR_NAMES`, uniform and
  independent of everything else), a centre ``(x, y)``, a radius ``scale`` and a rotation.
* **Geometry.** ``scale`` is the *circumradius* in pixels: every shape lies inside the disc of
  radius ``scale`` around its centre. The target radius is uniform in
  :data:`TARGET_SCALE_RANGE` × ``size``; a distractor radius is uniform in
  :data:`DISTRACTOR_SCALE_RANGE` × the target radius, so the target is always strictly the
  largest object. Centres are uniform such that every object lies fully inside the image.
  Pixel ``(row i, column j)`` has its centre at ``x = j, y = i``. ``rotation`` is in degrees,
  counter-clockwise as displayed. At rotation 0 the triangle and the star point up, the square
  and the cross are axis-aligned. The shapes, in coordinates ``(u, v)`` (``v`` pointing up)
  divided by the radius: circle ``u²+v² ≤ 1``; ring ``RING_INNER_RATIO² ≤ u²+v² ≤ 1``; square
  with half-side ``1/√2``; equilateral triangle (inradius ``1/2``); five-pointed star with inner
  radius :data:`STAR_INNER_RATIO`; cross made of two bars of half-width
  :data:`CROSS_HALF_WIDTH` and half-length ``√(1 - CROSS_HALF_WIDTH²)``. Their areas are
  :data:`SHAPE_AREA` × ``scale²``.
* **Rendering rule.** Background first; then the objects in the order slot 2, slot 1, slot 0,
  each painting its colour over everything beneath. The target is drawn last, on top, so its mask
  is exactly its full shape and exactly its visible pixels. Distractors may overlap each other,
  and the target may cover them, partly or (in about 3% of cases) wholly: ``present_k`` and
  ``n_objects`` count drawn objects, visible or not (``object_map`` shows what is visible).
  Masks are hard (no antialiasing): a pixel belongs to a
  shape when its centre does.
* **Backgrounds** mix two low-contrast, weakly saturated colours ``a`` and ``b`` with an
  intensity map ``t`` in ``[0, 1]``: ``pixel = a + t (b - a)``. The textures
  (:data:`TEXTURE_NAMES`) are ``flat`` (``t = 1/2``), ``stripes`` (period 8-25 % of the side, any
  orientation and phase), ``checker`` (cell 8-20 %, orientation, offset), ``noise`` (smooth
  two-octave value noise), ``dots`` (a rotated lattice of dots, spacing 12-22 %), with periods of
  at least 4 pixels, and crops of the photographs shipped with scikit-image, ``brick``, ``grass``
  and ``gravel`` (resized to ``3 × size`` pixels, so a crop shows a third of the photograph at
  any ``size``). Background lightness is 0.25-0.65, saturation at most 0.12 and the contrast
  ``|b - a|`` 0.10-0.35 (grey shift), so the saturated objects stand out; colours are clipped
  to [0, 1], which shortens the contrast slightly in about one image in 10⁴
  (``background_contrast`` records the drawn value, before clipping).
* **Spurious correlation.** With probability ``spurious`` (per image) the background texture is
  :data:`SPURIOUS_TEXTURE` of the target's true class; otherwise it is uniform over all 8
  textures. ``spurious=0`` makes texture and class independent.
* **Label noise.** With probability ``label_noise`` (per image) the label is replaced by a
  uniformly random *different* class.

Factors
-------
:attr:`ShapesWorld.factors` maps names to numpy arrays with one entry per image:

* ``image_index`` (int64): position of the image in the generated stream of ``seed``
  (kept by :meth:`ShapesWorld.subset`);
* ``n_objects`` (int64);
* for each slot ``k`` in 0, 1, 2 (0 = target): ``present_k`` (bool), ``shape_k`` and ``colour_k``
  (int64 indices into :data:`CLASS_NAMES` / :data:`COLOUR_NAMES`, -1 if absent), ``x_k``, ``y_k``
  (centre in pixels), ``scale_k`` (circumradius in pixels), ``rotation_k`` (degrees), all float32
  and NaN if absent. The float32 values are exactly those used for rendering;
* ``texture`` (int64 index into :data:`TEXTURE_NAMES`); ``texture_period`` (stripe period,
  checker cell or dot spacing, noise lattice spacing, in pixels; NaN for flat and photographs);
  ``texture_angle`` (degrees; NaN where it does not apply); ``texture_offset_x``,
  ``texture_offset_y`` (phase offsets in pixels for stripes (x only), checker and dots, the crop
  corner in the photograph resized to ``3 × size`` for brick/grass/gravel, NaN otherwise);
* ``background_lightness``, ``background_saturation``, ``background_hue`` (degrees),
  ``background_contrast`` (float32 scalars) and the resulting RGB colours
  ``background_colour_a``, ``background_colour_b`` (float32, shape ``N×3``);
* ``spurious_used`` (bool), ``label_flipped`` (bool), ``true_labels`` (int64, the target shape,
  equal to ``shape_0``).

Determinism
-----------
The same ``(n, seed, size, options)`` always gives identical tensors. Random numbers are drawn in
chunks of :data:`SEED_CHUNK` images seeded by ``numpy.random.SeedSequence(seed,
spawn_key=(chunk,))``, and the per-pixel rendering uses only exactly rounded operations
(``+ - * /``, ``floor``, comparisons, copies; no ``sin``/``atan2``, no fused kernels), so a pixel
never depends on its batch or on the number of threads. Hence **the first** ``k`` **images of**
``shapes(n, seed)`` **equal** ``shapes(k, seed)`` exactly (same size and options), and results
are bit-identical for any ``torch.set_num_threads``.
The random numbers do not depend on the options or the size (*common random numbers*): changing
``spurious``, ``label_noise`` or ``size`` changes only what those options control, e.g.
``size=32`` and ``size=128`` draw the same scenes at two resolutions (up to the 4-pixel minimum
period of the periodic textures and the rounding of photograph crop corners).

Examples
--------
>>> from convscope.datasets import shapes
>>> world = shapes(8, seed=0, spurious=0.9)
>>> world.images.shape
torch.Size([8, 3, 64, 64])
>>> bool((world.labels == torch.from_numpy(world.factors["shape_0"])).all())
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from convscope.core.errors import InputError, ResultFormatError

__all__ = [
    "CLASS_NAMES",
    "COLOUR_NAMES",
    "COLOUR_RGB",
    "CONCEPT_CATEGORIES",
    "CONCEPT_NAMES",
    "DISTRACTOR_SCALE_RANGE",
    "SHAPE_AREA",
    "SPURIOUS_TEXTURE",
    "TARGET_SCALE_RANGE",
    "TEXTURE_NAMES",
    "ShapesWorld",
    "shapes",
]

# --------------------------------------------------------------------------------------------
# constants of the world
# --------------------------------------------------------------------------------------------

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
"""The shapes; class ``i`` is the shape ``CLASS_NAMES[i]``."""

COLOUR_NAMES: tuple[str, ...] = (
    "red",
    "green",
    "blue",
    "yellow",
    "magenta",
    "cyan",
    "orange",
    "white",
)
"""The named object colours; ``colour_k`` indexes this tuple."""

COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.15, 0.85),
    "cyan": (0.10, 0.85, 0.90),
    "orange": (1.00, 0.55, 0.05),
    "white": (1.00, 1.00, 1.00),
}
"""RGB value (in ``[0, 1]``, stored as float32 in the images) of each named colour."""

TEXTURE_NAMES: tuple[str, ...] = (
    "flat",
    "stripes",
    "checker",
    "noise",
    "dots",
    "brick",
    "grass",
    "gravel",
)
"""The background textures; the ``texture`` factor indexes this tuple."""

SPURIOUS_TEXTURE: dict[str, str] = {
    "circle": "stripes",
    "square": "dots",
    "triangle": "checker",
    "star": "noise",
    "cross": "grass",
    "ring": "brick",
}
"""Class → background texture used when the spurious correlation is switched on for an image."""

CONCEPT_NAMES: tuple[str, ...] = CLASS_NAMES + COLOUR_NAMES + TEXTURE_NAMES
"""All concepts: the shapes, then the colours, then the textures."""

CONCEPT_CATEGORIES: tuple[str, ...] = (
    ("shape",) * len(CLASS_NAMES)
    + ("colour",) * len(COLOUR_NAMES)
    + ("texture",) * len(TEXTURE_NAMES)
)
"""Category (``"shape"``, ``"colour"`` or ``"texture"``) of each name in :data:`CONCEPT_NAMES`."""

MIN_SIZE = 32
"""Smallest supported image side."""
MAX_SIZE = 224
"""Largest supported image side."""
MAX_OBJECTS = 3
"""Number of object slots (slot 0 is the target)."""
SEED_CHUNK = 256
"""Images per random-number chunk; chunk ``c`` is seeded by ``SeedSequence(seed, (c,))``."""

TARGET_SCALE_RANGE: tuple[float, float] = (0.16, 0.30)
"""Range of the target radius as a fraction of the image side."""
DISTRACTOR_SCALE_RANGE: tuple[float, float] = (0.40, 0.70)
"""Range of a distractor radius as a fraction of the target radius of the same image."""
RING_INNER_RATIO = 0.55
"""Inner radius of the ring divided by its outer radius."""
STAR_INNER_RATIO = 0.42
"""Inner (concave) vertex radius of the five-pointed star divided by its outer radius."""
CROSS_HALF_WIDTH = 0.3
"""Half-width of a bar of the cross divided by the circumradius."""

_CROSS_HALF_LENGTH = math.sqrt(1.0 - CROSS_HALF_WIDTH**2)
_STAR_TIPS = tuple(
    (math.cos(math.radians(90.0 + 72.0 * j)), math.sin(math.radians(90.0 + 72.0 * j)))
    for j in range(5)
)
_STAR_EDGE = (  # inner vertex minus tip, in the frame where the tip is (1, 0)
    STAR_INNER_RATIO * math.cos(math.pi / 5.0) - 1.0,
    STAR_INNER_RATIO * math.sin(math.pi / 5.0),
)
_SQUARE_HALF_SIDE = 1.0 / math.sqrt(2.0)

SHAPE_AREA: dict[str, float] = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3.0 * math.sqrt(3.0) / 4.0,
    "star": 5.0 * STAR_INNER_RATIO * math.sin(math.pi / 5.0),
    "cross": 8.0 * _CROSS_HALF_LENGTH * CROSS_HALF_WIDTH - 4.0 * CROSS_HALF_WIDTH**2,
    "ring": math.pi * (1.0 - RING_INNER_RATIO**2),
}
"""Area of each shape divided by ``scale²`` (``scale`` = circumradius)."""

_N_CLASSES = len(CLASS_NAMES)
_N_COLOURS = len(COLOUR_NAMES)
_N_TEXTURES = len(TEXTURE_NAMES)
_TEXTURE_CONCEPT0 = _N_CLASSES + _N_COLOURS
_TEX = {name: i for i, name in enumerate(TEXTURE_NAMES)}
_SPURIOUS_IDX = np.array([_TEX[SPURIOUS_TEXTURE[c]] for c in CLASS_NAMES], dtype=np.int64)
_PHOTOS = ("brick", "grass", "gravel")
_PHOTO_SCALE = 3  # photographs are resized to _PHOTO_SCALE * size pixels
_NOISE_LATTICES = (5, 9)  # value-noise lattice sides (two octaves)
_DOT_RADIUS = 0.3  # dot radius / lattice spacing
_MIN_PERIOD = 4.0  # pixels: finer periodic textures alias at small sizes
_STRIPE_SHARPNESS = 2.5
_RENDER_PIXELS = 1 << 22  # pixels per render batch (bounds the memory of the temporaries)
_FORMAT = "convscope.ShapesWorld"
_FORMAT_VERSION = 1

IndexLike = int | slice | Sequence[int] | Sequence[bool] | npt.NDArray[Any] | Tensor


# --------------------------------------------------------------------------------------------
# the dataset object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ShapesWorld:
    """Images of the ground-truth shape world with their labels, masks, concepts and factors.

    Build one with :func:`shapes`. All tensors live on the CPU; index with :meth:`subset`.

    Attributes
    ----------
    images : Tensor
        ``N×3×H×W`` float32 in ``[0, 1]``.
    labels : Tensor
        ``(N,)`` int64, the class (shape of the target object) after label noise.
    masks : Tensor
        ``N×H×W`` bool, the visible pixels of the target object (its full shape).
    concepts : Tensor
        ``N×H×W`` int64 index into :attr:`concept_names`: the shape concept of the object drawn
        at each object pixel, the texture concept at each background pixel.
    object_map : Tensor
        ``N×H×W`` int8, the slot of the object visible at each pixel (0 = target), -1 on the
        background. ``masks == (object_map == 0)``.
    factors : dict of str to numpy.ndarray
        Every generative factor per image (see the module documentation for the list).
    seed, size, spurious, label_noise, min_objects, max_objects
        The arguments of :func:`shapes` that generated the world.
    class_names, colour_names, texture_names, concept_names, concept_categories : tuple of str
        The names of the classes, object colours, textures, all concepts, and the category
        (``"shape"``, ``"colour"``, ``"texture"``) of each concept.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    concepts: Tensor
    object_map: Tensor
    factors: dict[str, npt.NDArray[Any]]
    seed: int
    size: int
    spurious: float
    label_noise: float
    min_objects: int = 1
    max_objects: int = MAX_OBJECTS
    class_names: tuple[str, ...] = CLASS_NAMES
    colour_names: tuple[str, ...] = COLOUR_NAMES
    texture_names: tuple[str, ...] = TEXTURE_NAMES
    concept_names: tuple[str, ...] = CONCEPT_NAMES
    concept_categories: tuple[str, ...] = CONCEPT_CATEGORIES

    def __len__(self) -> int:
        """Return the number of images."""
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        """Summarise the world without printing its tensors."""
        return (
            f"ShapesWorld(n={len(self)}, size={self.size}, seed={self.seed}, "
            f"spurious={self.spurious}, label_noise={self.label_noise}, "
            f"objects={self.min_objects}..{self.max_objects}, classes={list(self.class_names)})"
        )

    @cached_property
    def concept_maps(self) -> dict[str, Tensor]:
        """One ``N×H×W`` int64 map per concept category.

        ``"shape"`` and ``"colour"`` hold the concept index (into :attr:`concept_names`) of the
        object visible at each pixel and -1 on the background; ``"texture"`` holds the texture
        concept on background pixels and -1 on object pixels. Computed on first access and
        cached (three int64 maps, 24 bytes per pixel).
        """
        n = len(self)
        minus = np.full((n, 1), -1, dtype=np.int64)
        shape_lut = np.concatenate([minus, _slot_values(self.factors, "shape")], axis=1)
        colour = _slot_values(self.factors, "colour")
        colour_lut = np.concatenate([minus, np.where(colour >= 0, colour + _N_CLASSES, -1)], 1)
        texture = _concept_table(self.factors)[:, :1]
        texture_lut = np.concatenate([texture, np.full((n, MAX_OBJECTS), -1, np.int64)], axis=1)
        return {
            "shape": _apply_lut(shape_lut, self.object_map),
            "colour": _apply_lut(colour_lut, self.object_map),
            "texture": _apply_lut(texture_lut, self.object_map),
        }

    @property
    def true_labels(self) -> Tensor:
        """``(N,)`` int64, the target shape before label noise."""
        return torch.from_numpy(self.factors["true_labels"].astype(np.int64))

    def subset(self, index: IndexLike) -> ShapesWorld:
        """Return a world with the selected images (and their factors) only.

        Parameters
        ----------
        index : int, slice, sequence of int or bool, numpy array or Tensor
            Which images to keep, as for ``tensor[index]`` along the first axis. An int keeps a
            single image (the result still has a leading axis of length 1).

        Returns
        -------
        ShapesWorld
            The selected images; ``factors["image_index"]`` keeps their original positions.
        """
        n = len(self)
        if isinstance(index, (bool, np.bool_)):
            raise InputError(
                f"subset(): {index!r} is not an image position; pass integer positions, a "
                f"slice, or a boolean mask of length {n}."
            )
        try:
            if isinstance(index, Tensor):
                idx_t = index.to("cpu")
            elif isinstance(index, slice | int | np.integer):
                idx_t = torch.arange(n)[index]
            else:
                idx_t = torch.as_tensor(np.asarray(index))
            if idx_t.dtype == torch.bool:
                if idx_t.shape != (n,):
                    raise IndexError(f"boolean index of shape {tuple(idx_t.shape)}")
                idx_t = idx_t.nonzero().flatten()
            idx_t = idx_t.reshape(-1)
            if idx_t.numel() and (idx_t.is_floating_point() or idx_t.is_complex()):
                raise IndexError("float index")
            idx_t = idx_t.long()
            idx_t = torch.arange(n)[idx_t]  # checks the range, resolves negative indices
        except (IndexError, TypeError, ValueError, RuntimeError) as err:
            raise InputError(
                f"subset(): cannot select images with {_short(index)} from a world of {n} images "
                f"({err}); pass integer positions in [-{n}, {n}), a slice, or a boolean mask of "
                f"length {n}."
            ) from None
        idx_np = idx_t.numpy()
        return dataclasses.replace(
            self,
            images=self.images[idx_t],
            labels=self.labels[idx_t],
            masks=self.masks[idx_t],
            concepts=self.concepts[idx_t],
            object_map=self.object_map[idx_t],
            factors={k: v[idx_np] for k, v in self.factors.items()},
        )

    def as_dataset(self) -> torch.utils.data.TensorDataset:
        """Return ``TensorDataset(images, labels)`` for a ``DataLoader`` (no copy)."""
        return torch.utils.data.TensorDataset(self.images, self.labels)

    # ---------------------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the world to ``path`` (``.npz``) and a JSON sidecar next to it.

        The ``.npz`` holds the images, labels, masks, object map and factors (no pickled
        objects); the sidecar (same name, suffix ``.json``) holds the options and names.
        ``concepts`` is recomputed on :meth:`load`.

        Parameters
        ----------
        path : str or os.PathLike
            Target file; ``.npz`` is appended when it has another suffix.

        Returns
        -------
        pathlib.Path
            The path of the ``.npz`` file written.
        """
        npz_path, json_path = _file_paths(path)
        arrays: dict[str, npt.NDArray[Any]] = {
            "images": self.images.numpy(),
            "labels": self.labels.numpy(),
            "masks": self.masks.numpy(),
            "object_map": self.object_map.numpy(),
        }
        for key, value in self.factors.items():
            arrays["factor__" + key] = np.asarray(value)
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "n": len(self),
            "seed": self.seed,
            "size": self.size,
            "spurious": self.spurious,
            "label_noise": self.label_noise,
            "min_objects": self.min_objects,
            "max_objects": self.max_objects,
            "class_names": list(self.class_names),
            "colour_names": list(self.colour_names),
            "texture_names": list(self.texture_names),
            "concept_names": list(self.concept_names),
            "concept_categories": list(self.concept_categories),
            "factor_names": list(self.factors),
        }
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        # Write to temporary names and rename, so an interrupted save never leaves a
        # half-written file under the real name.
        tmp_npz = npz_path.with_name(npz_path.name + ".partial")
        tmp_json = json_path.with_name(json_path.name + ".partial")
        with open(tmp_npz, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        tmp_json.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_npz, npz_path)
        os.replace(tmp_json, json_path)
        return npz_path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ShapesWorld:
        """Read a world written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.npz`` file (or the same path without suffix); its ``.json`` sidecar must be
            next to it.

        Returns
        -------
        ShapesWorld

        Raises
        ------
        ResultFormatError
            If a file is missing, corrupted or not a saved :class:`ShapesWorld`.
        """
        npz_path, json_path = _file_paths(path)
        for p in (npz_path, json_path):
            if not p.is_file():
                raise ResultFormatError(
                    f"ShapesWorld.load(): {str(p)!r} does not exist; pass the .npz written by "
                    "ShapesWorld.save() and keep its .json sidecar next to it."
                )
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError(f"the sidecar holds a {type(meta).__name__}, not an object")
            if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            factors = {k: arrays["factor__" + k] for k in meta["factor_names"]}
            object_map = torch.from_numpy(arrays["object_map"])
            world = cls(
                images=torch.from_numpy(arrays["images"]),
                labels=torch.from_numpy(arrays["labels"]),
                masks=torch.from_numpy(arrays["masks"]),
                concepts=_concepts_from(object_map, factors),
                object_map=object_map,
                factors=factors,
                seed=int(meta["seed"]),
                size=int(meta["size"]),
                spurious=float(meta["spurious"]),
                label_noise=float(meta["label_noise"]),
                min_objects=int(meta["min_objects"]),
                max_objects=int(meta["max_objects"]),
                class_names=tuple(meta["class_names"]),
                colour_names=tuple(meta["colour_names"]),
                texture_names=tuple(meta["texture_names"]),
                concept_names=tuple(meta["concept_names"]),
                concept_categories=tuple(meta["concept_categories"]),
            )
            n = int(meta["n"])
            if len(world) != n or world.labels.shape != (n,) or world.masks.shape[0] != n:
                raise ValueError("array lengths do not match the sidecar")
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, zipfile.BadZipFile) as err:
            raise ResultFormatError(
                f"ShapesWorld.load(): {str(npz_path)!r} is not a readable saved ShapesWorld "
                f"({type(err).__name__}: {err}); regenerate it with shapes(...).save(path)."
            ) from None
        return world


# --------------------------------------------------------------------------------------------
# public generator
# --------------------------------------------------------------------------------------------


def shapes(
    n: int,
    seed: int = 0,
    size: int = 64,
    spurious: float = 0.0,
    label_noise: float = 0.0,
    *,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
) -> ShapesWorld:
    """Generate ``n`` images of the ground-truth shape world.

    Parameters
    ----------
    n : int
        Number of images, at least 1.
    seed : int, default 0
        Non-negative seed. The first ``k`` images of ``shapes(n, seed)`` equal
        ``shapes(k, seed)``.
    size : int, default 64
        Image side in pixels, from 32 to 224. Geometry scales with it.
    spurious : float, default 0.0
        Probability (per image) that the background texture is the one
        :data:`SPURIOUS_TEXTURE` assigns to the target's class; otherwise the texture is
        uniform over :data:`TEXTURE_NAMES`.
    label_noise : float, default 0.0
        Probability (per image) that the label is replaced by a uniformly random other class.
    min_objects, max_objects : int, default 1 and 3
        Range of the number of objects per image (uniform), within ``1..3``.

    Returns
    -------
    ShapesWorld
        Images, labels, target masks, concept maps and all factors.

    Raises
    ------
    InputError
        If an argument is outside its range.

    Notes
    -----
    Renders about 15-30 thousand 64×64 images per second on two CPU cores
    (``benchmarks/bench_world.py``). See the module documentation for the rendering rule.
    """
    n = _check_int("n", n, 1, None, "pass the number of images to generate, e.g. shapes(1000)")
    seed = _check_int("seed", seed, 0, None, "pass a non-negative integer seed")
    size = _check_int(
        "size",
        size,
        MIN_SIZE,
        MAX_SIZE,
        f"pass a size between {MIN_SIZE} and {MAX_SIZE} and resize the images afterwards if "
        "you need another resolution",
    )
    spurious = _check_prob("spurious", spurious)
    label_noise = _check_prob("label_noise", label_noise)
    min_objects = _check_int("min_objects", min_objects, 1, MAX_OBJECTS, "use 1, 2 or 3")
    max_objects = _check_int("max_objects", max_objects, 1, MAX_OBJECTS, "use 1, 2 or 3")
    if min_objects > max_objects:
        raise InputError(
            f"shapes(): min_objects={min_objects} is larger than max_objects={max_objects}; "
            "pass min_objects <= max_objects."
        )
    _check_memory(n, size)

    images = torch.empty((n, 3, size, size), dtype=torch.float32)
    object_map = torch.empty((n, size, size), dtype=torch.int8)
    concepts = torch.empty((n, size, size), dtype=torch.int64)
    # random numbers chunk by chunk (cheap), then rendering in large batches: a pixel does not
    # depend on its batch, so the batches need not follow the chunks
    chunks = [_sample_chunk(seed, c) for c in range(-(-n // SEED_CHUNK))]
    raw = {k: np.concatenate([c[k] for c in chunks])[:n] for k in chunks[0]}
    factors = _derive_factors(raw, size, spurious, label_noise, min_objects, max_objects)
    batch = _render_batch_size(size)
    for b0 in range(0, n, batch):
        sl = slice(b0, min(n, b0 + batch))
        _render(factors, raw, sl, size, images[sl], object_map[sl], concepts[sl])
    labels = torch.from_numpy(factors.pop("_labels").astype(np.int64))
    return ShapesWorld(
        images=images,
        labels=labels,
        masks=object_map == 0,
        concepts=concepts,
        object_map=object_map,
        factors=factors,
        seed=seed,
        size=size,
        spurious=spurious,
        label_noise=label_noise,
        min_objects=min_objects,
        max_objects=max_objects,
    )


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


#: Bytes per pixel of a world: float32 RGB, bool mask, int64 concepts, int8 object map.
_BYTES_PER_PIXEL = 3 * 4 + 1 + 8 + 1


def _check_memory(n: int, size: int) -> None:
    """Refuse a world larger than the machine's memory, before allocating any of it."""
    need = n * size * size * _BYTES_PER_PIXEL
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return
    if need > total:
        fit = max(1, total // (2 * size * size * _BYTES_PER_PIXEL))
        raise InputError(
            f"shapes(): {n} images of {size}×{size} need about {need / 2**30:.0f} GiB, more than "
            f"this machine's {total / 2**30:.0f} GiB. Generate fewer at a time (e.g. "
            f"n={fit}) with different seeds, or a smaller size."
        )


def _check_int(name: str, value: object, lo: int, hi: int | None, fix: str) -> int:
    """Return ``value`` as an int in ``[lo, hi]`` or raise :class:`InputError`."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(
            f"shapes(): {name} must be an integer, got {value!r} ({type(value).__name__}); {fix}."
        ) from None
    if out < lo or (hi is not None and out > hi):
        where = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise InputError(f"shapes(): {name}={out} must be {where}; {fix}.")
    return int(out)


def _check_prob(name: str, value: object) -> float:
    """Return ``value`` as a float in ``[0, 1]`` or raise :class:`InputError`."""
    try:
        if isinstance(value, bool | str | bytes):
            raise TypeError
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(
            f"shapes(): {name} must be a probability (a float in [0, 1]), got {value!r}; "
            f"pass e.g. {name}=0.1."
        ) from None
    if not 0.0 <= out <= 1.0:  # also rejects NaN
        raise InputError(
            f"shapes(): {name}={value!r} is outside [0, 1]; pass a probability, e.g. {name}=0.1 "
            f"(0 switches it off)."
        )
    return out


def _short(obj: object) -> str:
    """A short description of an index for error messages."""
    if isinstance(obj, Tensor | np.ndarray):
        return f"an index of dtype {obj.dtype} and shape {tuple(obj.shape)}"
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------


def _sample_chunk(seed: int, chunk: int) -> dict[str, npt.NDArray[Any]]:
    """Draw the raw random numbers of one chunk of :data:`SEED_CHUNK` images.

    The draws never depend on the options or the size, so worlds that differ only in those
    share their random numbers.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))
    b, k = SEED_CHUNK, MAX_OBJECTS
    c0, c1 = _NOISE_LATTICES
    return {
        "u_objects": rng.random(b),
        "shape": rng.integers(0, _N_CLASSES, size=(b, k)),
        "colour": rng.integers(0, _N_COLOURS, size=(b, k)),
        "u_scale": rng.random((b, k)),
        "u_x": rng.random((b, k)),
        "u_y": rng.random((b, k)),
        "u_rotation": rng.random((b, k)),
        "u_spurious": rng.random(b),
        "texture": rng.integers(0, _N_TEXTURES, size=b),
        "u_flip": rng.random(b),
        "flip_offset": rng.integers(1, _N_CLASSES, size=b),
        "u_lightness": rng.random(b),
        "u_saturation": rng.random(b),
        "u_hue": rng.random(b),
        "u_contrast": rng.random(b),
        "u_period": rng.random(b),
        "u_angle": rng.random(b),
        "u_offset": rng.random((b, 2)),
        "noise_coarse": rng.random((b, c0, c0)).astype(np.float32),
        "noise_fine": rng.random((b, c1, c1)).astype(np.float32),
    }


def _derive_factors(
    raw: dict[str, npt.NDArray[Any]],
    size: int,
    spurious: float,
    label_noise: float,
    min_objects: int,
    max_objects: int,
) -> dict[str, npt.NDArray[Any]]:
    """Turn the raw draws into the recorded factors (plus the ``_labels``)."""
    b = len(raw["u_objects"])
    f32 = np.float32
    out: dict[str, npt.NDArray[Any]] = {"image_index": np.arange(b, dtype=np.int64)}
    span = max_objects - min_objects + 1
    n_obj = np.minimum(
        min_objects + np.floor(raw["u_objects"] * span).astype(np.int64), max_objects
    )
    out["n_objects"] = n_obj

    lo, hi = TARGET_SCALE_RANGE
    dlo, dhi = DISTRACTOR_SCALE_RANGE
    target_r = size * (lo + (hi - lo) * raw["u_scale"][:, 0])
    radius = np.empty((b, MAX_OBJECTS))
    radius[:, 0] = target_r
    radius[:, 1:] = target_r[:, None] * (dlo + (dhi - dlo) * raw["u_scale"][:, 1:])
    radius = radius.astype(f32).astype(np.float64)
    # centres: the disc of radius r around the centre lies inside [0, size - 1]
    free = np.maximum(size - 1 - 2 * radius, 0.0)
    cx = radius + raw["u_x"] * free
    cy = radius + raw["u_y"] * free
    rotation = 360.0 * raw["u_rotation"]
    for k in range(MAX_OBJECTS):
        present = n_obj > k
        out[f"present_{k}"] = present
        out[f"shape_{k}"] = np.where(present, raw["shape"][:, k], -1).astype(np.int64)
        out[f"colour_{k}"] = np.where(present, raw["colour"][:, k], -1).astype(np.int64)
        for name, values in (("x", cx), ("y", cy), ("scale", radius), ("rotation", rotation)):
            out[f"{name}_{k}"] = np.where(present, values[:, k], np.nan).astype(f32)

    true = raw["shape"][:, 0].astype(np.int64)
    used = raw["u_spurious"] < spurious
    texture = np.where(used, _SPURIOUS_IDX[true], raw["texture"]).astype(np.int64)
    flipped = raw["u_flip"] < label_noise
    out["_labels"] = np.where(flipped, (true + raw["flip_offset"]) % _N_CLASSES, true)

    period = np.full(b, np.nan)
    angle = np.full(b, np.nan)
    off_x = np.full(b, np.nan)
    off_y = np.full(b, np.nan)
    up, ua, uo = raw["u_period"], raw["u_angle"], raw["u_offset"]
    for name, (plo, phi), amax in (
        ("stripes", (0.08, 0.25), 180.0),
        ("checker", (0.08, 0.20), 90.0),
        ("dots", (0.12, 0.22), 90.0),
    ):
        sel = texture == _TEX[name]
        period[sel] = np.maximum(size * (plo + (phi - plo) * up[sel]), _MIN_PERIOD)
        angle[sel] = amax * ua[sel]
        off_x[sel] = uo[sel, 0] * period[sel]
        if name != "stripes":  # stripes have a single phase
            off_y[sel] = uo[sel, 1] * period[sel]
    sel = texture == _TEX["noise"]
    period[sel] = size / (_NOISE_LATTICES[0] - 1)
    span_crop = (_PHOTO_SCALE - 1) * size + 1
    for name in _PHOTOS:
        sel = texture == _TEX[name]
        off_x[sel] = np.floor(uo[sel, 0] * span_crop)
        off_y[sel] = np.floor(uo[sel, 1] * span_crop)
    out["texture"] = texture
    out["texture_period"] = period.astype(f32)
    out["texture_angle"] = angle.astype(f32)
    out["texture_offset_x"] = off_x.astype(f32)
    out["texture_offset_y"] = off_y.astype(f32)

    lightness = 0.25 + 0.40 * raw["u_lightness"]
    saturation = 0.12 * raw["u_saturation"]
    hue = 360.0 * raw["u_hue"]
    contrast = 0.10 + 0.25 * raw["u_contrast"]
    e1 = np.array([2.0, -1.0, -1.0]) / math.sqrt(6.0)
    e2 = np.array([0.0, 1.0, -1.0]) / math.sqrt(2.0)
    h = np.deg2rad(hue)[:, None]
    base = lightness[:, None] + saturation[:, None] * (np.cos(h) * e1 + np.sin(h) * e2)
    out["background_lightness"] = lightness.astype(f32)
    out["background_saturation"] = saturation.astype(f32)
    out["background_hue"] = hue.astype(f32)
    out["background_contrast"] = contrast.astype(f32)
    out["background_colour_a"] = np.clip(base - contrast[:, None] / 2, 0, 1).astype(f32)
    out["background_colour_b"] = np.clip(base + contrast[:, None] / 2, 0, 1).astype(f32)

    out["spurious_used"] = used
    out["label_flipped"] = flipped
    out["true_labels"] = true
    return out


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _render_batch_size(size: int) -> int:
    """Images per render batch (about :data:`_RENDER_PIXELS` pixels, fewer, larger kernels)."""
    return max(8, _RENDER_PIXELS // size**2)


@lru_cache(maxsize=8)
def _photos(size: int) -> Tensor:
    """The brick, grass and gravel photographs of scikit-image as ``3×R×R`` intensity maps.

    Each is resized to ``R = 3 * size`` (with antialiasing) and stretched so that its 1st and
    99th percentiles map to 0 and 1. Cached per size.
    """
    import skimage.data
    from skimage.transform import resize

    side = _PHOTO_SCALE * size
    maps = []
    for name in _PHOTOS:
        photo = getattr(skimage.data, name)().astype(np.float64) / 255.0
        photo = resize(photo, (side, side), order=1, anti_aliasing=side < photo.shape[0])
        lo, hi = np.percentile(photo, [1.0, 99.0])
        maps.append(np.clip((photo - lo) / max(hi - lo, 1e-6), 0.0, 1.0))
    return torch.from_numpy(np.stack(maps).astype(np.float32))


def _render(
    fac: dict[str, npt.NDArray[Any]],
    raw: dict[str, npt.NDArray[Any]],
    sl: slice,
    size: int,
    images: Tensor,
    object_map: Tensor,
    concepts: Tensor,
) -> None:
    """Render the images ``sl`` of the world into the given contiguous buffers.

    ``images`` is ``B×3×S×S`` float32, ``object_map`` ``B×S×S`` int8 and ``concepts``
    ``B×S×S`` int64.

    Every operation on a per-pixel tensor is a single IEEE operation (``+ - * /``, ``abs``,
    ``floor``, comparisons, selections, copies): no transcendental function and no fused kernel
    whose scalar and SIMD code paths could round differently. A pixel's value therefore does not
    depend on its position in the batch, the batch size or the number of threads; cosines and
    sines of angles are computed per object in float64 numpy and rounded to float32.
    """

    def t32(a: npt.NDArray[Any]) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[sl], dtype=np.float32))

    def cos_sin(degrees: npt.NDArray[Any]) -> tuple[Tensor, Tensor]:
        rad = np.deg2rad(np.asarray(degrees[sl], dtype=np.float64))
        return torch.from_numpy(np.cos(rad).astype(np.float32)), torch.from_numpy(
            np.sin(rad).astype(np.float32)
        )

    fac_b = {k: v[sl] for k, v in fac.items()}
    texture = torch.from_numpy(fac_b["texture"])
    b = int(texture.shape[0])
    coords = torch.arange(size, dtype=torch.float32)
    t = torch.full((b, size, size), 0.5, dtype=torch.float32)
    period = t32(fac["texture_period"])
    tex_cos, tex_sin = cos_sin(fac["texture_angle"])
    off_x, off_y = t32(fac["texture_offset_x"]), t32(fac["texture_offset_y"])
    for name in TEXTURE_NAMES[1:]:
        sel = (texture == _TEX[name]).nonzero().flatten()
        if sel.numel() == 0:
            continue
        if name == "noise":
            t[sel] = _value_noise(raw, sl, sel, size)
        elif name in _PHOTOS:
            photo = _photos(size)[_PHOTOS.index(name)]
            t[sel] = _photo_crops(photo, off_x[sel], off_y[sel], size)
        else:
            t[sel] = _periodic(
                name, coords, period[sel], tex_cos[sel], tex_sin[sel], off_x[sel], off_y[sel]
            )
    col_a = t32(fac["background_colour_a"])[:, :, None, None]
    col_b = t32(fac["background_colour_b"])[:, :, None, None]
    torch.mul(t[:, None], col_b - col_a, out=images)  # a + t (b - a), not fused
    images.add_(col_a)

    # objects, slot 2 first and the target last: each paints its slot into the object map, its
    # shape concept into the concept map and its colour into the image (painting the concepts
    # here is faster than deriving them afterwards with _concepts_from, which load() uses)
    object_map.fill_(-1)
    texture_concept = texture.long() + _TEXTURE_CONCEPT0
    concepts.copy_(texture_concept[:, None, None].expand(b, size, size))
    flat_map, flat_concepts, flat_images = object_map.view(-1), concepts.view(-1), images.view(-1)
    rgb = torch.tensor([COLOUR_RGB[c] for c in COLOUR_NAMES], dtype=torch.float32)
    channel = torch.arange(3) * (size * size)
    for k in reversed(range(MAX_OBJECTS)):
        present = torch.from_numpy(fac_b[f"present_{k}"]).nonzero().flatten()
        if present.numel() == 0:
            continue
        shape = torch.from_numpy(fac_b[f"shape_{k}"])[present]
        colour = rgb[torch.from_numpy(fac_b[f"colour_{k}"])[present]]
        cx, cy = t32(fac[f"x_{k}"])[present], t32(fac[f"y_{k}"])[present]
        radius = t32(fac[f"scale_{k}"])[present]
        rot_cos, rot_sin = (c[present] for c in cos_sin(fac[f"rotation_{k}"]))
        # a square window of side `win` around each object (the shape covers at most
        # floor(2 r) + 1 pixel centres per axis); integer pixel coordinates, so the test of a
        # pixel is the same as on the full grid
        win = min(size, math.ceil(2.0 * float(radius.max())) + 2)
        ar = torch.arange(win)
        x0 = torch.floor(cx - radius).long().clamp(0, size - win)
        y0 = torch.floor(cy - radius).long().clamp(0, size - win)
        xs, ys = x0[:, None] + ar, y0[:, None] + ar  # m×win
        for s, name in enumerate(CLASS_NAMES):
            sel = (shape == s).nonzero().flatten()
            if sel.numel() == 0:
                continue
            inside = _inside(
                name,
                xs[sel].float(),
                ys[sel].float(),
                cx[sel],
                cy[sel],
                radius[sel],
                rot_cos[sel],
                rot_sin[sel],
            )
            # (object, window pixel) of every pixel inside -> flat indices into the buffers
            obj, local = inside.view(len(sel), win * win).nonzero().unbind(1)
            held = sel[obj]
            pixel = (y0[held] + local // win) * size + x0[held] + local % win
            image = present[held]
            flat = image * (size * size) + pixel
            flat_map[flat] = k
            flat_concepts[flat] = s
            flat_rgb = (image * (3 * size * size) + pixel)[:, None] + channel
            flat_images[flat_rgb] = colour[held]


def _inside(
    name: str,
    xs: Tensor,
    ys: Tensor,
    cx: Tensor,
    cy: Tensor,
    radius: Tensor,
    rot_cos: Tensor,
    rot_sin: Tensor,
) -> Tensor:
    """Hard mask ``m×H×W`` of the pixels whose centre lies inside the shape ``name``.

    ``xs`` (``m×W``) and ``ys`` (``m×H``) are the pixel coordinates of each object's window,
    ``rot_cos`` and ``rot_sin`` the cosine and sine of each rotation.
    """
    cos, sin = rot_cos[:, None, None], rot_sin[:, None, None]
    r = radius[:, None, None]
    px = (xs[:, None, :] - cx[:, None, None]) / r  # m×1×W, pointing right
    py = (cy[:, None, None] - ys[:, :, None]) / r  # m×H×1, pointing up
    u = px * cos + py * sin  # object frame: rotate by -theta
    v = py * cos - px * sin
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "ring":
        rho2 = u * u + v * v
        return (rho2 <= 1.0) & (rho2 >= RING_INNER_RATIO**2)
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) <= _SQUARE_HALF_SIDE
    if name == "triangle":  # vertices at 90°, 210°, 330°; edge normals at 270°, 30°, 150°
        c30 = math.cos(math.pi / 6)
        d = torch.maximum(-v, 0.5 * v + c30 * u.abs())
        return d <= 0.5
    if name == "cross":
        au, av = u.abs(), v.abs()
        w, a = CROSS_HALF_WIDTH, _CROSS_HALF_LENGTH
        return ((au <= w) & (av <= a)) | ((au <= a) & (av <= w))
    if name == "star":
        # the nearest tip j (largest projection a on its direction) and the distance b from
        # that direction: (a, b) lies in a wedge of ±36° around the tip at (1, 0)
        best_a = v  # tip 0 points up, direction (0, 1)
        best_b = u.abs()
        for tc, ts in _STAR_TIPS[1:]:
            proj = u * tc + v * ts
            nearer = proj > best_a
            best_a = torch.where(nearer, proj, best_a)
            best_b = torch.where(nearer, (v * tc - u * ts).abs(), best_b)
        # inside when on the origin's side of the edge from the tip (1, 0) to the inner vertex
        dx, dy = _STAR_EDGE
        return dx * best_b - dy * (best_a - 1.0) >= 0.0
    raise AssertionError(name)  # pragma: no cover


def _periodic(
    name: str,
    coords: Tensor,
    period: Tensor,
    cos: Tensor,
    sin: Tensor,
    off_x: Tensor,
    off_y: Tensor,
) -> Tensor:
    """Intensity maps ``m×S×S`` of the stripes, checker and dots textures."""
    cos, sin = cos[:, None, None], sin[:, None, None]
    p = period[:, None, None]
    x, y = coords[None, None, :], coords[None, :, None]
    u = (x * cos + y * sin + off_x[:, None, None]) / p
    if name == "stripes":  # a sharpened triangle wave, smoothstepped
        tri = (2.0 * (u - torch.floor(u)) - 1.0).abs()
        ramp = ((tri - 0.5) * _STRIPE_SHARPNESS + 0.5).clamp(0.0, 1.0)
        return ramp * ramp * (3.0 - 2.0 * ramp)
    v = (y * cos - x * sin + off_y[:, None, None]) / p
    if name == "checker":
        parity = torch.floor(u) + torch.floor(v)
        return parity - 2.0 * torch.floor(parity * 0.5)
    fu = u - torch.floor(u) - 0.5
    fv = v - torch.floor(v) - 0.5
    return (fu * fu + fv * fv <= _DOT_RADIUS**2).to(torch.float32)


def _value_noise(raw: dict[str, npt.NDArray[Any]], sl: slice, sel: Tensor, size: int) -> Tensor:
    """Smooth value noise ``m×S×S`` (two octaves, cubic), stretched to ``[0, 1]``."""
    idx = sel.numpy()
    noise: Tensor | None = None
    for key, weight in (("noise_coarse", 1.0), ("noise_fine", 0.5)):
        grid = torch.from_numpy(raw[key][sl][idx])
        octave = _cubic_upsample(grid, size)
        noise = octave if noise is None else noise + octave * weight
    assert noise is not None
    lo = noise.amin(dim=(1, 2), keepdim=True)
    hi = noise.amax(dim=(1, 2), keepdim=True)
    return (noise - lo) / (hi - lo).clamp_min(1e-6)


@lru_cache(maxsize=32)
def _cubic_weights(n_in: int, n_out: int) -> tuple[Tensor, Tensor]:
    """Taps ``n_out×4`` (long) and Catmull-Rom weights ``n_out×4`` (corners aligned)."""
    pos = np.arange(n_out, dtype=np.float64) * (n_in - 1) / (n_out - 1)
    base = np.floor(pos)
    f = (pos - base)[:, None]
    taps = np.clip(base[:, None] + np.arange(-1, 3), 0, n_in - 1).astype(np.int64)
    d = np.abs(np.arange(-1, 3)[None, :] - f)  # distance of each tap
    w = np.where(d < 1.0, 1.5 * d**3 - 2.5 * d**2 + 1.0, -0.5 * d**3 + 2.5 * d**2 - 4.0 * d + 2.0)
    return torch.from_numpy(taps), torch.from_numpy(w.astype(np.float32))


def _cubic_upsample(grid: Tensor, size: int) -> Tensor:
    """Separable cubic upsampling ``m×g×g -> m×S×S`` with unfused, position-free arithmetic."""
    taps, w = _cubic_weights(int(grid.shape[-1]), size)
    rows = grid[:, :, taps[:, 0]] * w[:, 0]  # m×g×S
    for j in range(1, 4):
        rows = rows + grid[:, :, taps[:, j]] * w[:, j]
    out = rows[:, taps[:, 0], :] * w[:, 0, None]  # m×S×S
    for j in range(1, 4):
        out = out + rows[:, taps[:, j], :] * w[:, j, None]
    return out


def _photo_crops(photo: Tensor, off_x: Tensor, off_y: Tensor, size: int) -> Tensor:
    """Crops ``m×S×S`` of a photograph at the recorded corners."""
    windows = photo.unfold(0, size, 1).unfold(1, size, 1)  # view: corner_y × corner_x × S × S
    return windows[off_y.long(), off_x.long()]


# --------------------------------------------------------------------------------------------
# concept maps
# --------------------------------------------------------------------------------------------


def _slot_values(factors: dict[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.int64]:
    """Stack ``name_0 .. name_2`` as an ``N×3`` int64 array."""
    return np.stack([factors[f"{name}_{k}"] for k in range(MAX_OBJECTS)], axis=1).astype(np.int64)


def _apply_lut(lut: npt.NDArray[np.int64], object_map: Tensor) -> Tensor:
    """Map ``object_map`` (-1..2) through a per-image table ``N×4`` to an int64 map."""
    n = object_map.shape[0]
    table = torch.from_numpy(np.ascontiguousarray(lut))
    index = object_map.reshape(n, object_map[0].numel() if n else 0).long() + 1
    return table.gather(1, index).reshape(object_map.shape)


def _concept_table(factors: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Per-image table ``N×4``: the texture concept, then the shape concept of each slot."""
    texture = factors["texture"].astype(np.int64)[:, None] + _TEXTURE_CONCEPT0
    return np.concatenate([texture, _slot_values(factors, "shape")], axis=1)


def _concepts_from(object_map: Tensor, factors: dict[str, npt.NDArray[Any]]) -> Tensor:
    """The combined concept map: shape concept on objects, texture concept on background."""
    return _apply_lut(_concept_table(factors), object_map)


def _file_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.npz`` and ``.json`` paths of a saved world."""
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    return p, p.with_suffix(".json")
