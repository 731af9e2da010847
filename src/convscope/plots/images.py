"""Figure helpers for images, masks, label maps, heatmaps and bar charts.

Every plotting function returns a :class:`matplotlib.figure.Figure` created directly (not
through ``pyplot``), so nothing touches global state or needs a display; save it with
``fig.savefig(path)`` or put it in a report with :class:`convscope.report.Figure`.

Images follow the convscope convention: float tensors ``N×3×H×W`` (or one ``3×H×W``) in
``[0, 1]``; numpy arrays are accepted too, as are channel-last arrays (``N×H×W×3``) and
single-channel images. Masks, heatmaps and label maps are ``N×H×W`` (or one ``H×W``).
The pure array functions (:func:`overlay_array`, :func:`mask_outline`, :func:`draw_mask`,
:func:`label_map_to_rgb`, :func:`label_colors`) return ``H×W×3`` float arrays, for tests and
custom figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, SupportsFloat, TypeAlias

import matplotlib as mpl
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from convscope.core.errors import InputError
from convscope.core.validation import positive_int, positive_number

__all__ = [
    "bar_chart",
    "draw_mask",
    "heatmap_overlay",
    "image_grid",
    "label_colors",
    "label_map_grid",
    "label_map_to_rgb",
    "mask_outline",
    "normalize_heatmap",
    "overlay_array",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.int64]
Array: TypeAlias = torch.Tensor | np.ndarray[Any, Any]
ImagesLike: TypeAlias = Array | Sequence[Array]
MapsLike: TypeAlias = Array | Sequence[Array]
MasksLike: TypeAlias = Array | Sequence[Array | None]
Normalization: TypeAlias = Literal["per_image", "global", "symmetric"] | None
Color: TypeAlias = tuple[float, float, float]

_NORMALIZATIONS = ("per_image", "global", "symmetric", None)
_TITLE_FONTSIZE = 8


# --------------------------------------------------------------------------- input handling


def _to_numpy(x: Any, what: str) -> np.ndarray[Any, Any]:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, bytes)) or x is None:
        raise InputError(f"{what} must be a tensor or an array, got {type(x).__name__}.")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} could not be converted to an array ({exc}).") from None


def _image_to_hwc(arr: np.ndarray[Any, Any], what: str) -> FloatArray:
    """One image, ``C×H×W`` or ``H×W×C`` with C in {1, 3}, to float ``H×W×3`` in [0, 1]."""
    if arr.ndim != 3:
        raise InputError(f"{what} must have rank 3 (3×H×W), got shape {tuple(arr.shape)}.")
    if arr.shape[0] in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    elif arr.shape[-1] not in (1, 3):
        raise InputError(
            f"{what} has shape {tuple(arr.shape)}: expected 3 (or 1) channels, as 3×H×W."
        )
    if arr.dtype == np.bool_:
        out = arr.astype(np.float64)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float64) / 255.0  # by dtype, never by content
    elif np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"{what} has integer dtype {arr.dtype}; pass floats in [0, 1] or uint8 (0-255)."
        )
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float64)
    else:
        raise InputError(f"{what} has unsupported dtype {arr.dtype}.")
    if not np.isfinite(out).all():
        raise InputError(f"{what} contains NaN or infinite values.")
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.clip(out, 0.0, 1.0)


def _as_images(images: ImagesLike, what: str = "images") -> list[FloatArray]:
    """Normalise images to a list of float ``H×W×3`` arrays in [0, 1]."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        arr = _to_numpy(images, what)
        if arr.ndim == 3:
            return [_image_to_hwc(arr, what)]
        if arr.ndim == 4:
            if arr.shape[0] == 0:
                raise InputError(f"{what} is empty.")
            return [_image_to_hwc(a, f"{what}[{i}]") for i, a in enumerate(arr)]
        raise InputError(
            f"{what} must have rank 4 (N×3×H×W) or 3 (3×H×W), got shape {tuple(arr.shape)}."
        )
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if len(images) == 0:
            raise InputError(f"{what} is empty.")
        return [
            _image_to_hwc(_to_numpy(a, f"{what}[{i}]"), f"{what}[{i}]")
            for i, a in enumerate(images)
        ]
    raise InputError(f"{what} must be a tensor, an array or a sequence of them.")


