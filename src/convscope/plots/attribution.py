r"""Figures for attribution by perturbation (meaningful and extremal perturbations).

These reproduce the figures of Fong & Vedaldi, "Interpretable Explanations of Black Boxes
by Meaningful Perturbation" (ICCV 2017, "MP") and Fong, Patrick & Vedaldi, "Understanding
Deep Networks via Extremal Perturbations and Smooth Masks" (ICCV 2019, "EP"), chapters 3-4
of Ruth Fong's thesis.

Conventions. A perturbation mask :math:`m \in [0, 1]^{H \times W}` has ``1 = keep`` (the
pixel is shown as is) and ``0 = perturb`` (blurred, replaced by a constant or noise); the
perturbed image is :math:`m \otimes x = m \cdot x + (1 - m) \cdot \tilde{x}`. EP masks for an
area :math:`a` keep a fraction :math:`a` of the image; areas are fractions in ``[0, 1]``
(``0.1`` is drawn as "10%"). For clarity EP draws the perturbed region in black
(:math:`m \cdot x`, EP Fig. 1); ``black_out=True`` does that.

The area sweep (EP Figs. 3 and 5) plots, for each area :math:`a`, the preservation score
:math:`\Phi(m_a \otimes x)`, the deletion score :math:`\Phi((1 - m_a) \otimes x)` and their
ratio to :math:`\Phi_0 = \Phi(x)`; the optimal area is the smallest :math:`a` whose
preservation score reaches :math:`\tau \Phi_0`,
:math:`a^* = \min\{a : \Phi(m_a \otimes x) \ge \tau \Phi_0\}`. Channel attribution (EP §5,
Fig. 8) does the same with the number of channels kept at a layer, and its saliency map is
:math:`\sum_k m_k \Phi_k^l(x)` (eq. 11).

Like :mod:`convscope.plots.images`, every function takes plain tensors or arrays (images
``3×H×W`` / ``N×3×H×W`` / channel-last, in ``[0, 1]``), returns a
:class:`matplotlib.figure.Figure` built without ``pyplot`` and never shows it. Saliency maps
use the same colormap as :func:`~convscope.plots.images.heatmap_overlay` (``"jet"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from convscope.core.errors import InputError
from convscope.core.validation import positive_int, positive_number
from convscope.plots.images import (
    _TITLE_FONTSIZE,
    Array,
    FloatArray,
    ImagesLike,
    MapsLike,
    Normalization,
    _as_images,
    _as_maps,
    _aspect,
    _blend,
    _check_alpha,
    _draw_mask,
    _get_cmap,
    _resize,
    _to_numpy,
    heatmap_overlay,
    normalize_heatmap,
)

__all__ = [
    "area_curves",
    "area_sweep_strip",
    "channel_curve",
    "channel_saliency_overlay",
    "mask_overlay",
    "method_grid",
    "optimisation_history",
    "perturbation_panel",
    "sanity_cascade",
]

VectorLike: TypeAlias = Array | Sequence[float]

_CMAP = "jet"  # heatmap_overlay's default: one saliency colormap across convscope figures
_PRESERVE = "tab:blue"
_DELETE = "tab:orange"
_FULL = "tab:green"
_BLURRED = "tab:red"
_A_STAR = "tab:purple"
_SATURATED = "navy"
_SMALL = 7
_MASK_TOL = 1e-6  # optimisers overshoot [0, 1] by rounding only


# --------------------------------------------------------------------------- input handling


def _one_image(image: ImagesLike, what: str = "image") -> FloatArray:
    imgs = _as_images(image, what)
    if len(imgs) != 1:
        raise InputError(
            f"{what} must be one image (3×H×W or 1×3×H×W), got {len(imgs)}; pass image[i]."
        )
    return imgs[0]


def _squeeze_2d(arr: np.ndarray[Any, Any], what: str) -> np.ndarray[Any, Any]:
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"{what} must be one H×W map (or 1×H×W), got shape {tuple(arr.shape)}.")
    return arr


def _finite_2d(arr: np.ndarray[Any, Any], what: str) -> FloatArray:
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} has unsupported dtype {arr.dtype}.")
    out = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InputError(f"{what} contains NaN or infinite values.")
    return out


def _mask01(arr: np.ndarray[Any, Any], what: str, size: tuple[int, int]) -> FloatArray:
    """A perturbation mask as floats in [0, 1], upsampled bilinearly to ``size``."""
    m = _finite_2d(_squeeze_2d(arr, what), what)
    lo, hi = float(m.min()), float(m.max())
    if lo < -_MASK_TOL or hi > 1.0 + _MASK_TOL:
        raise InputError(
            f"{what} values must lie in [0, 1] (1 = keep), got range [{lo:.3g}, {hi:.3g}]; "
            "for an unbounded saliency map use heatmap_overlay or method_grid."
        )
    return np.clip(_resize(np.clip(m, 0.0, 1.0), size), 0.0, 1.0)


def _single_mask(mask: Array, what: str, size: tuple[int, int]) -> FloatArray:
    return _mask01(_to_numpy(mask, what), what, size)


def _mask_list(masks: MapsLike, what: str, size: tuple[int, int]) -> list[FloatArray]:
    raw = _as_maps(masks, what)
    if not raw:
        raise InputError(f"{what} is empty.")
    return [_mask01(m, f"{what}[{i}]", size) for i, m in enumerate(raw) if m is not None]


def _vector(values: VectorLike, what: str, n: int | None = None, n_what: str = "") -> FloatArray:
    if isinstance(values, (str, bytes)) or values is None:
        raise InputError(f"{what} must be a sequence of numbers, got {type(values).__name__}.")
    arr = _to_numpy(values, what)
    if arr.ndim != 1:
        raise InputError(f"{what} must be 1-D (one value each), got shape {tuple(arr.shape)}.")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must hold numbers, got dtype {arr.dtype}.")
    out = arr.astype(np.float64)
    if len(out) == 0:
        raise InputError(f"{what} is empty.")
    if not np.isfinite(out).all():
        raise InputError(f"{what} contains NaN or infinite values.")
    if n is not None and len(out) != n:
        raise InputError(f"Got {len(out)} {what} for {n} {n_what}; pass one per {n_what[:-1]}.")
    return out


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "item"):
        arr = np.asarray(_to_numpy(value, what))
        if arr.size != 1:
            raise InputError(f"{what} must be one number, got shape {tuple(arr.shape)}.")
        value = arr.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{what} must be a number, got {value!r}.")
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {value!r}.")
    return float(value)


def _find(values: FloatArray, target: float, what: str, among: str) -> int:
    """Index of ``target`` in ``values`` (up to float rounding)."""
    hits = np.flatnonzero(np.isclose(values, target, rtol=1e-6, atol=1e-9))
    if len(hits) == 0:
        listed = ", ".join(f"{v:g}" for v in values)
        raise InputError(f"{what}={target:g} is not one of the {among} ({listed}); pass one.")
    return int(hits[0])


def _check_areas(a: FloatArray, what: str = "areas") -> None:
    if a.min() < 0.0 or a.max() > 1.0:
        raise InputError(
            f"{what} must be fractions of the image in [0, 1] (0.1 = 10%), got range "
            f"[{a.min():g}, {a.max():g}]."
        )


def _names(titles: Sequence[str] | None, n: int, what: str, of: str) -> list[str] | None:
    if titles is None:
        return None
    if isinstance(titles, str) or not isinstance(titles, Sequence):
        raise InputError(f"{what} must be a sequence of strings, one per {of}, not a str.")
    if len(titles) != n:
        raise InputError(f"Got {len(titles)} {what} for {n} {of}s; pass one per {of}.")
    return [str(t) for t in titles]


def _cmap_alpha(cmap: str | Colormap, alpha: float) -> Colormap:
    _check_alpha(alpha)
    return _get_cmap(cmap)


# --------------------------------------------------------------------------- drawing helpers


def _area_label(area: float) -> str:
    """``0.1`` → ``"10%"`` (three significant digits, so ``0.025`` → ``"2.5%"``)."""
    return f"{100.0 * area:.3g}%"


def _plain(ax: Axes) -> None:
    """An image panel that, unlike ``set_axis_off``, still draws x/y labels and a frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _frame(ax: Axes, color: str, width: float = 2.5) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def _inset(ax: Axes, text: str) -> None:
    """The boxed label in the top-left corner (EP Figs. 1-3 show the area this way)."""
    ax.text(
        0.04,
        0.96,
        text,
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=_SMALL,
        bbox={"boxstyle": "square,pad=0.2", "facecolor": "white", "edgecolor": "black", "lw": 0.6},
    )


