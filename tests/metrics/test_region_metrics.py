"""Region-attribution metrics against additive models, hand computations and naive loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from convscope.core import InputError
from convscope.data.regions import Regions, grid_regions
from convscope.metrics.regions import (
    RegionMaskingResult,
    SensitivityNResult,
    fraction_pir_above_one,
    importance_difference,
    mean_top_pir,
    n_selected,
    region_heatmap,
    region_masking,
    region_overlap,
    sensitivity_n,
)


class LinearScore(nn.Module):
    """Class 0 scores <W, x> + c and class 1 its negative: additive over any partition."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weight).flatten(1).sum(1) + 0.7
        return torch.stack((s, -s), dim=1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(h: int = 8, w: int = 8) -> LinearScore:
    return LinearScore(torch.randn(1, 3, h, w, generator=_gen(3), dtype=torch.float64))


def _contributions(
    model: LinearScore, x: torch.Tensor, baseline: torch.Tensor | float, regions: Regions
) -> torch.Tensor:
    """phi[i, k] = sum over region k of W (x - b): the exact drop when region k is masked."""
    n = x.shape[0]
    masks = regions.masks()
    phi = torch.full((n, regions.n_regions), math.nan, dtype=torch.float64)
    for i in range(n):
        b = baseline if isinstance(baseline, float) else baseline[i if baseline.shape[0] > 1 else 0]
        for k in range(regions.n_regions):
            m = masks[i, k] if regions.is_batched else masks[k]
            if m.any():
                phi[i, k] = (model.weight[0].detach() * (x[i] - b) * m).sum()
    return phi


def _per_image_regions() -> Regions:
    """Two 8×8 images: image 0 has 5 regions, image 1 has 3 (regions 3, 4 empty)."""
    a = torch.zeros(8, 8, dtype=torch.long)
    a[:, 2:4], a[:, 4:6], a[:4, 6:], a[4:, 6:] = 1, 2, 3, 4
    b = torch.zeros(8, 8, dtype=torch.long)
    b[3:, :] = 1
    b[6:, 5:] = 2
    return Regions(labels=torch.stack([a, b]), n_regions=5, kind="test")


# --------------------------------------------------------------------------- rounding


def test_n_selected_rounds_half_up_within_bounds() -> None:
    for d in range(1, 40):
        for f in (0.05, 0.1, 0.2, 0.25, 0.5, 0.7, 0.9, 1.0):
            exact = f * d
            expected = math.floor(exact) + (1 if exact - math.floor(exact) >= 0.5 - 1e-9 else 0)
            assert n_selected(f, d) == min(d, max(1, expected))
    assert (n_selected(0.2, 16), n_selected(0.2, 64), n_selected(0.2, 256)) == (3, 13, 51)


# --------------------------------------------------------------------------- masking


def test_masking_additive_model_drops_are_sums_of_top_and_bottom_contributions() -> None:
    model = _linear()
    x = torch.rand(4, 3, 8, 8, generator=_gen(0), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=4)
    phi = _contributions(model, x, 0.3, regions)
    res = region_masking(model, x, 0, regions, phi, baseline=0.3, batch_size=5)
    assert isinstance(res, RegionMaskingResult)
    k = 3  # 20% of 16 regions
    for i in range(4):
        values = sorted(phi[i].tolist())
        assert res.top_drop[i].item() == pytest.approx(sum(values[-k:]), abs=1e-10)
        assert res.bottom_drop[i].item() == pytest.approx(sum(values[:k]), abs=1e-10)
        assert res.score[i].item() == pytest.approx(model(x[i : i + 1])[0, 0].item(), abs=1e-12)
        top_ids = set(sorted(range(16), key=lambda j: -phi[i, j].item())[:k])
        assert set(res.top_regions[i].nonzero().view(-1).tolist()) == top_ids
    assert res.n_masked.tolist() == [k] * 4


def test_masking_per_image_regions_ignores_empty_regions_and_baseline_images() -> None:
    model = _linear()
    x = torch.rand(2, 3, 8, 8, generator=_gen(1), dtype=torch.float64)
    base = torch.rand(2, 3, 8, 8, generator=_gen(2), dtype=torch.float64)
    regions = _per_image_regions()
    phi = _contributions(model, x, base, regions)
    assert torch.isnan(phi[1, 3:]).all()
    scores = phi.clone()
    scores[1, 3:] = 1e9  # finite scores of empty regions must be ignored too
    res = region_masking(model, x, 0, regions, scores, fraction=0.4, baseline=base)
    assert res.n_masked.tolist() == [2, 1]  # round(0.4 * 5) = 2, round(0.4 * 3) = 1
    assert not res.top_regions[1, 3:].any() and not res.bottom_regions[1, 3:].any()
    for i, d_i in enumerate((5, 3)):
        values = sorted(phi[i, :d_i].tolist())
        k = res.n_masked[i].item()
        assert res.top_drop[i].item() == pytest.approx(sum(values[-k:]), abs=1e-10)
        assert res.bottom_drop[i].item() == pytest.approx(sum(values[:k]), abs=1e-10)
    nan_scores = phi.clone()
    res_nan = region_masking(model, x, 0, regions, nan_scores, fraction=0.4, baseline=base)
    torch.testing.assert_close(res_nan.top_drop, res.top_drop)


def test_masking_ties_go_to_the_lower_region_index() -> None:
    model = _linear()
    x = torch.rand(1, 3, 8, 8, generator=_gen(4), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=(2, 5))
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 1.0]])
    res = region_masking(model, x, 0, regions, scores, fraction=0.3)
    assert res.top_regions[0].nonzero().view(-1).tolist() == [1, 2, 4]
    assert res.bottom_regions[0].nonzero().view(-1).tolist() == [3, 5, 7]
    many = (torch.arange(64) % 3 == 0).double()  # 22 tied at 1, 42 tied at 0
    res = region_masking(model, x, 0, grid_regions(8, 8, cells=8), many)
    assert (
        res.top_regions[0].nonzero().view(-1).tolist() == [k for k in range(64) if k % 3 == 0][:13]
    )
    assert res.bottom_regions[0].nonzero().view(-1).tolist() == [k for k in range(64) if k % 3][:13]