def _as_maps(maps: Any, what: str, allow_none: bool = False) -> list[np.ndarray[Any, Any] | None]:
    """Normalise ``N×H×W`` / ``N×1×H×W`` / ``H×W`` / sequences to a list of 2-D arrays."""
    if isinstance(maps, (torch.Tensor, np.ndarray)):
        arr = _to_numpy(maps, what)
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            return [arr]
        if arr.ndim == 3:
            return list(arr)
        raise InputError(
            f"{what} must have rank 3 (N×H×W) or 2 (H×W), got shape {tuple(arr.shape)}."
        )
    if isinstance(maps, Sequence) and not isinstance(maps, (str, bytes)):
        out: list[np.ndarray[Any, Any] | None] = []
        for i, m in enumerate(maps):
            if m is None and allow_none:
                out.append(None)
                continue
            a = _to_numpy(m, f"{what}[{i}]")
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            if a.ndim != 2:
                raise InputError(f"{what}[{i}] must have rank 2 (H×W), got shape {tuple(a.shape)}.")
            out.append(a)
        return out
    raise InputError(f"{what} must be a tensor, an array or a sequence of them.")


def _check_count(items: Sequence[Any] | None, n: int, what: str) -> None:
    if items is not None and len(items) != n:
        raise InputError(f"Got {len(items)} {what} for {n} images; pass one per image.")


def _check_titles(titles: Sequence[str] | None, n: int) -> list[str] | None:
    if titles is None:
        return None
    if isinstance(titles, str):
        raise InputError("titles must be a sequence of strings, one per image, not a str.")
    _check_count(titles, n, "titles")
    return [str(t) for t in titles]


def _check_color(color: Sequence[float], what: str) -> FloatArray:
    arr = np.asarray(color, dtype=np.float64)
    if arr.shape != (3,) or not np.all((arr >= 0) & (arr <= 1)):
        raise InputError(f"{what} must be an RGB triple in [0, 1], got {color!r}.")
    return arr


def _get_cmap(cmap: str | Colormap) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    try:
        return mpl.colormaps[cmap]
    except KeyError:
        raise InputError(f"Unknown colormap {cmap!r}. Use a matplotlib name like 'jet'.") from None


# --------------------------------------------------------------------------- grid layout


def _grid(
    n_panels: int,
    ncols: int,
    panel_size: float,
    aspect: float,
    with_titles: bool,
    extra_width: float = 0.0,
) -> tuple[Figure, list[Axes]]:
    """Create a constrained-layout figure with ``n_panels`` image axes (extra ones hidden)."""
    cols = min(ncols, n_panels)
    rows = math.ceil(n_panels / cols)
    title_h = 0.28 if with_titles else 0.05
    figsize = (cols * panel_size + extra_width, rows * (panel_size * aspect + title_h) + 0.1)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes:
        ax.set_axis_off()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _show(ax: Axes, rgb: FloatArray, title: str | None) -> None:
    ax.imshow(rgb, interpolation="nearest", vmin=0.0, vmax=1.0)
    if title:
        ax.set_title(title, fontsize=_TITLE_FONTSIZE)


def _aspect(shape: tuple[int, ...]) -> float:
    return float(shape[0]) / float(max(shape[1], 1))


# --------------------------------------------------------------------------- masks


