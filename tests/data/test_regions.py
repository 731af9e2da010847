"""Tests of convscope.data.regions: partitions and per-region means."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage import data as skdata
from skimage.segmentation import slic
from skimage.transform import resize

from convscope.core.errors import InputError
from convscope.data.regions import (
    Regions,
    foreground_background,
    grid_regions,
    region_means,
    regions_from_masks,
    superpixel_regions,
)

# ------------------------------------------------------------------------------------- grid


def _round_half_up(q: Fraction) -> int:
    return int(q + Fraction(1, 2)) if q >= 0 else -int(-q + Fraction(1, 2))


def _check_grid(reg: Regions, height: int, width: int, rows: int, cols: int) -> None:
    labels = reg.labels.numpy()
    assert labels.shape == (height, width) and reg.labels.dtype == torch.int64
    assert reg.n_regions == len(reg) == rows * cols
    masks = reg.masks()
    assert masks.shape == (rows * cols, height, width)
    assert (masks.sum(0) == 1).all()  # each pixel in exactly one region
    rb = [_round_half_up(Fraction(k * height, rows)) for k in range(rows + 1)]
    cb = [_round_half_up(Fraction(k * width, cols)) for k in range(cols + 1)]
    for r in range(rows):
        for c in range(cols):
            expected = np.zeros((height, width), bool)
            expected[rb[r] : rb[r + 1], cb[c] : cb[c + 1]] = True
            np.testing.assert_array_equal(labels == r * cols + c, expected)
    heights = np.diff(rb)
    widths = np.diff(cb)
    assert heights.min() >= 1 and widths.min() >= 1
    assert heights.max() - heights.min() <= 1 and widths.max() - widths.min() <= 1


def test_grid_10x10_into_3x3() -> None:
    reg = grid_regions(10, 10, cells=(3, 3))
    _check_grid(reg, 10, 10, 3, 3)
    assert reg.kind == "grid" and reg.settings["rows"] == 3
    assert reg.settings["row_bounds"] == (0, 3, 7, 10)
    sides = {int(v) for v in torch.unique(reg.sizes())}
    assert sides <= {9, 12, 16}  # cells are 3 or 4 pixels on each side
    assert reg.labels[0, 0] == 0 and reg.labels[0, 9] == 2 and reg.labels[9, 0] == 6


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    data=st.data(),
)
def test_grid_is_a_balanced_partition(height: int, width: int, data: st.DataObject) -> None:
    rows = data.draw(st.integers(1, height))
    cols = data.draw(st.integers(1, width))
    _check_grid(grid_regions(height, width, cells=(rows, cols)), height, width, rows, cols)


@settings(max_examples=25, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), ch=st.integers(1, 12))
def test_cell_size_gives_the_fewest_cells_not_exceeding_it(
    height: int, width: int, ch: int
) -> None:
    reg = grid_regions(height, width, cell_size=(ch, ch + 1))
    rows, cols = reg.settings["rows"], reg.settings["cols"]
    assert rows == -(-height // ch) and cols == -(-width // (ch + 1))
    assert max(np.diff(reg.settings["row_bounds"])) <= ch
    _check_grid(reg, height, width, rows, cols)


def test_grid_square_shortcuts() -> None:
    assert torch.equal(grid_regions(8, 6, 2).labels, grid_regions(8, 6, cells=(2, 2)).labels)
    assert grid_regions(224, 224, cell_size=32).n_regions == 49


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cells": (5, 2)}, "more cells"),
        ({"cells": (2, 7)}, "more cells"),
        ({}, "exactly one"),
        ({"cells": 2, "cell_size": 2}, "exactly one"),
        ({"cells": 0}, "positive"),
        ({"cell_size": (2, 2, 2)}, "pair"),
    ],
)
def test_grid_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        grid_regions(4, 6, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- Regions


def test_regions_is_frozen_and_validated() -> None:
    reg = grid_regions(4, 4, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.n_regions = 3  # type: ignore[misc]
    with pytest.raises(InputError, match=r"\[1\] is missing"):
        Regions(torch.tensor([[0, 2], [2, 0]]), 3, "custom")
    with pytest.raises(InputError, match=r"0\.\.1"):
        Regions(torch.tensor([[0, 2], [1, 0]]), 2, "custom")
    with pytest.raises(InputError, match="integer"):
        Regions(torch.zeros(2, 2), 1, "custom")
    ok = Regions(torch.tensor([[0, 1], [1, 0]], dtype=torch.int32), 2, "custom")
    assert ok.labels.dtype == torch.int64


def test_batched_regions_allow_per_image_counts() -> None:
    labels = torch.tensor([[[0, 1], [2, 2]], [[1, 0], [1, 1]]])
    reg = Regions(labels, 3, "custom")
    assert reg.is_batched and reg.n_regions_per_image == (3, 2)
    masks = reg.masks()
    assert masks.shape == (2, 3, 2, 2)
    assert not masks[1, 2].any() and (masks.sum(1) == 1).all()
    assert reg.sizes().tolist() == [[1, 1, 2], [1, 3, 0]]
    with pytest.raises(InputError, match="consecutive"):
        Regions(torch.tensor([[[0, 1], [2, 2]], [[2, 0], [2, 2]]]), 3, "custom")


# ---------------------------------------------------------------------------- from masks


def test_overlapping_masks_later_wins_with_background() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 7, 8)) < 0.4
    masks[:, 0, 0] = False  # one uncovered pixel at least
    for k in range(3):
        masks[k, 1 + k, 1 + k] = True  # every mask keeps a pixel of its own
        for j in range(k + 1, 3):
            masks[j, 1 + k, 1 + k] = False
    reg = regions_from_masks(torch.from_numpy(masks))
    expected = np.full((7, 8), 3)
    for k in range(3):  # brute force: later masks overwrite earlier ones
        expected[masks[k]] = k
    np.testing.assert_array_equal(reg.labels.numpy(), expected)
    assert reg.n_regions == 4 and reg.settings == {"n_masks": 3, "background_label": 3}
    with pytest.raises(InputError, match="background=True"):
        regions_from_masks(masks, background=False)


def test_masks_covering_everything_have_no_background_region() -> None:
    m = torch.zeros(2, 3, 3, dtype=torch.bool)
    m[0, :2] = True
    m[1, 2:] = True
    reg = regions_from_masks(m, background=False)
    assert reg.n_regions == 2 and reg.settings["background_label"] is None
    assert regions_from_masks(m).n_regions == 2
    single = regions_from_masks(m[0])
    assert single.n_regions == 2 and single.labels[2, 0] == 1


def test_empty_or_hidden_masks_are_errors() -> None:
    m = torch.zeros(3, 4, 4, dtype=torch.bool)
    m[0, 0] = True
    m[2, 1] = True
    with pytest.raises(InputError, match="Mask 1 is empty"):
        regions_from_masks(m)
    m[1, 0, 0] = True
    m[2, 0, 0] = True
    with pytest.raises(InputError, match="Mask 1 is entirely covered by later masks"):
        regions_from_masks(m)


def test_label_map_is_relabelled_in_sorted_order() -> None:
    labels = torch.tensor([[100, -5, 3], [3, 100, 100]])
    reg = regions_from_masks(labels)
    assert reg.kind == "labels" and reg.n_regions == 3
    assert reg.settings["original_labels"] == (-5, 3, 100)
    original = torch.tensor(reg.settings["original_labels"])[reg.labels]
    assert torch.equal(original, labels)
    np_reg = regions_from_masks(np.array([[7, 7], [2, 9]], dtype=np.uint8))
    assert np_reg.labels.tolist() == [[1, 1], [0, 2]]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (torch.rand(4, 4), "masks > 0.5"),
        (torch.randint(0, 2, (2, 4, 4)), r"masks\.bool\(\)"),
        (torch.zeros(0, 4, 4, dtype=torch.bool), "K >= 1"),
        ([[0, 1]], "torch.Tensor or numpy"),
    ],
)
def test_regions_from_masks_errors(value: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        regions_from_masks(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ superpixels


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    img = resize(skdata.astronaut(), (48, 48), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).float().clamp(0, 1)


def test_slic_partition_is_connected_deterministic_and_matches_skimage(
    astronaut: torch.Tensor,
) -> None:
    reg = superpixel_regions(astronaut, n_segments=50, compactness=20.0)
    assert reg.kind == "superpixels" and reg.labels.shape == (48, 48)
    assert 25 <= reg.n_regions <= 75  # roughly n_segments
    assert (reg.masks().sum(0) == 1).all()
    for k in range(reg.n_regions):  # SLIC enforces connected segments
        _, n_components = ndimage.label(reg.labels.numpy() == k)
        assert n_components == 1
    again = superpixel_regions(astronaut.clone(), n_segments=50, compactness=20.0)
    assert torch.equal(reg.labels, again.labels)
    direct = slic(
        astronaut.permute(1, 2, 0).double().numpy(),
        n_segments=50,
        compactness=20.0,
        start_label=0,
        channel_axis=-1,
    )
    _, direct_relabelled = np.unique(direct, return_inverse=True)
    np.testing.assert_array_equal(reg.labels.numpy(), direct_relabelled.reshape(48, 48))


def test_slic_batch_has_per_image_labels(astronaut: torch.Tensor) -> None:
    batch = torch.stack([astronaut, astronaut.flip(-1).roll(7, dims=-2)])
    reg = superpixel_regions(batch, n_segments=20)
    assert reg.labels.shape == (2, 48, 48) and reg.is_batched
    singles = [superpixel_regions(img, n_segments=20) for img in batch]
    for i, single in enumerate(singles):
        assert torch.equal(reg.labels[i], single.labels)
    assert reg.n_regions_per_image == tuple(s.n_regions for s in singles)
    assert reg.n_regions == max(reg.n_regions_per_image)
    assert superpixel_regions(batch[:1], n_segments=20).labels.shape == (1, 48, 48)


def test_slic_input_errors(astronaut: torch.Tensor) -> None:
    with pytest.raises(InputError, match="permute"):
        superpixel_regions(astronaut.permute(1, 2, 0))
    with pytest.raises(InputError, match="n_segments"):
        superpixel_regions(astronaut, n_segments=0)
    with pytest.raises(InputError, match="compactness"):
        superpixel_regions(astronaut, compactness=-1.0)


# ----------------------------------------------------------------- foreground / background


def test_foreground_background_labels() -> None:
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True
    mask[1, 0] = True
    reg = foreground_background(mask)
    assert reg.n_regions == 2 and reg.kind == "foreground_background"
    assert torch.equal(reg.labels, mask.long())
    assert torch.equal(reg.masks()[:, 1], mask) and torch.equal(reg.masks()[:, 0], ~mask)


def test_foreground_background_errors() -> None:
    with pytest.raises(InputError, match=r"empty.*at least one True"):
        foreground_background(torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(InputError, match=r"every pixel.*at least one False"):
        foreground_background(torch.ones(3, 3, dtype=torch.bool))
    batch = torch.zeros(2, 3, 3, dtype=torch.bool)
    batch[0, 0, 0] = True
    with pytest.raises(InputError, match=r"\(image 1\)"):
        foreground_background(batch)
    with pytest.raises(InputError, match=r"mask\.bool\(\)"):
        foreground_background(torch.zeros(3, 3))


# --------------------------------------------------------------------------- region_means


def _brute_means(values: np.ndarray, labels: np.ndarray, d: int) -> np.ndarray:
    out = np.full(d, np.nan)
    for k in range(d):
        sel = labels == k
        if sel.any():
            out[k] = values[sel].mean()
    return out


def test_region_means_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(3)
    reg = grid_regions(9, 11, cells=(2, 3))
    v = torch.randn(9, 11, generator=gen, dtype=torch.float64)
    np.testing.assert_allclose(
        region_means(v, reg).numpy(), _brute_means(v.numpy(), reg.labels.numpy(), 6)
    )
    batch = torch.randn(4, 9, 11, generator=gen, dtype=torch.float64)
    out = region_means(batch, reg)
    assert out.shape == (4, 6)
    for i in range(4):
        np.testing.assert_allclose(
            out[i].numpy(), _brute_means(batch[i].numpy(), reg.labels.numpy(), 6)
        )


def test_region_means_per_image_regions_and_empty_regions() -> None:
    labels = torch.tensor([[[0, 1], [2, 2]], [[1, 0], [1, 1]]])
    reg = Regions(labels, 3, "custom")
    v = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[6.0, 7.0], [8.0, 10.0]]])
    out = region_means(v, reg)
    expected = np.stack([_brute_means(v[i].numpy(), labels[i].numpy(), 3) for i in range(2)])
    np.testing.assert_allclose(out.numpy(), expected)
    assert torch.isnan(out[1, 2])
    shared = region_means(v[0], reg)  # one map broadcast over the per-image regions
    assert shared.shape == (2, 3) and shared[1, 0] == 2.0
    ints = region_means(torch.ones(2, 2, dtype=torch.int64), grid_regions(2, 2, 1))
    assert ints.dtype == torch.float32 and ints.tolist() == [1.0]


def test_region_means_errors() -> None:
    reg = grid_regions(4, 4, 2)
    with pytest.raises(InputError, match=r"values\.sum\(dim=1\)"):
        region_means(torch.rand(1, 3, 4, 4), reg)
    with pytest.raises(InputError, match="5×4"):
        region_means(torch.rand(5, 4), reg)
    batched = Regions(torch.stack([reg.labels] * 2), 4, "custom")
    with pytest.raises(InputError, match="3 images"):
        region_means(torch.rand(3, 4, 4), batched)
    with pytest.raises(InputError, match="Regions object"):
        region_means(torch.rand(4, 4), reg.labels)  # type: ignore[arg-type]


def test_absurd_region_count_is_refused_before_any_allocation() -> None:
    with pytest.raises(InputError, match="largest label is 1"):
        Regions(torch.tensor([[0, 1], [1, 0]]), 300_000_000, "grid")


def test_region_means_in_half_precision_and_for_no_images() -> None:
    regions = grid_regions(300, 300, cells=(1, 2))
    values = torch.full((300, 300), 2.0, dtype=torch.float16)
    means = region_means(values, regions)
    assert means.dtype == torch.float16 and torch.equal(means, torch.full((2,), 2.0).half())
    empty = region_means(torch.zeros(0, 300, 300), regions)
    assert empty.shape == (0, 2)