def test_masking_nonlinear_model_matches_naive_loop(tiny_cnn: nn.Module) -> None:
    x = torch.rand(3, 3, 8, 8, generator=_gen(5))
    regions = grid_regions(8, 8, cells=2)
    scores = torch.randn(3, 4, generator=_gen(6))
    target = [0, 2, 3]
    tiny_cnn.train()
    res = region_masking(tiny_cnn, x, target, regions, scores, fraction=0.5, batch_size=2)
    assert tiny_cnn.training and all(p.requires_grad for p in tiny_cnn.parameters())
    tiny_cnn.eval()
    labels = regions.labels
    for i in range(3):
        order = sorted(range(4), key=lambda k: -scores[i, k].item())
        with torch.no_grad():
            f0 = tiny_cnn(x[i : i + 1])[0, target[i]]
            for chosen, drop in ((order[:2], res.top_drop[i]), (order[2:], res.bottom_drop[i])):
                masked = x[i].clone()
                for k in chosen:
                    masked[:, labels == k] = 0.0
                expected = f0 - tiny_cnn(masked[None])[0, target[i]]
                assert drop.item() == pytest.approx(expected.item(), abs=1e-5)


# --------------------------------------------------------------------------- sensitivity-n


def test_sensitivity_n_is_one_for_exact_additive_scores_and_nan_when_all_masked() -> None:
    model = _linear()
    x = torch.rand(2, 3, 8, 8, generator=_gen(7), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=4)
    phi = _contributions(model, x, 0.0, regions)
    res = sensitivity_n(model, x, 0, regions, phi, fractions=(0.1, 0.5, 1.0), n_subsets=20)
    assert isinstance(res, SensitivityNResult)
    assert res.n_masked.tolist() == [[2, 8, 16]] * 2
    torch.testing.assert_close(res.pearson[:, :2], torch.ones(2, 2, dtype=torch.float64))
    torch.testing.assert_close(res.drops, res.score_sums)  # sensitivity-n holds exactly
    assert torch.isnan(res.pearson[:, 2]).all()  # every subset masks the whole image
    assert torch.isnan(res.mean_pearson[2]) and res.n_defined.tolist() == [2, 2, 0]


def test_sensitivity_n_converges_to_the_correlation_across_regions() -> None:
    # For uniform subsets of fixed size n, Cov(sum_S a, sum_S b) = n(d-n)/(d(d-1)) *
    # sum_k (a_k - mean a)(b_k - mean b), so r_n -> corr over regions of (scores, phi).
    model = _linear()
    x = torch.rand(2, 3, 8, 8, generator=_gen(8), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=4)
    phi = _contributions(model, x, 0.0, regions)
    noise = torch.randn(2, 16, generator=_gen(9), dtype=torch.float64)
    c = phi - phi.mean(1, keepdim=True)
    orthogonal = noise - (noise * c).sum(1, keepdim=True) / (c * c).sum(1, keepdim=True) * c
    related = phi + 2.0 * noise  # population r = corr(phi, phi + 2 noise) across regions
    n_sub = 600
    for scores in (orthogonal, related):
        expected = [np.corrcoef(scores[i].numpy(), phi[i].numpy())[0, 1] for i in range(2)]
        res = sensitivity_n(
            model, x, 0, regions, scores, fractions=(0.25, 0.5), n_subsets=n_sub, batch_size=256
        )
        for i in range(2):
            # standard error of a Pearson r over n_sub pairs: (1 - rho^2) / sqrt(n_sub - 3)
            tol = 5 * (1 - expected[i] ** 2) / math.sqrt(n_sub - 3) + 1e-9
            for j in range(2):
                assert abs(res.pearson[i, j].item() - expected[i]) < tol
    assert abs(expected[0]) < 0.99  # the related case is a real test, not r = 1


