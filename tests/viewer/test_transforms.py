"""Rotation and scale sweeps: image transforms, grid correspondences, similarity curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn

from convscope.core.errors import InputError
from convscope.viewer.similarity import DEFAULT_EPS, cosine_similarity_maps
from convscope.viewer.transforms import (
    TransformSweep,
    rotate_images,
    rotation_correspondence,
    scale_correspondence,
    scale_images,
    transform_sweep,
)

BILINEAR = TF.InterpolationMode.BILINEAR


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- image transforms


def test_rotate_90_is_rot90_counter_clockwise() -> None:
    x = _rand(2, 3, 8, 8)
    torch.testing.assert_close(rotate_images(x, 90), torch.rot90(x, 1, dims=(2, 3)))
    torch.testing.assert_close(rotate_images(x, -90), torch.rot90(x, -1, dims=(2, 3)))
    torch.testing.assert_close(rotate_images(x, 0), x, rtol=0, atol=0)


@pytest.mark.parametrize("angle", [30.0, -45.0, 135.0])
def test_rotate_matches_torchvision_on_a_non_square_image(angle: float) -> None:
    x = _rand(1, 3, 10, 14, seed=1)
    expected = TF.rotate(x, angle, interpolation=BILINEAR)
    torch.testing.assert_close(rotate_images(x, angle), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0])
def test_scale_matches_torchvision_affine_zoom(scale: float) -> None:
    x = _rand(1, 3, 12, 12, seed=2)
    expected = TF.affine(x, 0.0, [0, 0], scale, [0.0, 0.0], interpolation=BILINEAR)
    torch.testing.assert_close(scale_images(x, scale), expected, rtol=0, atol=1e-5)


def test_fill_surrounds_a_zoomed_out_image() -> None:
    x = torch.ones(1, 3, 16, 16)
    y = scale_images(x, 0.5, fill=0.25)
    torch.testing.assert_close(y[..., :3, :], torch.full_like(y[..., :3, :], 0.25))
    torch.testing.assert_close(y[..., 6:10, 6:10], torch.ones(1, 3, 4, 4))
    with pytest.raises(InputError, match="positive"):
        scale_images(x, 0.0)
    with pytest.raises(InputError, match="finite"):
        rotate_images(x, float("inf"))
    with pytest.raises(InputError, match=r"fill.*\[0, 1\]"):
        rotate_images(x, 10.0, fill=2.0)


# --------------------------------------------------------------------------- correspondences


def test_rotation_correspondence_90_is_the_rot90_index_map() -> None:
    h = 5
    cells = np.arange(h * h).reshape(h, h)
    for k, angle in ((1, 90.0), (-1, -90.0), (2, 180.0)):
        rotated = np.rot90(cells, k)  # counter-clockwise for k > 0
        corr = rotation_correspondence(h, h, angle)
        for i in range(h):
            for j in range(h):
                assert rotated[corr[i, j, 0], corr[i, j, 1]] == cells[i, j]


def test_rotation_180_on_a_non_square_grid_and_identity() -> None:
    corr = rotation_correspondence(4, 6, 180.0)
    rows, cols = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    np.testing.assert_array_equal(corr[..., 0], 3 - rows)
    np.testing.assert_array_equal(corr[..., 1], 5 - cols)
    np.testing.assert_array_equal(rotation_correspondence(4, 6, 0.0), np.stack([rows, cols], -1))
    np.testing.assert_array_equal(scale_correspondence(4, 6, 1.0), np.stack([rows, cols], -1))


def test_scale_2_sends_corners_outside_and_keeps_the_centre() -> None:
    corr = scale_correspondence(5, 5, 2.0)
    assert corr.dtype == np.int64
    for i, j in ((0, 0), (0, 4), (4, 0), (4, 4)):
        np.testing.assert_array_equal(corr[i, j], [-1, -1])
    np.testing.assert_array_equal(corr[2, 2], [2, 2])
    np.testing.assert_array_equal(corr[1, 2], [0, 2])  # offset -1 -> -2
    np.testing.assert_array_equal(corr[1, 1], [0, 0])
    assert (scale_correspondence(5, 5, 0.5) >= 0).all()  # zooming out keeps everything


def _blob_cases() -> list[tuple[str, float]]:
    rotations = [("rotation", a) for a in (30.0, 45.0, -60.0, 90.0, 135.0)]
    return rotations + [("scale", s) for s in (0.5, 0.75, 1.25, 1.5, 2.0)]


@pytest.mark.parametrize(("kind", "value"), _blob_cases())
def test_planted_blob_lands_where_the_correspondence_says(kind: str, value: float) -> None:
    pool = nn.AvgPool2d(4)  # a "model" whose 8×8 grid tiles the 32×32 image with 4×4 cells
    h = 8
    corr = (rotation_correspondence if kind == "rotation" else scale_correspondence)(h, h, value)
    warp = rotate_images if kind == "rotation" else scale_images
    rows, cols = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
    full_mass = 3.0 * (value**2 if kind == "scale" else 1.0)
    for i in range(h):
        for j in range(h):
            x = torch.zeros(1, 3, 32, 32)
            x[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = 1.0
            grid = pool(warp(x, value))[0].sum(0).double().numpy()
            mass = grid.sum()
            lost = 1.0 - mass / full_mass
            if corr[i, j, 0] < 0:
                assert lost > 0.6, (i, j)  # the blob's centre left the frame
                continue
            assert lost < 0.6, (i, j)
            if lost < 0.01:  # fully inside: its centroid rounds to the predicted cell
                centroid = np.array([(grid * rows).sum(), (grid * cols).sum()]) / mass
                assert np.abs(centroid - corr[i, j]).max() <= 0.5 + 1e-3, (i, j, centroid)


# --------------------------------------------------------------------------- sweeps


def _hooked(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    store: list[torch.Tensor] = []
    handle = getattr(model, layer).register_forward_hook(
        lambda _m, _i, out: store.append(out.detach().clone())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    return store[0]


@pytest.mark.parametrize(
    ("kind", "values"), [("rotation", [-45.0, 0.0, 30.0, 90.0]), ("scale", [0.5, 1.0, 1.6])]
)
def test_sweep_curves_equal_a_brute_force_loop(
    tiny_cnn: nn.Module, kind: str, values: list[float]
) -> None:
    x = _rand(1, 3, 8, 8, seed=3)
    sweep = transform_sweep(tiny_cnn, x, "relu2", kind=kind, values=values, batch_size=2)  # type: ignore[arg-type]
    t = len(values)
    assert sweep.curves.shape == (t, 8, 8)
    assert sweep.features.shape == (t, 8, 8, 6)
    assert sweep.images.shape == (t, 3, 8, 8)
    source = _hooked(tiny_cnn, "relu2", x)[0]
    corr_fn = rotation_correspondence if kind == "rotation" else scale_correspondence
    for k, v in enumerate(values):
        warp = rotate_images if kind == "rotation" else scale_images
        target = _hooked(tiny_cnn, "relu2", warp(x, v))[0]
        maps = cosine_similarity_maps(source, target).numpy()
        corr = corr_fn(8, 8, v)
        np.testing.assert_array_equal(sweep.correspondence[k], corr)
        for i in range(8):
            for j in range(8):
                r, c = corr[i, j]
                got = sweep.curves[k, i, j]
                if r < 0:
                    assert np.isnan(got)
                else:
                    assert got == pytest.approx(maps[i, j, r, c], abs=1e-5)


def test_curve_is_one_at_identity_and_nan_exactly_outside(tiny_cnn: nn.Module) -> None:
    x = _rand(3, 8, 8, seed=4)  # one image without the batch dimension
    sweep = transform_sweep(tiny_cnn, x, "relu2", kind="scale")
    np.testing.assert_allclose(sweep.values, 2.0 ** np.arange(-1.0, 1.01, 0.25))
    identity = int(np.argmin(np.abs(sweep.values - 1.0)))
    norms = np.linalg.norm(_hooked(tiny_cnn, "relu2", x[None])[0].numpy(), axis=0)
    expected = np.where(norms > 0, norms**2 / (norms + DEFAULT_EPS) ** 2, 0.0)
    np.testing.assert_allclose(sweep.curves[identity], expected, atol=1e-5)
    assert (expected[norms > 0.1] > 0.99).all()
    np.testing.assert_array_equal(np.isnan(sweep.curves), sweep.correspondence[..., 0] < 0)
    assert np.isnan(sweep.curves).any()  # zooming in by 2 drops the border
    np.testing.assert_array_equal(sweep.curve(0, 0), sweep.curves[:, 0, 0])


def test_default_rotations_include_identity(tiny_cnn: nn.Module) -> None:
    sweep = transform_sweep(tiny_cnn, _rand(1, 3, 8, 8, seed=5), "relu1")
    np.testing.assert_array_equal(sweep.values, np.arange(-90.0, 91.0, 15.0))
    assert sweep.kind == "rotation"
    assert sweep.layer == "relu1"
    source = sweep.source_features.numpy()
    i0 = int(np.flatnonzero(sweep.values == 0.0)[0])
    np.testing.assert_allclose(sweep.features[i0].numpy(), source, atol=1e-6)


def test_sweep_errors(tiny_cnn: nn.Module) -> None:
    x = _rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="'rotation' or 'scale'"):
        transform_sweep(tiny_cnn, x, "relu2", kind="shear")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="positive"):
        transform_sweep(tiny_cnn, x, "relu2", kind="scale", values=[1.0, -2.0])
    with pytest.raises(InputError, match="empty"):
        transform_sweep(tiny_cnn, x, "relu2", values=[])
    with pytest.raises(InputError, match="one image"):
        transform_sweep(tiny_cnn, _rand(2, 3, 8, 8), "relu2")
    with pytest.raises(InputError, match="convolutional"):
        transform_sweep(tiny_cnn, x, "fc")
    sweep = transform_sweep(tiny_cnn, x, "relu2", values=[0.0])
    with pytest.raises(InputError, match="outside"):
        sweep.curve(8, 0)


def test_sweep_save_load_roundtrip(tiny_cnn: nn.Module, tmp_path: object) -> None:
    sweep = transform_sweep(tiny_cnn, _rand(1, 3, 8, 8), "relu2", values=[0.0, 45.0])
    loaded = TransformSweep.load(sweep.save(f"{tmp_path}/sweep"))
    np.testing.assert_array_equal(loaded.curves, sweep.curves)
    np.testing.assert_array_equal(loaded.correspondence, sweep.correspondence)
    torch.testing.assert_close(loaded.features, sweep.features)
    assert (loaded.kind, loaded.layer, loaded.eps) == ("rotation", "relu2", DEFAULT_EPS)
    assert sweep.activations is None and loaded.activations is None


def test_kept_activations_are_the_layer_outputs(tiny_cnn: nn.Module, tmp_path: object) -> None:
    sweep = transform_sweep(
        tiny_cnn, _rand(1, 3, 8, 8), "relu2", values=[-30.0, 0.0, 60.0], keep_activations=True
    )
    assert sweep.activations is not None
    torch.testing.assert_close(sweep.activations, _hooked(tiny_cnn, "relu2", sweep.images))
    norms = sweep.activations.norm(dim=1, keepdim=True) + DEFAULT_EPS
    torch.testing.assert_close(sweep.features, (sweep.activations / norms).permute(0, 2, 3, 1))
    loaded = TransformSweep.load(sweep.save(f"{tmp_path}/sweep"))
    torch.testing.assert_close(loaded.activations, sweep.activations)


def test_rotation_with_non_square_cells_warns() -> None:
    model = nn.Sequential(nn.AvgPool2d((4, 2)))  # 16×16 image -> 4×8 grid of 4×2-pixel cells
    x = _rand(1, 3, 16, 16, seed=6)
    with pytest.warns(UserWarning, match="square cells"):
        transform_sweep(model, x, "0", values=[0.0, 30.0])
    sweep = transform_sweep(model, x, "0", kind="scale", values=[1.0, 2.0])  # no warning
    assert sweep.curves.shape == (2, 4, 8)
