"""Sobol region attribution (SBSA) against analytic indices, a naive loop with SALib, and
its bookkeeping (batching, per-image partitions, checkpoints, evaluation count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from convscope.attribution.region_sobol import (
    RegionSobolResult,
    inpaint,
    primary_index_ratio,
    region_baseline,
    region_sobol,
)
from convscope.core.errors import InputError
from convscope.data.normalization import Normalize
from convscope.data.regions import Regions, grid_regions
from convscope.sensitivity.designs import pick_freeze_design


class RegionMeans(nn.Module):
    """Outputs per region k the mean of channel 0 over a fixed partition: (N, d)."""

    def __init__(self, labels: torch.Tensor, d: int) -> None:
        super().__init__()
        self.register_buffer("onehot", (labels == torch.arange(d).view(-1, 1, 1)).float())
        self.register_buffer("size", self.onehot.sum(dim=(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nhw,khw->nk", x[:, 0], self.onehot) / self.size


class Additive(nn.Module):
    """score_c = sum_k w_ck mean_k(x)."""

    def __init__(self, labels: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__()
        self.means = RegionMeans(labels, weights.shape[1])
        self.register_buffer("weights", weights)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.means(x) @ self.weights.T


class Product(nn.Module):
    """One output: the product of the region means."""

    def __init__(self, labels: torch.Tensor, d: int) -> None:
        super().__init__()
        self.means = RegionMeans(labels, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.means(x).prod(dim=1, keepdim=True)


def _grid(size: int = 8, cells: int = 2) -> Regions:
    return grid_regions(size, size, cells)


# --------------------------------------------------------------------------------------------
# analytic oracles
# --------------------------------------------------------------------------------------------


def test_additive_model_matches_analytic_indices_and_pir_is_one() -> None:
    # f = sum_k c_k alpha_k with alpha_k ~ U[0,2] i.i.d.: S_k = ST_k = c_k^2 / sum c_j^2
    regions = _grid(8, 2)
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    model = Additive(regions.labels, w).eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    res = region_sobol(model, x, 0, regions, n=2048, space="pixel", n_boot=0)
    c = w[0] * RegionMeans(regions.labels, 4)(x)[0]
    truth = (c**2 / (c**2).sum()).double()
    torch.testing.assert_close(res.first_order[0], truth, atol=0.01, rtol=0)
    torch.testing.assert_close(res.total_order[0], truth, atol=0.01, rtol=0)
    torch.testing.assert_close(res.pir[0], torch.ones(4, dtype=torch.float64), atol=0.05, rtol=0)


def test_multiplicative_interaction_gives_pir_below_one() -> None:
    # f = alpha_1 alpha_2, alpha ~ U[0,2]: Var = 7/9, S = 3/7, ST = 4/7, PIR = 3/4
    regions = grid_regions(4, 4, (1, 2))
    model = Product(regions.labels, 2).eval()
    x = torch.ones(1, 3, 4, 4)
    res = region_sobol(model, x, 0, regions, n=4096, space="pixel", n_boot=0)
    torch.testing.assert_close(
        res.first_order[0], torch.full((2,), 3 / 7, dtype=torch.float64), atol=0.01, rtol=0
    )
    torch.testing.assert_close(
        res.total_order[0], torch.full((2,), 4 / 7, dtype=torch.float64), atol=0.01, rtol=0
    )
    assert bool((res.pir[0] < 0.85).all()) and bool((res.pir[0] > 0.65).all())


def test_matches_naive_loop_and_salib_analyze() -> None:
    salib = pytest.importorskip("SALib.analyze.sobol")  # a dev dependency: never skipped in CI
    torch.manual_seed(0)
    net = nn.Sequential(
        Normalize([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()
    regions = grid_regions(6, 6, 3)
    x = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    n, d = 32, 9
    res = region_sobol(net, x, 2, regions, n=n, seed=5, n_boot=0, batch_size=13)
    # naive: rows in SALib's order, each image built pixel by pixel around the mean colour
    design = pick_freeze_design(d, n, bounds=[(0.0, 2.0)] * d, seed=5, dtype=torch.float32)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)
    ys = []
    for row in design.rows("salib"):
        img = x[0].clone()
        for r in range(6):
            for c in range(6):
                k = int(regions.labels[r, c])
                img[:, r, c] = mean[:, 0, 0] + row[k] * (x[0, :, r, c] - mean[:, 0, 0])
        with torch.no_grad():
            ys.append(float(net(img[None])[0, 2]))
    problem = {"num_vars": d, "names": [str(i) for i in range(d)], "bounds": [[0, 2]] * d}
    si = salib.analyze(problem, np.array(ys), calc_second_order=False, num_resamples=2)
    np.testing.assert_allclose(res.first_order[0].numpy(), si["S1"], atol=1e-5)
    np.testing.assert_allclose(res.total_order[0].numpy(), si["ST"], atol=1e-5)
    assert res.n_evaluations == n * (d + 2) == len(ys)


def test_bootstrap_intervals_cover_the_truth() -> None:
    regions = _grid(8, 2)
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
    model = Additive(regions.labels, w).eval()
    x = torch.full((1, 3, 8, 8), 0.5)
    c = w[0] * 0.5
    truth = (c**2 / (c**2).sum()).double()
    covered = []
    for seed in range(20):
        res = region_sobol(model, x, 0, regions, n=64, space="pixel", seed=seed, n_boot=200)
        assert res.total_order_interval is not None
        lo, hi = res.total_order_interval[0].unbind(-1)
        covered.append(((lo <= truth) & (truth <= hi)).float().mean().item())
    assert np.mean(covered) >= 0.8


# --------------------------------------------------------------------------------------------
# perturbations
# --------------------------------------------------------------------------------------------


def test_factor_one_returns_the_image_and_zero_the_baseline() -> None:
    regions = grid_regions(4, 4, 2)
    net = nn.Sequential(Normalize([0.3, 0.3, 0.3], [1.0, 1.0, 1.0]), nn.Flatten())
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for perturbation in ("scale", "blur", "inpaint"):
        b = region_baseline(net, x, regions, perturbation)
        assert b.shape == x.shape
    # scale in the normalised space: b is the normalisation mean; pixel space: black
    assert torch.equal(region_baseline(net, x, regions, "scale"), torch.full_like(x, 0.3))
    assert torch.equal(
        region_baseline(net, x, regions, "scale", space="pixel"), torch.zeros_like(x)
    )


def test_inpaint_keeps_known_pixels_and_fills_constant_surroundings() -> None:
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(1, 1, 9, 11, dtype=torch.bool)
    hole[..., 2:6, 3:9] = True
    out = inpaint(x, hole)
    assert torch.equal(out[~hole.expand_as(x)], x[~hole.expand_as(x)])
    flat = torch.full_like(x, 0.25)
    flat[hole.expand_as(x)] = 0.9  # hidden content must not leak into the fill
    torch.testing.assert_close(inpaint(flat, hole), torch.full_like(x, 0.25))


def test_inpaint_baseline_is_independent_of_the_region_content() -> None:
    regions = grid_regions(8, 8, 2)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = x.clone()
    y[..., :4, :4] = torch.rand(1, 3, 4, 4)  # change region 0 only
    net = nn.Flatten()
    bx = region_baseline(net, x, regions, "inpaint")
    by = region_baseline(net, y, regions, "inpaint")
    torch.testing.assert_close(bx[..., :4, :4], by[..., :4, :4])


# --------------------------------------------------------------------------------------------
# bookkeeping
# --------------------------------------------------------------------------------------------


def test_batching_and_per_image_partitions_give_identical_results() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    target = [0, 2, 1]
    grid = grid_regions(8, 8, 2)
    a = region_sobol(net, x, target, grid, n=16, batch_size=5, n_boot=10)
    b = region_sobol(net, x, target, grid, n=16, batch_size=1000, n_boot=10)
    # float32 forwards differ in the last bits between batch sizes
    torch.testing.assert_close(a.first_order, b.first_order, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.total_order_interval, b.total_order_interval, atol=1e-5, rtol=0)
    # per-image label maps, the second image with only 3 regions
    labels = grid.labels.repeat(3, 1, 1)
    labels[1][labels[1] == 3] = 2
    per_image = Regions(labels=labels, n_regions=4, kind="custom")
    c = region_sobol(net, x, target, per_image, n=16, n_boot=0)
    for i in (0, 2):  # same design (d = 4) as the joint run
        alone = region_sobol(net, x[i : i + 1], target[i], grid, n=16, n_boot=0)
        torch.testing.assert_close(c.first_order[i], alone.first_order[0], atol=1e-5, rtol=0)
    assert bool(c.first_order[1, :3].isfinite().all())
    assert bool(c.first_order[1, 3].isnan()) and bool(c.pir[1, 3].isnan())


def test_evaluation_count_and_batch_bound() -> None:
    regions = _grid(8, 2)
    model = Additive(regions.labels, torch.randn(2, 4)).eval()
    x = torch.rand(3, 3, 8, 8)
    res = region_sobol(model, x, 1, regions, n=8, batch_size=20, n_boot=0)
    assert res.n_evaluations == 8 * (4 + 2)
    # one clean pass per image group plus N(d+2) perturbed images per image
    assert sum(model.calls) == 3 * 8 * 6 + 3
    assert max(model.calls) <= 20


def test_checkpoint_resumes_without_recomputing(tmp_path: Path) -> None:
    regions = _grid(8, 2)
    model = Additive(regions.labels, torch.randn(2, 4)).eval()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    full = region_sobol(model, x, 1, regions, n=8, batch_size=48, n_boot=0)

    class InterruptError(Exception):
        pass

    state = {"left": 3}

    def stop_after_some(_module: nn.Module, _inputs: object, _output: object) -> None:
        state["left"] -= 1
        if state["left"] < 0:
            raise InterruptError

    handle = model.register_forward_hook(stop_after_some)
    with pytest.raises(InterruptError):
        region_sobol(model, x, 1, regions, n=8, batch_size=48, n_boot=0, resume=tmp_path / "c")
    handle.remove()
    model.calls.clear()
    resumed = region_sobol(
        model, x, 1, regions, n=8, batch_size=48, n_boot=0, resume=tmp_path / "c"
    )
    torch.testing.assert_close(resumed.first_order, full.first_order)
    assert sum(model.calls) < 4 * (48 + 1)  # the finished image was not recomputed


@pytest.mark.parametrize("change", ["last_image", "last_weight", "setting"])
def test_resume_of_a_different_run_is_refused(tmp_path: Path, change: str) -> None:
    regions = _grid(8, 2)
    model = Additive(regions.labels, torch.randn(2, 4)).eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    kw: dict = {"n": 8, "batch_size": 48, "n_boot": 0, "resume": tmp_path / "c"}
    region_sobol(model, x, 1, regions, **kw)
    expected = {"last_image": "input 'images'", "last_weight": "the model", "setting": "'n'"}
    if change == "last_image":
        x = x.clone()
        x[-1, 0, -1, -1] = 1 - x[-1, 0, -1, -1]
    elif change == "last_weight":
        with torch.no_grad():
            model.weights[-1, -1] += 1e-3  # a buffer: the whole state_dict is covered
    else:
        kw["n"] = 16
    with pytest.raises(InputError, match=expected[change]):
        region_sobol(model, x, 1, regions, **kw)


def test_old_keyword_checkpoint_warns(tmp_path: Path) -> None:
    regions = _grid(8, 2)
    model = Additive(regions.labels, torch.randn(2, 4)).eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(DeprecationWarning, match="resume="):
        region_sobol(model, x, 1, regions, n=8, n_boot=0, checkpoint=tmp_path / "c")


def test_result_round_trip_heatmap_and_helpers(tmp_path: Path) -> None:
    regions = _grid(8, 2)
    w = torch.tensor([[4.0, 1.0, 0.0, 2.0]])
    model = Additive(regions.labels, w).eval()
    x = torch.full((2, 3, 8, 8), 0.5)
    res = region_sobol(model, x, 0, regions, n=256, space="pixel", n_boot=0)
    res.save(tmp_path / "r")
    back = RegionSobolResult.load(tmp_path / "r")
    torch.testing.assert_close(back.total_order, res.total_order)
    heat = res.heatmap("total_order")
    assert heat.shape == (2, 8, 8)
    assert float(heat[0, 0, 0]) == float(res.total_order[0, 0])
    assert float(heat[0, 7, 7]) == float(res.total_order[0, 3])
    assert res.rank()[0].tolist()[:2] == [0, 3]
    top = res.top_fraction(0.25)
    assert top.sum(dim=1).tolist() == [1, 1] and bool(top[:, 0].all())


def test_pir_guard() -> None:
    s1 = torch.tensor([0.2, 0.1, 0.3, float("nan")])
    st = torch.tensor([0.4, 0.0, -0.1, 0.2])
    pir = primary_index_ratio(s1, st)
    assert pir[0].item() == pytest.approx(0.5)
    assert bool(pir[1:].isnan().all())


def test_constant_score_gives_zero_indices_with_a_flag() -> None:
    regions = _grid(8, 2)
    model = Additive(regions.labels, torch.zeros(1, 4)).eval()
    res = region_sobol(model, torch.rand(1, 3, 8, 8), 0, regions, n=16, n_boot=10)
    assert bool(res.zero_variance.all())
    assert torch.equal(res.first_order, torch.zeros_like(res.first_order))
    assert not bool(res.first_order.isnan().any())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor_bounds": (2.0, 0.0)}, "low < high"),
        ({"n": 50}, "power of two"),
        ({"perturbation": "noise"}, "Unknown perturbation"),
        ({"output": "softmax"}, "output must be"),
        ({"n_boot": 1}, "n_boot"),
        ({"regions": grid_regions(6, 6, 2)}, "build the regions for the image size"),
    ],
)
def test_bad_input(kwargs: dict[str, object], message: str) -> None:
    regions = kwargs.pop("regions", _grid(8, 2))
    model = Additive(_grid(8, 2).labels, torch.ones(1, 4)).eval()
    with pytest.raises(InputError, match=message):
        region_sobol(model, torch.rand(1, 3, 8, 8), 0, regions, **kwargs)  # type: ignore[arg-type]
