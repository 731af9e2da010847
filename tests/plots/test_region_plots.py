"""Region-attribution figures: structure and plotted values (no image comparisons)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from scipy import stats

from convscope.core import InputError
from convscope.data.regions import grid_regions
from convscope.metrics.regions import RegionMaskingResult, SensitivityNResult
from convscope.metrics.regions import region_heatmap as metrics_heatmap
from convscope.plots.regions import (
    importance_difference_plot,
    masking_slope_plot,
    region_heatmap,
    region_index_panel,
    region_ranking_plot,
    sensitivity_n_plot,
    trend_plot,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _masking(seed: int, n: int = 6) -> RegionMaskingResult:
    g = _gen(seed)
    return RegionMaskingResult(
        top_drop=torch.rand(n, generator=g) + 1.0,
        bottom_drop=torch.rand(n, generator=g),
        score=torch.ones(n),
        n_masked=torch.full((n,), 3),
        top_regions=torch.zeros(n, 16, dtype=torch.bool),
        bottom_regions=torch.zeros(n, 16, dtype=torch.bool),
        fraction=0.2,
    )


def _sens(seed: int, n: int = 5) -> SensitivityNResult:
    pearson = torch.rand(n, 3, generator=_gen(seed), dtype=torch.float64)
    pearson[0, 2] = math.nan
    return SensitivityNResult(
        fractions=torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64),
        pearson=pearson,
        mean_pearson=torch.nanmean(pearson, 0),
        n_masked=torch.ones(n, 3, dtype=torch.long),
        score_sums=torch.zeros(n, 3, 2),
        drops=torch.zeros(n, 3, 2),
    )


def test_region_heatmap_is_the_metrics_function() -> None:
    assert region_heatmap is metrics_heatmap


def test_region_index_panel_layout_and_nan_regions() -> None:
    image = torch.rand(3, 16, 16, generator=_gen(0))
    coarse, fine = grid_regions(16, 16, cells=2), grid_regions(16, 16, cells=4)
    s1 = [torch.rand(4, generator=_gen(1)), torch.rand(16, generator=_gen(2))]
    st = [v + 0.1 for v in s1]
    pir = [v / w for v, w in zip(s1, st, strict=True)]
    pir[1][5] = math.nan
    fig = region_index_panel(image, [coarse, fine], s1, st, pir, titles=["2×2", "4×4"])
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if len(ax.get_images()) == 2]
    assert len(panels) == 6 and len(fig.axes) == 6 + 3  # 3 rows × 2 columns + 3 colour bars
    pir_fine = panels[5].get_images()[1].get_array()
    assert int(np.ma.getmaskarray(pir_fine).sum()) == 16  # region 5 of the 4×4 grid: 4×4 px
    # two rows, K columns on one partition given as a K×d tensor
    fig2 = region_index_panel(image[None], coarse, torch.rand(3, 4), torch.rand(3, 4))
    assert len([ax for ax in fig2.axes if ax.get_images()]) == 6
    with pytest.raises(InputError, match="one value per region"):
        region_index_panel(image, coarse, torch.rand(5), torch.rand(5))
    with pytest.raises(InputError, match="same number of columns"):
        region_index_panel(image, coarse, torch.rand(2, 4), torch.rand(3, 4))


def test_masking_slope_plot_lines_are_mean_drops() -> None:
    results = {"sobol": _masking(0), "random": _masking(1), "ig": _masking(2)}
    fig = masking_slope_plot(results)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 3
    for line, res in zip(lines, results.values(), strict=True):
        expected = [res.bottom_drop.double().mean().item(), res.top_drop.double().mean().item()]
        np.testing.assert_allclose(line.get_ydata(), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bottom 20%", "top 20%"]
    assert isinstance(results["sobol"].plot(), Figure)
    with pytest.raises(InputError, match="non-empty dict"):
        masking_slope_plot({})


def test_sensitivity_n_plot_lines_are_nan_means() -> None:
    results = {"a": _sens(3), "b": _sens(4)}
    fig = sensitivity_n_plot(results, band=True)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, res in zip(lines, results.values(), strict=True):
        np.testing.assert_allclose(line.get_xdata(), [10.0, 50.0, 90.0])
        np.testing.assert_allclose(line.get_ydata(), np.nanmean(res.pearson.numpy(), axis=0))
    assert isinstance(results["a"].plot(), Figure)


def test_importance_difference_plot_bars_and_standard_errors() -> None:
    values = {
        "normal": torch.tensor([0.1, 0.3, math.nan, 0.2]),
        "robust": torch.tensor([0.5, 0.4, 0.6, 0.9]),
    }
    fig = importance_difference_plot(values)
    (ax,) = fig.axes
    bars = ax.patches
    assert len(bars) == 2
    for bar, v in zip(bars, values.values(), strict=True):
        assert bar.get_height() == pytest.approx(np.nanmean(v.numpy()))
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = errorbar.lines[2][0].get_segments()
    for seg, v in zip(segments, values.values(), strict=True):
        sem = stats.sem(v.numpy(), nan_policy="omit")
        assert (seg[1][1] - seg[0][1]) / 2 == pytest.approx(sem, rel=1e-5)


def test_trend_and_ranking_plots() -> None:
    values = {
        "4×4": {"alexnet": torch.rand(5), "resnet50": torch.rand(5)},
        "8×8": {"alexnet": torch.rand(5), "vgg16": torch.rand(5), "resnet50": torch.rand(5)},
    }
    fig = trend_plot(values)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["alexnet", "resnet50", "vgg16"]
    line = ax.get_lines()[1]
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])  # x-axis order, no zigzag
    means = [values["8×8"][m].double().mean().item() for m in ("alexnet", "resnet50", "vgg16")]
    np.testing.assert_allclose(line.get_ydata(), means)
    v = torch.tensor([0.2, math.nan, 0.9, 0.5, 0.1])
    fig2 = region_ranking_plot(v, torch.full((5,), 0.05), top=3)
    (ax2,) = fig2.axes
    assert [round(p.get_width(), 6) for p in ax2.patches] == [0.9, 0.5, 0.2]
    assert len(region_ranking_plot(v, top=10).axes[0].patches) == 4  # NaN region left out
