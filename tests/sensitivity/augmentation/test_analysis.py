"""Analyses of sensitivity maps against scipy, hand loops and planted structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import confusion_matrix

from convscope.core.errors import InputError
from convscope.sensitivity.augmentation.analysis import (
    ClusteringResult,
    CorrelationResult,
    LDAResult,
    coefficient_of_variation,
    correlation_distance,
    hierarchical_clustering,
    lda_confusion,
    spatial_correlation_map,
    spearman_across_units,
    unitwise_correlation,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- CoV


def test_coefficient_of_variation_formula() -> None:
    var = torch.tensor([4.0, -1e-3, 9.0, 0.0], dtype=torch.float64)
    mean = torch.tensor([-1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    eps = 1e-5
    expected = torch.tensor([2 / (1 + eps), 0.0, 3 / eps, 0.0], dtype=torch.float64)
    torch.testing.assert_close(coefficient_of_variation(var, mean, log=False), expected)
    torch.testing.assert_close(coefficient_of_variation(var, mean), torch.log10(1 + expected))
    with pytest.raises(InputError, match="same shape"):
        coefficient_of_variation(var, mean[:2])


# --------------------------------------------------------------------------- correlations


def test_spearman_matches_scipy_at_every_position() -> None:
    # Integer values force ties, which Spearman handles with average ranks.
    maps = _rng(1).integers(0, 5, size=(3, 12, 2, 3)).astype(np.float64)
    rho = spearman_across_units(torch.from_numpy(maps))
    assert rho.shape == (6, 3, 3)
    for p, (h, w) in enumerate(np.ndindex(2, 3)):
        expected = stats.spearmanr(maps[:, :, h, w].T).statistic
        np.testing.assert_allclose(rho[p].numpy(), expected, atol=1e-12)


def _hand_pooled(maps: np.ndarray, clip: float, policy: str) -> np.ndarray:
    v, _, h, w = maps.shape
    out = np.zeros((v, v))
    for a in range(v):
        for b in range(v):
            zs = []
            for i in range(h):
                for j in range(w):
                    x, y = maps[a, :, i, j], maps[b, :, i, j]
                    if np.ptp(x) == 0 or np.ptp(y) == 0:
                        if policy == "zero":
                            zs.append(0.0)
                        continue
                    r = stats.spearmanr(x, y).statistic
                    zs.append(math.atanh(min(max(r, -1 + clip), 1 - clip)))
            out[a, b] = math.tanh(sum(zs) / len(zs))
    return out


@pytest.mark.parametrize("policy", ["zero", "omit"])
def test_fisher_z_pooling_matches_hand_loop(policy: str) -> None:
    maps = _rng(2).random((3, 10, 3, 3))
    maps[1] = maps[0] + 0.3 * _rng(3).random((10, 3, 3))  # strongly correlated pair
    maps[2, :, 0, 1] = 0.5  # variable 2 constant across units at one position
    result = unitwise_correlation(maps, nan_policy=policy, n_boot=0)
    expected = _hand_pooled(maps, 1e-6, policy)
    np.testing.assert_allclose(result.correlation.numpy(), expected, atol=1e-10)
    assert result.interval is None
    nan = result.nan_fraction.numpy()
    assert nan[2, 0] == nan[2, 2] == pytest.approx(1 / 9) and nan[0, 1] == 0


def test_planted_identical_anticorrelated_and_independent_maps() -> None:
    c, h, w = 40, 8, 8
    rng = _rng(4)
    base = rng.random((c, h, w))
    maps = np.stack([base, base, -base, rng.random((c, h, w))])
    result = unitwise_correlation(maps, names=["a", "b", "neg", "indep"], n_boot=200)
    r = result.correlation.numpy()
    clip = result.settings["clip"]
    assert r[0, 1] == pytest.approx(1 - clip, abs=1e-12)
    assert r[0, 2] == pytest.approx(-(1 - clip), abs=1e-12)
    # Independent maps: z at each position has sd ≈ 1/sqrt(C - 3); P positions average.
    sd = 1 / math.sqrt((c - 3) * h * w)
    assert abs(r[0, 3]) < 5 * sd
    assert result.names == ("a", "b", "neg", "indep")


def test_bootstrap_interval_contains_estimate_and_shrinks() -> None:
    widths = []
    for hw in (3, 12):
        rng = _rng(5)
        a = rng.random((30, hw, hw))
        maps = np.stack([a, a + 0.5 * rng.random((30, hw, hw)), rng.random((30, hw, hw))])
        result = unitwise_correlation(maps, n_boot=400, seed=1)
        assert result.interval is not None
        lo, hi = result.interval.numpy()
        point = result.correlation.numpy()
        assert np.all(lo <= point + 1e-12) and np.all(point <= hi + 1e-12)
        widths.append(hi[0, 1] - lo[0, 1])
        again = unitwise_correlation(maps, n_boot=400, seed=1)
        assert again.interval is not None and torch.equal(again.interval, result.interval)
    # 16 times more positions: the interval should shrink by about 4 (at least 2).
    assert widths[1] < widths[0] / 2


def test_fully_connected_map_is_one_position() -> None:
    maps = _rng(6).random((4, 25))
    result = unitwise_correlation(torch.from_numpy(maps))
    assert result.n_positions == 1 and result.interval is None
    expected = stats.spearmanr(maps.T).statistic
    np.testing.assert_allclose(result.correlation.numpy(), expected, atol=1e-5)


def test_correlation_result_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = unitwise_correlation(_rng(7).random((3, 8, 2, 2)), names=["x", "y", "z"], n_boot=20)
    loaded = CorrelationResult.load(result.save(tmp_path / "corr"))
    assert loaded.names == ("x", "y", "z")
    assert loaded.interval is not None and result.interval is not None
    torch.testing.assert_close(loaded.interval, result.interval)


def test_spatial_correlation_map_matches_loop() -> None:
    rng = _rng(8)
    sens = rng.random((3, 15, 4, 5))
    cov = rng.random((15, 4, 5))
    sens[1] = -cov  # perfectly anti-ranked with CoV everywhere
    out = spatial_correlation_map(sens, cov)
    assert out.shape == (3, 4, 5)
    for v in range(3):
        for i in range(4):
            for j in range(5):
                expected = stats.spearmanr(sens[v, :, i, j], cov[:, i, j]).statistic
                assert out[v, i, j].item() == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(out[1], torch.full((4, 5), -1.0, dtype=torch.float64))
    torch.testing.assert_close(spatial_correlation_map(sens[0], cov), out[0])
    fc = spatial_correlation_map(sens[:, :, 0, 0], cov[:, 0, 0])
    torch.testing.assert_close(fc, out[:, 0, 0])
    with pytest.raises(InputError, match="does not match"):
        spatial_correlation_map(sens, cov[:, :3])


# --------------------------------------------------------------------------- LDA


def test_lda_separates_planted_variables() -> None:
    rng = _rng(9)
    v, c, hw = 4, 25, 16
    centers = 3 * rng.standard_normal((v, 1, hw))
    maps = (centers + 0.3 * rng.standard_normal((v, c, hw))).reshape(v, c, 4, 4)
    result = lda_confusion(maps, names=list("abcd"), n_repeats=2, seed=0)
    assert isinstance(result, LDAResult)
    assert result.train_accuracy.shape == result.validation_accuracy.shape == (10,)
    torch.testing.assert_close(result.confusion.sum(1), torch.ones(v, dtype=torch.float64))
    assert torch.diagonal(result.confusion).min() > 0.95
    assert result.mean_validation_accuracy > 0.95


def test_lda_on_random_maps_is_at_chance() -> None:
    v, c = 3, 150
    maps = _rng(10).standard_normal((v, c, 1, 2))
    result = lda_confusion(maps, n_repeats=2, seed=0)
    # Validation accuracy of pure noise: chance 1/V ± binomial error of V·C predictions.
    sd = math.sqrt((1 / v) * (1 - 1 / v) / (v * c))
    assert abs(result.mean_validation_accuracy - 1 / v) < 5 * sd
    # Fold matrices are row-normalised confusion matrices (sklearn's normalize="true").
    assert result.confusion_std.shape == (v, v)


def test_lda_fold_matrix_is_sklearns_row_normalised_confusion() -> None:
    rng = _rng(11)
    maps = rng.standard_normal((2, 20, 1, 3)) + np.arange(2)[:, None, None, None]
    result = lda_confusion(maps, n_splits=2, n_repeats=1, seed=3)
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import RepeatedKFold

    x, y = maps.reshape(40, 3), np.repeat(np.arange(2), 20)
    mats = []
    for tr, va in RepeatedKFold(n_splits=2, n_repeats=1, random_state=3).split(x):
        pred = LinearDiscriminantAnalysis(solver="svd", tol=1e-4).fit(x[tr], y[tr]).predict(x[va])
        mats.append(confusion_matrix(y[va], pred, labels=[0, 1], normalize="true"))
    np.testing.assert_allclose(result.confusion.numpy(), np.mean(mats, 0), atol=1e-12)


def test_lda_rejects_non_finite_maps() -> None:
    maps = np.ones((2, 5, 2, 2))
    maps[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="nan_to_num"):
        lda_confusion(maps)


# --------------------------------------------------------------------------- clustering


def test_distance_formula() -> None:
    r = torch.tensor([[1.0, -0.64], [-0.64, 1.0]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 0.6], [0.6, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(correlation_distance(r), expected)


def test_planted_block_correlation_clusters() -> None:
    # Two blocks {0, 2, 4} and {1, 3}; within-block |rho| = 0.9 (sign ignored), across 0.1.
    block = np.array([0, 1, 0, 1, 0])
    r = np.where(block[:, None] == block[None, :], 0.9, 0.1)
    r[0, 2] = r[2, 0] = -0.9
    np.fill_diagonal(r, 1.0)
    names = ["a", "b", "c", "d", "e"]
    result = hierarchical_clustering(r, labels=names, threshold=0.5)
    assert isinstance(result, ClusteringResult)
    assert result.clusters is not None
    ids = result.clusters.numpy()
    same_cluster = ids[:, None] == ids[None, :]
    assert len(set(ids)) == 2
    np.testing.assert_array_equal(same_cluster, block[:, None] == block[None, :])
    heights = result.linkage[:, 2].numpy()
    np.testing.assert_allclose(heights[:3], math.sqrt(0.1))
    np.testing.assert_allclose(heights[-1], math.sqrt(0.9))  # average of identical distances
    np.testing.assert_allclose(result.distance.numpy(), np.sqrt(1 - np.abs(r)), atol=1e-12)
    assert sorted(result.leaves) == list(range(5))
    assert len(set(result.cut(2.0).tolist())) == 1


def test_clustering_takes_a_correlation_result() -> None:
    maps = _rng(12).random((3, 10, 2, 2))
    corr = unitwise_correlation(maps, names=["p", "q", "r"], n_boot=0)
    assert hierarchical_clustering(corr).labels == ("p", "q", "r")
    with pytest.raises(InputError, match="symmetric"):
        hierarchical_clustering(np.array([[1.0, 0.2], [0.3, 1.0]]))


def test_bad_map_shapes_are_rejected() -> None:
    with pytest.raises(InputError, match=r"\(V, C, H, W\)"):
        unitwise_correlation(np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="two units"):
        unitwise_correlation(np.zeros((2, 1)))
    with pytest.raises(InputError, match="one per variable"):
        unitwise_correlation(np.zeros((2, 3)), names=["a"])
