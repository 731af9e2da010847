"""Figures of activation sensitivity maps (Kharyuk et al., Figures S1-S6 and Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from convscope.core.errors import InputError

__all__ = ["sensitivity_map_grid", "unit_map_panel"]


def _np(x: Any) -> np.ndarray[Any, Any]:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def sensitivity_map_grid(
    maps: Any,
    labels: Sequence[str],
    *,
    channels: Sequence[int] | int = 8,
    title: str | None = None,
    cmap: str = "Reds",
    vmin: float = 0.0,
    vmax: float = 1.0,
    panel_size: float = 0.9,
) -> Figure:
    """One row per SA variable, one column per channel: the channel's sensitivity map.

    Parameters
    ----------
    maps
        ``(V, C, H, W)`` maps of a convolutional checkpoint, or ``(V, C)`` of a fully
        connected one (drawn as a V×C image, one column per neuron).
    labels
        V variable labels.
    channels
        Channel indices to show, or how many of the first ones (default 8).
    cmap, vmin, vmax
        White-to-red on a shared [0, 1] scale, as the authors draw them.
    """
    m = _np(maps)
    if m.ndim not in (2, 4):
        raise InputError(f"maps must be (V, C, H, W) or (V, C), got shape {m.shape}.")
    if len(labels) != m.shape[0]:
        raise InputError(f"{len(labels)} labels for {m.shape[0]} variables; pass one per variable.")
    if m.ndim == 2:
        fig = Figure(figsize=(max(4.0, 0.12 * m.shape[1] + 2), 0.35 * m.shape[0] + 1.2))
        ax = fig.add_subplot(1, 1, 1)
        bar = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(m.shape[0]), list(labels), fontsize=7)
        ax.set_xlabel("neuron")
        fig.colorbar(bar, ax=ax, fraction=0.03)
        if title:
            ax.set_title(title, fontsize=9)
        return fig
    chans = (
        list(range(min(int(channels), m.shape[1]))) if isinstance(channels, int) else list(channels)
    )
    if not chans or max(chans) >= m.shape[1] or min(chans) < 0:
        raise InputError(f"channels must index 0..{m.shape[1] - 1}, got {channels!r}.")
    rows, cols = m.shape[0], len(chans)
    fig = Figure(figsize=(panel_size * cols + 1.6, panel_size * rows + 0.6))
    grid = fig.add_gridspec(rows, cols, wspace=0.05, hspace=0.08)
    im: Any = None
    for v in range(rows):
        for j, c in enumerate(chans):
            ax = fig.add_subplot(grid[v, j])
            im = ax.imshow(m[v, c], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(labels[v], fontsize=7, rotation=0, ha="right", va="center")
            if v == 0:
                ax.set_title(f"ch {c}", fontsize=7)
    assert im is not None
    fig.colorbar(im, ax=fig.axes, fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def unit_map_panel(
    maps: Any, log_cov: Any, labels: Sequence[str], *, channel: int = 0, title: str | None = None
) -> Figure:
    """Fig. 3: one unit's sensitivity maps per variable beside its log10(1 + CoV) map."""
    m, c = _np(maps), _np(log_cov)
    if m.ndim != 4 or c.ndim != 3:
        raise InputError("unit_map_panel needs (V, C, H, W) maps and a (C, H, W) log-CoV map.")
    v = m.shape[0]
    fig = Figure(figsize=(1.3 * (v + 1) + 0.5, 1.8))
    for i in range(v):
        ax = fig.add_subplot(1, v + 1, i + 1)
        ax.imshow(m[i, channel], cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(labels[i], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(1, v + 1, v + 1)
    ax.imshow(c[channel], cmap="viridis", interpolation="nearest")
    ax.set_title("log10(1+CoV)", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
