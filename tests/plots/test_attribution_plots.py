"""Tests of convscope.plots.attribution: panel contents, capped bars, reference lines, markers.

Every figure is a bare ``matplotlib.figure.Figure`` (never registered with pyplot), so
nothing needs closing. Oracles are numpy re-computations of what each panel must show.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from convscope.core.errors import InputError
from convscope.plots.attribution import (
    area_curves,
    area_sweep_strip,
    channel_curve,
    channel_saliency_overlay,
    mask_overlay,
    method_grid,
    optimisation_history,
    perturbation_panel,
    sanity_cascade,
)

H = W = 12


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _hwc(image: torch.Tensor) -> np.ndarray[Any, Any]:
    return image.permute(1, 2, 0).double().numpy()


def _shown(ax: Any) -> np.ndarray[Any, Any]:
    assert len(ax.images) == 1
    return np.asarray(ax.images[0].get_array(), dtype=np.float64)


def _image_axes(fig: Figure) -> list[Any]:
    return [ax for ax in fig.axes if ax.images]


def _jet_blend(
    image: torch.Tensor, heat01: np.ndarray[Any, Any], alpha: float = 0.5
) -> np.ndarray[Any, Any]:
    colored = np.asarray(mpl.colormaps["jet"](heat01), dtype=np.float64)[..., :3]
    return np.clip((1 - alpha) * _hwc(image) + alpha * colored, 0, 1)


def _minmax(h: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return (h - h.min()) / (h.max() - h.min())


def _texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.texts]


def _square_mask(lo: int, hi: int) -> torch.Tensor:
    m = torch.zeros(H, W)
    m[lo:hi, lo:hi] = 1.0
    return m


# --------------------------------------------------------------------------- mask_overlay


def test_mask_overlay_black_out_shows_mask_times_image_and_area_box() -> None:
    image = _rand(3, H, W)
    mask = _rand(H, W, seed=1)
    fig = mask_overlay(image, mask[None, None], area=0.1, black_out=True, title="cat")
    (ax,) = _image_axes(fig)
    np.testing.assert_allclose(_shown(ax), _hwc(image) * mask.double().numpy()[..., None])
    assert _texts(ax) == ["a = 10%"]
    assert ax.get_title() == "cat"


def test_mask_overlay_colours_mask_values_without_rescaling() -> None:
    image = _rand(3, H, W)
    mask = 0.2 + 0.5 * _rand(H, W, seed=2)  # range [0.2, 0.7]: min-max would change colours
    fig = mask_overlay(image.numpy(), mask.numpy(), alpha=0.3)
    expected = _jet_blend(image, mask.double().numpy(), alpha=0.3)
    np.testing.assert_allclose(_shown(fig.axes[0]), expected, atol=1e-12)
    assert _texts(fig.axes[0]) == []


def test_mask_overlay_upsamples_a_low_resolution_mask_and_accepts_label_and_ax() -> None:
    image = _rand(3, H, W)
    outer = Figure()
    ax = outer.add_subplot()
    fig = mask_overlay(image, torch.full((3, 3), 0.5), area="a* = 2.5%", black_out=True, ax=ax)
    assert fig is outer
    # bilinear upsampling of a constant is that constant
    np.testing.assert_allclose(_shown(ax), 0.5 * _hwc(image), atol=1e-12)
    assert _texts(ax) == ["a* = 2.5%"]
    fig = mask_overlay(image, torch.ones(H, W), area=0.025)
    assert _texts(fig.axes[0]) == ["a = 2.5%"]


# --------------------------------------------------------------------------- area sweep strip


def test_area_sweep_strip_caps_bars_and_marks_tau_and_a_star() -> None:
    image = _rand(3, H, W)
    areas = [0.05, 0.1, 0.2, 0.4]
    masks = torch.stack([_square_mask(6 - k, 6 + k) for k in (1, 2, 3, 4)])[:, None]
    ratios = np.array([0.4, 1.7, 1.1, -0.3])
    fig = area_sweep_strip(image, masks, areas, ratios, cap=1.25, a_star=0.2)

    panels, bar_ax = fig.axes[:-1], fig.axes[-1]
    assert len(panels) == 4 and not bar_ax.images
    for ax, m in zip(panels, masks, strict=True):
        np.testing.assert_allclose(_shown(ax), _hwc(image) * m[0].double().numpy()[..., None])
    assert [_texts(ax) for ax in panels] == [["5%"], ["10%"], ["20%"], ["40%"]]

    bars = [p for p in bar_ax.patches if isinstance(p, Rectangle)]
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights, [0.4, 1.25, 1.1, -0.3])
    assert max(heights) <= 1.25
    assert [b.get_hatch() for b in bars] == [None, "//", None, None]
    assert "1.70" in _texts(bar_ax)  # the true value of the saturated bar
    np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], [0, 1, 2, 3])
    assert bar_ax.get_ylim()[0] < -0.3  # negative ratios stay visible

    (tau_line,) = bar_ax.lines
    np.testing.assert_allclose(tau_line.get_ydata(), [1.0, 1.0])

    purple = to_rgba("tab:purple")
    assert all(s.get_visible() and s.get_edgecolor() == purple for s in panels[2].spines.values())
    assert not any(s.get_visible() for s in panels[0].spines.values())
    assert bars[2].get_edgecolor() == purple
    assert bars[0].get_edgecolor() != purple
    assert bar_ax.get_xticklabels()[2].get_text() == "a* = 20%"


def test_area_sweep_strip_tau_and_titles() -> None:
    masks = torch.ones(2, H, W)
    fig = area_sweep_strip(
        _rand(3, H, W), masks, [0.1, 0.2], [0.5, 3.0], cap=2.0, tau=0.8, titles=["a", "b"]
    )
    bar_ax = fig.axes[-1]
    np.testing.assert_allclose(bar_ax.lines[0].get_ydata(), [0.8, 0.8])
    np.testing.assert_allclose([p.get_height() for p in bar_ax.patches], [0.5, 2.0])
    assert [ax.get_title() for ax in fig.axes[:-1]] == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"areas": [0.1, 0.2]}, "areas for 3 masks"),
        ({"ratios": [1.0]}, "ratios for 3 masks"),
        ({"a_star": 0.3}, "a_star=0.3 is not one of the areas"),
        ({"areas": [5, 10, 20]}, r"fractions of the image in \[0, 1\]"),
        ({"cap": 0.9}, "at least tau"),
        ({"ratios": [1.0, float("nan"), 1.0]}, "NaN"),
        ({"titles": ["a"]}, "titles for 3 masks"),
        ({"masks": 2 * torch.ones(3, H, W)}, r"values must lie in \[0, 1\]"),
    ],
)
def test_area_sweep_strip_bad_inputs(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "masks": torch.ones(3, 1, H, W),
        "areas": [0.1, 0.2, 0.4],
        "ratios": [0.5, 1.0, 1.5],
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        area_sweep_strip(_rand(3, H, W), **args)


# --------------------------------------------------------------------------- area curves


def test_area_curves_lines_are_sorted_data_and_reference_lines() -> None:
    areas = np.array([0.4, 0.05, 0.2, 0.1])
    preserve = np.array([6.0, 1.0, 5.0, 3.0])
    delete = np.array([-1.0, 5.0, 0.0, 2.0])
    fig = area_curves(
        areas, torch.tensor(preserve), delete, full_score=5.5, blurred_score=-0.7, a_star=0.2
    )
    (ax,) = fig.axes
    pres, dele, full, blurred, star = ax.lines
    order = [1, 3, 2, 0]  # areas ascending: 0.05, 0.1, 0.2, 0.4
    np.testing.assert_allclose(pres.get_xdata(), areas[order])
    np.testing.assert_allclose(pres.get_ydata(), preserve[order])
    np.testing.assert_allclose(dele.get_ydata(), delete[order])
    np.testing.assert_allclose(full.get_ydata(), [5.5, 5.5])
    np.testing.assert_allclose(blurred.get_ydata(), [-0.7, -0.7])
    np.testing.assert_allclose(star.get_xdata(), [0.2, 0.2])
    colours = [to_rgba(line.get_color()) for line in (pres, dele, full, blurred)]
    assert colours == [to_rgba(c) for c in ("tab:blue", "tab:orange", "tab:green", "tab:red")]
    assert ax.get_ylabel() == "score"


def test_area_curves_one_curve_and_errors() -> None:
    fig = area_curves([0.1, 0.2], None, [3.0, 1.0], full_score=4, blurred_score=0)
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(InputError, match="delete_scores for 2 areas"):
        area_curves([0.1, 0.2], [1, 2], [1, 2, 3], full_score=1, blurred_score=0)
    with pytest.raises(InputError, match="both are None"):
        area_curves([0.1], None, None, full_score=1, blurred_score=0)
    with pytest.raises(InputError, match="full_score must be finite"):
        area_curves([0.1], [1], None, full_score=float("inf"), blurred_score=0)


# --------------------------------------------------------------------------- method grid


def test_method_grid_cells_titles_outline_scores_and_markers() -> None:
    n = 2
    images = _rand(n, 3, H, W)
    maps = {"EP": _rand(n, 1, H, W, seed=3), "gradient": _rand(n, 1, H, W, seed=4) * 5 - 2}
    gt = torch.stack([_square_mask(3, 8), _square_mask(2, 6)]).bool()
    points = {"EP": np.array([[4.0, 5.0], [1.0, 10.0]])}
    fig = method_grid(
        images,
        maps,
        masks=gt,
        row_titles=["dog", "cat"],
        scores={"gradient": [0.25, 0.5]},
        points=points,
        hits={"EP": [True, False]},
    )
    axes = fig.axes
    assert len(axes) == n * 3 and all(len(ax.images) == 1 for ax in axes)
    grid = np.array(axes).reshape(n, 3)
    assert [ax.get_title() for ax in grid[0]] == ["image + GT", "EP", "gradient"]
    assert [ax.get_title() for ax in grid[1]] == ["", "", ""]
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["dog", "cat"]

    for i in range(n):
        for j, name in enumerate(maps, start=1):
            expected = _jet_blend(images[i], _minmax(maps[name][i, 0].double().numpy()))
            np.testing.assert_allclose(_shown(grid[i, j]), expected, atol=1e-12)
    # first column: the image with the square's perimeter painted red
    lo, hi = 3, 8
    perimeter = np.zeros((H, W), dtype=bool)
    perimeter[lo:hi, lo:hi] = True
    perimeter[lo + 1 : hi - 1, lo + 1 : hi - 1] = False
    expected_img = _hwc(images[0])
    expected_img[perimeter] = [1.0, 0.0, 0.0]
    np.testing.assert_allclose(_shown(grid[0, 0]), expected_img)

    assert _texts(grid[0, 2]) == ["0.25"] and _texts(grid[1, 2]) == ["0.50"]
    assert _texts(grid[0, 1]) == []
    for i, (marker, face) in enumerate([("o", "lime"), ("x", "red")]):
        (line,) = grid[i, 1].lines
        assert isinstance(line, Line2D)
        np.testing.assert_allclose(line.get_xdata(), [points["EP"][i, 1]])
        np.testing.assert_allclose(line.get_ydata(), [points["EP"][i, 0]])
        assert line.get_marker() == marker
        if marker == "o":
            assert to_rgba(line.get_markerfacecolor()) == to_rgba(face)
        else:
            assert to_rgba(line.get_markeredgecolor()) == to_rgba(face)
    assert not grid[0, 2].lines
    # the marker does not change the displayed image extent
    assert grid[1, 1].get_xlim() == grid[1, 2].get_xlim()


def test_method_grid_list_form_global_normalisation_and_upsampling() -> None:
    images = _rand(2, 3, H, W)
    base = _rand(1, 1, H, W, seed=5)
    maps = [torch.cat([base, 2 * base]), torch.full((2, 1, 3, 3), 0.25)]
    fig = method_grid(images, maps, method_names=["A", "B"], normalize="global")
    grid = np.array(fig.axes).reshape(2, 3)
    b = base[0, 0].double().numpy()
    lo, hi = b.min(), 2 * b.max()  # one range down the column
    for i, scale in enumerate((1, 2)):
        expected = _jet_blend(images[i], (scale * b - lo) / (hi - lo))
        np.testing.assert_allclose(_shown(grid[i, 1]), expected, atol=1e-12)
    assert [ax.get_title() for ax in grid[0]] == ["image", "A", "B"]
    # a constant 3×3 map, upsampled, is the constant: min-max of a constant is 0
    np.testing.assert_allclose(_shown(grid[0, 2]), _jet_blend(images[0], np.zeros((H, W))))
    # dict + method_names selects and orders the columns
    fig = method_grid(images, {"A": maps[0], "B": maps[1]}, method_names=["B"])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["image", "B"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda im, m: method_grid(im, list(m.values())), "pass method_names"),
        (lambda im, m: method_grid(im, {"A": m["A"][:1]}), "holds 1 maps for 2 images"),
        (lambda im, m: method_grid(im, m, method_names=["Z"]), "not keys of maps"),
        (lambda im, m: method_grid(im, m, scores={"C": [1, 2]}), "not methods"),
        (lambda im, m: method_grid(im, m, scores={"A": [1]}), "scores"),
        (lambda im, m: method_grid(im, m, points={"A": np.zeros((2, 3))}), "N×2"),
        (lambda im, m: method_grid(im, m, hits={"A": [True, False]}), "without points"),
        (lambda im, m: method_grid(im, m, masks=torch.ones(3, H, W)), "3 masks for 2"),
        (lambda im, m: method_grid(im, m, row_titles=["x"]), "row_titles"),
        (lambda im, m: method_grid(im, {"A": m["A"] * float("nan")}), "NaN"),
    ],
)
def test_method_grid_bad_inputs(call: Any, match: str) -> None:
    maps = {"A": _rand(2, 1, H, W), "B": _rand(2, 1, H, W, seed=1)}
    with pytest.raises(InputError, match=match):
        call(_rand(2, 3, H, W), maps)


# --------------------------------------------------------------------------- sanity cascade


def test_sanity_cascade_titles_correlations_and_maps() -> None:
    image = _rand(3, H, W)
    maps = _rand(4, 1, H, W, seed=6)
    fig = sanity_cascade(image, maps, ["fc", "conv3", "conv2"], correlations=[0.9, 0.456, -0.1])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["original", "fc", "conv3", "conv2"]
    assert [ax.get_xlabel() for ax in axes] == ["", "ρ = 0.90", "ρ = 0.46", "ρ = -0.10"]
    for ax, h in zip(axes, maps, strict=True):
        expected = _jet_blend(image, _minmax(h[0].double().numpy()))
        np.testing.assert_allclose(_shown(ax), expected, atol=1e-12)
    with pytest.raises(InputError, match=r"len\(maps\) == len\(layer_names\) \+ 1"):
        sanity_cascade(image, maps, ["fc", "conv3", "conv2", "conv1"])
    with pytest.raises(InputError, match="correlations for 3 layers"):
        sanity_cascade(image, maps, ["fc", "conv3", "conv2"], correlations=[1, 0.9, 0.5, 0.1])


# --------------------------------------------------------------------------- channels


def test_channel_curve_line_reference_and_star_marker() -> None:
    counts = [50, 1, 25, 10]
    scores = [7.0, 0.5, 6.1, 4.0]
    fig = channel_curve(counts, scores, full_score=6.0, a_star=25, total_channels=64)
    (ax,) = fig.axes
    curve, full, vline, star = ax.lines
    np.testing.assert_allclose(curve.get_xdata(), [1, 10, 25, 50])
    np.testing.assert_allclose(curve.get_ydata(), [0.5, 4.0, 6.1, 7.0])
    np.testing.assert_allclose(full.get_ydata(), [6.0, 6.0])
    np.testing.assert_allclose(vline.get_xdata(), [25, 25])
    assert star.get_marker() == "*"
    np.testing.assert_allclose(star.get_xdata(), [25])
    np.testing.assert_allclose(star.get_ydata(), [6.1])
    assert ax.get_xlim() == (0.0, 64.0)
    assert "64" in ax.get_xlabel()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a_star": 3}, "a_star=3 is not one of the counts"),
        ({"total_channels": 20}, "below the largest count"),
        ({"counts": [1.5, 10, 25]}, "whole numbers"),
        ({"scores": [1.0, 2.0]}, "scores for 3 counts"),
    ],
)
def test_channel_curve_bad_inputs(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"counts": [1, 10, 25], "scores": [1.0, 2.0, 3.0]}
    args.update(kwargs)
    counts, scores = args.pop("counts"), args.pop("scores")
    with pytest.raises(InputError, match=match):
        channel_curve(counts, scores, **args)


def test_channel_saliency_overlay_is_the_minmax_blend() -> None:
    image = _rand(3, H, W)
    saliency = _rand(1, H, W, seed=7) * 10
    fig = channel_saliency_overlay(image[None], saliency, title="a* = 25")
    (ax,) = fig.axes
    expected = _jet_blend(image, _minmax(saliency[0].double().numpy()))
    np.testing.assert_allclose(_shown(ax), expected, atol=1e-12)
    assert ax.get_title() == "a* = 25"
    with pytest.raises(InputError, match="one image"):
        channel_saliency_overlay(_rand(2, 3, H, W), saliency)


# --------------------------------------------------------------------------- history


def test_optimisation_history_plots_every_curve() -> None:
    history = _rand(3, 2, 7, seed=8).numpy()
    history[1, 0, 3] = np.nan  # a gap is allowed
    fig = optimisation_history(torch.from_numpy(history), titles=["a", "b", "c"], ncols=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and len(fig.axes) == 4
    for k, ax in enumerate(visible):
        assert len(ax.lines) == 2
        for c, line in enumerate(ax.lines):
            np.testing.assert_allclose(line.get_xdata(), np.arange(7))
            np.testing.assert_allclose(line.get_ydata(), history[k, c])
        assert ax.get_title() == "abc"[k]
    legend = visible[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["reward", "area penalty"]
    assert len(optimisation_history(history[0]).axes) == 1
    with pytest.raises(InputError, match="name the 3 quantities"):
        optimisation_history(np.zeros((1, 3, 5)))
    with pytest.raises(InputError, match="K×C×T"):
        optimisation_history(np.zeros(5))


# --------------------------------------------------------------------------- perturbation panel


def test_perturbation_panel_columns_scores_and_mask() -> None:
    image = _rand(3, H, W)
    mask = _rand(H, W, seed=9)
    perturbed = {"blur": _rand(3, H, W, seed=10), "constant": torch.full((3, H, W), 0.5)}
    fig = perturbation_panel(image, mask, perturbed, scores={"original": 0.99, "blur": 0.004})
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == [
        "original\n0.990",
        "blur\n0.004",
        "constant",
        "mask (1 = keep)",
    ]
    np.testing.assert_allclose(_shown(axes[0]), _hwc(image))
    np.testing.assert_allclose(_shown(axes[1]), _hwc(perturbed["blur"]))
    np.testing.assert_allclose(_shown(axes[2]), _hwc(perturbed["constant"]))
    np.testing.assert_allclose(_shown(axes[3]), mask.double().numpy(), atol=1e-12)
    with pytest.raises(InputError, match="valid keys"):
        perturbation_panel(image, mask, perturbed, scores={"noise": 0.1})
    with pytest.raises(InputError, match="is \\(6, 6\\) but the image is \\(12, 12\\)"):
        perturbation_panel(image, mask, {"blur": _rand(3, 6, 6)})
    with pytest.raises(InputError, match="non-empty dict"):
        perturbation_panel(image, mask, {})


# --------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mask_overlay(_rand(3, H, W), _rand(H, W) * 3), r"\[0, 1\] \(1 = keep\)"),
        (lambda: mask_overlay(_rand(3, H, W), _rand(2, H, W)), "one H×W map"),
        (lambda: mask_overlay(_rand(2, 3, H, W), _rand(H, W)), "one image"),
        (lambda: mask_overlay(_rand(3, H, W), _rand(H, W), area=10), "fractions"),
        (lambda: mask_overlay(_rand(3, H, W), _rand(H, W), alpha=2), "alpha"),
    ],
)
def test_mask_overlay_bad_inputs(call: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 50


def test_every_figure_saves_to_png(tmp_path: Path) -> None:
    image = _rand(3, H, W)
    masks = torch.stack([_square_mask(4, 8), _square_mask(2, 10)])[:, None]
    figures = {
        "overlay": mask_overlay(image, masks[0], area=0.1, black_out=True),
        "strip": area_sweep_strip(image, masks, [0.1, 0.4], [0.8, 1.6], a_star=0.4),
        "curves": area_curves([0.1, 0.4], [1, 2], [2, 1], full_score=2, blurred_score=0),
        "grid": method_grid(
            _rand(2, 3, H, W), {"m": _rand(2, 1, 4, 4)}, points={"m": [[1, 1]] * 2}
        ),
        "cascade": sanity_cascade(image, _rand(3, H, W), ["a", "b"], correlations=[0.5, 0.1]),
        "channels": channel_curve([1, 4, 8], [0.1, 0.5, 0.9], full_score=0.8, a_star=4),
        "saliency": channel_saliency_overlay(image, _rand(4, 4)),
        "history": optimisation_history(_rand(2, 2, 10)),
        "panel": perturbation_panel(image, masks[0], {"blur": image * 0.5}),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=60)
        _assert_png(path)
