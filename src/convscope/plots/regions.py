r"""Figures for region attribution and its evaluation (Sobol-SBSA paper, Figs. 2-6 and 8).

* :func:`region_index_panel` — region maps of :math:`S_i`, :math:`S_{Ti}` and
  :math:`\mathrm{PIR}_i = S_i / S_{Ti}` over one image, one column per partition or model
  (Figs. 6 and 8);
* :func:`masking_slope_plot` — mean score drop when the bottom and the top 20% of regions are
  masked, one line per method; a steeper line ranks better (Fig. 2);
* :func:`sensitivity_n_plot` — mean sensitivity-n correlation against the percentage of
  regions masked, one line per method; closer to 1 is better (Fig. 3);
* :func:`importance_difference_plot` — foreground minus background importance per model or
  method, mean ± standard error over images (Figs. 4b and 5b);
* :func:`trend_plot` — a statistic (e.g. the mean top-20% PIR) across models, one line per
  grid size or segmentation (Figs. 4a and 5a);
* :func:`region_ranking_plot` — the highest region indices with their confidence intervals.

Region values are projected onto pixels with :func:`convscope.metrics.regions.region_heatmap`;
a NaN region (empty, or an undefined PIR) is drawn without colour. Every function returns a
:class:`matplotlib.figure.Figure` built without ``pyplot``. Means and standard errors skip NaN
values (the standard error is :math:`s / \sqrt{m}` with the sample standard deviation
:math:`s` of the :math:`m` finite values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from convscope.core.errors import InputError
from convscope.core.validation import positive_int
from convscope.data.regions import Regions, region_heatmap
from convscope.plots.images import (
    _TITLE_FONTSIZE,
    FloatArray,
    ImagesLike,
    _as_images,
    _check_alpha,
    _get_cmap,
    _to_numpy,
)

if TYPE_CHECKING:
    from convscope.metrics.regions import RegionMaskingResult, SensitivityNResult

__all__ = [
    "importance_difference_plot",
    "masking_slope_plot",
    "region_heatmap",
    "region_index_panel",
    "region_ranking_plot",
    "sensitivity_n_plot",
    "trend_plot",
]

_SMALL = 7


# --------------------------------------------------------------------------- helpers


def _mean_sem(values: Any, what: str) -> tuple[float, float, int]:
    """NaN-skipping mean, standard error and count of a 1-D array of per-image values."""
    arr = np.asarray(_to_numpy(values, what), dtype=np.float64).reshape(-1)
    arr = arr[np.isfinite(arr)]
    m = arr.size
    if m == 0:
        return math.nan, math.nan, 0
    sem = float(arr.std(ddof=1) / math.sqrt(m)) if m > 1 else 0.0
    return float(arr.mean()), sem, m


def _check_mapping(results: Any, what: str) -> list[str]:
    if not isinstance(results, Mapping) or len(results) == 0:
        raise InputError(
            f"{what} must be a non-empty dict {{name: value}} (one entry per method or model), "
            f"got {type(results).__name__}."
        )
    return [str(k) for k in results]


def _one_image(image: ImagesLike) -> FloatArray:
    imgs = _as_images(image, "image")
    if len(imgs) != 1:
        raise InputError(
            f"image must be one image (3×H×W or 1×3×H×W), got {len(imgs)}; pass image[i]."
        )
    return imgs[0]


def _region_list(regions: Regions | Sequence[Regions], k: int | None) -> list[Regions]:
    if isinstance(regions, Regions):
        regs = [regions] * (k if k is not None else 1)
    elif isinstance(regions, Sequence) and all(isinstance(r, Regions) for r in regions):
        regs = list(regions)
    else:
        raise InputError(
            "regions must be a Regions object or a sequence of them (one per column), got "
            f"{type(regions).__name__}."
        )
    for r in regs:
        if r.is_batched and r.labels.shape[0] != 1:
            raise InputError(
                f"region_index_panel shows one image, but a partition holds "
                f"{r.labels.shape[0]} label maps; pass regions for that image only."
            )
    return regs


def _value_list(values: Any, what: str) -> list[np.ndarray[Any, Any]]:
    """Split ``d`` / ``K×d`` / a sequence of K vectors into a list of 1-D float arrays."""
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        arrays = [np.asarray(_to_numpy(v, f"{what}[{i}]")) for i, v in enumerate(values)]
        if arrays and arrays[0].ndim == 0:  # a plain list of numbers is one vector
            arrays = [np.asarray(arrays, dtype=np.float64)]
    else:
        arr = np.asarray(_to_numpy(values, what))
        arrays = [arr] if arr.ndim == 1 else list(arr) if arr.ndim == 2 else []
        if not arrays:
            raise InputError(f"{what} must be d or K×d values, got shape {tuple(arr.shape)}.")
    out = []
    for i, a in enumerate(arrays):
        a = np.squeeze(a)
        if a.ndim != 1:
            raise InputError(f"{what}[{i}] must be one value per region, got shape {a.shape}.")
        out.append(a.astype(np.float64))
    return out


def _panel_range(heat: FloatArray) -> tuple[float, float]:
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _style_axes(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=_SMALL)
    ax.grid(axis="y", alpha=0.3, lw=0.5)


# --------------------------------------------------------------------------- region maps


def region_index_panel(
    image: ImagesLike,
    regions: Regions | Sequence[Regions],
    first_order: Any,
    total_order: Any,
    pir: Any | None = None,
    titles: Sequence[str] | None = None,
    *,
    cmap: str = "jet",
    pir_cmap: str = "viridis",
    alpha: float = 0.5,
    normalize: Literal["panel", "row"] = "panel",
    panel_size: float = 1.8,
    title: str | None = None,
) -> Figure:
    r"""Region maps of :math:`S_i`, :math:`S_{Ti}` (and PIR) over one image (paper Figs. 6, 8).

    Parameters
    ----------
    image : Tensor or ndarray
        One image, ``3×H×W`` or ``1×3×H×W``, in ``[0, 1]``.
    regions : Regions or sequence of Regions
        The partition of every column, or one partition per column (e.g. 4×4, 8×8 and
        14×14 grids).
    first_order, total_order : Tensor, ndarray or sequence
        ``d`` values (one column), ``K×d`` (K columns on one partition) or a sequence of K
        vectors (one per column, sizes matching that column's regions).
    pir : optional
        Same layout; adds a third row drawn on the fixed range ``[0, 1]`` (values above 1 take
        the top colour; NaN regions are left uncoloured).
    titles : sequence of str, optional
        One title per column (grid size, model, ...).
    cmap, pir_cmap : str, default "jet", "viridis"
        Colormaps of the index rows and of the PIR row.
    alpha : float, default 0.5
        Opacity of the region colours over the image.
    normalize : {"panel", "row"}, default "panel"
        ``"panel"`` maps each map's min-max to ``[0, 1]`` (compares rankings across grid
        sizes, whose indices shrink with the number of regions); ``"row"`` shares one range in
        index units along a row (compares models on one partition).
    panel_size : float, default 1.8
        Panel width in inches.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Rows × K image panels, each row followed by one colour bar.
    """
    img = _one_image(image)
    _check_alpha(alpha)
    if normalize not in ("panel", "row"):
        raise InputError(f"normalize must be 'panel' or 'row', got {normalize!r}.")
    rows_values = [
        ("$S_i$", _value_list(first_order, "first_order")),
        ("$S_{Ti}$", _value_list(total_order, "total_order")),
    ]
    if pir is not None:
        rows_values.append(("PIR", _value_list(pir, "pir")))
    k = len(rows_values[0][1])
    for name, vals in rows_values:
        if len(vals) != k:
            raise InputError(
                f"first_order has {k} columns but {name.strip('$')} has {len(vals)}; pass the "
                "same number of columns for every index."
            )
    regs = _region_list(regions, k if isinstance(regions, Regions) else None)
    if len(regs) != k:
        raise InputError(f"Got {len(regs)} partitions for {k} columns; pass one per column.")
    if titles is not None and (isinstance(titles, str) or len(titles) != k):
        raise InputError(f"titles must be a sequence of {k} strings, one per column.")
    h, w = img.shape[:2]
    for j, r in enumerate(regs):
        if r.shape != (h, w):
            raise InputError(
                f"The regions of column {j} are {r.shape[0]}×{r.shape[1]} but the image is "
                f"{h}×{w}; build them for the image size."
            )

    n_rows = len(rows_values)
    fig = Figure(
        figsize=(k * panel_size + 0.7, n_rows * panel_size * h / w + 0.3 * (titles is not None)),
        layout="constrained",
    )
    axes = fig.subplots(n_rows, k, squeeze=False)
    for row, (name, vals) in enumerate(rows_values):
        is_pir = name == "PIR"
        colormap = _get_cmap(pir_cmap if is_pir else cmap)
        heats = []
        for j, (v, r) in enumerate(zip(vals, regs, strict=True)):
            if v.shape[0] != r.n_regions:
                raise InputError(
                    f"{name.strip('$')} of column {j} has {v.shape[0]} values but its regions "
                    f"have {r.n_regions}; pass one value per region."
                )
            heats.append(region_heatmap(v, r)[0].double().numpy())
        if is_pir:
            ranges = [(0.0, 1.0)] * k
        elif normalize == "row":
            joined = _panel_range(np.concatenate([hm.ravel() for hm in heats]))
            ranges = [joined] * k
        else:  # min-max per panel, so that one colour bar in [0, 1] fits every panel
            normalised = []
            for hm in heats:
                lo, hi = _panel_range(hm)
                normalised.append((hm - lo) / (hi - lo))
            heats, ranges = normalised, [(0.0, 1.0)] * k
        im = None
        for j, (heat, (lo, hi)) in enumerate(zip(heats, ranges, strict=True)):
            ax = axes[row, j]
            ax.imshow(img, interpolation="nearest")
            im = ax.imshow(
                np.ma.masked_invalid(heat),
                cmap=colormap,
                vmin=lo,
                vmax=hi,
                alpha=alpha,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 and titles is not None:
                ax.set_title(str(titles[j]), fontsize=_TITLE_FONTSIZE)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
        assert im is not None
        cb = fig.colorbar(im, ax=list(axes[row]), shrink=0.85, fraction=0.05)
        cb.ax.tick_params(labelsize=_SMALL)
        if normalize == "panel" and not is_pir:
            cb.set_label("normalised per panel", fontsize=_SMALL)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- evaluation plots


def masking_slope_plot(
    results: Mapping[str, RegionMaskingResult],
    *,
    error_bars: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (3.6, 3.2),
) -> Figure:
    """Mean score drop when the bottom vs the top regions are masked (paper Fig. 2).

    Parameters
    ----------
    results : dict of str to RegionMaskingResult
        One :func:`~convscope.metrics.regions.region_masking` result per method.
    error_bars : bool, default True
        Draw ± one standard error of each mean.
    title : str, optional
        Axes title.
    figsize : (float, float), default (3.6, 3.2)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one line per method from :math:`\\Delta` (bottom) at x = 0 to
        :math:`\\Delta` (top) at x = 1; a steeper line is a better ranking.
    """
    names = _check_mapping(results, "results")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    fractions = set()
    for i, (name, res) in enumerate(zip(names, results.values(), strict=True)):
        if not hasattr(res, "top_drop") or not hasattr(res, "bottom_drop"):
            raise InputError(
                f"results[{name!r}] is a {type(res).__name__}, not a RegionMaskingResult."
            )
        bottom, bottom_se, _ = _mean_sem(res.bottom_drop, "bottom_drop")
        top, top_se, _ = _mean_sem(res.top_drop, "top_drop")
        color = f"C{i % 10}"
        ax.plot([0, 1], [bottom, top], marker="o", color=color, label=name)
        if error_bars:
            ax.vlines(
                [0, 1],
                [bottom - bottom_se, top - top_se],
                [bottom + bottom_se, top + top_se],
                color=color,
                lw=1,
            )
        fractions.add(float(res.fraction))
    pct = f"{100 * fractions.pop():.3g}%" if len(fractions) == 1 else "fraction"
    ax.set_xticks([0, 1], [f"bottom {pct}", f"top {pct}"])
    ax.set_xlim(-0.25, 1.25)
    ax.set_ylabel("score drop  f(x) − f(x masked)", fontsize=8)
    _style_axes(ax)
    ax.legend(fontsize=_SMALL, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def sensitivity_n_plot(
    results: Mapping[str, SensitivityNResult],
    *,
    band: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] = (4.2, 3.2),
) -> Figure:
    """Mean sensitivity-n correlation against the % of regions masked (paper Fig. 3).

    Parameters
    ----------
    results : dict of str to SensitivityNResult
        One :func:`~convscope.metrics.regions.sensitivity_n` result per method.
    band : bool, default False
        Shade ± one standard error over the images.
    title : str, optional
        Axes title.
    figsize : (float, float), default (4.2, 3.2)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one line per method (``mean_pearson`` against ``100 · fractions``).
    """
    names = _check_mapping(results, "results")
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, res) in enumerate(zip(names, results.values(), strict=True)):
        if not hasattr(res, "pearson") or not hasattr(res, "fractions"):
            raise InputError(
                f"results[{name!r}] is a {type(res).__name__}, not a SensitivityNResult."
            )
        x = 100.0 * np.asarray(_to_numpy(res.fractions, "fractions"), dtype=np.float64)
        pearson = np.asarray(_to_numpy(res.pearson, "pearson"), dtype=np.float64)
        stats = [_mean_sem(pearson[:, j], "pearson") for j in range(pearson.shape[1])]
        mean = np.array([s[0] for s in stats])
        color = f"C{i % 10}"
        ax.plot(x, mean, marker="o", ms=3, color=color, label=name)
        if band:
            se = np.array([s[1] for s in stats])
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2, lw=0)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel("regions masked", fontsize=8)
    ax.set_ylabel("Pearson r (sensitivity-n)", fontsize=8)
    ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
    _style_axes(ax)
    ax.legend(fontsize=_SMALL, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def importance_difference_plot(
    values: Mapping[str, Any],
    *,
    ylabel: str = "$S_T$(foreground) − $S_T$(background)",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Bars of the mean foreground − background importance, ± standard error (Figs. 4b, 5b).

    Parameters
    ----------
    values : dict of str to Tensor
        Per-image differences of each model or method, e.g. from
        :func:`~convscope.metrics.regions.importance_difference` (NaN skipped).
    ylabel : str
        Label of the y-axis (use ``$S_i$`` for the first-order version, Fig. 5b).
    title : str, optional
        Axes title.
    figsize : (float, float), optional
        Figure size in inches (default grows with the number of bars).

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one bar per entry with its error bar, and a line at 0.
    """
    names = _check_mapping(values, "values")
    stats = [_mean_sem(v, f"values[{n!r}]") for n, v in zip(names, values.values(), strict=True)]
    fig = Figure(figsize=figsize or (1.0 + 0.7 * len(names), 3.2), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    means = np.array([s[0] for s in stats])
    ax.bar(
        pos,
        np.nan_to_num(means),
        yerr=[s[1] for s in stats],
        color=[f"C{i % 10}" for i in range(len(names))],
        capsize=3,
        error_kw={"lw": 1},
    )
    ax.axhline(0.0, color="black", lw=0.8)
    rotate = len(names) > 4
    ax.set_xticks(
        pos,
        names,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=_SMALL,
    )
    ax.set_ylabel(ylabel, fontsize=8)
    _style_axes(ax)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def trend_plot(
    values: Mapping[str, Mapping[str, Any]],
    *,
    ylabel: str = "mean PIR of the top 20% regions",
    error_bars: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (4.5, 3.2),
) -> Figure:
    """A statistic across models, one line per series (paper Figs. 4a and 5a).

    Parameters
    ----------
    values : dict of str to dict of str to values
        ``{series: {model: per-image values}}`` (series: grid size, segmentation, normal or
        robust); each line shows the NaN-skipping mean over images of every model, in the
        order the models first appear.
    ylabel : str
        Label of the y-axis.
    error_bars : bool, default True
        Draw ± one standard error.
    title : str, optional
        Axes title.
    figsize : (float, float), default (4.5, 3.2)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one line per series.
    """
    series = _check_mapping(values, "values")
    models: list[str] = []
    for s in series:
        _check_mapping(values[s], f"values[{s!r}]")
        models.extend(m for m in map(str, values[s]) if m not in models)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for i, s in enumerate(series):
        # points in x-axis order, so a series listing its models in another order does not zigzag
        points = sorted((models.index(str(m)), str(m), v) for m, v in values[s].items())
        xs = [p[0] for p in points]
        stats = [_mean_sem(v, f"values[{s!r}][{m!r}]") for _, m, v in points]
        color = f"C{i % 10}"
        ax.plot(xs, [st[0] for st in stats], marker="o", ms=4, color=color, label=s)
        if error_bars:
            ax.vlines(
                xs,
                [st[0] - st[1] for st in stats],
                [st[0] + st[1] for st in stats],
                color=color,
                lw=1,
            )
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=_SMALL)
    ax.set_ylabel(ylabel, fontsize=8)
    _style_axes(ax)
    ax.legend(fontsize=_SMALL, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def region_ranking_plot(
    values: Any,
    conf: Any | None = None,
    *,
    top: int = 20,
    label: str = "$S_{Ti}$",
    title: str | None = None,
) -> Figure:
    """The ``top`` regions of one image by index value, with confidence intervals.

    Parameters
    ----------
    values : Tensor or ndarray
        ``d`` index values of one image (NaN regions are left out).
    conf : Tensor or ndarray, optional
        ``d`` half-widths of the confidence intervals (e.g. ``total_order_conf``).
    top : int, default 20
        Number of regions shown, highest first (ties by region index).
    label : str
        Name of the index, for the x-axis.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal bars, one per region, labelled with the region index.
    """
    v = np.asarray(_to_numpy(values, "values"), dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise InputError(f"values must be one value per region (d,), got shape {v.shape}.")
    top = positive_int(top, "top")
    err = None
    if conf is not None:
        err = np.asarray(_to_numpy(conf, "conf"), dtype=np.float64)
        if err.shape != v.shape:
            raise InputError(f"conf must have the shape of values {v.shape}, got {err.shape}.")
    ids = np.flatnonzero(np.isfinite(v))
    ids = ids[np.argsort(-v[ids], kind="stable")][:top]
    fig = Figure(figsize=(3.8, 0.5 + 0.22 * max(len(ids), 1)), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(ids))[::-1]
    ax.barh(
        pos,
        v[ids],
        xerr=None if err is None else np.nan_to_num(err[ids]),
        color="C0",
        capsize=2,
        error_kw={"lw": 0.8},
    )
    ax.set_yticks(pos, [f"region {k}" for k in ids], fontsize=_SMALL)
    ax.set_xlabel(label, fontsize=8)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=_SMALL)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
