"""Cosine similarity maps of the overlay viewer against brute-force NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.core.errors import InputError, LayerNotFoundError
from convscope.viewer.similarity import (
    DEFAULT_EPS,
    center_of,
    cosine_similarity_maps,
    layer_activations,
    normalized_features,
    query_maps,
    similarity_grids,
    sprite_sheet,
    synchronized_cell,
)


def _acts(shape: tuple[int, ...], seed: int = 0, signed: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape)
    return a if signed else np.maximum(a, 0.0)


def _loop_cosine(u: np.ndarray, v: np.ndarray, eps: float) -> float:
    """The seed's formula, one pair of vectors at a time, in float64."""
    dot = sum(float(x) * float(y) for x, y in zip(u, v, strict=True))
    nu = float(np.sqrt(sum(float(x) ** 2 for x in u)))
    nv = float(np.sqrt(sum(float(x) ** 2 for x in v)))
    return dot / ((nu + eps) * (nv + eps))


def _loop_maps(src: np.ndarray, tgt: np.ndarray, eps: float) -> np.ndarray:
    """Brute-force H×W×H'×W' reference from D×H×W and D×H'×W'."""
    _, h, w = src.shape
    _, h2, w2 = tgt.shape
    out = np.zeros((h, w, h2, w2))
    for i in range(h):
        for j in range(w):
            for u in range(h2):
                for v in range(w2):
                    out[i, j, u, v] = _loop_cosine(src[:, i, j], tgt[:, u, v], eps)
    return out


def test_maps_equal_brute_force_loop_with_different_grid_sizes() -> None:
    src, tgt = _acts((7, 4, 3), seed=1), _acts((7, 2, 5), seed=2)
    got = cosine_similarity_maps(torch.from_numpy(src), torch.from_numpy(tgt))
    assert got.shape == (4, 3, 2, 5)
    np.testing.assert_allclose(got.numpy(), _loop_maps(src, tgt, DEFAULT_EPS), atol=1e-12)


def test_grids_equal_brute_force_loop_for_every_pair() -> None:
    acts = _acts((3, 6, 3, 4), seed=3)
    grids = similarity_grids(torch.from_numpy(acts), eps=0.01).numpy()
    assert grids.shape == (3, 3, 3, 4, 3, 4)
    for a in range(3):
        for b in range(3):
            np.testing.assert_allclose(grids[a, b], _loop_maps(acts[a], acts[b], 0.01), atol=1e-12)


def test_float32_input_matches_float64_reference() -> None:
    acts = _acts((2, 16, 3, 3), seed=4)
    got = similarity_grids(torch.from_numpy(acts).float())
    assert got.dtype == torch.float32
    for a in range(2):
        for b in range(2):
            np.testing.assert_allclose(
                got[a, b].numpy(), _loop_maps(acts[a], acts[b], DEFAULT_EPS), atol=1e-6
            )


def test_self_similarity_on_the_diagonal() -> None:
    acts = _acts((2, 5, 3, 3), seed=5) + 0.01  # no zero vectors
    eps = 0.05  # large, so that the ε term is visible
    grids = similarity_grids(torch.from_numpy(acts), eps=eps).numpy()
    for a in range(2):
        for i in range(3):
            for j in range(3):
                norm = np.linalg.norm(acts[a, :, i, j])
                assert grids[a, a, i, j, i, j] == pytest.approx(norm**2 / (norm + eps) ** 2)
                assert grids[a, a, i, j, i, j] < 1.0
    exact = similarity_grids(torch.from_numpy(acts), eps=0.0).numpy()
    diag = np.array([exact[a, a, i, j, i, j] for a in range(2) for i in range(3) for j in range(3)])
    np.testing.assert_allclose(diag, 1.0, atol=1e-12)