def test_sensitivity_n_batched_matches_naive_per_subset_loop(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8, generator=_gen(10))
    regions = _per_image_regions()
    scores = torch.randn(2, 5, generator=_gen(11))
    scores[1, 3:] = math.nan
    base = torch.rand(1, 3, 8, 8, generator=_gen(12))
    target = [1, 3]
    kwargs = {"fractions": (0.3, 0.6), "n_subsets": 6, "baseline": base, "seed": 4}
    res = sensitivity_n(
        tiny_cnn, x, target, regions, scores, batch_size=5, return_subsets=True, **kwargs
    )
    assert res.subsets is not None and res.subsets.shape == (2, 2, 6, 5)
    assert res.n_masked.tolist() == [[2, 3], [1, 2]]
    with torch.no_grad():
        for i in range(2):
            f0 = tiny_cnn(x[i : i + 1])[0, target[i]]
            for j in range(2):
                sums, drops = [], []
                for s in range(6):
                    subset = res.subsets[i, j, s].nonzero().view(-1).tolist()
                    assert len(subset) == res.n_masked[i, j].item()
                    assert all(k < (5, 3)[i] for k in subset)
                    masked = x[i].clone()
                    for k in subset:
                        where = regions.labels[i] == k
                        masked[:, where] = base[0][:, where]
                    drops.append((f0 - tiny_cnn(masked[None])[0, target[i]]).item())
                    sums.append(sum(scores[i, k].item() for k in subset))
                np.testing.assert_allclose(res.drops[i, j].numpy(), drops, atol=1e-5)
                np.testing.assert_allclose(res.score_sums[i, j].numpy(), sums, atol=1e-6)
                expected = np.corrcoef(sums, drops)[0, 1]
                assert res.pearson[i, j].item() == pytest.approx(expected, abs=1e-4)
    assert torch.allclose(res.mean_pearson, res.pearson.mean(0))
    # batching and storing the subsets change nothing; the seed decides the subsets
    again = sensitivity_n(tiny_cnn, x, target, regions, scores, batch_size=64, **kwargs)
    torch.testing.assert_close(again.drops, res.drops, atol=1e-5, rtol=0)
    torch.testing.assert_close(again.score_sums, res.score_sums)
    other = sensitivity_n(
        tiny_cnn, x, target, regions, scores, return_subsets=True, **{**kwargs, "seed": 5}
    )
    assert other.subsets is not None and not torch.equal(other.subsets, res.subsets)


def test_sensitivity_n_subsets_are_uniform() -> None:
    model = _linear()
    x = torch.rand(1, 3, 8, 8, generator=_gen(13), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=(2, 2))
    res = sensitivity_n(
        model,
        x,
        0,
        regions,
        torch.zeros(4),
        fractions=(0.25,),
        n_subsets=800,
        return_subsets=True,
    )
    assert res.subsets is not None
    counts = res.subsets[0, 0].sum(0).double()  # each region alone, 800 times
    # binomial(800, 1/4): sd = sqrt(800 * 3/16) ~ 12.2
    assert ((counts - 200).abs() < 5 * math.sqrt(800 * 3 / 16)).all()
    assert torch.isnan(res.pearson).all()  # constant scores: the correlation is undefined


def test_results_save_and_load(tmp_path: object) -> None:
    model = _linear()
    x = torch.rand(2, 3, 8, 8, generator=_gen(14), dtype=torch.float64)
    regions = grid_regions(8, 8, cells=2)
    scores = torch.randn(2, 4, generator=_gen(15), dtype=torch.float64)
    masking = region_masking(model, x, 0, regions, scores, fraction=0.5)
    sens = sensitivity_n(model, x, 0, regions, scores, fractions=(0.5,), n_subsets=4)
    path = str(tmp_path) + "/r"
    masking.save(path + "m")
    sens.save(path + "s")
    m2 = RegionMaskingResult.load(path + "m")
    s2 = SensitivityNResult.load(path + "s")
    torch.testing.assert_close(m2.top_regions, masking.top_regions)
    assert m2.fraction == 0.5 and s2.subsets is None and s2.n_subsets == 4
    torch.testing.assert_close(s2.pearson, sens.pearson, equal_nan=True)


# --------------------------------------------------------------------------- aggregates


