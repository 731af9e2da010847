r"""The single-augmentation accuracy table (Kharyuk et al., Table 1).

:func:`accuracy_table` draws a :class:`~convscope.sensitivity.augmentation.single_augmentation.
SingleAugmentationAccuracy` in the paper's layout: one column per input ("Orig." = A0, then
each augmentation of the set alone), one row per top-k accuracy, values with four decimals.
Below the table, optional grouped bars show the same numbers, with the original images'
accuracy as a dashed reference line per k, so the loss caused by each augmentation reads as
the gap to the line.

The figure is built without ``pyplot``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from convscope.core.errors import InputError

if TYPE_CHECKING:
    from convscope.sensitivity.augmentation.single_augmentation import SingleAugmentationAccuracy

__all__ = ["accuracy_table"]


def _values(result: Any) -> tuple[list[str], list[int], np.ndarray[Any, Any]]:
    try:
        labels = [str(x) for x in result.labels]
        top = [int(k) for k in result.top]
        acc = np.asarray(result.accuracy.detach().cpu().double().numpy(), dtype=np.float64)
    except AttributeError as exc:
        raise InputError(
            "accuracy_table needs a SingleAugmentationAccuracy (from "
            "convscope.sensitivity.single_augmentation_accuracy)."
        ) from exc
    if acc.shape != (len(top), len(labels)):
        raise InputError(
            f"The result's accuracy has shape {acc.shape}, expected ({len(top)}, {len(labels)})."
        )
    return labels, top, acc


def accuracy_table(
    result: SingleAugmentationAccuracy,
    *,
    bars: bool = True,
    fmt: str = ".4f",
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Table 1 of the paper for one network: top-k accuracy per single augmentation.

    Parameters
    ----------
    result : SingleAugmentationAccuracy
        From :func:`~convscope.sensitivity.single_augmentation_accuracy`.
    bars : bool, default True
        Add grouped bars (one group per input, one bar per k) under the table, with the
        original images' top-k accuracy as a dashed line.
    fmt : str, default ".4f"
        Format of the table cells (the paper prints four decimals).
    title : str, optional
        Figure title.
    figsize : (float, float), optional
        Default grows with the number of inputs.

    Returns
    -------
    matplotlib.figure.Figure
        The first axes holds the table (column labels = inputs, row labels ``top-k``); with
        ``bars`` the second holds the bar chart (one container per k).
    """
    labels, top, acc = _values(result)
    n = len(labels)
    if figsize is None:
        figsize = (max(4.0, 0.95 * n + 1.2), 1.0 + 0.3 * len(top) + (2.6 if bars else 0.0))
    fig = Figure(figsize=figsize, layout="constrained")
    if bars:
        ax_t, ax_b = fig.subplots(2, 1, height_ratios=[0.35 + 0.12 * len(top), 1.0])
    else:
        ax_t, ax_b = fig.subplots(1, 1), None
    ax_t.axis("off")
    cells = [["n/a" if not math.isfinite(v) else format(v, fmt) for v in row] for row in acc]
    table = ax_t.table(
        cellText=cells,
        rowLabels=[f"top-{k}" for k in top],
        colLabels=labels,
        loc="center",
        cellLoc="center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    if ax_b is not None:
        width = 0.8 / len(top)
        x = np.arange(n)
        colors = [f"C{i}" for i in range(len(top))]
        for i, k in enumerate(top):
            offset = (i - (len(top) - 1) / 2) * width
            ax_b.bar(x + offset, acc[i], width, label=f"top-{k}", color=colors[i])
            ax_b.axhline(acc[i, 0], color=colors[i], linestyle="--", linewidth=0.8)
        ax_b.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax_b.set_ylim(0.0, 1.0)
        ax_b.set_ylabel("accuracy", fontsize=8)
        ax_b.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
