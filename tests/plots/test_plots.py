"""Tests of convscope.plots: pixel-exact overlays and outlines, label colours, figures, errors."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from convscope.core.errors import InputError
from convscope.plots import (
    bar_chart,
    draw_mask,
    heatmap_overlay,
    image_grid,
    label_colors,
    label_map_grid,
    label_map_to_rgb,
    mask_outline,
    normalize_heatmap,
    overlay_array,
)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _panel_arrays(fig: Figure) -> list[np.ndarray[Any, Any]]:
    """RGB arrays shown in the figure's image panels, in panel order."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def _brute_force_boundary(mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    H, W = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for y in range(H):
        for x in range(W):
            if not mask[y, x]:
                continue
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if not (0 <= yy < H and 0 <= xx < W) or not mask[yy, xx]:
                        out[y, x] = True
    return out


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 50
    assert len(data) > 2000


# --------------------------------------------------------------------------- overlay_array


def test_overlay_alpha_zero_is_the_image() -> None:
    image = _rand(3, 16, 12)
    heat = _rand(4, 3, seed=1)
    out = overlay_array(image, heat, alpha=0.0)
    assert out.shape == (16, 12, 3)
    np.testing.assert_allclose(out, image.permute(1, 2, 0).numpy(), atol=1e-7)


