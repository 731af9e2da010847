r"""Similarity of a location to its transformed self: rotation and scale sweeps.

Theory
------
The overlay article (Fong, Mordvintsev, Vedaldi & Olah, VISxAI 2021; Fong, DPhil thesis,
ch. 6) asks how stable a location's representation is under a geometric transformation. The
image :math:`x` is transformed by a sequence of parameters :math:`t_1, \dots, t_T` (rotation
angles, zoom factors); for a location :math:`(i, j)` of the layer's grid, the *corresponding*
location :math:`\pi_t(i, j)` in the transformed image is found by applying the same
transformation to grid coordinates, and the curve

.. math:: c_{ij}(t) = s\big(z_{ij}(x),\, z_{\pi_t(i, j)}(T_t x)\big)

is plotted against :math:`t` (:math:`s` the ε-cosine of :mod:`convscope.viewer.similarity`).
It is 1 (up to ε) at the identity. A location whose content leaves the frame has no
correspondent: its curve is missing there (NaN), as the article plots points only "if they
exist".

Geometry (shared exactly by the image transforms and the correspondences):

* pixel and cell *centres* are the coordinates; rotations and zooms are about the image
  centre, which is ``((H-1)/2, (W-1)/2)`` in pixel indices and ``((h-1)/2, (w-1)/2)`` in cell
  indices;
* a positive angle rotates the content counter-clockwise on screen (as torchvision's
  ``TF.rotate``): with ``(row, col)`` offsets :math:`(r, c)` from the centre, the content moves
  to :math:`(r\cos\theta - c\sin\theta,\; c\cos\theta + r\sin\theta)`; 90° is ``np.rot90``;
* a zoom by :math:`\sigma` moves content at offset :math:`p` to :math:`\sigma p`: :math:`\sigma >
  1` zooms in (the central :math:`1/\sigma` of the image fills the frame), :math:`\sigma < 1`
  zooms out with ``fill`` around;
* the feature grid is assumed to tile the image evenly with square cells (``H/h = W/w``):
  receptive fields and padding offsets are ignored, as in the original; the corresponding
  location is rounded to the nearest cell, exact halves away from the centre (so the mapping
  is mirror-symmetric).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.core.validation import check_images, number, positive_int, positive_number
from convscope.viewer.similarity import DEFAULT_EPS, layer_activations, normalized_features

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_ROTATIONS",
    "DEFAULT_SCALES",
    "TransformSweep",
    "rotate_images",
    "rotation_correspondence",
    "scale_correspondence",
    "scale_images",
    "transform_sweep",
]

#: Default angles (degrees): the article only says "fixed-degree steps".
DEFAULT_ROTATIONS: tuple[float, ...] = tuple(float(a) for a in range(-90, 91, 15))
#: Default zoom factors 2^(-1 … 1) in steps of 0.25 (the article does not give its values).
DEFAULT_SCALES: tuple[float, ...] = tuple(2.0 ** (e / 4) for e in range(-4, 5))

Kind = Literal["rotation", "scale"]


def _check_fill(fill: float) -> float:
    value = number(fill, "fill")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"fill is a pixel value and must be in [0, 1] (0 = black), got {fill!r}.")
    return value


def _warp(x: Tensor, theta: Tensor, fill: float) -> Tensor:
    """Sample ``x`` at ``theta @ (output coordinates)``, in normalised image coordinates."""
    n = x.shape[0]
    grid = F.affine_grid(
        theta.to(x.dtype).expand(n, 2, 3).to(x.device), list(x.shape), align_corners=False
    )
    # Sampling x - fill with zero padding and adding fill back blends the border with fill.
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def rotate_images(x: Tensor, angle_degrees: float, *, fill: float = 0.0) -> Tensor:
    r"""Rotate images about their centre, counter-clockwise for positive angles.

    Bilinear, no expansion (the frame keeps its size); pixels coming from outside are
    ``fill``. The content at offset :math:`(r, c)` (rows, columns) from the centre
    ``((H-1)/2, (W-1)/2)`` moves to :math:`(r\cos\theta - c\sin\theta, c\cos\theta +
    r\sin\theta)`, which :func:`rotation_correspondence` applies to grid cells.

    Parameters
    ----------
    x : Tensor
        ``N×3×H×W`` images in [0, 1].
    angle_degrees : float
        Angle θ in degrees.
    fill : float, default 0.0
        Value of the pixels outside the original frame.

    Returns
    -------
    Tensor
        ``N×3×H×W`` rotated images (``x`` cloned when the angle is 0).
    """
    angle = number(angle_degrees, "angle_degrees")
    fill = _check_fill(fill)
    check_images(x)
    if angle == 0.0:
        return x.clone()
    h, w = x.shape[-2:]
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    # Output (col, row) offset q samples the input at R^-1 q; normalised coordinates differ in
    # scale per axis (2/W, 2/H), hence the aspect factors.
    theta = torch.tensor(
        [[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=torch.float64
    ).unsqueeze(0)
    return _warp(x, theta, fill)


def scale_images(x: Tensor, scale: float, *, fill: float = 0.0) -> Tensor:
    """Zoom images about their centre by ``scale``, bilinear, keeping the frame size.

    ``scale > 1`` zooms in: the central ``1/scale`` of the image fills the frame. ``scale < 1``
    zooms out, with ``fill`` around the shrunken image. Content at offset ``p`` from the centre
    ``((H-1)/2, (W-1)/2)`` moves to ``scale·p`` (:func:`scale_correspondence`).

    Parameters
    ----------
    x : Tensor
        ``N×3×H×W`` images in [0, 1].
    scale : float
        Positive zoom factor.
    fill : float, default 0.0
        Value of the pixels outside the original frame.

    Returns
    -------
    Tensor
        ``N×3×H×W`` images (``x`` cloned when ``scale == 1``).
    """
    s = positive_number(scale, "scale")
    fill = _check_fill(fill)
    check_images(x)
    if s == 1.0:
        return x.clone()
    theta = torch.tensor([[1.0 / s, 0.0, 0.0], [0.0, 1.0 / s, 0.0]], dtype=torch.float64)
    return _warp(x, theta.unsqueeze(0), fill)


def _check_grid(height: int, width: int) -> None:
    for value, what in ((height, "height"), (width, "width")):
        positive_int(value, what, hint="It counts grid cells.")


def _round_from_center(p: np.ndarray, center: float) -> np.ndarray:
    # Rounding to 9 decimals first removes 1e-16 trigonometric noise; exact halves go away
    # from the centre so that the mapping stays mirror-symmetric.
    t = np.round(p, 9)
    return np.where(t >= center, np.floor(t + 0.5), np.ceil(t - 0.5)).astype(np.int64)


def _round_inside(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    r = _round_from_center(rows, (height - 1) / 2.0)
    c = _round_from_center(cols, (width - 1) / 2.0)
    out = np.stack([r, c], axis=-1)
    outside = (r < 0) | (r >= height) | (c < 0) | (c >= width)
    out[outside] = -1
    return out


def _grid_offsets(height: int, width: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    cr, cc = (height - 1) / 2.0, (width - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return rows - cr, cols - cc, cr, cc


def rotation_correspondence(height: int, width: int, angle_degrees: float) -> np.ndarray:
    r"""Where the content of each grid cell lands after :func:`rotate_images`.

    Cell ``(i, j)`` at offset :math:`(r, c)` from the grid centre ``((h-1)/2, (w-1)/2)`` goes
    to :math:`(r\cos\theta - c\sin\theta, c\cos\theta + r\sin\theta)`, rounded to the nearest
    cell (the original's ``get_rot_coords``; receptive fields ignored).

    Parameters
    ----------
    height, width : int
        Grid size ``h×w``.
    angle_degrees : float
        Angle θ, counter-clockwise for positive values.

    Returns
    -------
    ndarray
        ``h×w×2`` int64 ``(row, col)`` of the target cell, ``(-1, -1)`` where it falls outside.
    """
    _check_grid(height, width)
    rad = math.radians(number(angle_degrees, "angle_degrees"))
    dr, dc, cr, cc = _grid_offsets(height, width)
    cos, sin = math.cos(rad), math.sin(rad)
    return _round_inside(cr + dr * cos - dc * sin, cc + dc * cos + dr * sin, height, width)


def scale_correspondence(height: int, width: int, scale: float) -> np.ndarray:
    """Where the content of each grid cell lands after :func:`scale_images`.

    ``(i' - c) = scale·(i - c)`` per axis, about the grid centre ``c = ((h-1)/2, (w-1)/2)``,
    rounded to the nearest cell.

    Returns
    -------
    ndarray
        ``h×w×2`` int64 ``(row, col)`` of the target cell, ``(-1, -1)`` where it falls outside.
    """
    _check_grid(height, width)
    s = positive_number(scale, "scale")
    dr, dc, cr, cc = _grid_offsets(height, width)
    return _round_inside(cr + s * dr, cc + s * dc, height, width)


@dataclasses.dataclass
class TransformSweep(Result):
    """Similarity of every location to its correspondent across transformed images.

    Attributes
    ----------
    kind : str
        ``"rotation"`` (values in degrees) or ``"scale"`` (zoom factors).
    values : ndarray
        ``(T,)`` transformation parameters.
    images : Tensor
        ``T×3×H×W`` transformed images.
    layer : str
        The layer.
    features : Tensor
        ``T×h×w×D`` float32 normalised features of the transformed images.
    source_features : Tensor
        ``h×w×D`` normalised features of the original image.
    correspondence : ndarray
        ``T×h×w×2`` int64 target cell of each source cell, -1 outside.
    curves : ndarray
        ``T×h×w`` float32: ``curves[t, i, j] = s(source[i, j], features[t, corr[t, i, j]])``,
        NaN where the location falls outside.
    eps : float
        The ε of the cosine.
    activations : Tensor or None
        ``T×D×h×w`` float32 raw activations of the transformed images (before normalisation),
        kept when ``transform_sweep(..., keep_activations=True)``; None otherwise.
    """

    kind: str
    values: np.ndarray
    images: Tensor
    layer: str
    features: Tensor
    source_features: Tensor
    correspondence: np.ndarray
    curves: np.ndarray
    eps: float
    activations: Tensor | None = None

    def curve(self, row: int, col: int) -> np.ndarray:
        """The ``(T,)`` similarity curve of location ``(row, col)`` (NaN where missing)."""
        h, w = self.curves.shape[1:]
        for value, size, what in ((row, h, "row"), (col, w, "col")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"{what} must be an int, got {value!r}.")
            if not 0 <= value < size:
                raise InputError(f"{what}={value} is outside the {h}×{w} grid.")
        return np.asarray(self.curves[:, row, col])

    def plot(self, row: int, col: int, **kwargs: Any) -> Figure:
        """The curve of ``(row, col)`` and the transformed images with its cell marked; see
        :func:`convscope.plots.viewer.sweep_figure`."""
        from convscope.plots.viewer import sweep_figure

        return sweep_figure(self, row, col, **kwargs)


def _check_values(kind: str, values: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if kind not in ("rotation", "scale"):
        raise InputError(f"kind must be 'rotation' or 'scale', got {kind!r}.")
    if values is None:
        return np.asarray(DEFAULT_ROTATIONS if kind == "rotation" else DEFAULT_SCALES)
    if isinstance(values, (str, bytes)):
        raise InputError(f"values must be a sequence of numbers, got {values!r}.")
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"values must be a sequence of numbers, got {values!r}.") from None
    if arr.size == 0:
        raise InputError("values is empty: pass at least one angle or scale.")
    if not np.isfinite(arr).all():
        raise InputError(f"values must be finite, got {values!r}.")
    if kind == "scale" and (arr <= 0).any():
        raise InputError(f"scale values must be positive zoom factors, got {values!r}.")
    return arr


def transform_sweep(
    model: nn.Module,
    input: Tensor,
    layer: str,
    *,
    kind: Kind = "rotation",
    values: Sequence[float] | np.ndarray | None = None,
    eps: float = DEFAULT_EPS,
    fill: float = 0.0,
    batch_size: int | None = None,
    keep_activations: bool = False,
) -> TransformSweep:
    r"""Rotate or zoom one image and follow every location's similarity to itself.

    For each value :math:`t`: :math:`c_{ij}(t) = s(z_{ij}(x), z_{\pi_t(i,j)}(T_t x))` with the
    ε-cosine :math:`s`, the transformation :math:`T_t` (:func:`rotate_images` or
    :func:`scale_images`) and the grid correspondence :math:`\pi_t`
    (:func:`rotation_correspondence`, :func:`scale_correspondence`); NaN where :math:`\pi_t(i,
    j)` is outside the grid (Fong et al., VISxAI 2021, "geometric transformations").

    Parameters
    ----------
    model : nn.Module
        The model (with its normalisation).
    input : Tensor
        One image, ``1×3×H×W`` or ``3×H×W``, in [0, 1].
    layer : str
        A convolutional layer (its output ``N×D×h×w``).
    kind : {"rotation", "scale"}, default "rotation"
        The transformation.
    values : sequence of float, optional
        Angles in degrees (default −90…90 in 15° steps) or zoom factors (default
        :math:`2^{-1}, 2^{-0.75}, \dots, 2^{1}`).
    eps : float, default 1e-4
        The ε of the cosine.
    fill : float, default 0.0
        Value of pixels coming from outside the frame (black; the zero padding of the network
        shows as border sensitivity, as the thesis notes).
    batch_size : int, optional
        Images per forward pass.
    keep_activations : bool, default False
        Also keep the raw activations of the transformed images (``.activations``), e.g. to
        pool them without running the model again.

    Returns
    -------
    TransformSweep
        The transformed images, features, correspondences and curves.
    """
    if not isinstance(input, Tensor):
        check_images(input)
    x = input.unsqueeze(0) if input.ndim == 3 else input
    check_images(x)
    if x.shape[0] != 1:
        raise InputError(
            f"transform_sweep takes one image (1×3×H×W), got {x.shape[0]}; pass input[i:i+1]."
        )
    vals = _check_values(kind, values)
    if not isinstance(layer, str):
        raise InputError(f"layer must be one layer name (a str), got {layer!r}.")
    warp = rotate_images if kind == "rotation" else scale_images
    transformed = torch.cat([warp(x, float(v), fill=fill) for v in vals])
    acts = layer_activations(model, torch.cat([x, transformed]), layer, batch_size=batch_size)
    feats = normalized_features(acts[layer], eps=eps).float()
    source, features = feats[0], feats[1:]
    h, w = source.shape[:2]
    H, W = x.shape[-2:]
    if kind == "rotation" and abs(H / h - W / w) > 1e-9:
        warnings.warn(
            f"The {h}×{w} grid of {layer!r} does not tile the {H}×{W} image with square cells; "
            "rotating grid coordinates then only approximates the rotation of the image.",
            UserWarning,
            stacklevel=2,
        )
    corr_fn = rotation_correspondence if kind == "rotation" else scale_correspondence
    corr = np.stack([corr_fn(h, w, float(v)) for v in vals])
    inside = corr[..., 0] >= 0
    t_idx = np.arange(len(vals))[:, None, None]
    picked = features.numpy()[t_idx, np.maximum(corr[..., 0], 0), np.maximum(corr[..., 1], 0)]
    curves = np.einsum("tijd,ijd->tij", picked, source.numpy()).astype(np.float32)
    curves[~inside] = np.nan
    return TransformSweep(
        kind=kind,
        values=vals,
        images=transformed,
        layer=layer,
        features=features.contiguous(),
        source_features=source.contiguous(),
        correspondence=corr,
        curves=curves,
        eps=float(eps),
        activations=acts[layer][1:].contiguous() if keep_activations else None,
    )
