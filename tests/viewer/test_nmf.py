"""NMF of location activations: planted components, colourings, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from convscope.core.errors import InputError
from convscope.viewer.nmf import NMFComponents, component_colors, nmf_components


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations N×D×H×W = spatial weights (N×H×W×4) × disjoint channel patterns (4×D)."""
    rng = np.random.default_rng(seed)
    n, h, w, k, d = 5, 6, 6, 4, 16
    dominant = rng.integers(0, k, size=(n, h, w))
    weights = rng.uniform(0.0, 0.25, size=(n, h, w, k))
    weights[np.arange(n)[:, None, None], np.arange(h)[:, None], np.arange(w), dominant] = (
        rng.uniform(0.8, 1.2, size=(n, h, w))
    )
    patterns = np.zeros((k, d))
    for c in range(k):
        patterns[c, 4 * c : 4 * c + 4] = rng.uniform(0.5, 1.5, size=4)  # disjoint supports
    acts = np.moveaxis(weights @ patterns, -1, 1)
    return acts, weights, patterns


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_planted_components_are_recovered_up_to_permutation() -> None:
    acts, weights, patterns = _planted()
    result = nmf_components(torch.from_numpy(acts), k=4, seed=0, layer="planted")
    assert result.weights.shape == (5, 6, 6, 4)
    assert result.components.shape == (4, 16)
    similarity = np.array([[_cos(p, c) for c in result.components] for p in patterns])
    rows, cols = linear_sum_assignment(-similarity)
    assert similarity[rows, cols].min() > 0.99
    recovered = result.weights[..., cols]  # planted order
    assert np.mean(recovered.argmax(-1) == weights.argmax(-1)) > 0.99
    for c in range(4):
        corr = np.corrcoef(recovered[..., c].ravel(), weights[..., c].ravel())[0, 1]
        assert corr > 0.99
    assert result.reconstruction_error < 1e-2
    assert result.layer == "planted"
    assert result.k == 4
    assert result.n_iter >= 1


def test_weights_are_scaled_to_one_and_still_reconstruct() -> None:
    acts, _, _ = _planted(seed=1)
    result = nmf_components(acts, k=4, seed=3)
    np.testing.assert_allclose(result.weights.reshape(-1, 4).max(axis=0), 1.0, rtol=1e-6)
    assert (result.weights >= 0).all()
    assert (result.components >= 0).all()
    assert (result.scales > 0).all()
    matrix = np.moveaxis(acts, 1, -1).reshape(-1, 16)
    recon = result.weights.reshape(-1, 4).astype(np.float64) @ result.components
    error = np.linalg.norm(matrix - recon) / np.linalg.norm(matrix)
    assert error == pytest.approx(result.reconstruction_error, abs=1e-5)


def test_colorize_on_hand_built_weights() -> None:
    weights = np.array([[[[0.5, 0.0], [1.0, 1.0], [0.0, 0.0], [0.2, 0.7]]]], dtype=np.float32)
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    nmf = NMFComponents(
        weights=weights,
        components=np.ones((2, 3), dtype=np.float32),
        colors=colors,
        scales=np.ones(2),
        layer=None,
        k=2,
        seed=0,
        reconstruction_error=0.0,
        n_iter=1,
    )
    mix = nmf.colorize("mix")
    expected_mix = [[0.5, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.7]]
    np.testing.assert_allclose(mix[0, 0], expected_mix, atol=1e-7)
    argmax = nmf.colorize("argmax")
    expected_argmax = [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    np.testing.assert_array_equal(argmax[0, 0], expected_argmax)
    heavy = NMFComponents(**{**nmf.__dict__, "weights": np.full((1, 1, 1, 2), 0.9)})
    heavy.colors = np.array([[0.8, 0.8, 0.0], [0.8, 0.0, 0.0]])
    np.testing.assert_allclose(heavy.colorize("mix")[0, 0, 0], [1.0, 0.72, 0.0])  # clipped
    with pytest.raises(InputError, match="mix"):
        nmf.colorize("sum")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [1, 4, 10, 11, 16])
def test_component_colors_are_distinct_valid_rgb(k: int) -> None:
    colors = component_colors(k)
    assert colors.shape == (k, 3)
    assert (colors >= 0).all()
    assert (colors <= 1).all()
    for a, b in itertools.combinations(range(k), 2):
        assert np.abs(colors[a] - colors[b]).max() > 0.1
    assert not (colors.max(axis=1) < 0.05).any()  # no black: it means "no component"


def test_component_colors_are_a_fixed_prefix() -> None:
    np.testing.assert_array_equal(component_colors(4), component_colors(10)[:4])
    with pytest.raises(InputError, match="positive"):
        component_colors(0)


def test_negative_activations_error_or_clip() -> None:
    acts, _, _ = _planted(seed=2)
    signed = acts - 0.05
    with pytest.raises(InputError, match=r"'conv3'.*after the ReLU.*clip"):
        nmf_components(signed, k=4, layer="conv3")
    clipped = nmf_components(signed, k=4, negative="clip", seed=0)
    reference = nmf_components(np.maximum(signed, 0.0), k=4, seed=0)
    np.testing.assert_array_equal(clipped.weights, reference.weights)


def test_nmf_argument_errors() -> None:
    acts = np.random.default_rng(0).uniform(size=(1, 3, 2, 2))
    with pytest.raises(InputError, match=r"min\(N·H·W, D\).*= 3"):
        nmf_components(acts, k=4)
    with pytest.raises(InputError, match="all zero"):
        nmf_components(np.zeros((2, 3, 2, 2)), k=2)
    with pytest.raises(InputError, match="N×D×H×W"):
        nmf_components(acts[0], k=2)
    with pytest.raises(InputError, match="positive int"):
        nmf_components(acts, k=0)


def test_same_seed_same_result_and_save_load(tmp_path: object) -> None:
    acts, _, _ = _planted(seed=4)
    a = nmf_components(acts, k=3, seed=7)
    b = nmf_components(acts, k=3, seed=7)
    np.testing.assert_array_equal(a.weights, b.weights)
    path = a.save(f"{tmp_path}/nmf")
    loaded = NMFComponents.load(path)
    np.testing.assert_array_equal(loaded.weights, a.weights)
    np.testing.assert_array_equal(loaded.colors, a.colors)
    assert loaded.reconstruction_error == a.reconstruction_error
    assert (loaded.k, loaded.seed, loaded.layer) == (3, 7, None)
