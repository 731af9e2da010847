"""Smooth masks and the area loss against brute-force loops and analytic values.

Oracles: an explicit per-pixel loop over the window cells in plain Python floats for the
max-convolution generator, ``torch.autograd.gradcheck`` for its custom backward, Lemma 1 and the
Lipschitz bound of the thesis (ch. 4 §3.5), closed-form kernel values and the sort-based
definition of the area loss (§3.3) differentiated by autograd through ``torch.sort``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import pytest
import torch

from convscope.attribution.masks import (
    MaskGenerator,
    area_loss,
    area_reference,
    kernel_profile,
    smax,
)
from convscope.core.errors import InputError


def _kernel(z: float, kernel: str) -> float:
    if kernel == "torchray":
        return math.exp(-2.0 * max(z - 0.5, 0.0) ** 2)
    return math.exp(-(max(z - 1.0, 0.0) ** 2) / 4.0)


def _pool(values: list[float], pooling: str, coldness: float) -> float:
    if pooling == "max":
        return max(values)
    if pooling == "sum":
        return sum(values)
    if pooling == "sigmoid":
        return 1.0 / (1.0 + math.exp(-(coldness * sum(values) - 3.0)))
    top = max(values)  # shifted exponentials: same ratio, no overflow
    weights = [math.exp(coldness * (v - top)) for v in values]
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def _brute_generate(
    params: torch.Tensor,
    shape: tuple[int, int],
    step: int,
    sigma: float,
    *,
    pooling: str,
    kernel: str,
    coldness: float,
    radius: int,
    clamp: bool,
) -> torch.Tensor:
    """m(u) = pool_d k(|u - c_{v+d}| / sigma) mbar(v + d); u in cell v; c_b = step b + (rho-1)/2."""
    grid = params.double().tolist()
    rows, cols = len(grid[0][0]), len(grid[0][0][0])
    out = torch.zeros(params.shape[0], 1, *shape, dtype=torch.float64)
    for b in range(params.shape[0]):
        for y in range(shape[0]):
            for x in range(shape[1]):
                values = []
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        cy, cx = y // step + dy, x // step + dx
                        inside = 0 <= cy < rows and 0 <= cx < cols
                        mbar = grid[b][0][cy][cx] if inside else 0.0
                        dist = math.hypot(
                            y - (step * cy + (step - 1) / 2), x - (step * cx + (step - 1) / 2)
                        )
                        values.append(_kernel(dist / sigma, kernel) * mbar)
                value = _pool(values, pooling, coldness)
                out[b, 0, y, x] = min(max(value, 0.0), 1.0) if clamp else value
    return out


GEOMETRIES = [  # (shape, step, sigma): ragged non-square grids, sigma above and below step
    ((13, 10), 3, 2.5),
    ((8, 11), 4, 5.0),
]


@pytest.mark.parametrize("pooling", ["softmax", "max", "sum", "sigmoid"])
@pytest.mark.parametrize("kernel", ["torchray", "paper"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_generate_matches_a_brute_force_loop_over_pixels_and_window_cells(
    pooling: Any, kernel: Any, geometry: tuple[tuple[int, int], int, float]
) -> None:
    shape, step, sigma = geometry
    coldness = 7.0 if pooling == "sigmoid" else 20.0
    gen = MaskGenerator(
        shape, step, sigma, pooling=pooling, kernel=kernel, coldness=coldness,
        clamp=pooling != "sum", dtype=torch.float64,
    )  # fmt: skip
    assert gen.shape_in == (math.ceil(shape[0] / step), math.ceil(shape[1] / step))
    assert gen.radius == 1 + math.ceil(sigma / step)  # TorchRay's window
    params = torch.rand(2, 1, *gen.shape_in, generator=torch.Generator().manual_seed(3))
    params = params.double()
    params[0, 0, 0, 0] = 1.0  # exact ones and zeros exercise the clamp and the max
    params[1, 0, -1, -1] = 0.0
    expected = _brute_generate(
        params, shape, step, sigma, pooling=pooling, kernel=kernel, coldness=coldness,
        radius=gen.radius, clamp=pooling != "sum",
    )  # fmt: skip
    for rows in (1, 2, 7):  # processing rows of cells in blocks must not change anything
        got = gen.generate(params, rows=rows)
        assert got.shape == (2, 1, *shape)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("coldness", [0.5, 5.0, 80.0])
def test_smooth_max_generator_matches_the_loop_at_other_coldness_and_radius(
    coldness: float,
) -> None:
    shape, step, sigma, radius = (9, 14), 3, 4.0, 2  # window smaller than TorchRay's default
    gen = MaskGenerator(shape, step, sigma, coldness=coldness, radius=radius, dtype=torch.float64)
    params = torch.rand(3, 1, *gen.shape_in, generator=torch.Generator().manual_seed(4)).double()
    expected = _brute_generate(
        params, shape, step, sigma, pooling="softmax", kernel="torchray", coldness=coldness,
        radius=radius, clamp=True,
    )  # fmt: skip
    for rows in (1, 3):
        torch.testing.assert_close(gen.generate(params, rows=rows), expected, rtol=1e-10, atol=0)


def test_infinite_coldness_is_the_hard_max_convolution() -> None:
    soft = MaskGenerator((10, 9), 3, 3.0, coldness=math.inf, dtype=torch.float64)
    hard = MaskGenerator((10, 9), 3, 3.0, pooling="max", dtype=torch.float64)
    params = torch.rand(2, 1, *soft.shape_in, generator=torch.Generator().manual_seed(5)).double()
    torch.testing.assert_close(soft.generate(params), hard.generate(params), rtol=0, atol=0)


@pytest.mark.parametrize("pooling", ["softmax", "sum", "sigmoid"])
@pytest.mark.parametrize("rows", [1, 2])
def test_generator_gradient_passes_gradcheck(pooling: Any, rows: int) -> None:
    gen = MaskGenerator(
        (7, 10), 3, 2.5, pooling=pooling, coldness=20.0 if pooling == "softmax" else 3.0,
        clamp=False, dtype=torch.float64,
    )  # fmt: skip
    # values in (0.05, 0.95): no ties in the window, away from the clamp of the parameters
    params = 0.05 + 0.9 * torch.rand(
        2, 1, *gen.shape_in, generator=torch.Generator().manual_seed(6)
    )
    params = params.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: gen.generate(p, rows=rows), (params,))


def test_softmax_gradient_with_large_coldness_and_clamped_output() -> None:
    # coldness 200 makes exp() overflow without the max shift; the clamp stays inactive
    # because smax <= max f <= 1.
    gen = MaskGenerator((6, 6), 2, 2.0, coldness=200.0, dtype=torch.float64)
    params = 0.1 + 0.8 * torch.rand(1, 1, 3, 3, generator=torch.Generator().manual_seed(7))
    params = params.double().requires_grad_(True)
    assert torch.isfinite(gen.generate(params)).all()
    assert torch.autograd.gradcheck(gen.generate, (params,))


@pytest.mark.parametrize(
    ("kernel", "step", "sigma"),
    # Lemma 1 needs k = 1 at every pixel of a cell: the half-diagonal (step-1)/sqrt(2) must lie
    # in the flat part (z <= 0.5 for TorchRay's profile, z <= 1 for the paper's).
    [("torchray", 4, 8.0), ("torchray", 3, 4.0), ("paper", 4, 3.0)],
)
def test_lemma_1_for_the_max_convolution(kernel: Any, step: int, sigma: float) -> None:
    shape = (18, 22)
    gen = MaskGenerator(shape, step, sigma, pooling="max", kernel=kernel, dtype=torch.float64)
    params = torch.rand(3, 1, *gen.shape_in, generator=torch.Generator().manual_seed(8)).double()
    ones = torch.rand(params.shape, generator=torch.Generator().manual_seed(9)) < 0.3
    params[ones] = 1.0
    params[0, 0, 1, 2] = 0.0
    mask = gen.generate(params)
    cell = params.repeat_interleave(step, 2).repeat_interleave(step, 3)[..., : shape[0], : shape[1]]
    assert (mask >= cell).all()  # mbar(cell of u) <= m(u)
    assert (mask <= 1.0).all()
    assert (mask[cell == 1.0] == 1.0).all()  # mbar = 1 => m = 1, exactly


def test_an_ordinary_convolution_damps_a_cell_of_ones_unlike_the_max_convolution() -> None:
    # The contrast motivating eq. 6: a single cell of ones stays 1 under the max but not
    # under the (sum-normalized) convolution of eq. 5.
    params = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    params[0, 0, 2, 2] = 1.0
    hard = MaskGenerator((20, 20), 4, 8.0, pooling="max", dtype=torch.float64).generate(params)
    conv = MaskGenerator((20, 20), 4, 8.0, pooling="sum", clamp=False, dtype=torch.float64)
    ones = conv.generate(torch.ones_like(params))
    damped = conv.generate(params) / ones  # Z^{-1} sum_v k m(v)
    assert (hard[0, 0, 8:12, 8:12] == 1.0).all()
    assert damped[0, 0, 8:12, 8:12].max() < 0.5


@pytest.mark.parametrize(
    ("kernel", "max_slope", "sigma"),
    [
        ("torchray", 2.0 * math.exp(-0.5), 4.0),  # |k'| = 4t exp(-2t^2), max at t = 1/2
        ("paper", math.sqrt(0.5) * math.exp(-0.5), 2.0),  # |k'| = t/2 exp(-t^2/4), t = sqrt 2
    ],
)
def test_max_convolution_is_lipschitz_with_the_kernel_constant(
    kernel: Any, max_slope: float, sigma: float
) -> None:
    shape, step = (20, 17), 3
    lipschitz = max_slope / sigma
    probe = MaskGenerator(shape, step, sigma)
    # A window covering every cell: the max runs over all of them, so no cell enters or
    # leaves a pixel's window between neighbours (which would break the bound).
    radius = max(probe.shape_in)
    gen = MaskGenerator(
        shape, step, sigma, pooling="max", kernel=kernel, radius=radius, dtype=torch.float64
    )
    params = torch.rand(4, 1, *gen.shape_in, generator=torch.Generator().manual_seed(10)).double()
    params[3] = 0.0
    params[3, 0, 3, 2] = 1.0  # a single cell: its profile runs through the steepest slope
    m = gen.generate(params)[:, 0]
    worst = 0.0
    for dy, dx in [(0, 1), (1, 0), (1, 1), (1, -1), (2, 3), (5, 0)]:
        a = m[:, max(dy, 0) :, max(dx, 0) : m.shape[2] + min(dx, 0)]
        b = m[:, : m.shape[1] - dy, max(-dx, 0) : m.shape[2] - max(dx, 0)]
        ratio = ((a - b).abs() / math.hypot(dy, dx)).max().item()
        worst = max(worst, ratio)
        assert ratio <= lipschitz + 1e-12
    assert worst > 0.9 * lipschitz  # the bound is attained, so a wrong sigma scale would fail


def test_smax_tends_to_the_max_as_coldness_grows_and_to_the_mean_as_it_vanishes() -> None:
    values = torch.rand(6, 9, generator=torch.Generator().manual_seed(11)).double()
    torch.testing.assert_close(smax(values, 1, math.inf), values.amax(1), rtol=0, atol=0)
    gap = (values.sort(1).values[:, -1] - values.sort(1).values[:, -2]).min().item()
    big = 50.0 / gap  # others weigh at most 8 exp(-50) against the max
    torch.testing.assert_close(smax(values, 1, big), values.amax(1), rtol=0, atol=1e-15)
    torch.testing.assert_close(smax(values, 1, 1e-9), values.mean(1), rtol=0, atol=1e-9)
    # d smax / dc = Var_w(f) >= 0: the smooth max grows with the coldness
    previous = smax(values, 1, 1e-6)
    for c in (0.1, 1.0, 3.0, 10.0, 30.0, 100.0):
        current = smax(values, 1, c)
        assert (current >= previous - 1e-12).all()
        previous = current


def test_smax_is_the_softmax_weighted_average_along_any_dim() -> None:
    values = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(12)).double()
    for dim, c in itertools.product(range(3), (0.7, 20.0)):
        moved = values.movedim(dim, -1)
        expected = torch.empty(moved.shape[:-1], dtype=torch.float64)
        for index in itertools.product(*(range(s) for s in moved.shape[:-1])):
            f = moved[index].tolist()
            expected[index] = _pool(f, "softmax", c)
        torch.testing.assert_close(smax(values, dim, c), expected, rtol=1e-12, atol=0)


def test_kernel_profiles_at_the_spec_points() -> None:
    z = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    torchray = kernel_profile(z, "torchray")
    # seed spec §2.4: 1 up to z = 0.5, 0.61 at 1, 0.135 at 1.5, 0.011 at 2
    torch.testing.assert_close(
        torchray[:6], torch.tensor([1.0, 1.0, 1.0, 0.61, 0.135, 0.011], dtype=torch.float64),
        rtol=0, atol=5e-3,
    )  # fmt: skip
    paper = kernel_profile(z, "paper")
    # the thesis formula with its minus sign: 1 up to z = 1, 0.94 at 1.5, 0.78 at 2, 0.37 at 3
    torch.testing.assert_close(
        paper[[0, 3, 4, 5, 6]], torch.tensor([1.0, 1.0, 0.94, 0.78, 0.37], dtype=torch.float64),
        rtol=0, atol=5e-3,
    )  # fmt: skip
    for name in ("torchray", "paper"):
        exact = torch.tensor([_kernel(v, name) for v in z.tolist()], dtype=torch.float64)
        torch.testing.assert_close(kernel_profile(z, name), exact, rtol=1e-14, atol=0)
    with pytest.raises(InputError, match="'torchray' or 'paper'"):
        kernel_profile(z, cast(Any, "gauss"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": 0}, "step"),
        ({"step": 2.5}, "step"),
        ({"sigma": 0.0}, "sigma"),
        ({"pooling": "mean"}, "'softmax', 'max', 'sum' or 'sigmoid'"),
        ({"coldness": 0.0}, "coldness"),
        ({"radius": -1}, "radius"),
        ({"kernel": "box"}, "'torchray' or 'paper'"),
    ],
)
def test_bad_generator_settings_raise_input_error(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"shape": (8, 8), "step": 2, "sigma": 2.0, **kwargs}
    with pytest.raises(InputError, match=message):
        MaskGenerator(**settings)


def test_generate_rejects_parameters_of_the_wrong_shape() -> None:
    gen = MaskGenerator((10, 7), 3, 3.0)
    for bad in (torch.ones(1, 1, 3, 3), torch.ones(1, 2, 4, 3), torch.ones(4, 3)):
        with pytest.raises(InputError, match=r"\(B, 1, 4, 3\)"):
            gen.generate(bad)


def _sorted_loss(mask: torch.Tensor, area: float) -> torch.Tensor:
    """The definition: mean((vecsort(m) - r_a)^2), r_a = n - round(a n) zeros then ones."""
    flat = mask.reshape(-1)
    n = flat.numel()
    ones = round(area * n)
    reference = torch.cat([torch.zeros(n - ones), torch.ones(ones)]).to(flat)
    return ((flat.sort().values - reference) ** 2).mean()


def test_area_reference_is_zeros_then_round_a_n_ones() -> None:
    for n, a in [(10, 0.3), (7, 0.5), (100, 0.05), (5, 0.0), (5, 1.0)]:
        ref = area_reference(n, a)
        k = round(a * n)
        assert ref.tolist() == [0.0] * (n - k) + [1.0] * k


def test_area_loss_is_exactly_zero_for_a_binary_mask_of_the_right_area() -> None:
    gen = torch.Generator().manual_seed(13)
    for n, a in [(64, 0.25), (100, 0.1), (37, 0.4), (50, 1.0), (50, 0.0)]:
        k = round(a * n)
        mask = torch.zeros(1, n)
        mask[0, torch.randperm(n, generator=gen)[:k]] = 1.0
        assert area_loss(mask, a).item() == 0.0
        if 0 < k < n:  # one pixel too many or too few is penalized
            wrong = mask.clone()
            wrong[0, (wrong[0] == 0).nonzero()[0]] = 1.0
            assert area_loss(wrong, a).item() > 0.0


def test_area_loss_equals_the_sorted_vector_definition_on_random_masks() -> None:
    masks = torch.rand(4, 1, 9, 7, generator=torch.Generator().manual_seed(14)).double()
    for a in (0.0, 0.1, 0.33, 0.5, 0.9, 1.0):
        got = area_loss(masks, a)
        expected = torch.stack([_sorted_loss(m, a) for m in masks])
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    # the ends have closed forms: a = 0 -> mean(m^2), a = 1 -> mean((1 - m)^2)
    torch.testing.assert_close(area_loss(masks, 0.0), (masks**2).flatten(1).mean(1))
    torch.testing.assert_close(area_loss(masks, 1.0), ((1 - masks) ** 2).flatten(1).mean(1))


def test_area_loss_gradient_equals_the_sort_gradient_for_distinct_values() -> None:
    masks = torch.rand(3, 40, generator=torch.Generator().manual_seed(15)).double()
    for a in (0.1, 0.45, 0.8):
        ours = masks.clone().requires_grad_(True)
        area_loss(ours, a).sum().backward()
        ref = masks.clone().requires_grad_(True)
        torch.stack([_sorted_loss(m, a) for m in ref]).sum().backward()
        assert ours.grad is not None and ref.grad is not None
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-12, atol=1e-15)


def test_area_loss_gradient_is_uniform_over_a_flat_mask() -> None:
    # The optimization starts from a mask of ones: all n values tie. A sort would single out
    # the k elements it happens to put last; the loss must push all of them equally, with the
    # average of the sort gradient, 2 (1 - k/n) / n.
    n, a = 50, 0.3
    mask = torch.ones(2, n, dtype=torch.float64, requires_grad=True)
    area_loss(mask, a).sum().backward()
    k = round(a * n)
    assert mask.grad is not None
    expected = torch.full_like(mask, 2.0 * (1.0 - k / n) / n)
    torch.testing.assert_close(mask.grad, expected, rtol=1e-12, atol=0)
    ref = torch.ones(n, dtype=torch.float64, requires_grad=True)
    _sorted_loss(ref, a).backward()
    assert ref.grad is not None
    assert ref.grad.count_nonzero().item() == n - k  # the sort's gradient is concentrated


def test_area_loss_gradient_averages_the_sort_gradient_over_tied_values() -> None:
    # Ties straddling the k-th largest value: any order of the tied values is a valid sort,
    # so the gradient must be the sort gradient averaged over those orders, i.e. equal on
    # the tied elements and summing to the same total; untied elements get the sort's value.
    values = torch.tensor([0.9, 0.2, 0.5, 0.5, 0.1, 0.5, 0.7, 0.5, 0.3, 0.05], dtype=torch.float64)
    for a in (0.3, 0.4, 0.5):  # k = 3, 4, 5: the threshold falls on the four 0.5s
        mask = values.clone()[None].requires_grad_(True)
        loss = area_loss(mask, a)
        loss.sum().backward()
        torch.testing.assert_close(loss[0], _sorted_loss(values, a), rtol=1e-12, atol=0)
        ref = values.clone().requires_grad_(True)
        _sorted_loss(ref, a).backward()
        assert mask.grad is not None and ref.grad is not None
        tied = values == 0.5
        torch.testing.assert_close(mask.grad[0, ~tied], ref.grad[~tied], rtol=1e-12, atol=0)
        expected_tied = ref.grad[tied].mean().expand(int(tied.sum()))
        torch.testing.assert_close(mask.grad[0, tied], expected_tied, rtol=1e-12, atol=1e-15)


def test_area_loss_takes_one_area_per_row() -> None:
    masks = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(16)).double()
    areas = torch.tensor([0.1, 0.5, 0.5, 0.9])
    got = area_loss(masks, areas)
    assert got.shape == (4,)
    for i in range(4):
        torch.testing.assert_close(got[i], area_loss(masks[i : i + 1], float(areas[i]))[0])
        torch.testing.assert_close(got[i], _sorted_loss(masks[i], float(areas[i])))


@pytest.mark.parametrize(
    ("area", "message"),
    [
        (-0.1, r"\[0, 1\]"),
        (1.2, r"\[0, 1\]"),
        (float("nan"), r"\[0, 1\]"),
        (torch.tensor([0.1, 0.2, 0.3]), "one per row"),
    ],
)
def test_bad_areas_raise_input_error(area: float | torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        area_loss(torch.rand(2, 10), area)


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("pooling", ["softmax", "max", "sum"])
def test_strided_generator_is_exact_at_its_grid_points(stride: int, pooling: str) -> None:
    # 25 - 1 and 31 - 1 are multiples of 2 and 3, so every grid point is a pixel.
    shape = (25, 31)
    opts: dict[str, Any] = {"pooling": pooling, "clamp": False, "dtype": torch.float64}
    exact = MaskGenerator(shape, step=4, sigma=5.0, **opts)
    fast = MaskGenerator(shape, step=4, sigma=5.0, stride=stride, **opts)
    params = torch.rand(3, 1, *exact.shape_in, dtype=torch.float64)
    full, strided = exact.generate(params), fast.generate(params)
    assert torch.allclose(strided[..., ::stride, ::stride], full[..., ::stride, ::stride])
    # In between, bilinear interpolation of the grid values.
    grid = full[..., ::stride, ::stride]
    upsampled = torch.nn.functional.interpolate(
        grid, size=shape, mode="bilinear", align_corners=True
    )
    assert torch.allclose(strided, upsampled)


def test_strided_generator_gradient() -> None:
    gen = MaskGenerator((20, 23), step=4, sigma=6.0, stride=3, dtype=torch.float64)
    params = torch.rand(2, 1, *gen.shape_in, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gen.generate, (params,))


def test_stride_must_be_a_positive_integer() -> None:
    with pytest.raises(InputError, match="stride"):
        MaskGenerator((20, 20), stride=0)