def mask_outline(mask: Array) -> BoolArray:
    """Return the boundary pixels of a boolean mask.

    A pixel is on the boundary if it is in the mask and at least one of its 8 neighbours is
    not (the region outside the image counts as "not in the mask", so masks touching the image
    border get a closed outline). This is ``mask & ~erode(mask, 3×3)``.

    Parameters
    ----------
    mask : Tensor or ndarray
        ``H×W`` mask (nonzero = inside).

    Returns
    -------
    ndarray of bool
        ``H×W`` boundary.

    Raises
    ------
    InputError
        If ``mask`` is not 2-D.
    """
    m = _to_numpy(mask, "mask")
    if m.ndim != 2:
        raise InputError(f"mask must have rank 2 (H×W), got shape {tuple(m.shape)}.")
    m = m.astype(bool)
    H, W = m.shape
    padded = np.pad(m, 1, constant_values=False)
    eroded = np.ones_like(m)
    for dy in range(3):
        for dx in range(3):
            eroded &= padded[dy : dy + H, dx : dx + W]
    return m & ~eroded


def draw_mask(
    image: Array,
    mask: Array,
    color: Sequence[float] = (1.0, 0.0, 0.0),
    mode: Literal["outline", "fill"] = "outline",
    alpha: float = 0.4,
) -> FloatArray:
    """Draw a mask into an image, pixel-exactly.

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` (or ``H×W×3``) in [0, 1].
    mask : Tensor or ndarray
        ``H×W`` mask.
    color : RGB triple, default red
        Colour of the outline / fill, in [0, 1].
    mode : {"outline", "fill"}, default "outline"
        ``"outline"`` paints the :func:`mask_outline` pixels with ``color``; ``"fill"`` blends
        ``color`` into every mask pixel with opacity ``alpha``.
    alpha : float, default 0.4
        Fill opacity (``mode="fill"`` only).

    Returns
    -------
    ndarray
        ``H×W×3`` float image in [0, 1].
    """
    img = _as_images(image, "image")
    if len(img) != 1:
        raise InputError("draw_mask takes one image (3×H×W).")
    return _draw_mask(img[0], _to_numpy(mask, "mask"), _check_color(color, "color"), mode, alpha)


def _draw_mask(
    rgb: FloatArray, mask: np.ndarray[Any, Any], color: FloatArray, mode: str, alpha: float
) -> FloatArray:
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != rgb.shape[:2]:
        raise InputError(
            f"mask shape {tuple(mask.shape)} does not match the image size {rgb.shape[:2]}."
        )
    if mode not in ("outline", "fill"):
        raise InputError(f"mask_mode must be 'outline' or 'fill', got {mode!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"mask alpha must be in [0, 1], got {alpha!r}.")
    out = rgb.copy()
    if mode == "outline":
        out[mask_outline(mask)] = color
    else:
        m = mask.astype(bool)
        out[m] = (1.0 - alpha) * out[m] + alpha * color
    return out


def image_grid(
    images: ImagesLike,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    masks: MasksLike | None = None,
    mask_color: Sequence[float] = (1.0, 0.0, 0.0),
    mask_mode: Literal["outline", "fill"] = "outline",
    panel_size: float = 1.6,
    *,
    mask_alpha: float = 0.4,
    title: str | None = None,
) -> Figure:
    """Show images in a grid, optionally with boolean masks drawn on them.

    Parameters
    ----------
    images : Tensor, ndarray or sequence of them
        ``N×3×H×W`` (or one ``3×H×W``) in [0, 1]; a sequence may mix sizes.
    titles : sequence of str, optional
        One title per image.
    ncols : int, default 8
        Maximum number of columns.
    masks : Tensor, ndarray or sequence, optional
        ``N×H×W`` masks (or a sequence with ``None`` for images without a mask).
    mask_color : RGB triple, default (1, 0, 0)
        Mask colour in [0, 1].
    mask_mode : {"outline", "fill"}, default "outline"
        Draw the 1-pixel boundary (see :func:`mask_outline`) or a translucent fill.
    panel_size : float, default 1.6
        Width of one panel, in inches.
    mask_alpha : float, default 0.4
        Fill opacity for ``mask_mode="fill"``.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    InputError
        For wrong ranks, mismatched counts or sizes, or bad options.
    """
    imgs = _as_images(images)
    n = len(imgs)
    names = _check_titles(titles, n)
    positive_int(ncols, "ncols")
    positive_number(panel_size, "panel_size")
    color = _check_color(mask_color, "mask_color")
    if mask_mode not in ("outline", "fill"):
        raise InputError(f"mask_mode must be 'outline' or 'fill', got {mask_mode!r}.")
    if masks is not None:
        mask_list = _as_maps(masks, "masks", allow_none=True)
        _check_count(mask_list, n, "masks")
        imgs = [
            img if m is None else _draw_mask(img, m, color, mask_mode, mask_alpha)
            for img, m in zip(imgs, mask_list, strict=True)
        ]
    fig, axes = _grid(n, ncols, panel_size, _aspect(imgs[0].shape), names is not None)
    for i, (ax, img) in enumerate(zip(axes, imgs, strict=True)):
        _show(ax, img, names[i] if names else None)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- label maps


def _listed_colors(name: str, n: int) -> FloatArray:
    return np.asarray(mpl.colormaps[name](np.arange(n)), dtype=np.float64)[:, :3]


def label_colors(n: int) -> FloatArray:
    """Return ``n`` distinct qualitative RGB colours; colour ``k`` depends only on ``k``.

    The first 10 are matplotlib's ``tab10``, then the light ``tab20`` shades, ``tab20b``,
    ``tab20c``, then golden-ratio hues.

    Parameters
    ----------
    n : int
        Number of colours.

    Returns
    -------
    ndarray
        ``n×3`` floats in [0, 1].
    """
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}.")
    base = np.concatenate(
        [
            _listed_colors("tab10", 10),
            _listed_colors("tab20", 20)[1::2],
            _listed_colors("tab20b", 20),
            _listed_colors("tab20c", 20),
        ]
    )
    if n <= len(base):
        return base[:n].copy()
    hsv = mpl.colormaps["hsv"]
    extra = [hsv((k * 0.618033988749895) % 1.0)[:3] for k in range(n - len(base))]
    return np.concatenate([base, np.asarray(extra, dtype=np.float64)])


