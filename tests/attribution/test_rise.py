"""RISE against an explicit loop over its masks and against analytic expectations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.attribution.rise import rise, rise_masks
from convscope.core import InputError, TargetError


class BoxMean(nn.Module):
    """Score = mean intensity inside a known box: a linear model with planted evidence."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.rows, self.cols].mean((1, 2, 3))[:, None]


def _explicit_rise(
    model: nn.Module, x: torch.Tensor, target: list[int], masks: torch.Tensor, p: float, score: str
) -> torch.Tensor:
    """The RISE sum written as a loop over images and masks, one forward pass each."""
    out = torch.zeros(x.shape[0], 1, *x.shape[2:])
    with torch.no_grad():
        for n in range(x.shape[0]):
            for mask in masks:
                logits = model((x[n] * mask)[None])[0]
                s = {"softmax": logits.softmax(0), "logit": logits, "sigmoid": logits.sigmoid()}
                out[n, 0] += s[score][target[n]] * mask
    return out / (masks.shape[0] * p)


@pytest.mark.parametrize("score", ["softmax", "logit", "sigmoid"])
def test_rise_is_the_mask_weighted_average(
    tiny_cnn: nn.Module, images: torch.Tensor, score: str
) -> None:
    x, target = images[:3], [1, 3, 0]
    masks = rise_masks(70, (8, 8), num_cells=3, p=0.4, seed=11)
    expected = _explicit_rise(tiny_cnn, x, target, masks, 0.4, score)
    for batch_size in (7, 64, 1000):  # images × masks per forward: 1 image/pass, 2 full, all
        got = rise(
            tiny_cnn, x, target, num_masks=70, num_cells=3, p=0.4, score=score,
            seed=11, batch_size=batch_size,
        )  # fmt: skip
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_rise_with_a_baseline_and_a_callable_target(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    x = images[:2]
    masks = rise_masks(40, (8, 8), num_cells=2, seed=3)
    grey = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    expected = torch.zeros(2, 1, 8, 8)
    with torch.no_grad():
        for n in range(2):
            for mask in masks:
                blended = x[n : n + 1] * mask + (1 - mask) * grey
                expected[n, 0] += tiny_cnn(blended)[0, :2].sum() * mask
    expected /= 40 * 0.5
    got = rise(
        tiny_cnn, x, lambda out: out[:, :2].sum(1), num_masks=40, num_cells=2, seed=3,
        baseline=grey, batch_size=9,
    )  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_rise_expectation_on_a_planted_box() -> None:
    # Constant image, f = mean inside the top-left 4×4 box, 32×32 image, 4×4 grid (8-pixel
    # cells). A pixel of the bottom-right 4×4 corner never shares a grid cell with the box
    # (bilinear support ±1 cell, shift < 1 cell), so E[f M(λ)] = E[f] E[M] = p·p and
    # E[S(λ)] = p exactly; inside the box the mask values are positively correlated.
    model = BoxMean(slice(0, 4), slice(0, 4))
    x = torch.ones(1, 3, 32, 32)
    p = 0.5
    sal = rise(model, x, 0, score="logit", num_masks=4000, num_cells=4, p=p, batch_size=500)[0, 0]
    far = sal[28:, 28:].mean().item()
    assert abs(far - p) < 0.04  # std of the estimate ≈ 0.5 / (p √4000) ≈ 0.016
    assert sal[:4, :4].mean().item() > p + 0.1
    peak = int(sal.argmax())
    assert peak // 32 < 8 and peak % 32 < 8  # the maximum sits on the planted box


def test_a_one_cell_grid_gives_constant_masks() -> None:
    # A 1×1 grid upsampled bilinearly is constant: every mask is all ones or all zeros, and
    # RISE returns f(x) · (#kept masks) / (N p) everywhere.
    masks = rise_masks(50, (6, 5), num_cells=1, p=0.3, seed=2)
    torch.testing.assert_close(masks, masks.round(), rtol=0, atol=1e-6)  # bilinear rounding
    torch.testing.assert_close(masks.amax((1, 2)), masks.amin((1, 2)), rtol=0, atol=1e-6)
    model = BoxMean(slice(1, 3), slice(0, 2))
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    sal = rise(model, x, 0, score="logit", num_masks=50, num_cells=1, p=0.3, seed=2)
    kept = masks[:, 0, 0].sum()
    torch.testing.assert_close(sal, model(x)[0, 0] * kept / (50 * 0.3) * torch.ones(1, 1, 6, 5))


def test_mask_statistics() -> None:
    p = 0.3
    masks = rise_masks(3000, (24, 20), num_cells=3, p=p, seed=0)
    assert masks.shape == (3000, 24, 20)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    # the random shift makes E[M] = p at every pixel, border included
    assert float((masks.mean(0) - p).abs().max()) < 0.04
    # masks are smooth: neighbouring pixels differ by at most one cell's bilinear step
    assert float((masks[:, 1:] - masks[:, :-1]).abs().max()) <= 1 / 8 + 1e-6
    ones = rise_masks(3, (24, 20), num_cells=3, p=1.0)
    torch.testing.assert_close(ones, torch.ones(3, 24, 20), rtol=0, atol=1e-6)


def test_seeding_is_reproducible_and_private(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    state = torch.get_rng_state()
    a = rise(tiny_cnn, images, 2, num_masks=30, seed=5)
    b = rise(tiny_cnn, images, 2, num_masks=30, seed=5)
    c = rise(tiny_cnn, images, 2, num_masks=30, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32
    assert rise(tiny_cnn.double(), images, 2, num_masks=4).dtype == torch.float64


def test_bad_requests(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(InputError, match="p is the probability"):
        rise(tiny_cnn, images, 0, p=0.0)
    with pytest.raises(InputError, match="num_cells"):
        rise(tiny_cnn, images, 0, num_cells=0)
    with pytest.raises(InputError, match="num_masks"):
        rise(tiny_cnn, images, 0, num_masks=0)
    with pytest.raises(InputError, match="score must be"):
        rise(tiny_cnn, images, 0, score="probability")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="callable target already defines"):
        rise(tiny_cnn, images, lambda out: out[:, 0], score="logit")
    with pytest.raises(InputError, match="baseline"):
        rise(tiny_cnn, images, 0, baseline=torch.zeros(2, 8, 8), num_masks=2)
    with pytest.raises(TargetError, match="valid indices 0 to 3"):
        rise(tiny_cnn, images, 4, num_masks=2)
    with pytest.raises(InputError, match="batch_size"):
        rise(tiny_cnn, images, 0, batch_size=0)
