"""Static overlay figures: the drawn overlay data equals the maps, cells are marked correctly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from convscope.core.errors import InputError
from convscope.plots.viewer import nmf_figure, similarity_figure, sweep_figure, upscale_map
from convscope.viewer.nmf import NMFComponents
from convscope.viewer.transforms import TransformSweep


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _query_patches(ax: object) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]  # type: ignore[attr-defined]


def test_similarity_overlay_data_is_the_nearest_upscaled_map() -> None:
    images = torch.from_numpy(_rng().uniform(size=(3, 3, 16, 16)))
    maps = _rng(1).uniform(size=(3, 4, 4))
    fig = similarity_figure(images, maps, (1, 2, 3), names=["a", "b", "c"])
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3
    for k, ax in enumerate(axes):
        photo, overlay = ax.images
        np.testing.assert_allclose(photo.get_array(), images[k].permute(1, 2, 0).numpy())
        np.testing.assert_array_equal(overlay.get_array(), np.kron(maps[k], np.ones((4, 4))))
        assert overlay.get_alpha() == pytest.approx(0.7)
        assert overlay.get_cmap().name == "gray"
        assert overlay.get_clim() == (0.0, 1.0)
        assert ax.get_title() == "abc"[k]
    assert [len(_query_patches(ax)) for ax in axes] == [0, 1, 0]
    rect = _query_patches(axes[1])[0]
    assert rect.get_xy() == (3 * 4 - 0.5, 2 * 4 - 0.5)  # column 3, row 2, 4-pixel cells
    assert (rect.get_width(), rect.get_height()) == (4.0, 4.0)
    assert rect.get_facecolor()[:3] == (1.0, 1.0, 0.0)  # yellow, as in the original
    FigureCanvasAgg(fig).draw()


def test_similarity_normalisation_modes() -> None:
    images = np.full((2, 3, 8, 8), 0.5)
    maps = np.array([[[0.2, 0.4], [0.3, 0.5]], [[0.25, 0.3], [0.35, 0.45]]])
    fig = similarity_figure(images, maps, (0, 0, 0), normalize="query", cmap="viridis")
    overlay = fig.axes[0].images[1]
    assert overlay.get_clim() == (0.2, 0.5)
    assert overlay.get_cmap().name == "viridis"
    signed = similarity_figure(images, maps - 0.3, (0, 0, 0))
    assert signed.axes[0].images[1].get_clim() == (-1.0, 1.0)
    with pytest.raises(InputError, match="normalize"):
        similarity_figure(images, maps, (0, 0, 0), normalize="sheet")  # type: ignore[arg-type]


def test_bilinear_upscaling_of_a_ramp() -> None:
    # align_corners=False: sources at x = -0.25, 0.25, 0.75, 1.25 (clamped at the edges).
    up = upscale_map(np.array([[0.0, 1.0], [0.0, 1.0]]), (4, 4), "bilinear")
    np.testing.assert_allclose(up, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-12)
    near = upscale_map(np.arange(6.0).reshape(2, 3), (4, 7), "nearest")
    np.testing.assert_array_equal(near[:, 0], [0, 0, 3, 3])
    np.testing.assert_array_equal(near[0], [0, 0, 0, 1, 1, 2, 2])  # floor(x·3/7)
    ramp = np.array([[[0.0, 1.0]] * 2])
    fig = similarity_figure(np.zeros((1, 3, 4, 4)), ramp, (0, 0, 0), upscale="bilinear")
    np.testing.assert_allclose(fig.axes[0].images[1].get_array(), up, atol=1e-12)


def test_labels_are_plain_text() -> None:
    names = ["<img src=x onerror=alert(1)>", "$x^2$ cost"]
    fig = similarity_figure(np.zeros((2, 3, 4, 4)), np.zeros((2, 2, 2)), (0, 0, 0), names=names)
    assert fig.axes[0].get_title() == names[0]
    assert fig.axes[1].get_title() == r"\$x^2\$ cost"  # rendered literally, not as mathtext
    FigureCanvasAgg(fig).draw()


def test_similarity_figure_errors() -> None:
    images, maps = np.zeros((2, 3, 4, 4)), np.zeros((2, 2, 2))
    with pytest.raises(InputError, match="outside"):
        similarity_figure(images, maps, (0, 2, 0))
    with pytest.raises(InputError, match=r"\(image, row, col\)"):
        similarity_figure(images, maps, (0, 1))
    with pytest.raises(InputError, match="one map per image"):
        similarity_figure(images, maps[:1], (0, 0, 0))
    with pytest.raises(InputError, match="opacity"):
        similarity_figure(images, maps, (0, 0, 0), opacity=1.5)


def _nmf() -> NMFComponents:
    weights = _rng(2).uniform(size=(2, 3, 3, 3)).astype(np.float32)
    return NMFComponents(
        weights=weights,
        components=np.ones((3, 5), dtype=np.float32),
        colors=np.eye(3),
        scales=np.ones(3),
        layer="relu3",
        k=3,
        seed=0,
        reconstruction_error=0.1,
        n_iter=10,
    )


def test_nmf_overlay_data_is_the_upscaled_colouring() -> None:
    nmf = _nmf()
    images = _rng(3).uniform(size=(2, 3, 6, 6))
    fig = nmf.plot(images, mode="argmax")
    colored = nmf.colorize("argmax")
    for k, ax in enumerate(fig.axes[:2]):
        expected = np.stack([np.kron(colored[k, ..., c], np.ones((2, 2))) for c in range(3)], -1)
        np.testing.assert_array_equal(ax.images[1].get_array(), expected)
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [f"component {i}" for i in (1, 2, 3)]
    for handle, color in zip(legend.legend_handles, np.eye(3), strict=True):
        assert handle.get_facecolor() == to_rgba(tuple(color))
    alone = nmf_figure(nmf, None, mode="mix")
    np.testing.assert_allclose(alone.axes[0].images[0].get_array(), nmf.colorize("mix")[0])
    with pytest.raises(InputError, match="3 images"):
        nmf_figure(nmf, images[:1].repeat(3, axis=0))


def test_sweep_figure_curve_and_marked_cells() -> None:
    curves = np.array([[[0.5, np.nan]], [[1.0, 1.0]], [[0.7, np.nan]]], dtype=np.float32)
    corr = np.array(
        [[[[0, 0], [-1, -1]]], [[[0, 0], [0, 1]]], [[[0, 1], [-1, -1]]]], dtype=np.int64
    )
    sweep = TransformSweep(
        kind="scale",
        values=np.array([0.5, 1.0, 2.0]),
        images=torch.rand(3, 3, 4, 8),
        layer="relu2",
        features=torch.zeros(3, 1, 2, 4),
        source_features=torch.zeros(1, 2, 4),
        correspondence=corr,
        curves=curves,
        eps=1e-4,
    )
    fig = sweep.plot(0, 1)
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0.5, 1.0, 2.0])
    np.testing.assert_array_equal(line.get_ydata(), [np.nan, 1.0, np.nan])  # gaps, not zeros
    image_axes = fig.axes[1:]
    assert len(image_axes) == 3
    assert [len(_query_patches(ax)) for ax in image_axes] == [0, 1, 0]
    rect = _query_patches(image_axes[1])[0]
    assert rect.get_xy() == (1 * 4 - 0.5, -0.5)  # cell (0, 1) of a 1×2 grid on 4×8 pixels
    assert (rect.get_width(), rect.get_height()) == (4.0, 4.0)
    other = sweep_figure(sweep, 0, 0)
    np.testing.assert_array_equal(other.axes[0].lines[0].get_ydata(), curves[:, 0, 0])
    assert [len(_query_patches(ax)) for ax in other.axes[1:]] == [1, 1, 1]
    assert _query_patches(other.axes[3])[0].get_xy() == (3.5, -0.5)
    FigureCanvasAgg(fig).draw()
