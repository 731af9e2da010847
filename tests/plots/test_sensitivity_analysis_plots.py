"""Figures of the sensitivity-map analyses: structure and plotted values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from convscope.core.errors import InputError
from convscope.plots.sensitivity_analysis import (
    confusion_heatmap,
    correlation_heatmap,
    decay_curves,
    dendrogram_plot,
    jaccard_table,
    top_classes_table,
)
from convscope.sensitivity.augmentation.analysis import (
    hierarchical_clustering,
    lda_confusion,
    unitwise_correlation,
)
from convscope.sensitivity.augmentation.single_class import jaccard_null, top_sensitive_classes


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_correlation_heatmap_shows_the_matrix_with_names() -> None:
    maps = np.random.default_rng(0).random((3, 10, 2, 2))
    result = unitwise_correlation(maps, names=["erasing", "hue", "class"], n_boot=0)
    fig = correlation_heatmap(result)
    ax = fig.axes[0]
    shown = np.asarray(ax.get_images()[0].get_array())
    np.testing.assert_allclose(shown, result.correlation.numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["erasing", "hue", "class"]
    assert _texts(fig) == [format(x, ".2f") for x in result.correlation.numpy().ravel()]
    assert ax.get_images()[0].get_clim() == (-1.0, 1.0)
    with pytest.raises(InputError, match="square"):
        correlation_heatmap(np.zeros((2, 3)))


def test_confusion_heatmap_shows_the_mean_confusion() -> None:
    rng = np.random.default_rng(1)
    maps = 3 * rng.standard_normal((3, 1, 4)) + rng.standard_normal((3, 15, 4))
    result = lda_confusion(maps.reshape(3, 15, 2, 2), names=["a", "b", "c"], n_repeats=1)
    fig = confusion_heatmap(result)
    ax = fig.axes[0]
    np.testing.assert_allclose(np.asarray(ax.get_images()[0].get_array()), result.confusion)
    assert f"{result.mean_validation_accuracy:.3f}" in ax.get_title()
    assert ax.get_ylabel() == "true variable" and ax.get_xlabel() == "predicted variable"


def test_confusion_heatmap_leaves_nan_cells_blank() -> None:
    matrix = np.array([[1.0, 0.0], [np.nan, np.nan]])
    fig = confusion_heatmap(matrix, names=["a", "b"])
    mask = np.ma.getmaskarray(fig.axes[0].get_images()[0].get_array())
    assert mask.tolist() == [[False, False], [True, True]]
    assert len(_texts(fig)) == 2


def test_dendrogram_leaves_follow_the_clustering() -> None:
    block = np.array([0, 1, 0, 1])
    r = np.where(block[:, None] == block[None, :], 0.9, 0.1)
    np.fill_diagonal(r, 1.0)
    result = hierarchical_clustering(r, labels=list("abcd"), threshold=0.5)
    fig = dendrogram_plot(result)
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert shown == [result.labels[i] for i in result.leaves]
    cut = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(cut) == 1 and cut[0].get_ydata()[0] == pytest.approx(0.5)
    # Tallest U-link = last merge, at sqrt(1 - 0.1).
    heights = [max(c.get_paths()[0].vertices[:, 1]) for c in ax.collections]
    assert max(heights) == pytest.approx(np.sqrt(0.9))


def test_top_classes_table_cells() -> None:
    maps = torch.tensor([[0.01, 0.06, 0.02], [0.3, 0.1, 0.2]], dtype=torch.float64)
    top = top_sensitive_classes(maps, k=2, names=["erasing", "hue"], class_names=list("xyz"))
    fig = top_classes_table(top)
    table = fig.axes[0].tables[0]
    cells = {(r, c): table[r, c].get_text().get_text() for r, c in table.get_celld()}
    assert cells[(1, 0)] == "y (1/.06)" and cells[(1, 1)] == "z (2/.02)"
    assert cells[(2, 0)] == "x (0/.30)" and cells[(2, -1)] == "hue"


def test_jaccard_table_marks_values_above_tau() -> None:
    null = jaccard_null(1000, 50)
    values = np.array([[0.0030, 0.0672, 0.0012], [0.0029, 0.0031, np.nan]])
    fig = jaccard_table(
        values, ["Erasing", "Hue"], ["0.5", "0.6", "0.7"], null, significant_digits=2
    )
    table = fig.axes[0].tables[0]
    marked = np.zeros(values.shape, dtype=bool)
    for i in range(2):
        for j in range(3):
            text = table[i + 1, j].get_text().get_text()
            marked[i, j] = text.startswith(r"$\underline")
            assert format(values[i, j], ".4f") in text or text == "n/a"
    expected = np.nan_to_num(values) > 0.003  # strict and with the paper's rounded tau
    np.testing.assert_array_equal(marked, expected)
    assert "0.003" in fig.axes[0].get_title()


def test_decay_curves_are_sorted_top_k() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((3, 30))
    maps[0, 5] = np.nan
    fig = decay_curves(maps, names=["a", "b", "c"], k=20)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3
    for line, row in zip(lines, maps, strict=True):
        expected = np.sort(row[np.isfinite(row)])[::-1][:20]
        np.testing.assert_allclose(line.get_ydata(), expected)
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, 21))
    with pytest.raises(InputError, match="k must"):
        decay_curves(maps, k=0)
