r"""Figures for the analyses of sensitivity maps (Kharyuk, Matveev & Oseledets, 2025).

* :func:`correlation_heatmap` — unit-wise Spearman correlations between SA variables, with
  the variable names on both axes and the values written in the cells (Figures S7.2);
* :func:`confusion_heatmap` — mean validation confusion matrix of the LDA (Figures S7.4);
* :func:`dendrogram_plot` — average-linkage dendrogram of the distance
  :math:`\sqrt{1 - |\rho|}` with an optional cut line (Figures S7.5);
* :func:`top_classes_table` — top sensitive classes of the classifying layer per variable,
  cells ``"class (index/value)"`` (Tables 2-4);
* :func:`jaccard_table` — mean Jaccard indices over mask settings, values above the null
  threshold :math:`\tau` underlined and bold (Table 5, S7.6);
* :func:`decay_curves` — sorted top-20 sensitivity values of the classifying layer, one curve
  per variable (where to cut the sensitive set).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``. Inputs
are tensors or arrays, or the result objects of
:mod:`convscope.sensitivity.augmentation.analysis` and
:mod:`convscope.sensitivity.augmentation.single_class`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from scipy.cluster import hierarchy

from convscope.core.errors import InputError
from convscope.core.validation import positive_int
from convscope.plots.images import _get_cmap, _to_numpy
from convscope.sensitivity.augmentation.analysis import (
    ClusteringResult,
    CorrelationResult,
    LDAResult,
)
from convscope.sensitivity.augmentation.single_class import JaccardNull, TopClasses

__all__ = [
    "confusion_heatmap",
    "correlation_heatmap",
    "decay_curves",
    "dendrogram_plot",
    "jaccard_table",
    "top_classes_table",
]

_SMALL = 7


def _names(names: Sequence[str] | None, n: int, what: str = "names") -> list[str]:
    if names is None:
        return [f"x{j + 1}" for j in range(n)]
    if isinstance(names, str) or len(names) != n:
        raise InputError(f"{what} must be a sequence of {n} strings, one per row/column.")
    return [str(s) for s in names]


def _square(matrix: Any, what: str) -> np.ndarray[Any, Any]:
    arr = _to_numpy(matrix, what).astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{what} must be a square V×V matrix, got shape {tuple(arr.shape)}.")
    return arr


def _matrix_figure(
    values: np.ndarray[Any, Any],
    names: list[str],
    *,
    vmin: float,
    vmax: float,
    cmap: str,
    annotate: bool,
    fmt: str,
    title: str | None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    colorbar_label: str | None = None,
) -> Figure:
    v = values.shape[0]
    size = max(3.0, 0.45 * v + 1.8)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot(1, 1, 1)
    # NaN cells (undefined values) are left blank rather than coloured as a number.
    image = ax.imshow(np.ma.masked_invalid(values), cmap=_get_cmap(cmap), vmin=vmin, vmax=vmax)
    ax.set_xticks(range(v), names, rotation=60, ha="right", fontsize=_SMALL)
    ax.set_yticks(range(v), names, fontsize=_SMALL)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(v):
            for j in range(v):
                value = values[i, j]
                if not np.isfinite(value):
                    continue
                dark = abs(value - mid) > 0.35 * (vmax - vmin)
                ax.text(
                    j,
                    i,
                    format(value, fmt),
                    ha="center",
                    va="center",
                    fontsize=_SMALL - 1,
                    color="white" if dark else "black",
                )
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if colorbar_label:
        bar.set_label(colorbar_label)
    fig.tight_layout()
    return fig


def correlation_heatmap(
    corr: CorrelationResult | Any,
    names: Sequence[str] | None = None,
    *,
    annotate: bool = True,
    fmt: str = ".2f",
    cmap: str = "RdBu_r",
    title: str | None = None,
) -> Figure:
    """Heatmap of a correlation matrix between SA variables, values in ``[-1, 1]``.

    Parameters
    ----------
    corr
        A :class:`~convscope.sensitivity.augmentation.analysis.CorrelationResult` (its names
        are used) or a ``(V, V)`` matrix.
    names
        Variable names (default: the result's names or ``x1..xV``).
    annotate, fmt
        Write each value in its cell with this format.
    cmap
        Diverging colormap centred on 0.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(corr, CorrelationResult):
        names = names if names is not None else corr.names
        corr = corr.correlation
    values = _square(corr, "corr")
    return _matrix_figure(
        values,
        _names(names, values.shape[0]),
        vmin=-1.0,
        vmax=1.0,
        cmap=cmap,
        annotate=annotate,
        fmt=fmt,
        title=title,
        colorbar_label="Spearman ρ",
    )


def confusion_heatmap(
    confusion: LDAResult | Any,
    names: Sequence[str] | None = None,
    *,
    annotate: bool = True,
    fmt: str = ".2f",
    cmap: str = "Reds",
    title: str | None = None,
) -> Figure:
    """Heatmap of a row-normalised confusion matrix (row = true, column = predicted variable).

    Parameters
    ----------
    confusion
        An :class:`~convscope.sensitivity.augmentation.analysis.LDAResult` (its mean confusion,
        names and mean validation accuracy are shown) or a ``(V, V)`` matrix.
    names, annotate, fmt, cmap, title
        As :func:`correlation_heatmap`; values span ``[0, 1]``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(confusion, LDAResult):
        names = names if names is not None else confusion.names
        if title is None:
            title = f"LDA, validation accuracy {confusion.mean_validation_accuracy:.3f}"
        confusion = confusion.confusion
    values = _square(confusion, "confusion")
    return _matrix_figure(
        values,
        _names(names, values.shape[0]),
        vmin=0.0,
        vmax=1.0,
        cmap=cmap,
        annotate=annotate,
        fmt=fmt,
        title=title,
        xlabel="predicted variable",
        ylabel="true variable",
        colorbar_label="fraction of the true variable",
    )


def dendrogram_plot(
    clustering: ClusteringResult | Any,
    labels: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    title: str | None = None,
) -> Figure:
    r"""Dendrogram of a hierarchical clustering.

    Parameters
    ----------
    clustering
        A :class:`~convscope.sensitivity.augmentation.analysis.ClusteringResult` or a SciPy
        linkage matrix.
    labels
        Leaf names in item order (default: the result's labels).
    threshold
        Draw a dashed cut line at this distance and colour the clusters below it (default:
        the result's threshold, if any).
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Leaves left to right in the dendrogram order (``ClusteringResult.leaves``).
    """
    if isinstance(clustering, ClusteringResult):
        labels = labels if labels is not None else clustering.labels
        if threshold is None:
            threshold = clustering.settings.get("threshold")
        linkage = clustering.linkage.numpy()
    else:
        linkage = _to_numpy(clustering, "linkage").astype(np.float64)
    if linkage.ndim != 2 or linkage.shape[1] != 4:
        raise InputError(
            f"clustering must be a ClusteringResult or a (K-1, 4) linkage matrix, got shape "
            f"{tuple(linkage.shape)}."
        )
    k = linkage.shape[0] + 1
    leaf_names = _names(labels, k, "labels")
    fig = Figure(figsize=(max(3.5, 0.35 * k + 1.5), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    hierarchy.dendrogram(
        linkage,
        ax=ax,
        labels=leaf_names,
        color_threshold=threshold if threshold is not None else 0.0,
        above_threshold_color="0.3",
        leaf_rotation=60.0,
        leaf_font_size=_SMALL,
    )
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"cut {threshold:g}")
        ax.legend(frameon=False, fontsize=_SMALL)
    ax.set_ylabel(r"distance $\sqrt{1 - |\rho|}$")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _table_figure(
    cells: list[list[str]],
    row_labels: list[str],
    col_labels: list[str],
    title: str | None,
    col_width: float,
) -> tuple[Figure, Any]:
    rows, cols = len(row_labels), len(col_labels)
    # Size the figure to the text so that the table fills it (no empty margins).
    label_width = 0.25 + 0.07 * max(len(r) for r in row_labels)
    width, height = label_width + col_width * cols, 0.3 * (rows + 1) + (0.35 if title else 0.1)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((label_width / width, 0.0, 1 - label_width / width, 1.0))
    ax.set_axis_off()
    top = 1 - (0.35 / height if title else 0.1 / height)
    table = ax.table(
        cellText=cells,
        rowLabels=row_labels,
        colLabels=col_labels,
        cellLoc="center",
        bbox=Bbox.from_bounds(0.0, 0.0, 1.0, top),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(_SMALL)
    if title:
        ax.set_title(title, fontsize=9, y=top, pad=4)
    return fig, table


def top_classes_table(top: TopClasses, *, title: str | None = None) -> Figure:
    """Table of the top sensitive classes, one row per SA variable (paper Tables 2-4).

    Cells read ``"class name (index/value)"``, most sensitive first.

    Parameters
    ----------
    top
        Output of :func:`~convscope.sensitivity.augmentation.single_class.top_sensitive_classes`.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(top, TopClasses):
        raise InputError("top must be the TopClasses returned by top_sensitive_classes().")
    cells = top.labels()
    k = top.indices.shape[1]
    col_width = 0.2 + 0.05 * max(len(c) for row in cells for c in row)
    fig, _ = _table_figure(cells, list(top.names), [str(i + 1) for i in range(k)], title, col_width)
    return fig


def jaccard_table(
    values: Any,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    tau: float | JaccardNull,
    *,
    fmt: str = ".4f",
    significant_digits: int | None = None,
    title: str | None = None,
) -> Figure:
    r"""Table of mean Jaccard indices with the values above the null threshold marked.

    A value :math:`> \tau` (strict, as in the paper) is written bold and underlined on a
    shaded cell.

    Parameters
    ----------
    values
        ``(R, Q)`` mean Jaccard indices, e.g. rows = augmentations, columns = quantiles q.
    row_labels, col_labels
        Names of the rows and columns.
    tau
        The threshold, or a :class:`~convscope.sensitivity.augmentation.single_class.JaccardNull`.
    fmt
        Number format of the cells.
    significant_digits
        With a ``JaccardNull``, round tau as the paper does (2 gives 0.0030 / 0.0081).
    title
        Axes title (default: states tau).

    Returns
    -------
    matplotlib.figure.Figure
    """
    arr = _to_numpy(values, "values").astype(np.float64)
    if arr.ndim != 2:
        raise InputError(f"values must be an (R, Q) table, got shape {tuple(arr.shape)}.")
    rows = _names(row_labels, arr.shape[0], "row_labels")
    cols = _names(col_labels, arr.shape[1], "col_labels")
    threshold = tau.threshold(significant_digits) if isinstance(tau, JaccardNull) else float(tau)
    marked = arr > threshold
    cells = [
        [
            (rf"$\underline{{\mathbf{{{format(x, fmt)}}}}}$" if m else format(x, fmt))
            if np.isfinite(x)
            else "n/a"
            for x, m in zip(row, mrow, strict=True)
        ]
        for row, mrow in zip(arr, marked, strict=True)
    ]
    fig, table = _table_figure(
        cells,
        rows,
        cols,
        title if title is not None else f"mean Jaccard (τ = {threshold:.4g})",
        0.8,
    )
    for (i, j), m in np.ndenumerate(marked):
        if m:
            table[i + 1, j].set_facecolor("#fde0dd")
    return fig


def decay_curves(
    final_layer_maps: Any,
    names: Sequence[str] | None = None,
    *,
    k: int = 20,
    title: str | None = None,
) -> Figure:
    """Sorted top-``k`` sensitivity values of the classifying layer, one curve per variable.

    The sharper the drop after the first few classes, the better defined the sensitive set.

    Parameters
    ----------
    final_layer_maps
        ``(V, n_classes)`` sensitivity of each class output to each variable.
    names
        Variable names.
    k
        Number of ranks drawn (the authors' code: 20).
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One line per variable, x = rank 1..k, y = values in descending order (NaN last).
    """
    arr = _to_numpy(final_layer_maps, "final_layer_maps").astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise InputError(f"final_layer_maps must be (V, n_classes), got shape {tuple(arr.shape)}.")
    k = positive_int(k, "k")
    k = min(k, arr.shape[1])
    labels = _names(names, arr.shape[0])
    ordered = -np.sort(np.where(np.isnan(arr), np.inf, -arr), axis=1)[:, :k]
    ordered[np.isinf(ordered)] = np.nan
    fig = Figure(figsize=(4.5, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    ranks = np.arange(1, k + 1)
    for row, label in zip(ordered, labels, strict=True):
        ax.plot(ranks, row, marker="o", ms=2.5, lw=1, label=label)
    ax.set_xlabel("class rank")
    ax.set_ylabel("sensitivity")
    ax.set_xticks(ranks[:: max(1, k // 10)])
    ax.legend(frameon=False, fontsize=_SMALL - 1, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