def test_symmetry_of_all_pairs() -> None:
    grids = similarity_grids(torch.from_numpy(_acts((3, 4, 2, 5), seed=6)))
    # s(u, v) and s(v, u) are the same dot product summed in a different order by the einsum
    # kernel, so they agree only up to rounding: D=4 terms of unit-norm float64 vectors, |s| <= 1,
    # error <= a few D·eps (seen: 1.1e-16 on AMD EPYC). Not a bit-identity claim.
    assert grids.dtype == torch.float64
    atol = 8 * 4 * np.finfo(np.float64).eps  # ≈ 7e-15
    np.testing.assert_allclose(
        grids.numpy(), grids.permute(1, 0, 4, 5, 2, 3).numpy(), rtol=0, atol=atol
    )


def test_zero_vectors_give_zero_not_nan() -> None:
    acts = _acts((2, 4, 3, 3), seed=7) + 0.1
    acts[0, :, 1, 2] = 0.0
    acts[1, :, 0, 0] = 0.0
    for eps in (DEFAULT_EPS, 0.0):
        grids = similarity_grids(torch.from_numpy(acts), eps=eps).numpy()
        assert np.isfinite(grids).all()
        np.testing.assert_array_equal(grids[0, :, 1, 2], 0.0)
        np.testing.assert_array_equal(grids[:, 1, :, :, 0, 0], 0.0)
        assert grids[0, 0, 0, 0, 0, 0] > 0.9  # other locations unaffected


def test_normalized_features_layout_and_dot_product() -> None:
    acts = _acts((2, 5, 3, 4), seed=8)
    feats = normalized_features(torch.from_numpy(acts)).numpy()
    assert feats.shape == (2, 3, 4, 5)
    u, v = acts[0, :, 2, 1], acts[1, :, 0, 3]
    assert feats[0, 2, 1] @ feats[1, 0, 3] == pytest.approx(_loop_cosine(u, v, DEFAULT_EPS))
    one = normalized_features(torch.from_numpy(acts[1])).numpy()
    # Same formula on a 3-D instead of a 4-D tensor: the norm reduction may be vectorised
    # differently, so allow float64 rounding (D=5 terms), not bit-identity.
    np.testing.assert_allclose(one, feats[1], rtol=1e-14, atol=0)


def test_centered_cosine_is_signed_and_matches_loop() -> None:
    acts = _acts((3, 6, 2, 2), seed=9)
    center = center_of(torch.from_numpy(acts))
    np.testing.assert_allclose(center.numpy(), acts.mean(axis=(0, 2, 3)), atol=1e-12)
    centred = acts - center.numpy()[None, :, None, None]
    grids = similarity_grids(torch.from_numpy(acts), center=center).numpy()
    assert grids.min() < 0.0
    for a in range(3):
        for b in range(3):
            np.testing.assert_allclose(
                grids[a, b], _loop_maps(centred[a], centred[b], DEFAULT_EPS), atol=1e-12
            )


def test_query_maps_are_slices_of_the_loop_reference() -> None:
    acts = _acts((3, 5, 4, 3), seed=10)
    feats = normalized_features(torch.from_numpy(acts))
    maps = query_maps(feats, 1, 2, 0).numpy()
    assert maps.shape == (3, 4, 3)
    for b in range(3):
        np.testing.assert_allclose(
            maps[b], _loop_maps(acts[1], acts[b], DEFAULT_EPS)[2, 0], atol=1e-12
        )
    with pytest.raises(InputError, match="row=4"):
        query_maps(feats, 0, 4, 0)


def test_post_relu_activations_give_values_in_unit_interval(tiny_cnn: nn.Module) -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    acts = layer_activations(tiny_cnn, x, "relu2")["relu2"]
    assert acts.min() >= 0.0
    grids = similarity_grids(acts)
    assert grids.min() >= 0.0
    assert grids.max() <= 1.0


def test_sprite_sheet_tiles_the_grid() -> None:
    grid = torch.from_numpy(_acts((3, 4, 2, 5), seed=11, signed=True))
    sheet = sprite_sheet(grid).numpy()
    assert sheet.shape == (3 * 2, 4 * 5)
    for i in range(3):
        for j in range(4):
            for u in range(2):
                for v in range(5):
                    assert sheet[i * 2 + u, j * 5 + v] == grid[i, j, u, v].item()
    with pytest.raises(InputError, match="H×W×H'×W'"):
        sprite_sheet(grid[0])


