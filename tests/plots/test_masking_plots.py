"""Guided-masking figures: plotted values, annotations, colours and dendrogram structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram, linkage
from scipy.spatial.distance import squareform

from convscope.core.errors import InputError
from convscope.plots.masking import masking_dendrogram_plot, masking_matrix_plot

ROWS = ["erasing", "grayscale", "blur"]
COLS = ["erasing", "grayscale", "blur", "class"]


def _matrix(seed: int) -> torch.Tensor:
    return torch.rand(3, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _luminance(rgba: tuple[float, ...]) -> float:
    return 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]


def test_matrix_plot_values_annotations_and_ticks() -> None:
    m = _matrix(0)
    m[1, 2] = math.nan
    fig = masking_matrix_plot(m, ROWS, COLS, "Fig. 4")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    drawn = ax.images[0].get_array()
    np.testing.assert_array_equal(drawn.mask, np.isnan(m.numpy()))
    np.testing.assert_allclose(drawn.filled(0), np.nan_to_num(m.numpy().astype(np.float64)))
    texts = [t.get_text() for t in ax.texts]
    expected = ["nan" if math.isnan(v) else f"{v:.3f}" for v in m.reshape(-1).tolist()]
    assert texts == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == COLS
    assert [t.get_text() for t in ax.get_yticklabels()] == ROWS
    assert ax.get_xlabel() == "SA variables used for masking"
    assert ax.get_ylabel() == "Augmentations of input"
    assert fig.get_suptitle() == "Fig. 4"


def test_darker_cells_are_lower_correlations() -> None:
    m = _matrix(1)
    fig = masking_matrix_plot(m, ROWS, COLS)
    image = fig.axes[0].images[0]
    lo, hi = float(m.min()), float(m.max())
    assert image.norm.vmin == pytest.approx(lo) and image.norm.vmax == pytest.approx(hi)
    assert _luminance(image.cmap(image.norm(lo))) < _luminance(image.cmap(image.norm(hi)))
    # the annotation on the darkest cell is white, on the lightest black
    flat = m.reshape(-1)
    texts = fig.axes[0].texts
    assert texts[int(flat.argmin())].get_color() == "white"
    assert texts[int(flat.argmax())].get_color() == "black"


def test_one_panel_per_measure_with_a_shared_scale() -> None:
    panels = {"shpv": _matrix(2), "si": _matrix(3) * 0.5, "siT": _matrix(4) + 1}
    fig = masking_matrix_plot(panels, ROWS, COLS, colorbar=True)
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == ["(shpv)", "(si)", "(siT)"]
    lo = min(float(p.min()) for p in panels.values())
    hi = max(float(p.max()) for p in panels.values())
    for ax in axes:
        assert ax.images[0].norm.vmin == pytest.approx(lo)
        assert ax.images[0].norm.vmax == pytest.approx(hi)
    assert axes[1].get_ylabel() == ""
    assert len(fig.axes) == 4  # three panels and one colour bar


def test_matrix_plot_rejects_a_wrong_shape() -> None:
    with pytest.raises(InputError, match=r"\(3, 4\)"):
        masking_matrix_plot(torch.zeros(4, 3), ROWS, COLS)
    with pytest.raises(InputError, match="non-empty"):
        masking_matrix_plot({}, ROWS, COLS)


def test_dendrogram_leaves_follow_average_linkage() -> None:
    g = np.random.default_rng(0)
    pts = np.concatenate([g.normal(0, 0.01, (3, 2)), g.normal(1, 0.01, (3, 2))])
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    labels = [f"a{i}--v{i % 2}" for i in range(6)]
    fig = masking_dendrogram_plot(d, labels, threshold=0.5, title="HCA")
    (ax,) = fig.axes
    leaves = [t.get_text() for t in ax.get_yticklabels()]
    order = dendrogram(linkage(squareform(d), "average"), no_plot=True, labels=labels)["ivl"]
    assert leaves == order
    assert set(leaves[:3]) in ({"a0--v0", "a1--v1", "a2--v0"}, {"a3--v1", "a4--v0", "a5--v1"})
    assert any(line.get_xdata()[0] == 0.5 for line in ax.get_lines())
    assert ax.get_title() == "HCA"


def test_dendrogram_rejects_mismatched_labels() -> None:
    with pytest.raises(InputError, match="labels"):
        masking_dendrogram_plot(np.zeros((3, 3)), ["a", "b"])