def _imshow(ax: Axes, rgb: FloatArray, title: str | None = None) -> None:
    ax.imshow(rgb, interpolation="nearest", vmin=0.0, vmax=1.0)
    _plain(ax)
    if title:
        ax.set_title(title, fontsize=_TITLE_FONTSIZE)


def _panels(
    rows: int, cols: int, panel_size: float, aspect: float, title_lines: int, extra: float = 0.0
) -> tuple[Figure, np.ndarray[Any, Any]]:
    # titles sit on the top row only; 0.08 in of padding between rows
    title_h = 0.16 * title_lines + (0.05 if title_lines else 0.0)
    figsize = (cols * panel_size + extra, rows * (panel_size * aspect + 0.08) + title_h + 0.15)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _mask_rgb(
    rgb: FloatArray, mask: FloatArray, black_out: bool, cmap: Colormap, alpha: float
) -> FloatArray:
    if black_out:
        return rgb * mask[..., None]
    return _blend(rgb, mask, cmap, alpha)


# --------------------------------------------------------------------------- 1. mask overlay


def mask_overlay(
    image: Array,
    mask: Array,
    *,
    area: float | str | None = None,
    title: str | None = None,
    black_out: bool = False,
    ax: Axes | None = None,
    cmap: str | Colormap = _CMAP,
    alpha: float = 0.5,
    panel_size: float = 2.4,
) -> Figure:
    r"""Show a perturbation mask over its image, with the area in an inset box.

    With ``black_out=False`` the mask values are coloured with ``cmap`` (fixed range
    ``[0, 1]``, no min-max rescaling, so an all-ones mask stays "hot") and blended:
    ``(1 - alpha)·x + alpha·cmap(m)``. With ``black_out=True`` the perturbed region is drawn
    black, i.e. the panel shows :math:`m \cdot x` (EP Fig. 1 / thesis Fig. 1.3: "for clarity,
    we black out the masked regions; in practice, the network sees blurred regions").

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` (or ``1×3×H×W`` / ``H×W×3``) in [0, 1].
    mask : Tensor or ndarray
        ``H×W`` (or ``1×H×W`` / ``1×1×H×W``) mask in [0, 1], ``1 = keep``; a smaller mask
        is upsampled bilinearly.
    area : float or str, optional
        Area fraction shown in the inset box as ``"a = 10%"``, or a ready-made label (e.g.
        ``"a* = 5%"``).
    title : str, optional
        Panel title (e.g. the class and its score).
    black_out : bool, default False
        Show :math:`m \cdot x` instead of the heatmap overlay.
    ax : matplotlib Axes, optional
        Draw into this axes (of your own figure) instead of a new figure.
    cmap : str or Colormap, default "jet"
        Colormap of the overlay.
    alpha : float, default 0.5
        Overlay opacity in [0, 1].
    panel_size : float, default 2.4
        Figure width in inches when a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or the figure holding ``ax``.

    Raises
    ------
    InputError
        If the image is not one image, the mask is not 2-D, not finite or outside [0, 1],
        or ``area`` is not a fraction in [0, 1].
    """
    rgb = _one_image(image)
    m = _single_mask(mask, "mask", rgb.shape[:2])
    colormap = _cmap_alpha(cmap, alpha)
    label: str | None = None
    if isinstance(area, str):
        label = area
    elif area is not None:
        value = _scalar(area, "area")
        _check_areas(np.array([value]), "area")
        label = f"a = {_area_label(value)}"
    if ax is None:
        positive_number(panel_size, "panel_size")
        fig, axes = _panels(1, 1, panel_size, _aspect(rgb.shape), 1 if title else 0)
        ax = axes[0, 0]
    else:
        root = ax.get_figure(root=True)
        if root is None:
            raise InputError("ax is not attached to a figure; create it with fig.add_subplot().")
        fig = root
    _imshow(ax, _mask_rgb(rgb, m, black_out, colormap, float(alpha)), title)
    if label:
        _inset(ax, label)
    return fig