def _check_label_map(lm: np.ndarray[Any, Any], what: str, n_names: int | None) -> IntArray:
    if lm.dtype == np.bool_:
        lm = lm.astype(np.int64)
    elif np.issubdtype(lm.dtype, np.floating):
        if not np.all(np.isfinite(lm)) or not np.all(lm == np.round(lm)):
            raise InputError(f"{what} must hold integer labels (-1 = unlabelled).")
    elif not np.issubdtype(lm.dtype, np.integer):
        raise InputError(f"{what} has unsupported dtype {lm.dtype}.")
    out = lm.astype(np.int64)
    if out.size and out.min() < -1:
        raise InputError(f"{what} has label {out.min()}; labels must be >= -1 (-1 = unlabelled).")
    if n_names is not None and out.size and out.max() >= n_names:
        raise InputError(
            f"{what} has label {out.max()} but only {n_names} names were given; pass one name "
            "per label index."
        )
    return out


def label_map_to_rgb(
    label_map: Array,
    n_labels: int | None = None,
    unlabelled_color: Sequence[float] = (0.85, 0.85, 0.85),
) -> FloatArray:
    """Colour a categorical map with :func:`label_colors` (label ``k`` → colour ``k``).

    Parameters
    ----------
    label_map : Tensor or ndarray
        ``H×W`` integer labels; ``-1`` means unlabelled.
    n_labels : int, optional
        Number of valid labels (labels must be below it). Defaults to ``max + 1``.
    unlabelled_color : RGB triple, default light grey
        Colour of ``-1`` pixels.

    Returns
    -------
    ndarray
        ``H×W×3`` floats in [0, 1].
    """
    lm = _to_numpy(label_map, "label_map")
    if lm.ndim != 2:
        raise InputError(f"label_map must have rank 2 (H×W), got shape {tuple(lm.shape)}.")
    labels = _check_label_map(lm, "label_map", n_labels)
    return _labels_rgb(labels, _check_color(unlabelled_color, "unlabelled_color"))


