r"""The perturbation pyramid of extremal perturbations (thesis ch. 4 §3.4, footnote 2).

A mask :math:`m \in [0, 1]` doses a local perturbation operator :math:`\pi`:
:math:`(m \otimes x)(u) = \pi(x; u, \sigma_{\max}(1 - m(u)))`, so :math:`m(u) = 1` keeps pixel
:math:`u` and :math:`m(u) = 0` perturbs it fully. Evaluating a spatially varying blur directly
is expensive, so the pyramid :math:`y_l = \pi(x; \cdot, \sigma_l)`, :math:`l = 0, \dots, L-1`,
is computed once and :math:`m \otimes x` is read by linear interpolation between levels:

.. math::

    w = m(u)(L - 1),\quad k = \lfloor w \rfloor,\quad
    (m \otimes x)(u) = (1 - (w - k))\, y_k(u) + (w - k)\, y_{k+1}(u).

Levels follow TorchRay: level 0 is the most perturbed and level :math:`L-1` the original, with

* ``"blur"``: :math:`y_l = g_{\sigma_l} * x`, :math:`\sigma_l = \sigma_{\max}(1 - l/(L-1))`
  (Gaussian with half-width :math:`\lceil 4\sigma\rceil`);
* ``"fade"``: :math:`y_l = x \cdot l/(L-1)` (fade to black, footnote 1).

Padding: TorchRay blurs the *normalized* input with zero padding, which pulls the borders
towards the dataset mean colour. Our images are in [0, 1] pixel space and models normalize
internally, so the same effect is ``padding="mean"`` with the model's normalization mean
(the default when the model carries one, else 0.5 grey); ``"replicate"`` and ``"reflect"``
avoid border darkening altogether.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from convscope.core.errors import InputError
from convscope.data.filters import gaussian_blur
from convscope.data.normalization import normalization_mean

__all__ = [
    "BLUR_PERTURBATION",
    "FADE_PERTURBATION",
    "Perturbation",
    "PerturbationType",
    "model_mean_colour",
]

BLUR_PERTURBATION = "blur"
FADE_PERTURBATION = "fade"
PerturbationType = Literal["blur", "fade"]
PaddingChoice = Literal["mean", "replicate", "reflect", "zeros"]


def model_mean_colour(model: nn.Module | None) -> tuple[float, ...] | None:
    """The per-channel normalization mean of ``model`` as a tuple of floats, if any.

    :func:`convscope.data.normalization.normalization_mean` as a tuple: the mean of the model's
    :class:`~convscope.data.normalization.Normalize`, else the one its ``convscope_info``
    declares, else None.
    """
    mean = normalization_mean(model)
    return tuple(float(v) for v in mean.reshape(-1).tolist()) if mean is not None else None


class Perturbation:
    r"""A pyramid of increasingly perturbed copies of a batch of images.

    Parameters
    ----------
    input
        N×C×H×W images in [0, 1].
    num_levels
        :math:`L \ge 2` levels (TorchRay default 8).
    max_blur
        :math:`\sigma_{\max}` in pixels for ``"blur"`` (TorchRay default 20; not given in the
        paper).
    type
        ``"blur"`` or ``"fade"``.
    padding
        Border handling of the blur: ``"mean"`` (pad with ``fill``, TorchRay's behaviour on
        normalized inputs), ``"zeros"`` (black), ``"replicate"`` or ``"reflect"``.
    fill
        Per-channel padding colour for ``"mean"`` (default 0.5 grey).

    Attributes
    ----------
    pyramid
        N×L×C×H×W tensor; ``pyramid[:, L-1]`` is the input, ``pyramid[:, 0]`` the most
        perturbed image.
    """

    def __init__(
        self,
        input: torch.Tensor,
        num_levels: int = 8,
        max_blur: float = 20.0,
        type: PerturbationType = "blur",
        *,
        padding: PaddingChoice = "mean",
        fill: Sequence[float] | None = None,
    ) -> None:
        if input.ndim != 4:
            raise InputError(f"Perturbation expects N×C×H×W images, got {tuple(input.shape)}.")
        if int(num_levels) != num_levels or num_levels < 2:
            raise InputError(f"num_levels must be an integer of at least 2, got {num_levels}.")
        if type not in (BLUR_PERTURBATION, FADE_PERTURBATION):
            raise InputError(f"Unknown perturbation {type!r}; use 'blur' or 'fade'.")
        if type == BLUR_PERTURBATION and not max_blur > 0:
            raise InputError(f"max_blur must be positive, got {max_blur}.")
        if padding not in ("mean", "replicate", "reflect", "zeros"):
            raise InputError(
                f"Unknown padding {padding!r}; use 'mean', 'zeros', 'replicate' or 'reflect'."
            )
        self.num_levels = int(num_levels)
        self.max_blur = float(max_blur)
        self.type: PerturbationType = type
        self.padding: PaddingChoice = padding
        x = input.detach()
        levels = []
        with torch.no_grad():
            for level in range(self.num_levels):
                t = level / (self.num_levels - 1)
                if type == FADE_PERTURBATION:
                    levels.append(x * t)
                    continue
                sigma = self.max_blur * (1.0 - t)
                levels.append(x if sigma == 0 else self._blur(x, sigma, fill))
        self.pyramid = torch.stack(levels, dim=1)

    def _blur(self, x: torch.Tensor, sigma: float, fill: Sequence[float] | None) -> torch.Tensor:
        if self.padding in ("replicate", "reflect"):
            return gaussian_blur(x, sigma, padding_mode=self.padding)
        if self.padding == "zeros":
            return gaussian_blur(x, sigma, padding_mode="constant", padding_value=0.0)
        colour = torch.as_tensor(
            fill if fill is not None else [0.5] * x.shape[1], dtype=x.dtype, device=x.device
        )
        if colour.numel() == 1:
            colour = colour.expand(x.shape[1])
        if colour.numel() != x.shape[1]:
            raise InputError(f"fill needs one value per channel ({x.shape[1]}), got {fill}.")
        colour = colour.reshape(1, -1, 1, 1)
        return gaussian_blur(x - colour, sigma, padding_mode="constant") + colour

    def to(self, device: torch.device | str) -> Perturbation:
        """Move the pyramid (in place) and return ``self``."""
        self.pyramid = self.pyramid.to(device)
        return self

    def apply(
        self, mask: torch.Tensor, index: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """The perturbed images :math:`m \\otimes x` for masks of shape ``(B, 1, H, W)``.

        ``index`` (B image indices, a tensor or a list) says which image each mask applies
        to; by default mask ``i`` applies to image ``i``. Rows of the same image should be
        consecutive: each run reads its image's pyramid without copying it (a list avoids
        a device synchronization). Differentiable in ``mask``.
        """
        n, levels, c, h, w = self.pyramid.shape
        if index is None:
            rows = list(range(n))
        elif isinstance(index, torch.Tensor):
            rows = [int(i) for i in index.tolist()]
        else:
            rows = [int(i) for i in index]
        b = len(rows)
        if mask.ndim != 4 or mask.shape[0] != b or mask.shape[1] != 1 or mask.shape[2:] != (h, w):
            raise InputError(
                f"Masks must have shape ({b}, 1, {h}, {w}) to perturb these images, got "
                f"{tuple(mask.shape)}."
            )
        if any(i < 0 or i >= n for i in rows):
            raise InputError(f"Image indices must lie in 0..{n - 1}, got {rows}.")
        pos = mask.clamp(0.0, 1.0) * (levels - 1)
        k = pos.detach().floor().clamp_(max=levels - 2).long()
        frac = pos - k
        lowers, uppers = [], []
        start = 0
        while start < b:
            stop = start + 1
            while stop < b and rows[stop] == rows[start]:
                stop += 1
            # expand() shares the image's pyramid across its rows instead of copying it
            source = self.pyramid[rows[start]].expand(stop - start, levels, c, h, w)
            idx = k[start:stop].unsqueeze(2).expand(stop - start, 1, c, h, w)
            lowers.append(source.gather(1, idx).squeeze(1))
            uppers.append(source.gather(1, idx + 1).squeeze(1))
            start = stop
        lower = torch.cat(lowers) if len(lowers) > 1 else lowers[0]
        upper = torch.cat(uppers) if len(uppers) > 1 else uppers[0]
        # lerp is exact at both ends (y + 1·(x - y) is not, in floating point)
        return torch.lerp(lower, upper, frac.expand_as(lower))
