"""Static figures of similarity overlays, NMF components and transform sweeps.

The static fallback of the interactive viewer (Fong, Mordvintsev, Vedaldi & Olah, "Interactive
Similarity Overlays", VISxAI 2021; Fong, DPhil thesis, ch. 6), for papers, reports and tests:

* :func:`similarity_figure`: the photos with the similarity maps of one query location over
  them, drawn as the original draws them: grayscale (brighter = more similar), opacity 0.7,
  nearest-neighbour upscaling, the query cell painted yellow;
* :func:`nmf_figure`: the NMF components of a set of images as coloured maps;
* :func:`sweep_figure`: the similarity curve of one location across rotated or zoomed images
  (gaps where the location leaves the frame), with the corresponding cell marked on each.

Figures are built without ``pyplot``. The upscaled overlay of each panel is the second image
of its axes (``ax.images[1].get_array()``), so tests can read back exactly what is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from convscope.core.errors import InputError
from convscope.plots.images import _as_images, _as_maps, _get_cmap, _grid

if TYPE_CHECKING:
    from convscope.viewer.nmf import NMFComponents
    from convscope.viewer.transforms import TransformSweep

__all__ = ["nmf_figure", "similarity_figure", "sweep_figure", "upscale_map"]

Upscale = Literal["nearest", "bilinear"]

#: The colour of the query cell in the original code.
QUERY_COLOR = (1.0, 1.0, 0.0)
_FONTSIZE = 8


def _text(label: Any) -> str:
    # A '$' pair would switch matplotlib to mathtext; labels are shown literally.
    return str(label).replace("$", r"\$")


def upscale_map(
    values: np.ndarray | torch.Tensor, size: tuple[int, int], mode: Upscale = "nearest"
) -> np.ndarray:
    """Upscale an ``h×w`` (or ``h×w×C``) map to ``size = (H, W)``.

    ``"nearest"``: pixel ``(y, x)`` takes cell ``(floor(y·h/H), floor(x·w/W))`` (blocky, as the
    original's ``image-rendering: pixelated``); ``"bilinear"``: ``F.interpolate`` with
    ``align_corners=False``. NaN cells stay NaN with ``"nearest"``.
    """
    arr = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else values
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise InputError(f"A map must be h×w or h×w×C, got shape {arr.shape}.")
    if mode not in ("nearest", "bilinear"):
        raise InputError(f"upscale must be 'nearest' or 'bilinear', got {mode!r}.")
    H, W = int(size[0]), int(size[1])
    h, w = arr.shape[:2]
    if mode == "nearest":
        rows = np.arange(H) * h // H
        cols = np.arange(W) * w // W
        return arr[rows[:, None], cols[None, :]]
    t = torch.from_numpy(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1)[None]
    up = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[0]
    out = up.permute(1, 2, 0).numpy()
    return out if arr.ndim == 3 else out[..., 0]


def _check_opacity(opacity: float) -> float:
    if isinstance(opacity, bool) or not isinstance(opacity, (int, float)):
        raise InputError(f"opacity must be a number in [0, 1], got {opacity!r}.")
    if not 0.0 <= opacity <= 1.0:
        raise InputError(f"opacity must be in [0, 1], got {opacity!r}.")
    return float(opacity)


def _names(names: Sequence[Any] | None, n: int) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise InputError("names must be a sequence of strings, one per image, not a str.")
    if len(names) != n:
        raise InputError(f"Got {len(names)} names for {n} images; pass one per image.")
    return [_text(x) for x in names]


def _mark_cell(
    ax: Axes,
    row: int,
    col: int,
    grid: tuple[int, int],
    size: tuple[int, int],
    *,
    fill: bool,
    alpha: float = 1.0,
) -> Rectangle:
    ch, cw = size[0] / grid[0], size[1] / grid[1]
    rect = Rectangle(
        (col * cw - 0.5, row * ch - 0.5),
        cw,
        ch,
        facecolor=QUERY_COLOR if fill else "none",
        edgecolor="none" if fill else QUERY_COLOR,
        linewidth=0.0 if fill else 1.5,
        alpha=alpha,
        label="query",
    )
    ax.add_patch(rect)
    return rect


def similarity_figure(
    images: Any,
    maps: Any,
    query: tuple[int, int, int],
    *,
    names: Sequence[Any] | None = None,
    opacity: float = 0.7,
    cmap: str = "gray",
    upscale: Upscale = "nearest",
    normalize: Literal["fixed", "query"] = "fixed",
    ncols: int = 6,
    panel_size: float = 2.0,
    title: str | None = None,
) -> Figure:
    """The similarity maps of one query location drawn over every image.

    Parameters
    ----------
    images : Tensor or ndarray
        ``N×3×H×W`` images in [0, 1].
    maps : Tensor or ndarray
        ``N×h×w`` similarities of the query to every location of every image (e.g.
        :func:`convscope.viewer.similarity.query_maps`).
    query : (int, int, int)
        ``(image, row, col)`` of the query; its cell is painted yellow on its image.
    names : sequence, optional
        A title per image (shown as plain text).
    opacity : float, default 0.7
        Opacity of the overlay (0.7 in the original).
    cmap : str, default "gray"
        Matplotlib colour map (grayscale in the original: brighter = more similar).
    upscale : {"nearest", "bilinear"}, default "nearest"
        How the ``h×w`` map is resized to the image (nearest is the original's).
    normalize : {"fixed", "query"}, default "fixed"
        ``"fixed"``: the colour scale is [0, 1] (post-ReLU cosine), or [-1, 1] when a map has
        negative values; ``"query"``: min to max over all maps of this query.
    ncols : int, default 6
        Maximum columns.
    panel_size : float, default 2.0
        Panel width in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image: ``images[0]`` the photo, ``images[1]`` the upscaled map.
    """
    imgs = _as_images(images)
    map_list = _as_maps(maps, "maps")
    n = len(imgs)
    if len(map_list) != n:
        raise InputError(f"Got {len(map_list)} maps for {n} images; pass one map per image.")
    labels = _names(names, n)
    alpha = _check_opacity(opacity)
    colormap = _get_cmap(cmap)
    arrays = [np.asarray(m, dtype=np.float64) for m in map_list if m is not None]
    grid = arrays[0].shape
    if any(a.shape != grid for a in arrays):
        raise InputError("All maps must have the same h×w grid (one layer).")
    try:
        q_img, q_row, q_col = (int(v) for v in query)
    except (TypeError, ValueError):
        raise InputError(f"query must be (image, row, col), got {query!r}.") from None
    if not (0 <= q_img < n and 0 <= q_row < grid[0] and 0 <= q_col < grid[1]):
        raise InputError(
            f"query {tuple(query)} is outside the {n} images of {grid[0]}×{grid[1]} cells."
        )
    if normalize == "fixed":
        vmin, vmax = (-1.0, 1.0) if min(float(a.min()) for a in arrays) < 0 else (0.0, 1.0)
    elif normalize == "query":
        vmin = min(float(a.min()) for a in arrays)
        vmax = max(float(a.max()) for a in arrays)
        vmax = vmax if vmax > vmin else vmin + 1e-12
    else:
        raise InputError(f"normalize must be 'fixed' or 'query', got {normalize!r}.")
    fig, axes = _grid(n, ncols, panel_size, imgs[0].shape[0] / imgs[0].shape[1], bool(labels))
    for i, (ax, img, m) in enumerate(zip(axes, imgs, arrays, strict=True)):
        size = (img.shape[0], img.shape[1])
        ax.imshow(img, interpolation="nearest")
        ax.imshow(
            upscale_map(m, size, upscale),
            cmap=colormap,
            vmin=vmin,
            vmax=vmax,
            alpha=alpha,
            interpolation="nearest",
        )
        if i == q_img:
            _mark_cell(ax, q_row, q_col, grid, size, fill=True, alpha=alpha)
        if labels:
            ax.set_title(labels[i], fontsize=_FONTSIZE)
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=colormap)
    fig.colorbar(mappable, ax=axes, shrink=0.8, label="similarity")
    if title:
        fig.suptitle(_text(title), fontsize=10)
    return fig


def nmf_figure(
    nmf: NMFComponents,
    images: Any | None = None,
    *,
    mode: Literal["mix", "argmax"] = "mix",
    opacity: float = 0.7,
    names: Sequence[Any] | None = None,
    upscale: Upscale = "nearest",
    ncols: int = 6,
    panel_size: float = 2.0,
    title: str | None = None,
) -> Figure:
    """The NMF components of a set of images as coloured maps, with a legend.

    Parameters
    ----------
    nmf : NMFComponents
        From :func:`convscope.viewer.nmf.nmf_components`.
    images : Tensor or ndarray, optional
        The ``N×3×H×W`` images the activations came from; without them the coloured maps are
        shown alone at the grid's resolution.
    mode : {"mix", "argmax"}, default "mix"
        Colouring (:meth:`NMFComponents.colorize`).
    opacity : float, default 0.7
        Opacity of the coloured maps over the images.
    names : sequence, optional
        A title per image.
    upscale : {"nearest", "bilinear"}, default "nearest"
        How maps are resized to the images.
    ncols, panel_size, title
        Layout.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per image; with images, ``ax.images[1]`` holds the upscaled coloured map.
    """
    colored = nmf.colorize(mode)
    n, h, w = colored.shape[:3]
    alpha = _check_opacity(opacity)
    labels = _names(names, n)
    imgs = _as_images(images) if images is not None else None
    if imgs is not None and len(imgs) != n:
        raise InputError(f"Got {len(imgs)} images for NMF weights of {n} images.")
    aspect = imgs[0].shape[0] / imgs[0].shape[1] if imgs else h / w
    fig, axes = _grid(n, ncols, panel_size, aspect, bool(labels))
    for i, ax in enumerate(axes):
        if imgs is None:
            ax.imshow(colored[i], interpolation="nearest")
        else:
            size = (imgs[i].shape[0], imgs[i].shape[1])
            ax.imshow(imgs[i], interpolation="nearest")
            ax.imshow(
                np.clip(upscale_map(colored[i], size, upscale), 0.0, 1.0),
                alpha=alpha,
                interpolation="nearest",
            )
        if labels:
            ax.set_title(labels[i], fontsize=_FONTSIZE)
    handles = [
        Patch(facecolor=tuple(c), label=f"component {k + 1}")
        for k, c in enumerate(np.asarray(nmf.colors))
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5))
    suffix = f" at {nmf.layer}" if nmf.layer else ""
    fig.suptitle(_text(title) if title else f"NMF, {nmf.k} components{_text(suffix)}", fontsize=10)
    return fig


def sweep_figure(
    sweep: TransformSweep,
    row: int,
    col: int,
    *,
    panel_size: float = 1.2,
    title: str | None = None,
) -> Figure:
    """The similarity curve of location ``(row, col)`` across a transform sweep.

    Top: the curve against the transformation parameter, with gaps where the location falls
    outside the frame (the article plots points only "if they exist"). Bottom: every
    transformed image with the corresponding cell outlined in yellow.

    Parameters
    ----------
    sweep : TransformSweep
        From :func:`convscope.viewer.transforms.transform_sweep`.
    row, col : int
        The location in the original image's grid.
    panel_size : float, default 1.2
        Width of one image panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` holds the curve (``lines[0]``), ``fig.axes[1:]`` the images.
    """
    curve = sweep.curve(row, col)
    values = np.asarray(sweep.values, dtype=np.float64)
    t = len(values)
    images = _as_images(sweep.images, "sweep.images")
    h, w = sweep.curves.shape[1:]
    corr = np.asarray(sweep.correspondence)
    fig = Figure(figsize=(max(4.0, t * panel_size), 2.6 + panel_size), layout="constrained")
    spec = fig.add_gridspec(2, t, height_ratios=[2.2, panel_size])
    ax = fig.add_subplot(spec[0, :])
    ax.plot(values, curve, marker="o", markersize=3, color="C0")
    if sweep.kind == "scale":
        ax.set_xscale("log", base=2)
        ax.set_xlabel("scale", fontsize=_FONTSIZE)
    else:
        ax.set_xlabel("rotation (degrees)", fontsize=_FONTSIZE)
    ax.set_ylabel("cosine similarity", fontsize=_FONTSIZE)
    finite = curve[np.isfinite(curve)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    ax.set_ylim(low - 0.02, 1.05)
    ax.tick_params(labelsize=_FONTSIZE)
    ax.set_title(
        _text(title)
        if title
        else f"{sweep.kind} sweep at {_text(sweep.layer)}, cell ({row}, {col})",
        fontsize=9,
    )
    for k in range(t):
        img_ax = fig.add_subplot(spec[1, k])
        img_ax.set_axis_off()
        img_ax.imshow(images[k], interpolation="nearest")
        r, c = (int(v) for v in corr[k, row, col])
        if r >= 0:
            _mark_cell(img_ax, r, c, (h, w), images[k].shape[:2], fill=False)
        img_ax.set_title(f"{values[k]:g}", fontsize=7)
    return fig