def _labels_rgb(labels: IntArray, unlabelled: FloatArray) -> FloatArray:
    palette = label_colors(int(labels.max(initial=-1)) + 1)
    rgb = np.empty((*labels.shape, 3), dtype=np.float64)
    rgb[...] = unlabelled
    valid = labels >= 0
    rgb[valid] = palette[labels[valid]]
    return rgb


def label_map_grid(
    label_maps: MapsLike,
    names: Sequence[str],
    ncols: int = 8,
    images: ImagesLike | None = None,
    max_legend: int = 20,
    *,
    titles: Sequence[str] | None = None,
    panel_size: float = 1.6,
    unlabelled_color: Sequence[float] = (0.85, 0.85, 0.85),
    title: str | None = None,
) -> Figure:
    """Show categorical label maps with one consistent colour per label and a legend.

    Parameters
    ----------
    label_maps : Tensor, ndarray or sequence of them
        ``N×H×W`` integer labels indexing ``names``; ``-1`` = unlabelled (grey).
    names : sequence of str
        Name of each label index.
    ncols : int, default 8
        Maximum number of items per row (an item is two panels when ``images`` is given).
    images : Tensor, ndarray or sequence, optional
        ``N×3×H×W`` images shown to the left of their label map.
    max_legend : int, default 20
        Maximum number of legend entries; when more labels are present the most frequent
        ones are listed and the rest summarised as "+k more".
    titles : sequence of str, optional
        One title per item.
    panel_size : float, default 1.6
        Width of one panel, in inches.
    unlabelled_color : RGB triple, default light grey
        Colour of ``-1`` pixels.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the legend lists only the labels present in the maps.

    Raises
    ------
    InputError
        For wrong ranks, labels outside ``[-1, len(names))``, mismatched counts or sizes.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InputError("names must be a sequence of label names.")
    raw = _as_maps(label_maps, "label_maps")
    if not raw:
        raise InputError("label_maps is empty.")
    maps = [
        _check_label_map(m, f"label_maps[{i}]", len(names))
        for i, m in enumerate(raw)
        if m is not None
    ]
    n = len(maps)
    item_titles = _check_titles(titles, n)
    positive_int(ncols, "ncols")
    positive_number(panel_size, "panel_size")
    max_legend = positive_int(max_legend, "max_legend")
    grey = _check_color(unlabelled_color, "unlabelled_color")
    imgs: list[FloatArray] | None = None
    if images is not None:
        imgs = _as_images(images)
        _check_count(imgs, n, "images")
        for i, (img, m) in enumerate(zip(imgs, maps, strict=True)):
            if img.shape[:2] != m.shape:
                raise InputError(
                    f"images[{i}] is {img.shape[:2]} but label_maps[{i}] is {m.shape}."
                )

    palette = label_colors(len(names))
    counts = np.zeros(len(names), dtype=np.int64)
    for m in maps:
        valid = m[m >= 0]
        counts += np.bincount(valid, minlength=len(names))[: len(names)]

    per_item = 2 if imgs is not None else 1
    n_panels = n * per_item
    present = np.flatnonzero(counts)
    shown = present
    if len(present) > max_legend:
        top = np.argsort(-counts[present], kind="stable")[:max_legend]
        shown = np.sort(present[top])
    legend_w = 0.0
    if len(shown):
        longest = max(len(str(names[int(k)])) for k in shown)
        legend_w = min(0.4 + 0.07 * longest, 3.0) * (2 if len(shown) > 18 else 1)
    fig, axes = _grid(
        n_panels,
        ncols * per_item,
        panel_size,
        _aspect(maps[0].shape),
        item_titles is not None,
        extra_width=legend_w,
    )
    for i, m in enumerate(maps):
        label = item_titles[i] if item_titles else None
        rgb = _labels_rgb(m, grey)
        if imgs is not None:
            _show(axes[2 * i], imgs[i], label)
            _show(axes[2 * i + 1], rgb, None)
        else:
            _show(axes[i], rgb, label)

    if len(shown):
        handles = [
            Patch(facecolor=tuple(palette[k]), edgecolor="0.3", label=str(names[int(k)]))
            for k in shown
        ]
        if len(present) > len(shown):
            handles.append(
                Patch(
                    facecolor="none", edgecolor="none", label=f"+{len(present) - len(shown)} more"
                )
            )
        fig.legend(
            handles=handles,
            loc="outside right upper",
            fontsize=7,
            frameon=False,
            ncols=2 if len(handles) > 18 else 1,
        )
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- heatmaps


def normalize_heatmap(
    heatmap: Array,
    normalize: Normalization = "per_image",
    value_range: tuple[float, float] | None = None,
) -> FloatArray:
    """Map a heatmap to [0, 1].

    Parameters
    ----------
    heatmap : Tensor or ndarray
        ``h×w`` values.
    normalize : {"per_image", "global", "symmetric", None}, default "per_image"
        ``"per_image"`` / ``"global"``: min-max to [0, 1] (a constant map gives zeros; for a
        single map both are the same); ``"symmetric"``: ``0.5 + 0.5·v / max|v|`` so 0 maps to
        0.5 (use a diverging colormap, e.g. ``"bwr"``); ``None``: values are clipped to [0, 1].
    value_range : (float, float), optional
        Explicit ``(low, high)`` mapped to (0, 1), overriding ``normalize`` (values clipped).

    Returns
    -------
    ndarray
        ``h×w`` floats in [0, 1].
    """
    h = _to_numpy(heatmap, "heatmap")
    if h.ndim == 3 and h.shape[0] == 1:
        h = h[0]
    if h.ndim != 2:
        raise InputError(f"heatmap must have rank 2 (h×w), got shape {tuple(h.shape)}.")
    if normalize not in _NORMALIZATIONS:
        raise InputError(
            f"normalize must be 'per_image', 'global', 'symmetric' or None, got {normalize!r}."
        )
    h = h.astype(np.float64)
    if not np.isfinite(h).all():
        raise InputError("heatmap contains NaN or infinite values.")
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            return np.zeros_like(h)
        return np.clip((h - lo) / (hi - lo), 0.0, 1.0)
    if normalize in ("per_image", "global"):
        lo, hi = float(h.min()), float(h.max())
        return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    if normalize == "symmetric":
        m = float(np.abs(h).max())
        return 0.5 + 0.5 * h / m if m > 0 else np.full_like(h, 0.5)
    return np.clip(h, 0.0, 1.0)


def _resize(h: FloatArray, size: tuple[int, int]) -> FloatArray:
    if h.shape == size:
        return h
    t = torch.from_numpy(np.ascontiguousarray(h))[None, None]
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


def _blend(rgb: FloatArray, heat01: FloatArray, cmap: Colormap, alpha: float) -> FloatArray:
    colored = np.asarray(cmap(_resize(heat01, rgb.shape[:2])), dtype=np.float64)[..., :3]
    return np.clip((1.0 - alpha) * rgb + alpha * colored, 0.0, 1.0)


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise InputError(f"alpha must be in [0, 1], got {alpha!r}.")


def overlay_array(
    image: Array,
    heatmap: Array,
    cmap: str | Colormap = "jet",
    alpha: float = 0.5,
    normalize: Normalization = "per_image",
    value_range: tuple[float, float] | None = None,
) -> FloatArray:
    """Blend a colour-mapped heatmap into an image.

    The heatmap is normalised (:func:`normalize_heatmap`), upsampled to the image size with
    bilinear interpolation (``torch.nn.functional.interpolate``, ``align_corners=False``),
    coloured with ``cmap`` and blended: ``(1 - alpha) · image + alpha · cmap(heat)``.

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` (or ``H×W×3``) in [0, 1].
    heatmap : Tensor or ndarray
        ``h×w`` heatmap (any size; typically smaller than the image).
    cmap : str or Colormap, default "jet"
        Matplotlib colormap.
    alpha : float, default 0.5
        Heatmap opacity in [0, 1]: 0 gives the image, 1 the coloured heatmap.
    normalize : {"per_image", "global", "symmetric", None}, default "per_image"
        See :func:`normalize_heatmap`.
    value_range : (float, float), optional
        Explicit value range, overriding ``normalize``.

    Returns
    -------
    ndarray
        ``H×W×3`` floats in [0, 1].
    """
    imgs = _as_images(image, "image")
    if len(imgs) != 1:
        raise InputError("overlay_array takes one image (3×H×W); use heatmap_overlay for a batch.")
    _check_alpha(alpha)
    heat = normalize_heatmap(heatmap, normalize, value_range)
    return _blend(imgs[0], heat, _get_cmap(cmap), float(alpha))


def heatmap_overlay(
    images: ImagesLike,
    heatmaps: MapsLike,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    cmap: str | Colormap = "jet",
    alpha: float = 0.5,
    normalize: Normalization = "per_image",
    panel_size: float = 1.6,
    *,
    colorbar: bool = False,
    title: str | None = None,
) -> Figure:
    """Show heatmaps (e.g. attribution maps) blended over their images.

    Parameters
    ----------
    images : Tensor, ndarray or sequence of them
        ``N×3×H×W`` images in [0, 1].
    heatmaps : Tensor, ndarray or sequence of them
        ``N×h×w`` (or ``N×1×h×w``) heatmaps; each is upsampled bilinearly to its image size.
    titles : sequence of str, optional
        One title per image.
    ncols : int, default 8
        Maximum number of columns.
    cmap : str or Colormap, default "jet"
        Matplotlib colormap.
    alpha : float, default 0.5
        Heatmap opacity in [0, 1].
    normalize : {"per_image", "global", "symmetric", None}, default "per_image"
        ``"global"`` uses one min-max range over all heatmaps, so panels are comparable; see
        :func:`normalize_heatmap` for the others.
    panel_size : float, default 1.6
        Width of one panel, in inches.
    colorbar : bool, default False
        Add a colour bar (in heatmap units for ``"global"`` and ``None``, else normalised).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    InputError
        For wrong ranks, mismatched counts, non-finite heatmaps or bad options.
    """
    imgs = _as_images(images)
    n = len(imgs)
    heats = [h for h in _as_maps(heatmaps, "heatmaps") if h is not None]
    _check_count(heats, n, "heatmaps")
    names = _check_titles(titles, n)
    positive_int(ncols, "ncols")
    positive_number(panel_size, "panel_size")
    _check_alpha(alpha)
    if normalize not in _NORMALIZATIONS:
        raise InputError(
            f"normalize must be 'per_image', 'global', 'symmetric' or None, got {normalize!r}."
        )
    colormap = _get_cmap(cmap)
    value_range: tuple[float, float] | None = None
    bar_range = (-1.0, 1.0) if normalize == "symmetric" else (0.0, 1.0)
    if normalize == "global":
        arrays = [np.asarray(h, dtype=np.float64) for h in heats]
        if not all(np.isfinite(a).all() for a in arrays):
            raise InputError("heatmaps contain NaN or infinite values.")
        value_range = (min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays))
        bar_range = value_range
    blended = [
        _blend(img, normalize_heatmap(h, normalize, value_range), colormap, float(alpha))
        for img, h in zip(imgs, heats, strict=True)
    ]
    fig, axes = _grid(
        n,
        ncols,
        panel_size,
        _aspect(imgs[0].shape),
        names is not None,
        extra_width=0.6 if colorbar else 0.0,
    )
    for i, (ax, rgb) in enumerate(zip(axes, blended, strict=True)):
        _show(ax, rgb, names[i] if names else None)
    if colorbar:
        lo, hi = bar_range
        mappable = ScalarMappable(norm=Normalize(lo, hi if hi > lo else lo + 1.0), cmap=colormap)
        cb = fig.colorbar(mappable, ax=axes, shrink=0.8, fraction=0.05)
        cb.ax.tick_params(labelsize=7)
        if normalize in ("per_image", "symmetric"):
            cb.set_label("normalised per image", fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- bar chart


def _bar_data(
    values: Mapping[str, SupportsFloat] | tuple[Sequence[str], Any],
) -> tuple[list[str], list[float]]:
    if isinstance(values, Mapping):
        names = [str(k) for k in values]
        raw: Any = list(values.values())
    elif isinstance(values, (tuple, list)) and len(values) == 2:
        names_seq, raw = values
        if isinstance(names_seq, str) or not isinstance(names_seq, Sequence):
            raise InputError("bar_chart: names must be a sequence of strings.")
        names = [str(k) for k in names_seq]
    else:
        raise InputError("bar_chart values must be a dict {name: value} or a (names, values) pair.")
    nums: list[float] = []
    for i, v in enumerate(raw.tolist() if isinstance(raw, (torch.Tensor, np.ndarray)) else raw):
        if isinstance(v, (torch.Tensor, np.ndarray, np.generic)):
            v = np.asarray(v).item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"bar_chart value {i} ({v!r}) is not a number.")
        nums.append(float(v))
    if len(nums) != len(names):
        raise InputError(f"bar_chart got {len(names)} names but {len(nums)} values.")
    if not names:
        raise InputError("bar_chart got no values.")
    return names, nums


def bar_chart(
    values: Mapping[str, SupportsFloat] | tuple[Sequence[str], Any],
    title: str | None = None,
    ylabel: str | None = None,
    ylim: tuple[float, float] | None = None,
    reference: float | None = None,
    *,
    reference_label: str | None = None,
    value_format: str = ".3f",
    color: str | Sequence[float] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Bar chart with the value written on each bar (e.g. accuracies).

    Parameters
    ----------
    values : dict or (names, values)
        ``{name: value}`` or a pair of sequences (values may be a tensor / array).
    title : str, optional
        Axes title.
    ylabel : str, optional
        Y axis label.
    ylim : (float, float), optional
        Y axis limits, e.g. ``(0, 1)`` for accuracies.
    reference : float, optional
        Draw a dashed horizontal line at this value (e.g. chance level).
    reference_label : str, optional
        Legend label of the reference line.
    value_format : str, default ".3f"
        :func:`format` spec of the bar labels; NaN values are labelled "n/a".
    color : matplotlib colour, optional
        Bar colour (default: the first ``tab10`` colour).
    figsize : (float, float), optional
        Figure size in inches; by default it grows with the number of bars.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    InputError
        For mismatched names / values, non-numeric values or a bad ``value_format``.
    """
    names, nums = _bar_data(values)
    try:
        labels = ["n/a" if math.isnan(v) else format(v, value_format) for v in nums]
    except ValueError:
        raise InputError(f"value_format {value_format!r} is not a valid format spec.") from None
    if ylim is not None and (len(ylim) != 2 or not ylim[1] > ylim[0]):
        raise InputError(f"ylim must be (low, high) with low < high, got {ylim!r}.")
    n = len(names)
    size = figsize or (max(3.5, 0.55 * n + 1.5), 3.2)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    heights = [0.0 if math.isnan(v) else v for v in nums]
    bar_color = mpl.colormaps["tab10"](0) if color is None else color
    bars = ax.bar(range(n), heights, color=bar_color, width=0.7)
    ax.bar_label(bars, labels=labels, padding=2, fontsize=8)
    ax.set_xticks(range(n))
    rotate = n > 6 or max(len(s) for s in names) > 10
    ax.set_xticklabels(
        names, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8
    )
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        ax.margins(y=0.15)
    if reference is not None:
        ax.axhline(float(reference), ls="--", lw=1, color="0.35", label=reference_label, zorder=0)
        if reference_label:
            ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig
