"""Gaussian blur: the shifted-sum path equals the convolution path and scipy, with gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from convscope.data import filters


@pytest.mark.parametrize("mode", ["replicate", "reflect", "constant"])
def test_shifted_sums_equal_convolution(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    x = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast = filters.gaussian_blur(x, (1.5, 2.0), padding_mode=mode, padding_value=0.3)
    monkeypatch.setattr(filters, "_SHIFTED_SUM_TAPS", 0)
    conv = filters.gaussian_blur(x, (1.5, 2.0), padding_mode=mode, padding_value=0.3)
    torch.testing.assert_close(fast, conv, rtol=0, atol=1e-12)


def test_matches_scipy_and_keeps_gradients() -> None:
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64, requires_grad=True)
    out = filters.gaussian_blur(x, 2.0, padding_mode="reflect")
    ref = ndimage.gaussian_filter(x.detach().numpy()[0, 0], 2.0, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(out.detach().numpy()[0, 0], ref, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t: filters.gaussian_blur(t, 1.0), (x[:, :, :8, :8].detach().requires_grad_(),)
    )
