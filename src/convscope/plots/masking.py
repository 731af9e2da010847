r"""Figures of the guided-masking experiment (Kharyuk et al., Fig. 4 and Appendix C).

* :func:`masking_matrix_plot` — the Fig. 4 heatmap: rows are the augmentations of the input,
  columns the SA variables whose maps mask the network, each cell the Spearman correlation
  :math:`\rho_{ij}` (over the mask configurations) between the accuracies of the augmented
  and of the clean input, annotated with ``.3f``. The colour map is reversed ``Reds`` so that
  a *darker* cell is a *lower* :math:`\rho` — the matching pairs the figure is about. One
  panel per sensitivity measure when a dict of matrices is given (shared colour scale).
* :func:`masking_dendrogram_plot` — the HCA dendrogram of the (augmentation, mask variable)
  pairs, distances :math:`\sqrt{1 - |\rho|}`, average linkage, with the flat-cluster cut
  drawn as a dotted line (Figures S7.5.x).

The matrices come from
:func:`convscope.sensitivity.augmentation.masking.masking_spearman_matrix` and the distances
from :func:`convscope.sensitivity.augmentation.masking.masking_pair_distances`. Every function
returns a :class:`matplotlib.figure.Figure` built without ``pyplot``; NaN cells (a constant
accuracy vector) are drawn light grey and annotated ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from convscope.core.errors import InputError
from convscope.plots.images import FloatArray, _get_cmap, _to_numpy

__all__ = ["masking_dendrogram_plot", "masking_matrix_plot"]

_SMALL = 7


def _matrix(value: Any, what: str, rows: int, cols: int) -> FloatArray:
    arr = np.asarray(_to_numpy(value, what), dtype=np.float64)
    if arr.shape != (rows, cols):
        raise InputError(
            f"{what} must be a ({rows}, {cols}) matrix (rows × cols names), got shape {arr.shape}."
        )
    return arr


def _panels(matrix: Any, rows: Sequence[str], cols: Sequence[str]) -> dict[str, FloatArray]:
    if isinstance(matrix, Mapping):
        if not matrix:
            raise InputError("matrix must be a matrix or a non-empty dict {measure: matrix}.")
        return {
            str(k): _matrix(v, f"matrix[{k!r}]", len(rows), len(cols)) for k, v in matrix.items()
        }
    return {"": _matrix(matrix, "matrix", len(rows), len(cols))}


def _text_color(value: float, lo: float, hi: float, reverse: bool) -> str:
    # Dark cells of the reversed map are the low values: write on them in white.
    t = 0.5 if hi <= lo else (value - lo) / (hi - lo)
    return "white" if (t < 0.45 if reverse else t > 0.55) else "black"


def _heatmap(
    ax: Axes,
    values: FloatArray,
    cmap: Any,
    vmin: float,
    vmax: float,
    fmt: str,
    reverse: bool,
) -> Any:
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        text = "nan" if not math.isfinite(v) else format(v, fmt)
        color = "black" if not math.isfinite(v) else _text_color(v, vmin, vmax, reverse)
        ax.text(c, r, text, ha="center", va="center", fontsize=_SMALL, color=color)
    return image


def masking_matrix_plot(
    matrix: Any,
    rows: Sequence[str],
    cols: Sequence[str],
    title: str | None = None,
    *,
    cmap: str = "Reds_r",
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = ".3f",
    colorbar: bool = False,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""The Fig. 4 heatmap of :math:`\rho_{ij}` (augmented vs clean input under mask ``j``).

    Parameters
    ----------
    matrix : Tensor, ndarray or dict of str to either
        ``(len(rows), len(cols))`` correlations, or ``{measure: matrix}`` for one panel per
        sensitivity measure (e.g. ``{"shpv": ..., "si": ..., "siT": ...}``) sharing the y-axis
        and the colour scale.
    rows : sequence of str
        Input augmentations ("Augmentations of input").
    cols : sequence of str
        Mask variables ("SA variables used for masking").
    title : str, optional
        Figure title.
    cmap : str, default "Reds_r"
        Colour map; reversed Reds makes lower :math:`\rho` darker.
    vmin, vmax : float, optional
        Colour limits; default the finite minimum and maximum over all panels.
    fmt : str, default ".3f"
        Format of the annotations.
    colorbar : bool, default False
        Add one colour bar for all panels.
    figsize : (float, float), optional
        Default grows with the number of cells.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel; the panel titles are the measure names in parentheses.
    """
    rows, cols = [str(r) for r in rows], [str(c) for c in cols]
    if not rows or not cols:
        raise InputError("rows and cols must name at least one augmentation and one variable.")
    panels = _panels(matrix, rows, cols)
    finite = np.concatenate([p[np.isfinite(p)] for p in panels.values()])
    lo = float(vmin) if vmin is not None else float(finite.min()) if finite.size else -1.0
    hi = float(vmax) if vmax is not None else float(finite.max()) if finite.size else 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    reverse = cmap.endswith("_r")
    color_map = _get_cmap(cmap).with_extremes(bad="0.85")
    n = len(panels)
    if figsize is None:
        figsize = (n * (0.75 * len(cols) + 0.8) + 1.2, 0.42 * len(rows) + 1.6)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    image = None
    for p, (ax, (name, values)) in enumerate(zip(axes, panels.items(), strict=True)):
        image = _heatmap(ax, values, color_map, lo, hi, fmt, reverse)
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=_SMALL)
        ax.set_yticks(range(len(rows)), rows, fontsize=_SMALL)
        ax.set_xlabel("SA variables used for masking", fontsize=8)
        if p == 0:
            ax.set_ylabel("Augmentations of input", fontsize=8)
        if name:
            ax.set_title(f"({name})", fontsize=9)
    if colorbar and image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label=r"Spearman $\rho$")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def masking_dendrogram_plot(
    distances: Any,
    labels: Sequence[str],
    *,
    threshold: float | None = 0.025,
    method: str = "average",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""HCA dendrogram of the (augmentation, mask variable) pairs (Appendix C).

    Parameters
    ----------
    distances : Tensor or ndarray
        ``(P, P)`` distances :math:`\sqrt{1 - |\rho|}` from
        :func:`~convscope.sensitivity.augmentation.masking.masking_pair_distances`.
    labels : sequence of str
        ``P`` leaf names (``"<augmentation>--<variable>"``).
    threshold : float or None, default 0.025
        Distance of the flat-cluster cut, drawn as a dotted line (the reference code's
        ``max_d``); None draws no line.
    method : str, default "average"
        Linkage method.
    title : str, optional
        Axes title.
    figsize : (float, float), optional
        Default grows with the number of leaves.

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal dendrogram: leaves on the left, merge distances along the x-axis.
    """
    from scipy.cluster.hierarchy import dendrogram

    from convscope.sensitivity.augmentation.masking import masking_linkage

    d = np.asarray(_to_numpy(distances, "distances"), dtype=np.float64)
    names = [str(x) for x in labels]
    if d.ndim != 2 or d.shape != (len(names), len(names)):
        raise InputError(
            f"distances must be ({len(names)}, {len(names)}) for {len(names)} labels, got "
            f"shape {d.shape}."
        )
    z = masking_linkage(d, method=method)
    if figsize is None:
        figsize = (6.0, 0.22 * len(names) + 1.2)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    dendrogram(z, ax=ax, labels=names, orientation="right", leaf_font_size=_SMALL)
    if threshold is not None:
        ax.axvline(threshold, color="black", ls=":", lw=1)
    ax.set_xlabel(r"$\sqrt{1 - |\rho_{\mathrm{Spearman}}|}$", fontsize=8)
    ax.grid(alpha=0.4, lw=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
