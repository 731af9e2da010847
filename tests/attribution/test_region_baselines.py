"""Region baselines (KernelSHAP, LIME, IG, random) against planted and brute-force oracles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.attribution.region_baselines import (
    REGION_METHODS,
    integrated_gradients_regions,
    kernel_shap_regions,
    lime_regions,
    random_regions,
)
from convscope.core.errors import InputError, TargetError
from convscope.data.regions import Regions, grid_regions

H = W = 8


class Additive(nn.Module):
    """``f(x) = sum_k w_k * mean(x over region k)`` (output 0) and its negative (output 1)."""

    def __init__(self, labels: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__()
        masks = (labels.unsqueeze(0) == torch.arange(len(weights)).view(-1, 1, 1)).float()
        self.register_buffer("masks", masks / masks.sum((1, 2), keepdim=True))
        self.w = nn.Parameter(weights.clone())

    def region_means(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,khw->nk", x, self.masks) / x.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.region_means(x) @ self.w
        return torch.stack([f, -f], 1)


class Counting(nn.Module):
    """Records the number of samples of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.model(x)


class Scaled(nn.Module):
    """A model times a constant, so that LIME's Lasso penalty does not zero every region."""

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.model(x)


@pytest.fixture
def loud_cnn(tiny_cnn: nn.Module) -> nn.Module:
    return Scaled(tiny_cnn, 100.0).eval()


@pytest.fixture
def grid() -> Regions:
    return grid_regions(H, W, cells=2)


@pytest.fixture
def additive(grid: Regions) -> Additive:
    return Additive(grid.labels, torch.tensor([4.0, -1.0, 2.0, 0.5])).eval()


