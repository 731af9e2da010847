r"""Separable Gaussian filtering of image batches, on the tensor's device.

The normalized Gaussian blur of an image :math:`x` at pixel :math:`u`,

.. math::

    (g_\sigma * x)(u) = \frac{\sum_v g_\sigma(u - v)\, x(v)}{\sum_v g_\sigma(v)}, \qquad
    g_\sigma(v) = \exp\left(-\frac{\lVert v\rVert^2}{2\sigma^2}\right),

is computed as two 1-D convolutions with a kernel of half-width :math:`\lceil 4\sigma\rceil`
(TorchRay's ``imsmooth`` truncation; Fong 2020, ch. 4, Sec. 3.4). Padding is a choice:
``"constant"`` pads with ``padding_value`` (TorchRay's pyramid, which pulls the borders towards
that value),
``"replicate"`` and ``"reflect"`` keep border colours.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from convscope.core.errors import InputError

__all__ = ["PaddingMode", "gaussian_blur", "gaussian_kernel1d"]

PaddingMode = Literal["constant", "replicate", "reflect"]


def gaussian_kernel1d(
    sigma: float,
    *,
    truncate: float = 4.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalized 1-D Gaussian of half-width ``ceil(truncate * sigma)`` (sums to 1)."""
    if not sigma > 0:
        raise InputError(f"sigma must be positive, got {sigma}. Use sigma=0 for no blur.")
    half = max(1, math.ceil(truncate * sigma))
    grid = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    kernel = torch.exp(-(grid**2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


#: Kernels up to this many taps are applied as sums of shifted slices, longer ones by conv2d.
_SHIFTED_SUM_TAPS = 33


def gaussian_blur(
    x: torch.Tensor,
    sigma: float | tuple[float, float],
    *,
    padding_mode: PaddingMode = "replicate",
    padding_value: float = 0.0,
    truncate: float = 4.0,
) -> torch.Tensor:
    """Blur an N×C×H×W batch with a separable Gaussian of standard deviation ``sigma`` pixels.

    Parameters
    ----------
    x
        Images or maps, N×C×H×W, any float dtype and device.
    sigma
        Standard deviation in pixels (one value, or ``(sigma_y, sigma_x)``); 0 returns ``x``.
    padding_mode
        ``"constant"`` (value ``padding_value``), ``"replicate"`` or ``"reflect"``.
    truncate
        The kernel's half-width in units of sigma.

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``; differentiable in ``x``.
    """
    if x.ndim != 4:
        raise InputError(f"gaussian_blur expects N×C×H×W, got shape {tuple(x.shape)}.")
    if padding_mode not in ("constant", "replicate", "reflect"):
        raise InputError(
            f"Unknown padding_mode {padding_mode!r}; use 'constant', 'replicate' or 'reflect'."
        )
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    if sy < 0 or sx < 0:
        raise InputError(f"sigma must be 0 or more, got {sigma}.")
    channels = x.shape[1]
    out = x
    for axis, s in ((2, float(sy)), (3, float(sx))):
        if s == 0:
            continue
        kernel = gaussian_kernel1d(s, truncate=truncate, device=x.device, dtype=x.dtype)
        half = (kernel.numel() - 1) // 2
        size = out.shape[axis]
        if padding_mode == "reflect" and half >= size:
            # Reflection cannot pad more than the side minus one; fall back to replicate.
            mode: str = "replicate"
        else:
            mode = padding_mode
        pad = (0, 0, half, half) if axis == 2 else (half, half, 0, 0)
        if mode == "constant":
            padded = F.pad(out, pad, mode="constant", value=padding_value)
        else:
            padded = F.pad(out, pad, mode=mode)
        if kernel.numel() <= _SHIFTED_SUM_TAPS:
            # A sum of shifted slices: about 4x faster than a depthwise conv2d on the CPU.
            taps = kernel.tolist()
            acc = padded.narrow(axis, 0, size) * taps[0]
            inplace = not (acc.requires_grad and torch.is_grad_enabled())
            for i in range(1, len(taps)):
                if inplace:
                    acc.add_(padded.narrow(axis, i, size), alpha=taps[i])
                else:
                    acc = acc.add(padded.narrow(axis, i, size), alpha=taps[i])
            out = acc
            continue
        shape = (1, 1, -1, 1) if axis == 2 else (1, 1, 1, -1)
        weight = kernel.reshape(shape).expand(channels, 1, *kernel.reshape(shape).shape[2:])
        out = F.conv2d(padded, weight, groups=channels)
    return out