@pytest.mark.parametrize("cmap", ["jet", "viridis"])
def test_overlay_alpha_one_is_the_colormap(cmap: str) -> None:
    image = _rand(3, 10, 10)
    heat = _rand(10, 10, seed=2).numpy() * 5 - 1
    out = overlay_array(image, heat, cmap=cmap, alpha=1.0, normalize="per_image")
    norm = (heat - heat.min()) / (heat.max() - heat.min())
    expected = mpl.colormaps[cmap](norm)[..., :3]
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_overlay_blends_linearly_and_upsamples_bilinearly() -> None:
    image = _rand(3, 16, 16)
    heat = _rand(4, 4, seed=3)
    alpha = 0.3
    out = overlay_array(image, heat, cmap="jet", alpha=alpha, normalize=None)
    up = F.interpolate(heat[None, None].double(), size=(16, 16), mode="bilinear")
    colored = mpl.colormaps["jet"](up[0, 0].numpy())[..., :3]
    expected = (1 - alpha) * image.permute(1, 2, 0).double().numpy() + alpha * colored
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_normalize_heatmap_modes() -> None:
    h = np.array([[-2.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(normalize_heatmap(h), [[0, 0.5], [0.75, 1]])
    np.testing.assert_allclose(normalize_heatmap(h, "symmetric"), [[0, 0.5], [0.75, 1]])
    np.testing.assert_allclose(normalize_heatmap(h, None), [[0, 0], [1, 1]])
    np.testing.assert_allclose(normalize_heatmap(h, value_range=(0, 4)), [[0.0, 0.0], [0.25, 0.5]])
    np.testing.assert_array_equal(normalize_heatmap(np.ones((3, 3))), np.zeros((3, 3)))
    with pytest.raises(InputError):
        normalize_heatmap(np.array([[np.nan]]))
    with pytest.raises(InputError):
        normalize_heatmap(h, "bogus")  # type: ignore[arg-type]


def test_heatmap_overlay_global_normalisation_is_shared() -> None:
    images = torch.zeros(2, 3, 4, 4)
    heats = torch.zeros(2, 4, 4)
    heats[0, 0, 0] = 1.0
    heats[1, 0, 0] = 0.5
    for mode, second in (("global", 0.5), ("per_image", 1.0)):
        fig = heatmap_overlay(images, heats, alpha=1.0, normalize=mode)  # type: ignore[arg-type]
        panels = _panel_arrays(fig)
        assert len(panels) == 2
        np.testing.assert_allclose(panels[1][0, 0], mpl.colormaps["jet"](second)[:3], atol=1e-7)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("touch_border", [False, True])
def test_outline_is_exactly_the_boundary_of_a_square(touch_border: bool) -> None:
    mask = np.zeros((20, 20), dtype=bool)
    if touch_border:
        mask[:8, 12:] = True
    else:
        mask[5:15, 4:12] = True
    outline = mask_outline(mask)
    np.testing.assert_array_equal(outline, _brute_force_boundary(mask))
    if not touch_border:  # a 10×8 square has a 1-pixel ring of 2·10 + 2·8 - 4 pixels
        assert outline.sum() == 32


def test_outline_matches_brute_force_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((17, 13)) > 0.4
        np.testing.assert_array_equal(
            mask_outline(torch.from_numpy(mask)), _brute_force_boundary(mask)
        )


def test_image_grid_draws_outline_pixel_exactly() -> None:
    images = torch.full((2, 3, 12, 12), 0.5)
    masks = torch.zeros(2, 12, 12, dtype=torch.bool)
    masks[0, 3:9, 2:7] = True
    fig = image_grid(images, masks=[masks[0], None], mask_color=(0.0, 1.0, 0.0))
    panel0, panel1 = _panel_arrays(fig)
    boundary = _brute_force_boundary(masks[0].numpy())
    np.testing.assert_allclose(panel0[boundary], np.tile([0.0, 1.0, 0.0], (boundary.sum(), 1)))
    np.testing.assert_allclose(panel0[~boundary], 0.5)
    np.testing.assert_allclose(panel1, 0.5)


def test_draw_mask_fill() -> None:
    image = torch.zeros(3, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    out = draw_mask(image, mask, color=(1.0, 0.0, 0.0), mode="fill", alpha=0.25)
    np.testing.assert_allclose(out[1, 1], [0.25, 0.0, 0.0])
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.0])


# --------------------------------------------------------------------------- label maps


def test_label_colours_are_consistent_across_panels() -> None:
    names = [f"class {k}" for k in range(6)]
    maps = torch.full((3, 8, 8), -1, dtype=torch.long)
    maps[0, :4] = 2
    maps[0, 4:, :4] = 0
    maps[1, 2:6, 2:6] = 2
    maps[2, :, 5:] = 5
    maps[2, 0, 0] = 2
    fig = label_map_grid(maps, names, ncols=2)
    panels = _panel_arrays(fig)
    assert len(panels) == 3
    palette = label_colors(len(names))
    for panel, lm in zip(panels, maps.numpy(), strict=True):
        for k in (0, 2, 5):
            if (lm == k).any():
                np.testing.assert_allclose(
                    panel[lm == k], np.tile(palette[k], ((lm == k).sum(), 1))
                )
        grey = panel[lm == -1]
        assert np.allclose(grey, grey[0]) and np.allclose(grey[0], grey[0][0])  # one grey
    assert len({tuple(np.round(c, 6)) for c in palette}) == len(palette)
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["class 0", "class 2", "class 5"]  # only labels present


def test_label_map_grid_with_images_and_legend_limit() -> None:
    names = [f"n{k}" for k in range(30)]
    maps = torch.arange(30).repeat_interleave(2)[None].expand(2, 6, 60).clone()
    maps[0, 0, :10] = 29  # label 29 is the most frequent
    images = _rand(2, 3, 6, 60)
    fig = label_map_grid(maps, names, images=images, max_legend=5, titles=["a", "b"])
    panels = _panel_arrays(fig)
    assert len(panels) == 4
    np.testing.assert_allclose(panels[0], images[0].permute(1, 2, 0).numpy(), atol=1e-7)
    np.testing.assert_allclose(panels[1], label_map_to_rgb(maps[0]))
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == 6 and texts[-1] == "+25 more" and "n29" in texts


def test_label_colors_beyond_palette() -> None:
    colors = label_colors(100)
    assert colors.shape == (100, 3)
    assert colors.min() >= 0 and colors.max() <= 1
    np.testing.assert_allclose(label_colors(5), colors[:5])


# --------------------------------------------------------------------------- figures save


def test_every_function_returns_a_saveable_figure(tmp_path: Path) -> None:
    images = _rand(5, 3, 16, 16)
    masks = _rand(5, 16, 16, seed=1) > 0.7
    maps = (torch.arange(16)[None, None, :] // 4).expand(5, 16, 16).clone()
    maps[:, :2] = -1
    figures = {
        "grid": image_grid(images, titles=list("abcde"), ncols=3, masks=masks),
        "grid_fill": image_grid(images.numpy(), masks=masks.numpy(), mask_mode="fill"),
        "labels": label_map_grid(maps, ["a", "b", "c", "d"], images=images, ncols=2),
        "heat": heatmap_overlay(images, _rand(5, 4, 4), titles=list("vwxyz"), colorbar=True),
        "bar": bar_chart({"resnet": 0.9, "vgg": np.float32(0.75)}, "Accuracy", "acc", (0, 1), 0.25),
        "bar_pair": bar_chart((["a", "b", "c"], torch.tensor([1.0, 2.0, float("nan")]))),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=80)
        _assert_png(path)


def test_inputs_in_various_layouts() -> None:
    single = _rand(3, 8, 8)
    fig = image_grid(single)
    assert len(_panel_arrays(fig)) == 1
    channels_last = (_rand(2, 8, 8, 3).numpy() * 255).astype(np.uint8)
    panels = _panel_arrays(image_grid(channels_last))
    np.testing.assert_allclose(panels[0], channels_last[0] / 255.0)
    gray = _rand(2, 1, 8, 8)
    panels = _panel_arrays(image_grid([gray[0], gray[1]]))
    assert panels[0].shape == (8, 8, 3)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call",
    [
        lambda: image_grid(_rand(8, 8)),  # rank 2
        lambda: image_grid(_rand(1, 2, 3, 8, 8)),  # rank 5
        lambda: image_grid(_rand(2, 5, 8, 8)),  # 5 channels
        lambda: image_grid(_rand(2, 3, 8, 8), titles=["one"]),
        lambda: image_grid(_rand(2, 3, 8, 8), masks=torch.ones(3, 8, 8, dtype=torch.bool)),
        lambda: image_grid(_rand(2, 3, 8, 8), masks=torch.ones(2, 7, 8, dtype=torch.bool)),
        lambda: image_grid(_rand(2, 3, 8, 8), ncols=0),
        lambda: image_grid(_rand(2, 3, 8, 8), mask_mode="dotted"),  # type: ignore[arg-type]
        lambda: image_grid(torch.full((1, 3, 4, 4), float("nan"))),
        lambda: image_grid([]),
        lambda: heatmap_overlay(_rand(2, 3, 8, 8), _rand(3, 4, 4)),
        lambda: heatmap_overlay(_rand(2, 3, 8, 8), _rand(2, 2, 2, 4, 4)),
        lambda: heatmap_overlay(_rand(2, 3, 8, 8), _rand(2, 4, 4), alpha=1.5),
        lambda: heatmap_overlay(_rand(2, 3, 8, 8), _rand(2, 4, 4), cmap="no-such-cmap"),
        lambda: overlay_array(_rand(2, 3, 8, 8), _rand(4, 4)),
        lambda: overlay_array(_rand(3, 8, 8), _rand(2, 4, 4)),
        lambda: label_map_grid(torch.full((1, 4, 4), 3), ["a", "b"]),
        lambda: label_map_grid(torch.full((1, 4, 4), -2), ["a", "b"]),
        lambda: label_map_grid(
            torch.zeros(2, 4, 4, dtype=torch.long), ["a"], images=_rand(3, 3, 4, 4)
        ),
        lambda: label_map_grid(torch.zeros(1, 4, 4) + 0.5, ["a"]),
        lambda: label_map_grid(torch.zeros(1, 4, 4, dtype=torch.long), "a"),
        lambda: bar_chart((["a", "b"], [1.0])),
        lambda: bar_chart({"a": "high"}),  # type: ignore[dict-item]
        lambda: bar_chart({}),
        lambda: mask_outline(torch.ones(2, 3, 3)),
    ],
)
def test_bad_inputs_raise_input_error(call: Any) -> None:
    with pytest.raises(InputError):
        call()


def test_uint8_images_scale_by_dtype_not_content() -> None:
    dark = np.ones((3, 4, 4), dtype=np.uint8)  # pixel value 1 of 255: nearly black
    fig = image_grid([dark])
    shown = fig.axes[0].images[0].get_array()
    assert float(np.max(shown)) == pytest.approx(1 / 255)
    with pytest.raises(InputError, match="uint8"):
        image_grid([np.full((3, 4, 4), 1000, dtype=np.uint16)])


def test_bar_chart_accepts_array_colour() -> None:
    fig = bar_chart({"a": 0.5, "b": 0.7}, color=np.array([0.2, 0.4, 0.6]))
    assert len(fig.axes[0].patches) == 2