def _x(n: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _per_image_regions() -> Regions:
    """Image 0: 2×2 grid (4 regions); image 1: left/right halves (regions 2, 3 empty)."""
    halves = (torch.arange(W) >= W // 2).long().expand(H, W)
    return Regions(torch.stack([grid_regions(H, W, cells=2).labels, halves]), 4, "labels")


# --- additive model: planted ground truth -----------------------------------------------------


def test_kernel_shap_recovers_shapley_values_of_an_additive_game(
    additive: Additive, grid: Regions
) -> None:
    x = _x()
    truth = additive.region_means(x) * additive.w.detach()  # phi_k = w_k * m_k (baseline 0)
    phi = kernel_shap_regions(additive, x, 0, grid)
    assert phi.shape == (2, 4)
    torch.testing.assert_close(phi, truth, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kernel_shap_regions(additive, x, 1, grid), -truth, atol=1e-4, rtol=0)


def test_kernel_shap_with_an_image_baseline(additive: Additive, grid: Regions) -> None:
    x, b = _x(), _x(1, seed=9)
    truth = (additive.region_means(x) - additive.region_means(b)) * additive.w.detach()
    torch.testing.assert_close(
        kernel_shap_regions(additive, x, [0, 0], grid, baseline=b), truth, atol=1e-4, rtol=1e-4
    )


def test_kernel_shap_single_region_is_the_score_difference() -> None:
    one = Regions(torch.zeros(H, W, dtype=torch.long), 1, "whole")
    model = Additive(one.labels, torch.tensor([3.0])).eval()
    x = _x()
    expected = model(x)[:, 0] - model(torch.full_like(x, 0.25))[:, 0]
    got = kernel_shap_regions(model, x, 0, one, baseline=0.25)
    torch.testing.assert_close(got[:, 0], expected.detach())


def test_ig_sum_is_exact_on_an_additive_model(additive: Additive, grid: Regions) -> None:
    x = _x()
    truth = additive.region_means(x) * additive.w.detach()
    torch.testing.assert_close(integrated_gradients_regions(additive, x, 0, grid), truth)
    sizes = grid.sizes().float()
    torch.testing.assert_close(
        integrated_gradients_regions(additive, x, 0, grid, aggregate="mean"), truth / sizes
    )


def test_ig_abs_sum_on_a_sign_changing_model(grid: Regions) -> None:
    # Gradient +1 on channel 0, -1 on channel 1: signed sum cancels, abs_sum does not.
    class Channels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (self.s * (x[:, 0] - x[:, 1]).sum((1, 2))).unsqueeze(1)

    x = torch.full((1, 3, H, W), 0.5)
    got_abs = integrated_gradients_regions(Channels(), x, 0, grid, aggregate="abs_sum")
    got_sum = integrated_gradients_regions(Channels(), x, 0, grid)
    torch.testing.assert_close(got_abs, torch.full((1, 4), 16 * 2 * 0.5))
    torch.testing.assert_close(got_sum, torch.zeros(1, 4))


def test_ig_completeness_on_a_cnn(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    scores = integrated_gradients_regions(tiny_cnn, images, 2, grid_regions(H, W, cells=2))
    with torch.no_grad():
        gap = tiny_cnn(images)[:, 2] - tiny_cnn(torch.zeros_like(images))[:, 2]
    torch.testing.assert_close(scores.sum(1), gap, atol=2e-3, rtol=2e-3)


def test_lime_ranks_regions_by_true_contribution(additive: Additive, grid: Regions) -> None:
    x = torch.full((1, 3, H, W), 0.6)
    truth = additive.region_means(x) * additive.w.detach()
    coefs = lime_regions(additive, x, 0, grid)
    assert coefs.argsort(1).tolist() == truth.argsort(1).tolist()


def test_callable_target_equals_index_target(additive: Additive, grid: Regions) -> None:
    x = _x()
    by_index = kernel_shap_regions(additive, x, 1, grid, n_samples=40)
    by_fn = kernel_shap_regions(additive, x, lambda out: out[:, 1], grid, n_samples=40)
    torch.testing.assert_close(by_fn, by_index)


# --- per-image partitions -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kernel_shap", "lime", "integrated_gradients"])
def test_per_image_regions_match_image_by_image(
    loud_cnn: nn.Module, images: torch.Tensor, method: str
) -> None:
    regions = _per_image_regions()
    x, fn = images[:2], REGION_METHODS[method]
    kw = {"n_samples": 30, "seed": 5, "baseline": 0.3, "batch_size": 16}
    batched = fn(loud_cnn, x, [1, 3], regions, **kw)
    for i, d_i in enumerate(regions.n_regions_per_image):
        shared = Regions(regions.labels[i], d_i, "labels")
        alone = fn(loud_cnn, x[i : i + 1], [1, 3][i], shared, **kw)
        torch.testing.assert_close(batched[i, :d_i], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.isnan(batched[1, 2:]).all() and not torch.isnan(batched[0]).any()
    assert not torch.isnan(batched[1, :2]).any()
    assert (batched[0] != 0).any()  # not a trivially equal all-zero fit


def test_random_regions_nan_on_empty_and_uniform_ranks() -> None:
    regions = _per_image_regions()
    r = random_regions(_x(), regions, seed=1)
    assert torch.isnan(r[1, 2:]).all() and not torch.isnan(r[0]).any()
    # every ranking of 4 regions is equally likely: the top region is uniform over 4
    top = random_regions(_x(2000), grid_regions(H, W, cells=2), seed=2).argmax(1)
    freq = torch.bincount(top, minlength=4).float() / 2000
    torch.testing.assert_close(freq, torch.full((4,), 0.25), atol=0.04, rtol=0)


# --- seeding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [kernel_shap_regions, lime_regions])
def test_seeding_is_reproducible_and_leaves_global_rng(
    loud_cnn: nn.Module, images: torch.Tensor, fn: object
) -> None:
    assert callable(fn)
    regions = grid_regions(H, W, cells=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = fn(loud_cnn, images[:1], 0, regions, n_samples=20, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = fn(loud_cnn, images[:1], 0, regions, n_samples=20, seed=7)
    c = fn(loud_cnn, images[:1], 0, regions, n_samples=20, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_random_regions_seeded() -> None:
    g = grid_regions(H, W, cells=3)
    assert torch.equal(random_regions(_x(), g, seed=4), random_regions(_x(), g, seed=4))
    assert not torch.equal(random_regions(_x(), g, seed=4), random_regions(_x(), g, seed=5))


# --- budget ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [kernel_shap_regions, lime_regions])
def test_budget_and_batch_size(tiny_cnn: nn.Module, images: torch.Tensor, fn: object) -> None:
    assert callable(fn)
    counting, regions = Counting(tiny_cnn), grid_regions(H, W, cells=2)
    fn(counting, images[:3], 0, regions, n_samples=45, batch_size=8)
    assert sum(counting.sizes) == 3 * 45  # Captum adds no forward for one image per call
    assert max(counting.sizes) <= 8
    counting.sizes.clear()
    fn(counting, images[:1], 0, regions, batch_size=64)  # default budget 64 * (d + 2)
    assert sum(counting.sizes) == 64 * 6 and max(counting.sizes) <= 64


def test_ig_batch_size(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    counting = Counting(tiny_cnn)
    integrated_gradients_regions(
        counting, images, 0, grid_regions(H, W, cells=2), n_steps=10, batch_size=7
    )
    assert max(counting.sizes) <= 7
    assert sum(counting.sizes) == 10 * images.shape[0]


def test_registry_common_signature(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    regions = grid_regions(H, W, cells=2)
    assert set(REGION_METHODS) == {"kernel_shap", "lime", "integrated_gradients", "random"}
    for fn in REGION_METHODS.values():
        out = fn(
            tiny_cnn, images[:2], 0, regions, baseline=0.0, batch_size=16, seed=0, n_samples=12
        )
        assert out.shape == (2, 4) and torch.isfinite(out).all()


# --- errors ---------------------------------------------------------------------------------------


def test_bad_inputs(additive: Additive, grid: Regions) -> None:
    x = _x()
    with pytest.raises(InputError, match="regions are 4×4"):
        kernel_shap_regions(additive, x, 0, grid_regions(4, 4, cells=2))
    with pytest.raises(InputError, match="label maps for 2 images"):
        lime_regions(additive, x, 0, Regions(grid.labels.expand(3, H, W), 4, "grid"))
    with pytest.raises(InputError, match="aggregate"):
        integrated_gradients_regions(additive, x, 0, grid, aggregate="max")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_samples"):
        lime_regions(additive, x, 0, grid, n_samples=0)
    with pytest.raises(InputError, match="n_samples must be an int >= 2"):
        kernel_shap_regions(additive, x, 0, grid, n_samples=1)
    with pytest.raises(InputError, match="baseline"):
        kernel_shap_regions(additive, x, 0, grid, baseline=torch.zeros(3, 3, H, W))
    with pytest.raises(InputError, match="regions must be"):
        random_regions(x, grid.labels)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="out of range"):
        kernel_shap_regions(additive, x, 5, grid, n_samples=10)
    with pytest.raises(TargetError, match="out of range"):
        lime_regions(additive, x, [0, 7], grid, n_samples=10)
