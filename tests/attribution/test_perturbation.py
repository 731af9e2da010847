"""The perturbation pyramid against Gaussian blurs computed level by level and a per-pixel loop.

Oracles: ``convscope.data.filters.gaussian_blur`` at each level's sigma (thesis ch. 4 §3.4,
TorchRay's sigma_l = max_blur (1 - l/(L-1))), the interpolation formula evaluated pixel by
pixel in plain Python, analytic gradients (L-1)(y_{k+1} - y_k) and finite differences.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
import torch

from convscope.attribution.perturbation import Perturbation
from convscope.core.errors import InputError
from convscope.data.filters import gaussian_blur


def _images(n: int = 2, size: tuple[int, int] = (12, 10), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _blur_fill(x: torch.Tensor, sigma: float, fill: list[float]) -> torch.Tensor:
    """Blur with each channel padded by its own constant colour."""
    channels = [
        gaussian_blur(x[:, c : c + 1], sigma, padding_mode="constant", padding_value=fill[c])
        for c in range(x.shape[1])
    ]
    return torch.cat(channels, 1)


def _levels(
    x: torch.Tensor, num_levels: int, max_blur: float, kind: str, padding: Any, fill: list[float]
) -> list[torch.Tensor]:
    out = []
    for level in range(num_levels):
        t = level / (num_levels - 1)
        if kind == "fade":
            out.append(x * t)
        elif level == num_levels - 1:
            out.append(x)
        else:
            sigma = max_blur * (1 - t)
            if padding == "mean":
                out.append(_blur_fill(x, sigma, fill))
            elif padding == "zeros":
                out.append(gaussian_blur(x, sigma, padding_mode="constant", padding_value=0.0))
            else:
                out.append(gaussian_blur(x, sigma, padding_mode=padding))
    return out


@pytest.mark.parametrize("padding", ["mean", "zeros", "replicate", "reflect"])
def test_blur_levels_are_gaussian_blurs_with_decreasing_sigma(padding: Any) -> None:
    x = _images()
    fill = [0.2, 0.5, 0.7]
    p = Perturbation(x, num_levels=5, max_blur=3.0, padding=padding, fill=fill)
    assert p.pyramid.shape == (2, 5, 3, 12, 10)
    for level, expected in enumerate(_levels(x, 5, 3.0, "blur", padding, fill)):
        torch.testing.assert_close(p.pyramid[:, level], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["blur", "fade"])
def test_a_mask_of_ones_gives_the_input_exactly(kind: Any) -> None:
    # High contrast (dark speckles on bright): the top blur level differs from the image by
    # more than a factor 2, where y + 1 * (x - y) rounds away from x.
    x = torch.full((2, 3, 12, 10), 0.9)
    x[..., ::3, ::2] = 0.05 * _images(size=(4, 5), seed=1)
    p = Perturbation(x, num_levels=8, max_blur=20.0, type=kind)
    kept = p.apply(torch.ones(2, 1, 12, 10))
    assert torch.equal(kept, x)  # m = 1 keeps the pixel: no rounding through the pyramid
    assert torch.equal(p.apply(torch.full((2, 1, 12, 10), 1.7)), x)  # clamped to 1


def test_a_mask_of_zeros_gives_the_most_perturbed_level() -> None:
    x = _images(seed=2)
    blurred = Perturbation(x, num_levels=8, max_blur=4.0, padding="replicate")
    expected = gaussian_blur(x, 4.0, padding_mode="replicate")
    torch.testing.assert_close(blurred.apply(torch.zeros(2, 1, 12, 10)), expected)
    torch.testing.assert_close(blurred.apply(torch.full((2, 1, 12, 10), -0.5)), expected)
    faded = Perturbation(x, num_levels=8, type="fade")
    assert torch.equal(faded.apply(torch.zeros(2, 1, 12, 10)), torch.zeros_like(x))


def test_default_padding_pulls_the_blur_towards_mid_grey() -> None:
    x = _images(seed=3)
    p = Perturbation(x, num_levels=4, max_blur=2.0)
    expected = _blur_fill(x, 2.0, [0.5, 0.5, 0.5])
    torch.testing.assert_close(p.apply(torch.zeros(2, 1, 12, 10)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_levels", [5, 8])
def test_mask_values_on_levels_index_them_and_halfway_averages_neighbours(num_levels: int) -> None:
    x = _images(seed=4)
    p = Perturbation(x, num_levels=num_levels, max_blur=3.0, padding="reflect")
    levels = _levels(x, num_levels, 3.0, "blur", "reflect", [])
    # L = 5 puts the levels at exact binary fractions; L = 8 at l/7, not representable
    tol: dict[str, Any] = (
        {"rtol": 0.0, "atol": 0.0} if num_levels == 5 else {"rtol": 1e-5, "atol": 1e-6}
    )
    for level in range(num_levels):
        mask = torch.full((2, 1, 12, 10), level / (num_levels - 1))
        torch.testing.assert_close(p.apply(mask), p.pyramid[:, level], **tol)
        torch.testing.assert_close(p.apply(mask), levels[level], rtol=1e-5, atol=1e-6)
    for level in range(num_levels - 1):
        mask = torch.full((2, 1, 12, 10), (level + 0.5) / (num_levels - 1))
        expected = (levels[level] + levels[level + 1]) / 2
        torch.testing.assert_close(p.apply(mask), expected, rtol=1e-5, atol=1e-6)


def test_apply_matches_a_per_pixel_interpolation_loop() -> None:
    x = _images(n=2, size=(5, 4), seed=5).double()
    num_levels = 6
    p = Perturbation(x, num_levels=num_levels, max_blur=2.0, padding="zeros")
    levels = _levels(x, num_levels, 2.0, "blur", "zeros", [])
    mask = torch.rand(2, 1, 5, 4, generator=torch.Generator().manual_seed(6)).double()
    mask[0, 0, 0, 0], mask[1, 0, 2, 3], mask[1, 0, 4, 0] = 0.0, 1.0, 0.6  # ends and a level
    got = p.apply(mask)
    for n in range(2):
        for y in range(5):
            for xx in range(4):
                w = float(mask[n, 0, y, xx]) * (num_levels - 1)
                k = min(int(w), num_levels - 2)
                frac = w - k
                for c in range(3):
                    lo, hi = float(levels[k][n, c, y, xx]), float(levels[k + 1][n, c, y, xx])
                    expected = (1 - frac) * lo + frac * hi
                    assert abs(float(got[n, c, y, xx]) - expected) < 1e-12


def test_fade_pyramid_is_the_image_scaled_by_the_mask() -> None:
    # y_l = x l/(L-1) is linear in l, so interpolating between levels gives m x exactly.
    x = _images(seed=7).double()
    mask = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(8)).double()
    p = Perturbation(x, num_levels=8, type="fade")
    torch.testing.assert_close(p.apply(mask), mask * x, rtol=1e-12, atol=1e-14)


def test_mean_padding_with_the_image_colour_keeps_a_constant_image_constant() -> None:
    colour = [0.8, 0.3, 0.55]
    x = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, 20, 20).clone()
    p = Perturbation(x, num_levels=4, max_blur=3.0, padding="mean", fill=colour)
    torch.testing.assert_close(p.pyramid, x[:, None].expand_as(p.pyramid), rtol=0, atol=1e-6)
    for padding in ("replicate", "reflect"):
        q = Perturbation(x, num_levels=4, max_blur=3.0, padding=cast(Any, padding))
        torch.testing.assert_close(q.pyramid, x[:, None].expand_as(q.pyramid), rtol=0, atol=1e-6)


def test_zero_padding_darkens_the_borders_only() -> None:
    x = torch.full((1, 3, 32, 32), 0.8)
    sigma = 3.0  # kernel half-width ceil(4 sigma) = 12: pixels 12..19 never see the padding
    level0 = Perturbation(x, num_levels=3, max_blur=sigma, padding="zeros").pyramid[0, 0]
    torch.testing.assert_close(level0[:, 12:20, 12:20], x[0, :, 12:20, 12:20])
    weights = [math.exp(-(j**2) / (2 * sigma**2)) for j in range(-12, 13)]
    inside = sum(weights[12:]) / sum(weights)  # kernel weight left inside at the border
    # separable: an edge pixel keeps `inside` of the image, a corner pixel inside²
    assert float(level0[0, 16, 0]) == pytest.approx(0.8 * inside, rel=1e-5)
    assert float(level0[0, 0, 0]) == pytest.approx(0.8 * inside**2, rel=1e-5)
    assert float(level0[0, 0, 0]) < float(level0[0, 16, 0]) < float(level0[0, 16, 16])
    grey = Perturbation(x, num_levels=3, max_blur=sigma).pyramid[0, 0]  # default: mid grey
    assert float(grey[0, 0, 0]) == pytest.approx(0.8 * inside**2 + 0.5 * (1 - inside**2), rel=1e-5)


def test_index_maps_each_mask_to_its_image() -> None:
    x = _images(n=3, seed=9)
    p = Perturbation(x, num_levels=5, max_blur=2.0)
    index = torch.tensor([2, 0, 2, 1])
    masks = torch.rand(4, 1, 12, 10, generator=torch.Generator().manual_seed(10))
    got = p.apply(masks, index)
    assert got.shape == (4, 3, 12, 10)
    for row, image in enumerate(index.tolist()):
        single = Perturbation(x[image : image + 1], num_levels=5, max_blur=2.0)
        torch.testing.assert_close(got[row : row + 1], single.apply(masks[row : row + 1]))
    with pytest.raises(InputError, match=r"\(4, 1, 12, 10\)"):
        p.apply(masks[:3], index)


def test_gradient_wrt_the_mask_is_the_slope_between_levels() -> None:
    x = _images(n=2, size=(6, 5), seed=11).double()
    num_levels = 5
    p = Perturbation(x, num_levels=num_levels, max_blur=2.0, padding="replicate")
    levels = torch.stack(_levels(x, num_levels, 2.0, "blur", "replicate", []), 1)
    # keep the values off the level boundaries, where the slope jumps
    mask = torch.rand(2, 1, 6, 5, generator=torch.Generator().manual_seed(12)).double()
    mask = (mask * (num_levels - 1)).floor().add(0.1 + 0.8 * mask) / (num_levels - 1)
    upstream = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(13)).double()
    m = mask.clone().requires_grad_(True)
    (p.apply(m) * upstream).sum().backward()
    k = (mask * (num_levels - 1)).floor().long()
    gather = k.unsqueeze(1).expand(2, 1, 3, 6, 5)
    slope = (levels.gather(1, gather + 1) - levels.gather(1, gather)).squeeze(1) * (num_levels - 1)
    expected = (upstream * slope).sum(1, keepdim=True)  # one mask value doses every channel
    assert m.grad is not None
    torch.testing.assert_close(m.grad, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(p.apply, (mask.clone().requires_grad_(True),))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.rand(3, 8, 8),), {}, "N×C×H×W"),
        ((torch.rand(1, 3, 8, 8), 1), {}, "num_levels"),
        ((torch.rand(1, 3, 8, 8), 2.5), {}, "num_levels"),
        ((torch.rand(1, 3, 8, 8),), {"type": "noise"}, "'blur' or 'fade'"),
        ((torch.rand(1, 3, 8, 8),), {"max_blur": 0.0}, "max_blur"),
        ((torch.rand(1, 3, 8, 8),), {"padding": "wrap"}, "'mean', 'zeros', 'replicate'"),
        ((torch.rand(1, 3, 8, 8),), {"fill": [0.1, 0.2]}, "one value per channel"),
    ],
)
def test_bad_pyramid_arguments_raise_input_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        Perturbation(*args, **kwargs)


def test_fade_needs_no_blur_scale() -> None:
    x = _images(seed=14)
    p = Perturbation(x, num_levels=3, max_blur=0.0, type="fade")
    torch.testing.assert_close(p.pyramid[:, 1], x / 2)


def test_masks_of_the_wrong_shape_raise_input_error() -> None:
    p = Perturbation(_images(), num_levels=3, max_blur=2.0)
    for bad in (
        torch.ones(2, 12, 10),
        torch.ones(2, 3, 12, 10),
        torch.ones(2, 1, 10, 12),
        torch.ones(3, 1, 12, 10),
    ):
        with pytest.raises(InputError, match=r"\(2, 1, 12, 10\)"):
            p.apply(bad)