# --------------------------------------------------------------------------- 2. area sweep strip


def area_sweep_strip(
    image: Array,
    masks: MapsLike,
    areas: VectorLike,
    ratios: VectorLike,
    *,
    cap: float = 1.25,
    a_star: float | None = None,
    titles: Sequence[str] | None = None,
    tau: float = 1.0,
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    r"""The area-growth strip of EP Fig. 5: masks for increasing areas and their scores.

    Top row: the image blacked out by each mask (:math:`m_a \cdot x`) with its area in an
    inset box. Bottom: a bar per mask, under its panel, of the normalised preservation score
    :math:`\Phi(m_a \otimes x) / \Phi_0` with :math:`\Phi_0 = \Phi(x)`. As in the paper the
    bars saturate at ``cap`` (1.25: "saturates after exceeding :math:`\Phi_0` by 25%"): a bar
    above it is drawn at height ``cap``, hatched, with its true value written on it. A dashed
    line marks :math:`\tau` (1 in the paper); the optimal area
    :math:`a^* = \min\{a : \Phi(m_a \otimes x) \ge \tau\Phi_0\}`, if given, is framed (panel)
    and outlined (bar) in purple.

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` in [0, 1].
    masks : Tensor, ndarray or sequence
        ``K×1×H×W`` (or ``K×H×W``) masks in [0, 1], one per area, ``1 = keep``.
    areas : sequence of float
        The ``K`` areas, fractions in [0, 1].
    ratios : sequence of float
        The ``K`` values :math:`\Phi(m_a \otimes x) / \Phi(x)`.
    cap : float, default 1.25
        Bars are drawn no higher than this.
    a_star : float, optional
        The optimal area; must be one of ``areas``.
    titles : sequence of str, optional
        One title per mask panel.
    tau : float, default 1.0
        Height of the threshold line; must not exceed ``cap``.
    panel_size : float, default 1.4
        Width of one mask panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``K`` image axes, then the bar axes (``fig.axes[-1]``).

    Raises
    ------
    InputError
        If the counts of masks, areas, ratios or titles differ, a value is not finite, an
        area is outside [0, 1], ``cap`` is not positive or below ``tau``, or ``a_star`` is
        not one of ``areas``.
    """
    rgb = _one_image(image)
    mask_list = _mask_list(masks, "masks", rgb.shape[:2])
    k = len(mask_list)
    a = _vector(areas, "areas", k, "masks")
    _check_areas(a)
    r = _vector(ratios, "ratios", k, "masks")
    names = _names(titles, k, "titles", "mask")
    cap_v = _scalar(cap, "cap")
    tau_v = _scalar(tau, "tau")
    if cap_v <= 0 or cap_v < tau_v:
        raise InputError(f"cap must be positive and at least tau={tau_v:g}, got {cap_v:g}.")
    star = None if a_star is None else _find(a, _scalar(a_star, "a_star"), "a_star", "areas")
    positive_number(panel_size, "panel_size")

    aspect = _aspect(rgb.shape)
    title_h = 0.25 if names else 0.05
    bar_h = 1.5
    fig = Figure(
        figsize=(max(k * panel_size, 3.0) + 0.5, panel_size * aspect + title_h + bar_h),
        layout="constrained",
    )
    grid = fig.add_gridspec(2, k, height_ratios=[panel_size * aspect + title_h, bar_h])
    for i, m in enumerate(mask_list):
        ax = fig.add_subplot(grid[0, i])
        _imshow(ax, rgb * m[..., None], names[i] if names else None)
        _inset(ax, _area_label(float(a[i])))
        if i == star:
            _frame(ax, _A_STAR)

    bar_ax = fig.add_subplot(grid[1, :])
    saturated = r > cap_v
    heights = np.minimum(r, cap_v)
    x = np.arange(k)
    bars = bar_ax.bar(
        x,
        heights,
        width=0.6,
        color=[_SATURATED if s else _PRESERVE for s in saturated],
        edgecolor=[_A_STAR if i == star else "none" for i in range(k)],
        linewidth=2.0,
    )
    for s in np.flatnonzero(saturated):
        bars[s].set_hatch("//")
        bar_ax.text(x[s], cap_v, f"{r[s]:.2f}", ha="center", va="top", fontsize=6, color="white")
    bar_ax.axhline(tau_v, ls="--", lw=1, color="0.3")
    bar_ax.text(k - 0.5, tau_v, " τ", ha="left", va="center", fontsize=8, clip_on=False)
    bar_ax.set_xlim(-0.5, k - 0.5)
    lo = min(0.0, float(r.min()))
    bar_ax.set_ylim(lo - 0.05 * (cap_v - lo) if lo < 0 else 0.0, cap_v + 0.05 * (cap_v - lo))
    bar_ax.set_xticks(x)
    bar_ax.set_xticklabels(
        [("a* = " if i == star else "") + _area_label(float(v)) for i, v in enumerate(a)],
        fontsize=_SMALL,
    )
    bar_ax.tick_params(axis="y", labelsize=_SMALL)
    bar_ax.set_ylabel("Φ(m⊗x) / Φ(x)", fontsize=_SMALL)
    bar_ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- 3. area curves


def area_curves(
    areas: VectorLike,
    preserve_scores: VectorLike | None,
    delete_scores: VectorLike | None,
    *,
    full_score: float,
    blurred_score: float,
    a_star: float | None = None,
    ylabel: str = "score",
    title: str | None = None,
    figsize: tuple[float, float] = (4.2, 3.0),
) -> Figure:
    r"""Preservation and deletion scores against the mask area (EP Fig. 3, right).

    Plots :math:`\Phi(m_a \otimes x)` (preservation, blue) and
    :math:`\Phi((1 - m_a) \otimes x)` (deletion, orange) against :math:`a`, with horizontal
    reference lines at the score of the full image :math:`\Phi(x)` (green) and of the fully
    perturbed (blurred) image (red). Where the blue curve crosses green, preserving ``a`` of
    the image is as good as keeping all of it; where orange meets red, deleting ``a`` is as
    bad as deleting everything. Points are joined in increasing area.

    Parameters
    ----------
    areas : sequence of float
        Areas, fractions in [0, 1] (the x axis is in percent).
    preserve_scores, delete_scores : sequence of float or None
        One score per area; pass ``None`` to leave a curve out (not both).
    full_score : float
        :math:`\Phi(x)`.
    blurred_score : float
        The score of the fully perturbed image, :math:`\Phi(0 \otimes x)`.
    a_star : float, optional
        Draw a dotted vertical line at the optimal area.
    ylabel : str, default "score"
        Y axis label (e.g. "logit", "softmax").
    title : str, optional
        Axes title.
    figsize : (float, float), default (4.2, 3.0)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its lines are, in order, preservation, deletion, full, blurred, a*.

    Raises
    ------
    InputError
        If the score counts differ from the number of areas, a value is not finite, an area
        (or ``a_star``) is outside [0, 1], or both curves are ``None``.
    """
    a = _vector(areas, "areas")
    _check_areas(a)
    n = len(a)
    curves = [
        (_vector(s, what, n, "areas"), color, label)
        for s, what, color, label in (
            (preserve_scores, "preserve_scores", _PRESERVE, "preservation Φ(m⊗x)"),
            (delete_scores, "delete_scores", _DELETE, "deletion Φ((1−m)⊗x)"),
        )
        if s is not None
    ]
    if not curves:
        raise InputError("Pass preserve_scores or delete_scores (or both); both are None.")
    full = _scalar(full_score, "full_score")
    blurred = _scalar(blurred_score, "blurred_score")
    star = None if a_star is None else _scalar(a_star, "a_star")
    if star is not None:
        _check_areas(np.array([star]), "a_star")

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    order = np.argsort(a, kind="stable")
    for scores, color, label in curves:
        ax.plot(a[order], scores[order], "-o", ms=3.5, lw=1.5, color=color, label=label)
    ax.axhline(full, ls="--", lw=1.2, color=_FULL, label="full image Φ(x)")
    ax.axhline(blurred, ls="--", lw=1.2, color=_BLURRED, label="fully blurred")
    if star is not None:
        ax.axvline(star, ls=":", lw=1.2, color=_A_STAR, label=f"a* = {_area_label(star)}")
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("area a", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=_SMALL)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- 4. method grid


def _method_maps(
    maps: Mapping[str, MapsLike] | Sequence[MapsLike], method_names: Sequence[str] | None, n: int
) -> tuple[list[str], list[list[FloatArray]]]:
    if isinstance(maps, Mapping):
        keys = [str(k) for k in maps]
        if method_names is None:
            names = keys
        else:
            names = _names(method_names, len(method_names), "method_names", "method") or []
            missing = [m for m in names if m not in maps]
            if missing:
                raise InputError(
                    f"method_names {missing} are not keys of maps; the keys are {keys}."
                )
        per_method = [maps[m] for m in names]
    elif isinstance(maps, Sequence) and not isinstance(maps, (str, bytes)):
        if method_names is None:
            raise InputError("maps is a list: pass method_names, one per entry (or a dict).")
        names = _names(method_names, len(maps), "method_names", "map") or []
        per_method = list(maps)
    else:
        raise InputError("maps must be a dict {method name: N×1×H×W maps} or a list of them.")
    if not names:
        raise InputError("maps is empty; pass at least one method.")
    out: list[list[FloatArray]] = []
    for name, m in zip(names, per_method, strict=True):
        what = f"maps[{name!r}]"
        raw = _as_maps(m, what)
        if len(raw) != n:
            raise InputError(f"{what} holds {len(raw)} maps for {n} images; pass one per image.")
        out.append([_finite_2d(h, f"{what}[{i}]") for i, h in enumerate(raw) if h is not None])
    return names, out


def _per_method(values: Mapping[str, Any] | None, what: str, names: list[str]) -> Mapping[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise InputError(f"{what} must be a dict {{method name: values}}.")
    unknown = [str(k) for k in values if k not in names]
    if unknown:
        raise InputError(f"{what} has keys {unknown} that are not methods; methods: {names}.")
    return values


def method_grid(
    images: ImagesLike,
    maps: Mapping[str, MapsLike] | Sequence[MapsLike],
    *,
    method_names: Sequence[str] | None = None,
    masks: MapsLike | None = None,
    row_titles: Sequence[str] | None = None,
    scores: Mapping[str, VectorLike] | None = None,
    points: Mapping[str, Array] | None = None,
    hits: Mapping[str, Array] | None = None,
    normalize: Normalization = "per_image",
    cmap: str | Colormap = _CMAP,
    alpha: float = 0.5,
    score_format: str = ".2f",
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    """Compare attribution methods: one row per image, one column per method.

    The first column shows the image (with the ground-truth mask outlined in red when
    ``masks`` is given); each further column shows one method's map blended over the image
    (MP Fig. 2, EP Fig. 2). Optional per-cell annotations: a score in the bottom-right
    corner, and a marker at a point (e.g. the pointing-game maximum) that is a green circle
    for a hit and a red cross for a miss when ``hits`` is given, else a white circle.

    Parameters
    ----------
    images : Tensor, ndarray or sequence
        ``N×3×H×W`` images in [0, 1].
    maps : dict or list
        ``{method name: N×1×h×w maps}`` (columns in dict order), or a list of such tensors
        with ``method_names``. Maps are upsampled bilinearly to the image size.
    method_names : sequence of str, optional
        Column names for a list of maps; for a dict, selects and orders its keys.
    masks : Tensor, ndarray or sequence, optional
        ``N×H×W`` ground-truth masks, outlined on the images.
    row_titles : sequence of str, optional
        One label per image, written left of the row.
    scores : dict, optional
        ``{method name: N values}`` written in the cells.
    points : dict, optional
        ``{method name: N×2 (y, x)}`` points in image pixel coordinates.
    hits : dict, optional
        ``{method name: N booleans}``; chooses the marker of each point.
    normalize : {"per_image", "global", "symmetric", None}, default "per_image"
        How each map is scaled to [0, 1] (see :func:`~convscope.plots.normalize_heatmap`);
        ``"global"`` shares one range down each method's column.
    cmap : str or Colormap, default "jet"
        Saliency colormap.
    alpha : float, default 0.5
        Overlay opacity.
    score_format : str, default ".2f"
        Format spec of ``scores``.
    panel_size : float, default 1.4
        Width of one panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``N × (1 + M)`` axes in row-major order, each holding one image.

    Raises
    ------
    InputError
        For mismatched counts or shapes, unknown method names in ``scores`` / ``points`` /
        ``hits``, non-finite values or bad options.
    """
    imgs = _as_images(images)
    n = len(imgs)
    names, method_maps = _method_maps(maps, method_names, n)
    rows = _names(row_titles, n, "row_titles", "image")
    colormap = _cmap_alpha(cmap, alpha)
    if normalize not in ("per_image", "global", "symmetric", None):
        raise InputError(
            f"normalize must be 'per_image', 'global', 'symmetric' or None, got {normalize!r}."
        )
    try:
        format(0.0, score_format)
    except ValueError:
        raise InputError(f"score_format {score_format!r} is not a valid format spec.") from None
    positive_number(panel_size, "panel_size")
    shown = list(imgs)
    if masks is not None:
        mask_list = _as_maps(masks, "masks", allow_none=True)
        if len(mask_list) != n:
            raise InputError(f"Got {len(mask_list)} masks for {n} images; pass one per image.")
        shown = [
            img if m is None else _draw_mask(img, m, np.array([1.0, 0.0, 0.0]), "outline", 0.0)
            for img, m in zip(imgs, mask_list, strict=True)
        ]
    score_vals = {
        k: _vector(v, f"scores[{k!r}]", n, "images")
        for k, v in _per_method(scores, "scores", names).items()
    }
    point_vals: dict[str, FloatArray] = {}
    for k, v in _per_method(points, "points", names).items():
        p = _to_numpy(v, f"points[{k!r}]").astype(np.float64)
        if p.shape != (n, 2) or not np.isfinite(p).all():
            raise InputError(
                f"points[{k!r}] must be N×2 finite (y, x) pixel coordinates with N={n}, "
                f"got shape {tuple(p.shape)}."
            )
        point_vals[k] = p
    hit_vals: dict[str, np.ndarray[Any, Any]] = {}
    for k, v in _per_method(hits, "hits", names).items():
        if k not in point_vals:
            raise InputError(f"hits[{k!r}] given without points[{k!r}]; pass the points too.")
        h = _to_numpy(v, f"hits[{k!r}]").reshape(-1)
        if len(h) != n:
            raise InputError(f"Got {len(h)} hits[{k!r}] for {n} images; pass one per image.")
        hit_vals[k] = h.astype(bool)

    m_count = len(names)
    fig, axes = _panels(
        n, 1 + m_count, panel_size, _aspect(imgs[0].shape), 1, 0.25 if rows else 0.0
    )
    for j, name in enumerate(names):
        col = method_maps[j]
        value_range: tuple[float, float] | None = None
        if normalize == "global":
            value_range = (min(float(h.min()) for h in col), max(float(h.max()) for h in col))
        for i in range(n):
            ax = axes[i, j + 1]
            heat = normalize_heatmap(col[i], normalize, value_range)
            _imshow(ax, _blend(imgs[i], heat, colormap, float(alpha)), name if i == 0 else None)
            if name in score_vals:
                ax.text(
                    0.96,
                    0.04,
                    format(float(score_vals[name][i]), score_format),
                    transform=ax.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=6,
                    bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "lw": 0},
                )
            if name in point_vals:
                y, x = point_vals[name][i]
                hit = bool(hit_vals[name][i]) if name in hit_vals else None
                xlim, ylim = ax.get_xlim(), ax.get_ylim()
                ax.plot(
                    [x],
                    [y],
                    ls="none",
                    marker="x" if hit is False else "o",
                    ms=6,
                    mew=2.0 if hit is False else 1.0,
                    mfc="white" if hit is None else ("lime" if hit else "red"),
                    mec="red" if hit is False else "black",
                )
                ax.set_xlim(xlim)  # keep the image extent if the point lies outside it
                ax.set_ylim(ylim)
    for i in range(n):
        ax = axes[i, 0]
        head = ("image + GT" if masks is not None else "image") if i == 0 else None
        _imshow(ax, shown[i], head)
        if rows:
            ax.set_ylabel(rows[i], fontsize=_TITLE_FONTSIZE)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- 5. sanity cascade


def sanity_cascade(
    image: Array,
    maps: MapsLike,
    layer_names: Sequence[str],
    *,
    correlations: VectorLike | None = None,
    original_title: str = "original",
    cmap: str | Colormap = _CMAP,
    alpha: float = 0.5,
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    r"""The cascading-randomisation sanity check of Adebayo et al. (2018) as in EP Fig. 7.

    A row of maps over the image: first the map of the trained model, then the map after
    randomising the weights of each successive layer (from the top, cumulatively), titled by
    the layer just randomised. A method that depends on the model should change as layers
    are randomised; under each randomised map the Spearman rank correlation :math:`\rho`
    with the original map can be written. Each map is min-max normalised on its own.

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` in [0, 1].
    maps : Tensor, ndarray or sequence
        ``(L+1)×1×h×w`` maps: the original, then one per randomised layer.
    layer_names : sequence of str
        The ``L`` layers, in the order they were randomised.
    correlations : sequence of float, optional
        ``L`` correlations with the original map, one per randomised map.
    original_title : str, default "original"
        Title of the first panel.
    cmap : str or Colormap, default "jet"
        Saliency colormap.
    alpha : float, default 0.5
        Overlay opacity.
    panel_size : float, default 1.4
        Width of one panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``L + 1`` axes in a row.

    Raises
    ------
    InputError
        If ``len(maps) != len(layer_names) + 1``, the correlations do not number
        ``len(layer_names)``, or a map is not finite.
    """
    rgb = _one_image(image)
    raw = [h for h in _as_maps(maps, "maps") if h is not None]
    if isinstance(layer_names, str) or not isinstance(layer_names, Sequence):
        raise InputError("layer_names must be a sequence of layer names, not a str.")
    n_layers = len(layer_names)
    if len(raw) != n_layers + 1:
        raise InputError(
            f"Got {len(raw)} maps for {n_layers} layer names; pass the original map followed "
            "by one map per randomised layer (len(maps) == len(layer_names) + 1)."
        )
    rho = None
    if correlations is not None:
        rho = _vector(correlations, "correlations", n_layers, "layers")
    colormap = _cmap_alpha(cmap, alpha)
    positive_number(panel_size, "panel_size")
    heads = [original_title, *(str(s) for s in layer_names)]
    fig, axes = _panels(
        1, n_layers + 1, panel_size, _aspect(rgb.shape), 2 if rho is not None else 1
    )
    for i, (ax, h) in enumerate(zip(axes[0], raw, strict=True)):
        heat = normalize_heatmap(_finite_2d(h, f"maps[{i}]"), "per_image")
        _imshow(ax, _blend(rgb, heat, colormap, float(alpha)), heads[i])
        if rho is not None and i > 0:
            ax.set_xlabel(f"ρ = {rho[i - 1]:.2f}", fontsize=_TITLE_FONTSIZE)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- 6. channels


def channel_curve(
    counts: VectorLike,
    scores: VectorLike,
    *,
    full_score: float | None = None,
    a_star: float | None = None,
    total_channels: int | None = None,
    ylabel: str = "class score",
    title: str | None = None,
    figsize: tuple[float, float] = (4.2, 3.0),
) -> Figure:
    r"""Class score against the number of channels kept (EP Fig. 8, right).

    For channel extremal perturbations at a layer :math:`l`, plots
    :math:`\Phi_{l+}(m_a \otimes \Phi_l(x))` against the number :math:`a` of channels the
    mask keeps (points joined in increasing :math:`a`), the unperturbed score
    :math:`\Phi_0 = \Phi(x)` as a green line, and the optimal
    :math:`a^* = \min\{a : \Phi_{l+}(m_a \otimes \Phi_l(x)) \ge \Phi_0\}` (eq. 10) as a purple
    star on the curve with a dotted vertical line.

    Parameters
    ----------
    counts : sequence of int
        Numbers of channels kept (non-negative integers).
    scores : sequence of float
        The class score for each count.
    full_score : float, optional
        :math:`\Phi(x)`.
    a_star : int, optional
        The optimal count; must be one of ``counts``.
    total_channels : int, optional
        Channels of the layer; sets the x range to ``[0, total_channels]``.
    ylabel : str, default "class score"
        Y axis label.
    title : str, optional
        Axes title.
    figsize : (float, float), default (4.2, 3.0)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its lines are, in order, the curve, Φ(x), the a* line, the a* star.

    Raises
    ------
    InputError
        If the counts and scores differ in length, a count is negative, not an integer or
        above ``total_channels``, or ``a_star`` is not one of ``counts``.
    """
    c = _vector(counts, "counts")
    if c.min() < 0 or not np.all(c == np.round(c)):
        raise InputError("counts must be non-negative whole numbers of channels.")
    s = _vector(scores, "scores", len(c), "counts")
    full = None if full_score is None else _scalar(full_score, "full_score")
    star = None if a_star is None else _find(c, _scalar(a_star, "a_star"), "a_star", "counts")
    if total_channels is not None:
        if isinstance(total_channels, bool) or not isinstance(total_channels, (int, np.integer)):
            raise InputError(f"total_channels must be an int, got {total_channels!r}.")
        if total_channels < c.max() or total_channels < 1:
            raise InputError(
                f"total_channels={total_channels} is below the largest count {c.max():g}."
            )

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    order = np.argsort(c, kind="stable")
    ax.plot(c[order], s[order], "-o", ms=3.5, lw=1.5, color=_PRESERVE, label="Φ(m⊗Φ_l(x))")
    if full is not None:
        ax.axhline(full, ls="--", lw=1.2, color=_FULL, label="Φ(x)")
    if star is not None:
        ax.axvline(c[star], ls=":", lw=1.2, color=_A_STAR)
        ax.plot(
            [c[star]],
            [s[star]],
            ls="none",
            marker="*",
            ms=11,
            color=_A_STAR,
            label=f"a* = {c[star]:g}",
        )
    if total_channels is not None:
        ax.set_xlim(0, int(total_channels))
        ax.set_xlabel(f"channels kept (of {int(total_channels)})", fontsize=8)
    else:
        ax.set_xlabel("channels kept", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=_SMALL)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=_SMALL, frameon=False, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def channel_saliency_overlay(
    image: Array,
    saliency: Array,
    *,
    title: str | None = None,
    cmap: str | Colormap = _CMAP,
    alpha: float = 0.5,
    panel_size: float = 2.4,
) -> Figure:
    r"""Show a channel-attribution saliency map over its image (EP Fig. 8 left, Fig. 9).

    The map is eq. 11, :math:`\sum_k m_k \Phi^l_k(x)` (an ``h_l×w_l`` map at the layer's
    resolution), min-max normalised and upsampled bilinearly; this is
    :func:`~convscope.plots.heatmap_overlay` for one image.

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` in [0, 1].
    saliency : Tensor or ndarray
        ``h×w`` (or ``1×h×w``) map.
    title : str, optional
        Panel title.
    cmap : str or Colormap, default "jet"
        Saliency colormap.
    alpha : float, default 0.5
        Overlay opacity.
    panel_size : float, default 2.4
        Figure width in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes.
    """
    rgb = _one_image(image)
    heat = _squeeze_2d(_to_numpy(saliency, "saliency"), "saliency")
    return heatmap_overlay(
        rgb[None].transpose(0, 3, 1, 2),
        heat[None],
        titles=[title] if title else None,
        ncols=1,
        cmap=cmap,
        alpha=alpha,
        panel_size=panel_size,
    )


# --------------------------------------------------------------------------- 7. history


def optimisation_history(
    history: Array,
    *,
    labels: Sequence[str] = ("reward", "area penalty"),
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: float = 2.6,
    title: str | None = None,
) -> Figure:
    """Per-iteration curves of a mask optimisation (TorchRay's ``debug`` plot).

    One panel per optimised mask (e.g. per area of an extremal perturbation), each plotting
    the ``C`` logged quantities against the iteration, e.g. the reward
    :math:`\\Phi(m \\otimes x)` and the area penalty :math:`\\lambda R_a(m)` of EP eq. 7; a
    third row could be the energy. Useful to check that the optimisation has converged.

    Parameters
    ----------
    history : Tensor or ndarray
        ``K×C×T`` values (``K`` masks, ``C`` quantities, ``T`` iterations), or ``C×T``.
    labels : sequence of str, default ("reward", "area penalty")
        The ``C`` quantity names (legend).
    titles : sequence of str, optional
        One title per mask, e.g. ``"a = 10%"``.
    ncols : int, default 4
        Maximum number of panels per row.
    panel_size : float, default 2.6
        Width of one panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``K`` axes with ``C`` lines each.

    Raises
    ------
    InputError
        If ``history`` is not 2-D or 3-D, is empty, holds infinite values, or ``labels`` /
        ``titles`` do not match its shape. NaN is allowed and leaves a gap (a quantity not
        logged at every step).
    """
    h = _to_numpy(history, "history")
    if h.ndim == 2:
        h = h[None]
    if h.ndim != 3:
        raise InputError(
            f"history must be K×C×T (masks × quantities × iterations) or C×T, got shape "
            f"{tuple(h.shape)}."
        )
    if 0 in h.shape:
        raise InputError(f"history is empty (shape {tuple(h.shape)}).")
    if h.dtype == np.bool_ or not np.issubdtype(h.dtype, np.number):
        raise InputError(f"history must hold numbers, got dtype {h.dtype}.")
    h = h.astype(np.float64)
    if np.isinf(h).any():
        raise InputError("history contains infinite values.")
    k, c, t = h.shape
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) != c:
        raise InputError(
            f"labels must name the {c} quantities of history (axis 1 of K×C×T), got {labels!r}."
        )
    names = [str(s) for s in labels]
    heads = _names(titles, k, "titles", "mask")
    ncols = positive_int(ncols, "ncols")
    positive_number(panel_size, "panel_size")
    cols = min(ncols, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(cols * panel_size, rows * panel_size * 0.75 + 0.2), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[k:]:
        ax.set_visible(False)
    iters = np.arange(t)
    for i in range(k):
        ax = axes[i]
        for j in range(c):
            ax.plot(iters, h[i, j], lw=1.2, label=names[j])
        if heads:
            ax.set_title(heads[i], fontsize=_TITLE_FONTSIZE)
        ax.set_xlabel("iteration", fontsize=_SMALL)
        ax.tick_params(labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- 8. perturbations


def perturbation_panel(
    image: Array,
    mask: Array,
    perturbed: Mapping[str, Array],
    *,
    scores: Mapping[str, float] | None = None,
    score_format: str = ".3f",
    panel_size: float = 1.6,
    title: str | None = None,
) -> Figure:
    r"""The image, its perturbations under one mask, and the mask (MP Figs. 1 and 4).

    Columns: the original image, each perturbed image :math:`m \otimes x` (e.g. blur,
    constant, noise, titled by name), then the mask in grey levels (white = 1 = keep).
    With ``scores`` the target score or probability is written above each image, as in MP
    Fig. 1 ("flute" 0.99 → < 0.01).

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` in [0, 1].
    mask : Tensor or ndarray
        ``H×W`` (or ``1×H×W``) mask in [0, 1], ``1 = keep``; upsampled to the image size.
    perturbed : dict
        ``{name: 3×H×W image}``, the same size as ``image``.
    scores : dict, optional
        ``{name: score}`` for any of ``"original"`` and the names of ``perturbed``.
    score_format : str, default ".3f"
        Format spec of the scores.
    panel_size : float, default 1.6
        Width of one panel, in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``2 + len(perturbed)`` axes in a row.

    Raises
    ------
    InputError
        If ``perturbed`` is empty or not a dict, a perturbed image differs in size from the
        image, the mask is not in [0, 1], or ``scores`` names an unknown panel.
    """
    rgb = _one_image(image)
    m = _single_mask(mask, "mask", rgb.shape[:2])
    if not isinstance(perturbed, Mapping) or not perturbed:
        raise InputError("perturbed must be a non-empty dict {name: perturbed image}.")
    names = [str(k) for k in perturbed]
    outs = [_one_image(v, f"perturbed[{k!r}]") for k, v in perturbed.items()]
    for name, out in zip(names, outs, strict=True):
        if out.shape != rgb.shape:
            raise InputError(
                f"perturbed[{name!r}] is {out.shape[:2]} but the image is {rgb.shape[:2]}; "
                "pass perturbations of this image."
            )
    score_map: dict[str, float] = {}
    if scores is not None:
        if not isinstance(scores, Mapping):
            raise InputError("scores must be a dict {panel name: score}.")
        valid = ["original", *names]
        for k, v in scores.items():
            if k not in valid:
                raise InputError(f"scores has key {k!r}; valid keys are {valid}.")
            score_map[str(k)] = _scalar(v, f"scores[{k!r}]")
        try:
            format(0.0, score_format)
        except ValueError:
            raise InputError(f"score_format {score_format!r} is not valid.") from None
    positive_number(panel_size, "panel_size")

    def head(name: str) -> str:
        return f"{name}\n{format(score_map[name], score_format)}" if name in score_map else name

    fig, axes = _panels(1, len(names) + 2, panel_size, _aspect(rgb.shape), 2 if score_map else 1)
    row = axes[0]
    _imshow(row[0], rgb, head("original"))
    for ax, name, out in zip(row[1:-1], names, outs, strict=True):
        _imshow(ax, out, head(name))
    row[-1].imshow(m, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    _plain(row[-1])
    row[-1].set_title("mask (1 = keep)", fontsize=_TITLE_FONTSIZE)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