def test_layer_activations_batched_equal_one_hooked_forward(tiny_cnn: nn.Module) -> None:
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(tiny_cnn, name).register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().clone())
        )
        for name in ("relu1", "relu2")
    ]
    with torch.no_grad():
        tiny_cnn(x)
    for hook in hooks:
        hook.remove()
    tiny_cnn.train()
    got = layer_activations(tiny_cnn, x, ["relu1", "relu2"], batch_size=2)
    assert tiny_cnn.training  # state restored
    assert list(got) == ["relu1", "relu2"]
    for name in ("relu1", "relu2"):
        assert got[name].dtype == torch.float32
        assert got[name].device.type == "cpu"
        torch.testing.assert_close(got[name], captured[name], rtol=1e-6, atol=1e-6)


def test_layer_activations_errors(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(InputError, match=r"'fc'.*convolutional"):
        layer_activations(tiny_cnn, x, "fc")
    with pytest.raises(LayerNotFoundError, match="relu9"):
        layer_activations(tiny_cnn, x, "relu9")
    with pytest.raises(InputError, match="batch_size"):
        layer_activations(tiny_cnn, x, "relu1", batch_size=0)
    with pytest.raises(InputError, match="unsqueeze"):
        layer_activations(tiny_cnn, x[0], "relu1")


def test_grid_budget_and_argument_errors() -> None:
    acts = torch.rand(4, 3, 10, 10)  # N²(HW)² = 16 · 100² = 160,000
    with pytest.raises(InputError, match=r"160,000 values.*on demand"):
        similarity_grids(acts, max_values=159_999)
    assert similarity_grids(acts, max_values=160_000).shape == (4, 4, 10, 10, 10, 10)
    with pytest.raises(InputError, match="channels"):
        cosine_similarity_maps(acts[0], torch.rand(4, 5, 5))
    with pytest.raises(InputError, match="one image"):
        cosine_similarity_maps(acts, acts)
    with pytest.raises(InputError, match="eps"):
        normalized_features(acts, eps=-1.0)
    with pytest.raises(InputError, match=r"\(3,\) vector"):
        normalized_features(acts, center=torch.zeros(4))
    with pytest.raises(InputError, match="NaN"):
        normalized_features(torch.full((1, 2, 2, 2), float("nan")))


def test_synchronized_cell_rounds_the_scaled_position() -> None:
    # 28 -> 14 -> 7 grids as in the thesis (mixed3b, mixed4e, mixed5b).
    assert synchronized_cell(10, 3, (28, 28), (14, 14)) == (5, 2)  # 1.5 rounds half up
    assert synchronized_cell(5, 6, (14, 14), (28, 28)) == (10, 12)
    assert synchronized_cell(27, 0, (28, 28), (7, 7)) == (6, 0)  # 6.75 would round off the grid
    for row in range(14):
        assert synchronized_cell(row, row, (14, 14), (14, 14)) == (row, row)
    for row in range(28):
        r, _ = synchronized_cell(row, 0, (28, 28), (7, 7))
        assert abs(r - row / 4) <= 0.5 or r == 6  # nearest cell, clipped at the border
    with pytest.raises(InputError, match="outside"):
        synchronized_cell(14, 0, (14, 14), (7, 7))


def test_shapes_cnn_layers_through_the_wrapper() -> None:
    import convscope
    from convscope.datasets import shapes

    model = convscope.load_model("shapes-cnn")
    x = shapes(3, seed=0).images
    acts = layer_activations(model, x, ["features.relu3", "model.features.relu4"], batch_size=2)
    assert acts["features.relu3"].shape[:2] == (3, 64)
    assert acts["model.features.relu4"].shape[:2] == (3, 128)
    grids = similarity_grids(acts["model.features.relu4"])
    assert float(grids.min()) >= 0.0
    assert float(grids.max()) <= 1.0
    for a in range(3):
        expected = _loop_maps(
            acts["model.features.relu4"][a].double().numpy(),
            acts["model.features.relu4"][(a + 1) % 3].double().numpy(),
            DEFAULT_EPS,
        )
        np.testing.assert_allclose(grids[a, (a + 1) % 3].numpy(), expected, atol=1e-5)