def test_mean_top_pir_by_hand() -> None:
    nan = math.nan
    pir = torch.tensor(
        [[0.5, 1.2, nan, 0.8, 0.1], [nan, 1.5, nan, nan, nan], [nan, 0.3, 0.2, 0.9, 0.4]]
    )
    st = torch.tensor(
        [[0.4, 0.1, 0.3, 0.9, 0.05], [0.2, 0.7, nan, nan, nan], [0.8, 0.1, 0.1, 0.0, 0.3]]
    )
    out = mean_top_pir(pir, st, fraction=0.4)
    # image 0: d=5, top 2 by S_T = regions 3, 0 -> (0.8 + 0.5) / 2
    # image 1: d=2, top 1 = region 1 -> 1.5
    # image 2: d=5, top 2 = regions 0 (PIR NaN, skipped), 4 -> 0.4
    torch.testing.assert_close(out, torch.tensor([0.65, 1.5, 0.4], dtype=torch.float64))
    only_nan = mean_top_pir(pir[2:], st[2:], fraction=0.2)  # top 1 = region 0, PIR NaN
    assert torch.isnan(only_nan).all()


def test_fraction_pir_above_one_by_hand() -> None:
    nan = math.nan
    pir = torch.tensor([[0.5, 1.2, nan, 0.8, 1.0001, 1.0], [nan, nan, nan, nan, nan, nan]])
    out = fraction_pir_above_one(pir)
    assert out[0].item() == pytest.approx(2 / 5)  # 1.0 itself is not above one
    assert torch.isnan(out[1])


def test_importance_difference_by_hand() -> None:
    nan = math.nan
    st = torch.tensor([[0.5, 0.2, 0.1, nan], [0.3, nan, 0.6, nan]])
    fg = torch.tensor([True, False, True, False])
    torch.testing.assert_close(
        importance_difference(st, fg), torch.tensor([0.4, nan], dtype=torch.float64), equal_nan=True
    )
    mean = importance_difference(st, fg.expand(2, 4).clone(), reduce="mean")
    assert mean[0].item() == pytest.approx(0.3 - 0.2) and torch.isnan(mean[1])
    with pytest.raises(InputError, match="reduce"):
        importance_difference(st, fg, reduce="max")  # type: ignore[arg-type]


def test_region_overlap_and_heatmap_against_pixel_loops() -> None:
    regions = _per_image_regions()
    mask = torch.rand(2, 8, 8, generator=_gen(16)) > 0.5
    overlap = region_overlap(regions, mask)
    values = torch.randn(2, 5, generator=_gen(17), dtype=torch.float64)
    values[0, 2] = math.nan
    heat = region_heatmap(values, regions)
    assert heat.shape == (2, 8, 8)
    for i in range(2):
        for k in range(5):
            pixels = [(r, c) for r in range(8) for c in range(8) if regions.labels[i, r, c] == k]
            if not pixels:
                assert math.isnan(overlap[i, k].item())
                continue
            inside = sum(bool(mask[i, r, c]) for r, c in pixels)
            assert overlap[i, k].item() == pytest.approx(inside / len(pixels))
            for r, c in pixels:
                v = heat[i, r, c].item()
                assert (math.isnan(v) and k == 2 and i == 0) or v == values[i, k].item()
    shared = region_heatmap(torch.arange(4.0), grid_regions(4, 4, cells=2))
    assert shared.shape == (1, 4, 4) and shared[0, 3, 0].item() == 2.0


# --------------------------------------------------------------------------- bad input


def test_bad_input_messages(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8, generator=_gen(18))
    regions = grid_regions(8, 8, cells=2)
    scores = torch.randn(2, 4, generator=_gen(19))
    with pytest.raises(InputError, match=r"shape \(N, d\) = \(2, 4\)"):
        region_masking(tiny_cnn, x, 0, regions, scores[:, :3])
    bad = scores.clone()
    bad[1, 2] = math.nan
    with pytest.raises(InputError, match="image 1, region 2"):
        region_masking(tiny_cnn, x, 0, regions, bad)
    with pytest.raises(InputError, match="regions are 4×4"):
        region_masking(tiny_cnn, x, 0, grid_regions(4, 4, cells=2), scores)
    with pytest.raises(InputError, match=r"fraction must be a number in \(0, 1\]"):
        region_masking(tiny_cnn, x, 0, regions, scores, fraction=0.0)
    with pytest.raises(InputError, match="baseline must be"):
        region_masking(tiny_cnn, x, 0, regions, scores, baseline=torch.zeros(3, 3, 8, 8))
    with pytest.raises(InputError, match="n_subsets"):
        sensitivity_n(tiny_cnn, x, 0, regions, scores, n_subsets=1)
    with pytest.raises(InputError, match="fractions is empty"):
        sensitivity_n(tiny_cnn, x, 0, regions, scores, fractions=())
    with pytest.raises(InputError, match="Regions object"):
        region_masking(tiny_cnn, x, 0, regions.labels, scores)  # type: ignore[arg-type]
