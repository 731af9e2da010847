"""The Table 1 figure: cell texts, labels and bar heights against the result's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from convscope.core.errors import InputError
from convscope.plots.single_augmentation import accuracy_table
from convscope.sensitivity.augmentation.single_augmentation import SingleAugmentationAccuracy

LABELS = ("Orig.", "Erasing", "Sharp.", "Gray")


def _result(top: tuple[int, ...] = (1, 5)) -> SingleAugmentationAccuracy:
    acc = torch.rand(len(top), len(LABELS), generator=torch.Generator().manual_seed(0)).double()
    return SingleAugmentationAccuracy(
        names=("original", "erasing", "sharpness_const", "grayscale"),
        labels=LABELS,
        top=top,
        accuracy=acc,
        per_draw=acc[..., None].expand(-1, -1, 3),
        n_images=10,
        n_draws=3,
    )


def _cells(fig: Figure) -> dict[tuple[int, int], str]:
    (table,) = fig.axes[0].tables
    return {key: cell.get_text().get_text() for key, cell in table.get_celld().items()}


def test_table_layout_matches_the_paper() -> None:
    res = _result()
    fig = accuracy_table(res, title="ResNet18, A1")
    assert isinstance(fig, Figure)
    cells = _cells(fig)
    # header row: one column per input; then one row per top-k with its label in column -1
    assert [cells[(0, j)] for j in range(len(LABELS))] == list(LABELS)
    for i, k in enumerate(res.top):
        assert cells[(i + 1, -1)] == f"top-{k}"
        assert [cells[(i + 1, j)] for j in range(len(LABELS))] == [
            f"{float(v):.4f}" for v in res.accuracy[i]
        ]
    assert fig.get_suptitle() == "ResNet18, A1"


def test_bars_show_the_values_and_the_original_reference() -> None:
    res = _result(top=(1, 3, 5))
    fig = accuracy_table(res)
    ax = fig.axes[1]
    assert len(ax.containers) == 3
    for i, container in enumerate(ax.containers):
        heights = [patch.get_height() for patch in container]
        np.testing.assert_allclose(heights, res.accuracy[i].numpy())
    # one dashed line per k at the original images' accuracy
    refs = sorted(float(np.asarray(line.get_ydata())[0]) for line in ax.lines)
    np.testing.assert_allclose(refs, sorted(res.accuracy[:, 0].tolist()))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LABELS)
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["top-1", "top-3", "top-5"]


def test_without_bars_nan_and_bad_input() -> None:
    res = _result(top=(1,))
    res.accuracy[0, 2] = math.nan
    fig = accuracy_table(res, bars=False, fmt=".2f")
    assert len(fig.axes) == 1
    cells = _cells(fig)
    assert cells[(1, 2)] == "n/a"
    assert cells[(1, 0)] == f"{float(res.accuracy[0, 0]):.2f}"
    with pytest.raises(InputError, match="SingleAugmentationAccuracy"):
        accuracy_table(object())  # type: ignore[arg-type]
