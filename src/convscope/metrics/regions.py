r"""Evaluation of region attributions (Sobol-SBSA paper, §3.2 and §3.3; Ancona et al., 2018).

A region attribution gives each region :math:`k = 1..d` of a partition of image :math:`x` a
score :math:`R_k` (Sobol indices :math:`S_k`, :math:`S_{Tk}`, Kernel SHAP, LIME, integrated
gradients summed per region, ...). *Masking* a set :math:`S` of regions replaces their pixels
by a baseline image :math:`b` (a constant colour or an image), which is the region
perturbation :math:`\tilde x = b + \alpha_k (x - b)` of Sobol-SBSA at :math:`\alpha_k = 0`:

.. math::

    x_{[S]} = x \odot (1 - M_S) + b \odot M_S, \qquad
    \Delta f(S) = f_c(x) - f_c(x_{[S]}),

with :math:`M_S` the union of the pixel masks of the regions in :math:`S` (all channels) and
:math:`f_c` the target score. Three evaluations follow the paper:

**Top/bottom masking** (:func:`region_masking`, paper Fig. 2). The :math:`k_i` regions with the
highest scores are masked, and separately the :math:`k_i` with the lowest. A good ranking gives
a large drop :math:`\Delta f(\text{top})` and a small :math:`\Delta f(\text{bottom})`, i.e. a
steep line from the bottom to the top drop.

**Sensitivity-n** (:func:`sensitivity_n`; Ancona, Ceolini, Öztireli & Gross, 2018, "Towards
better understanding of gradient-based attribution methods for deep neural networks", ICLR).
An attribution satisfies sensitivity-n when, for every subset :math:`S` of :math:`n` features,
:math:`\sum_{k \in S} R_k = \Delta f(S)`. The metric draws random subsets of size :math:`n`
and reports the Pearson correlation

.. math::

    r_n = \operatorname{corr}_S\Big(\sum_{k\in S} R_k,\ \Delta f(S)\Big),

per image, then averages over images; an exactly additive model with its exact contributions
gives :math:`r_n = 1` for every :math:`n`. The paper uses 100 subsets per :math:`n` and plots
:math:`r_n` against the percentage of regions masked.

**Dataset aggregates** (paper §3.3, Figs. 4-5): the mean primary index ratio
:math:`\mathrm{PIR}_k = S_k / S_{Tk}` of the top 20% regions ranked by :math:`S_T`
(:func:`mean_top_pir`), the fraction of regions with :math:`\mathrm{PIR} > 1`
(:func:`fraction_pir_above_one`, which can only come from estimator noise since
:math:`S_k \le S_{Tk}` in theory), and the importance difference
:math:`S_T(\text{foreground}) - S_T(\text{background})` (:func:`importance_difference`; grid
cells are labelled foreground with :func:`region_overlap`).

Conventions the paper leaves open (its Sec. 3.2 metrics), chosen here and applied everywhere:

* Only the :math:`d_i` non-empty regions of image :math:`i` count (per-image partitions may
  have empty trailing regions); their scores are ignored, never selected, never counted.
* :math:`k = \max(1, \lfloor f d_i + 1/2 \rfloor)` regions for a fraction :math:`f`
  (round half up, at least one region, at most :math:`d_i`): 20% of 16 regions is 3, of 64
  is 13, of 256 is 51.
* Ties in a ranking are broken by region index: among equal scores the lower index ranks
  first, both for the top and for the bottom set (a stable sort).
* The masking baseline is in the model's input space, i.e. ``[0, 1]`` pixels (0 is black);
  pass the normalisation mean image for the paper's "0 in normalised space" reading.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from convscope.core import validation
from convscope.core.batching import check_batch_size
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.seeding import SeedLike, torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images
from convscope.data.regions import (
    Regions,
    _as_2d,
    _as_float_tensor,
    n_selected,
    region_heatmap,
    region_means,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_FRACTIONS",
    "RegionMaskingResult",
    "SensitivityNResult",
    "fraction_pir_above_one",
    "importance_difference",
    "mean_top_pir",
    "n_selected",
    "region_heatmap",
    "region_masking",
    "region_overlap",
    "sensitivity_n",
]

#: Fractions of the regions masked by :func:`sensitivity_n` by default (10% to 90%).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Baseline = float | Tensor

# r is undefined when a side varies by less than this many float eps (relative to its size):
# masking every region gives the same image, and only rounding noise would be left.
_ZERO_SPREAD_EPS = 100.0

_FRACTION_HINT = "0.2 = 20% of the regions."


# --------------------------------------------------------------------------- validation


def _check_regions(regions: Any, x: Tensor) -> Regions:
    if not isinstance(regions, Regions):
        raise InputError(
            f"regions must be a Regions object, got {type(regions).__name__}; build one with "
            "convscope.data.regions.grid_regions, regions_from_masks, superpixel_regions or "
            "foreground_background."
        )
    if regions.shape != tuple(x.shape[-2:]):
        raise InputError(
            f"The regions are {regions.shape[0]}×{regions.shape[1]} but the input is "
            f"{x.shape[-2]}×{x.shape[-1]}; build the regions for the input size."
        )
    if regions.is_batched and regions.labels.shape[0] != x.shape[0]:
        raise InputError(
            f"The regions have {regions.labels.shape[0]} per-image label maps for {x.shape[0]} "
            "images; pass one label map per image or a shared H×W partition."
        )
    return regions


def _valid_regions(regions: Regions, n: int) -> Tensor:
    """``N×d`` bool: region k of image i has at least one pixel."""
    sizes = regions.sizes()
    valid = sizes > 0
    return valid if regions.is_batched else valid.unsqueeze(0).expand(n, -1)


def _check_scores(scores: Any, valid: Tensor, name: str = "scores") -> Tensor:
    """Scores as ``N×d`` float64 on the CPU; empty regions set to NaN, others must be finite."""
    n, d = valid.shape
    s = _as_float_tensor(scores, name)
    if s.ndim == 1:
        s = s.unsqueeze(0).expand(n, -1)
    if s.ndim != 2 or tuple(s.shape) != (n, d):
        raise InputError(
            f"{name} must have shape (N, d) = ({n}, {d}) (one score per image and region) or "
            f"(d,) = ({d},) for all images, got {tuple(s.shape)}."
        )
    s = s.to(device=valid.device, dtype=torch.float64)
    bad = valid & ~torch.isfinite(s)
    if bool(bad.any()):
        i, k = (int(v) for v in bad.nonzero()[0].tolist())
        raise InputError(
            f"{name} has {int(bad.sum())} NaN/inf values on non-empty regions (first: image {i}, "
            f"region {k}); every region with pixels needs a finite score. Replace them, e.g. "
            f"torch.nan_to_num({name}, nan=0.0)."
        )
    return torch.where(valid, s, torch.full_like(s, math.nan))


def _baseline_tensor(baseline: Any, x: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The baseline as a tensor broadcastable against ``x`` (1×C×1×1, 1×C×H×W or N×C×H×W)."""
    if isinstance(baseline, Tensor):
        b = check_images(baseline, channels=x.shape[1], name="baseline")
        if tuple(b.shape[-2:]) != tuple(x.shape[-2:]) or b.shape[0] not in (1, x.shape[0]):
            raise InputError(
                f"baseline must be 1×{x.shape[1]}×{x.shape[2]}×{x.shape[3]} or "
                f"{x.shape[0]}×{x.shape[1]}×{x.shape[2]}×{x.shape[3]} (one image per input), got "
                f"{tuple(b.shape)}; or pass a float for a constant colour."
            )
        return b.detach().to(device=device, dtype=dtype)
    if (
        isinstance(baseline, (bool, np.bool_))
        or not isinstance(baseline, (int, float, np.floating, np.integer))
        or not math.isfinite(float(baseline))
    ):
        raise InputError(
            f"baseline must be a number (a constant pixel value in [0, 1]) or an image tensor "
            f"1×C×H×W / N×C×H×W, got {baseline!r}."
        )
    if not -1e-3 <= float(baseline) <= 1.0 + 1e-3:
        warnings.warn(
            f"baseline {float(baseline):g} is outside [0, 1]: it is a pixel value of the model's "
            "input space (images in [0, 1], normalisation inside the model).",
            UserWarning,
            stacklevel=3,
        )
    return torch.full((1, x.shape[1], 1, 1), float(baseline), device=device, dtype=dtype)


def _describe_baseline(baseline: Any) -> float | str:
    if isinstance(baseline, Tensor):
        return f"image {tuple(baseline.shape)}"
    return float(baseline)


def _prepare(
    model: nn.Module, input: Tensor, target: TargetLike | Target, regions: Any, baseline: Any
) -> tuple[Tensor, Target, Regions, Tensor, Tensor]:
    """Validated images (on the model), target, regions, labels (on the model), baseline."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_images(input)
    tgt = check_target_count(target, input.shape[0])
    regs = _check_regions(regions, input)
    device, dtype = model_device(model), model_dtype(model)
    x = input.detach().to(device=device, dtype=dtype)
    labels = regs.labels.to(device)
    return x, tgt, regs, labels, _baseline_tensor(baseline, input, device, dtype)


# --------------------------------------------------------------------------- masked forwards


def _target_rows(tgt: Target, image_idx: Tensor) -> Target:
    if isinstance(tgt.index, Tensor):
        return tgt.subset(image_idx.to(tgt.index.device))
    return tgt


def _masked_scores(
    model: nn.Module,
    x: Tensor,
    tgt: Target,
    labels: Tensor,
    baseline: Tensor,
    pieces: Iterator[tuple[Tensor, Tensor]],
    total: int,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> Tensor:
    """Target scores of masked images, at most ``batch_size`` per forward pass.

    ``pieces`` yields ``(image_idx, sets)``: CPU image indices ``(m,)`` and region sets
    ``m×d`` (bool, on the model's device) in row order; rows of several images share a batch.
    Returns the ``total`` scores in row order, on the model's device.
    """
    h, w = x.shape[-2:]
    out: list[Tensor] = []
    queue: deque[tuple[Tensor, Tensor]] = deque()
    n_batches = math.ceil(total / batch_size)
    per_image_baseline = baseline.shape[0] > 1

    def take(size: int) -> tuple[Tensor, Tensor]:
        # views of the queued pieces: a row is copied only into its batch
        parts: list[tuple[Tensor, Tensor]] = []
        while size:
            if not queue:
                queue.append(next(pieces))
            idx, sets = queue[0]
            if idx.shape[0] <= size:
                parts.append(queue.popleft())
                size -= idx.shape[0]
            else:
                parts.append((idx[:size], sets[:size]))
                queue[0] = (idx[size:], sets[size:])
                size = 0
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    with inference_state(model), torch.no_grad():
        for b in progress_bar(range(n_batches), total=n_batches, desc=desc, show=progress):
            size = min(batch_size, total - b * batch_size)
            idx, sets = take(size)
            idx_dev = idx.to(x.device)
            rows_labels = labels[idx_dev] if labels.ndim == 3 else labels.expand(size, h, w)
            pixel = sets.gather(1, rows_labels.reshape(size, -1)).view(size, 1, h, w)
            base = baseline[idx_dev] if per_image_baseline else baseline
            masked = torch.where(pixel, base, x[idx_dev])
            out.append(resolve_target(_target_rows(tgt, idx), model(masked)))
    return torch.cat(out) if out else x.new_zeros(0)


def _ranked_sets(scores: Tensor, valid: Tensor, k: Tensor, *, top: bool) -> Tensor:
    """``N×d`` bool: the ``k_i`` highest (``top``) or lowest valid scores; ties by index."""
    fill = -math.inf if top else math.inf
    key = torch.where(valid, scores, torch.full_like(scores, fill))
    order = torch.sort(key, dim=1, descending=top, stable=True).indices
    chosen = torch.arange(key.shape[1], device=key.device).unsqueeze(0) < k.unsqueeze(1)
    return torch.zeros_like(valid).scatter(1, order, chosen)


# --------------------------------------------------------------------------- top/bottom masking


@dataclass
class RegionMaskingResult(Result):
    """Score drops when the top and the bottom regions of a ranking are masked.

    Attributes
    ----------
    top_drop, bottom_drop
        ``(N,)`` :math:`f_c(x) - f_c(x_{[S]})` with :math:`S` the top (bottom) ``n_masked``
        regions by the scores.
    score
        ``(N,)`` unperturbed target score :math:`f_c(x)`.
    n_masked
        ``(N,)`` int64 regions masked per set, :func:`n_selected` of the non-empty regions.
    top_regions, bottom_regions
        ``N×d`` bool, the regions masked in each set.
    fraction
        The fraction of regions masked.
    baseline
        The constant baseline value, or a description of the baseline image.
    """

    top_drop: Tensor
    bottom_drop: Tensor
    score: Tensor
    n_masked: Tensor
    top_regions: Tensor
    bottom_regions: Tensor
    fraction: float = 0.2
    baseline: float | str = 0.0

    def summary(self) -> dict[str, float]:
        """Mean drops over the images and their difference (the slope of paper Fig. 2)."""
        top = float(self.top_drop.double().mean())
        bottom = float(self.bottom_drop.double().mean())
        return {"mean_top_drop": top, "mean_bottom_drop": bottom, "slope": top - bottom}

    def plot(self, label: str = "method") -> Figure:
        """Slope from the bottom to the top drop (``plots.regions.masking_slope_plot``)."""
        from convscope.plots.regions import masking_slope_plot

        return masking_slope_plot({label: self})


def region_masking(
    model: nn.Module,
    input: Tensor,
    target: TargetLike | Target,
    regions: Regions,
    scores: Tensor,
    *,
    fraction: float = 0.2,
    baseline: Baseline = 0.0,
    batch_size: int = 64,
    progress: bool | None = False,
) -> RegionMaskingResult:
    r"""Mask the top and the bottom fraction of regions by score (Sobol-SBSA paper, Fig. 2).

    For each image :math:`i` with :math:`d_i` non-empty regions, :math:`k_i` =
    :func:`n_selected` (``fraction``, :math:`d_i`) regions with the highest scores form
    :math:`T_i`, the :math:`k_i` with the lowest form :math:`B_i`, and

    .. math::

        \text{top\_drop}_i = f_c(x_i) - f_c(x_{i[T_i]}), \qquad
        \text{bottom\_drop}_i = f_c(x_i) - f_c(x_{i[B_i]}),

    where :math:`x_{[S]}` has the pixels of the regions in :math:`S` replaced by the baseline.

    Parameters
    ----------
    model : torch.nn.Module
        The model (eval mode and frozen parameters during the call, restored after).
    input : torch.Tensor
        ``N×3×H×W`` images in ``[0, 1]``.
    target : int, sequence of int, tensor or callable
        The score :math:`f_c` (see :mod:`convscope.core.targets`); the paper uses the
        ground-truth class.
    regions : Regions
        Shared ``H×W`` or per-image ``N×H×W`` partition with ``d`` regions.
    scores : torch.Tensor
        ``N×d`` (or ``d`` for all images) region scores, e.g. ``total_order`` of
        :func:`convscope.attribution.region_sobol`. Scores of empty regions are ignored (they
        may be NaN); every non-empty region needs a finite score.
    fraction : float, default 0.2
        Fraction of the non-empty regions in each set (rounded half up, at least one region).
    baseline : float or torch.Tensor, default 0.0
        What a masked pixel becomes: a constant in ``[0, 1]`` (0 = black) or an image
        ``1×C×H×W`` / ``N×C×H×W``.
    batch_size : int, default 64
        Images per forward pass (the 3N forwards mix images).
    progress : bool or None, default False
        Show a progress bar (None: automatic).

    Returns
    -------
    RegionMaskingResult
        Drops, unperturbed scores and the masked sets; tensors on the model's device.

    Raises
    ------
    InputError
        Bad images, regions of another size or count, scores of the wrong shape or non-finite on
        a non-empty region, a fraction outside ``(0, 1]``, or a bad baseline.

    Notes
    -----
    Ties are broken by region index, the lower index first in both sets, so with constant
    scores the top and the bottom sets are the same regions.
    """
    fraction = validation.fraction(fraction, "fraction", hint=_FRACTION_HINT)
    size = check_batch_size(batch_size)
    x, tgt, regs, labels, base = _prepare(model, input, target, regions, baseline)
    n = x.shape[0]
    valid = _valid_regions(regs, n).to(x.device)
    s = _check_scores(scores, valid)
    k = torch.tensor(
        [n_selected(fraction, d_i) for d_i in _per_image_counts(regs, n)], device=x.device
    )
    top = _ranked_sets(s, valid, k, top=True)
    bottom = _ranked_sets(s, valid, k, top=False)
    idx = torch.arange(n)

    def pieces() -> Iterator[tuple[Tensor, Tensor]]:
        yield idx, torch.zeros_like(top)  # the unperturbed images go through the same path
        yield idx, top
        yield idx, bottom

    out = _masked_scores(model, x, tgt, labels, base, pieces(), 3 * n, size, progress, "masking")
    score, top_score, bottom_score = out[:n], out[n : 2 * n], out[2 * n :]
    return RegionMaskingResult(
        top_drop=score - top_score,
        bottom_drop=score - bottom_score,
        score=score,
        n_masked=k.long(),
        top_regions=top,
        bottom_regions=bottom,
        fraction=fraction,
        baseline=_describe_baseline(baseline),
    )


def _per_image_counts(regions: Regions, n: int) -> tuple[int, ...]:
    counts = regions.n_regions_per_image
    return counts if regions.is_batched else counts * n


# --------------------------------------------------------------------------- sensitivity-n


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson r along the last dimension; NaN where either side is constant (up to rounding)."""
    a, b = a.double(), b.double()
    ca, cb = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    sa, sb = ca.square().mean(-1).sqrt(), cb.square().mean(-1).sqrt()
    eps = _ZERO_SPREAD_EPS * torch.finfo(torch.float32).eps
    flat = (sa <= eps * a.abs().amax(-1)) | (sb <= eps * b.abs().amax(-1))
    r = ((ca * cb).mean(-1) / (sa * sb)).clamp(-1.0, 1.0)
    return torch.where(flat, torch.full_like(r, math.nan), r)


@dataclass
class SensitivityNResult(Result):
    """Sensitivity-n correlations per image and fraction of regions masked.

    Attributes
    ----------
    fractions
        ``(F,)`` fractions of the regions masked.
    pearson
        ``N×F`` Pearson r between the summed scores and the score drops over the random
        subsets; NaN where either side has zero variance (e.g. every region masked).
    mean_pearson
        ``(F,)`` mean of ``pearson`` over the images where it is defined (NaN if none is).
    n_masked
        ``N×F`` int64 subset sizes :math:`n` = :func:`n_selected` (fraction, :math:`d_i`).
    score_sums, drops
        ``N×F×n_subsets``: :math:`\\sum_{k \\in S} R_k` and :math:`f_c(x) - f_c(x_{[S]})` of
        every subset.
    subsets
        ``N×F×n_subsets×d`` bool subsets when requested (``return_subsets=True``), else None.
    n_subsets, seed, baseline
        The settings used.
    """

    fractions: Tensor
    pearson: Tensor
    mean_pearson: Tensor
    n_masked: Tensor
    score_sums: Tensor
    drops: Tensor
    subsets: Tensor | None = None
    n_subsets: int = 100
    seed: int | None = 0
    baseline: float | str = 0.0

    @property
    def n_defined(self) -> Tensor:
        """``(F,)`` number of images whose correlation is defined (not NaN)."""
        return (~torch.isnan(self.pearson)).sum(0)

    def plot(self, label: str = "method") -> Figure:
        """Mean r against the % of regions masked (``plots.regions.sensitivity_n_plot``)."""
        from convscope.plots.regions import sensitivity_n_plot

        return sensitivity_n_plot({label: self})


def _check_fractions(fractions: Any) -> tuple[float, ...]:
    if isinstance(fractions, (str, bytes)) or not isinstance(
        fractions, (Sequence, np.ndarray, Tensor)
    ):
        raise InputError(
            f"fractions must be a sequence of numbers in (0, 1], got {type(fractions).__name__}; "
            "e.g. fractions=(0.1, 0.2, 0.5)."
        )
    values = fractions.tolist() if isinstance(fractions, (np.ndarray, Tensor)) else fractions
    if len(values) == 0:
        raise InputError("fractions is empty; pass at least one fraction, e.g. (0.1, 0.2).")
    return tuple(validation.fraction(f, "every fraction", hint=_FRACTION_HINT) for f in values)


def sensitivity_n(
    model: nn.Module,
    input: Tensor,
    target: TargetLike | Target,
    regions: Regions,
    scores: Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    n_subsets: int = 100,
    baseline: Baseline = 0.0,
    batch_size: int = 64,
    seed: SeedLike = 0,
    progress: bool | None = False,
    return_subsets: bool = False,
) -> SensitivityNResult:
    r"""Sensitivity-n of region scores (Ancona et al., 2018; Sobol-SBSA paper, Fig. 3).

    For every image :math:`i` and fraction :math:`f`, ``n_subsets`` subsets :math:`S` of
    :math:`n` = :func:`n_selected` (:math:`f`, :math:`d_i`) non-empty regions are drawn
    uniformly at random (without replacement within a subset, independently across subsets),
    and

    .. math::

        r_{i,n} = \operatorname{corr}\Big(\sum_{k\in S} R_{ik},\
        f_c(x_i) - f_c(x_{i[S]})\Big)

    is the Pearson correlation over the subsets. ``mean_pearson`` averages :math:`r_{i,n}`
    over the images where it is defined.

    Parameters
    ----------
    model, input, target, regions, scores, baseline
        As in :func:`region_masking`.
    fractions : sequence of float, default (0.1, 0.2, ..., 0.9)
        Fractions of the regions masked (the x-axis of the paper's Fig. 3, whose exact values
        the paper does not give).
    n_subsets : int, default 100
        Random subsets per image and fraction (the paper's 100).
    batch_size : int, default 64
        Masked images per forward pass; the ``N·F·n_subsets`` forwards mix images.
    seed : int, torch.Generator or None, default 0
        Seeds the subsets, drawn on the model's device image by image, so the result does not
        depend on ``batch_size``.
    progress : bool or None, default False
        Show a progress bar (None: automatic).
    return_subsets : bool, default False
        Keep every subset in the result (``N×F×n_subsets×d`` bools).

    Returns
    -------
    SensitivityNResult
        Per-image correlations, their mean per fraction, the subset sums and drops.

    Raises
    ------
    InputError
        As :func:`region_masking`; also an empty ``fractions``, a fraction outside ``(0, 1]``
        or ``n_subsets < 2``.

    Notes
    -----
    The correlation is undefined (NaN, never an error) when the summed scores or the drops do
    not vary over the subsets: when :math:`n = d_i` every subset masks the whole image, and
    an image with constant scores has constant sums. The drops come from the same model
    evaluations as any other masked image, so for an additive model with its exact
    contributions :math:`r = 1` up to rounding.
    """
    fracs = _check_fractions(fractions)
    if (
        isinstance(n_subsets, (bool, np.bool_))
        or not isinstance(n_subsets, (int, np.integer))
        or n_subsets < 2
    ):
        raise InputError(
            f"n_subsets must be an int >= 2 (a correlation needs several subsets), got "
            f"{n_subsets!r}; the paper uses 100."
        )
    n_sub = int(n_subsets)
    size = check_batch_size(batch_size)
    x, tgt, regs, labels, base = _prepare(model, input, target, regions, baseline)
    n, d, n_f = x.shape[0], regs.n_regions, len(fracs)
    device = x.device
    valid = _valid_regions(regs, n).to(device)
    s = _check_scores(scores, valid)
    counts = _per_image_counts(regs, n)
    n_masked = torch.tensor([[n_selected(f, d_i) for f in fracs] for d_i in counts])
    n_dev = n_masked.to(device)
    gen = torch_generator(seed, device)
    rows = n_f * n_sub
    sums = torch.empty(n, rows, dtype=torch.float64, device=device)
    kept: list[Tensor] = []
    positions = torch.arange(d, device=device)

    def pieces() -> Iterator[tuple[Tensor, Tensor]]:
        yield torch.arange(n), torch.zeros(n, d, dtype=torch.bool, device=device)
        for i in range(n):
            # A uniform random subset of size n: the n smallest of i.i.d. uniform keys; empty
            # regions get key 2 so they are never among them.
            keys = torch.rand(n_f, n_sub, d, generator=gen, device=device)
            keys = torch.where(valid[i], keys, torch.full_like(keys, 2.0))
            order = keys.argsort(dim=-1)
            chosen = positions < n_dev[i].view(n_f, 1, 1)
            sets = torch.zeros(n_f, n_sub, d, dtype=torch.bool, device=device)
            sets = sets.scatter(-1, order, chosen.expand(n_f, n_sub, d)).reshape(rows, d)
            sums[i] = sets.double() @ torch.nan_to_num(s[i], nan=0.0)
            if return_subsets:
                kept.append(sets)
            yield torch.full((rows,), i, dtype=torch.long), sets

    out = _masked_scores(
        model, x, tgt, labels, base, pieces(), n + n * rows, size, progress, "sensitivity-n"
    )
    drops = (out[:n].unsqueeze(1) - out[n:].view(n, rows)).view(n, n_f, n_sub)
    score_sums = sums.view(n, n_f, n_sub)
    pearson = _pearson(score_sums, drops)
    return SensitivityNResult(
        fractions=torch.tensor(fracs, dtype=torch.float64),
        pearson=pearson,
        mean_pearson=torch.nanmean(pearson, dim=0),
        n_masked=n_masked,
        score_sums=score_sums,
        drops=drops,
        subsets=torch.stack(kept).view(n, n_f, n_sub, d) if return_subsets else None,
        n_subsets=n_sub,
        seed=int(seed) if isinstance(seed, (int, np.integer)) else None,
        baseline=_describe_baseline(baseline),
    )


# --------------------------------------------------------------------------- aggregates


def mean_top_pir(pir: Tensor, ranking: Tensor, *, fraction: float = 0.2) -> Tensor:
    r"""Mean primary index ratio of the top regions of each image (paper §3.3, Fig. 4a).

    .. math::

        \overline{\mathrm{PIR}}_i = \frac{1}{|T_i|} \sum_{k \in T_i} \frac{S_{ik}}{S_{Tik}},

    with :math:`T_i` the :func:`n_selected` (``fraction``, :math:`d_i`) regions of image
    :math:`i` with the highest ``ranking`` (the paper ranks by :math:`S_T`; ties by index).

    Parameters
    ----------
    pir : torch.Tensor
        ``N×d`` (or ``d``) PIR values; NaN where undefined (:math:`S_T \approx 0`).
    ranking : torch.Tensor
        ``N×d`` (or ``d``) values ranking the regions, usually ``total_order``; NaN marks an
        empty region (region_sobol's convention), which is never ranked or counted in
        :math:`d_i`.
    fraction : float, default 0.2
        Fraction of the non-empty regions averaged.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64. A NaN PIR among the top regions is skipped (the mean is over the
        others); NaN if all of them are NaN or the image has no ranked region.
    """
    fraction = validation.fraction(fraction, "fraction", hint=_FRACTION_HINT)
    p, r = _as_2d(pir, "pir"), _as_2d(ranking, "ranking")
    if p.shape != r.shape:
        raise InputError(
            f"pir and ranking must have the same shape, got {tuple(p.shape)} and {tuple(r.shape)}."
        )
    r = r.to(p.device)
    valid = ~torch.isnan(r)
    counts = valid.sum(1).tolist()
    k = torch.tensor([n_selected(fraction, c) if c else 0 for c in counts], device=p.device)
    top = _ranked_sets(r.double(), valid, k, top=True) & valid
    use = top & torch.isfinite(p)
    total = torch.where(use, p.double(), torch.zeros_like(p, dtype=torch.float64)).sum(1)
    return total / use.sum(1)  # 0/0 = NaN when no top region has a finite PIR


def fraction_pir_above_one(pir: Tensor) -> Tensor:
    r"""Fraction of the regions with :math:`\mathrm{PIR} > 1`, per image (paper §3.3).

    Parameters
    ----------
    pir : torch.Tensor
        ``N×d`` (or ``d``) PIR values; NaN (empty region or undefined ratio) is not counted.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64 :math:`|\{k: \mathrm{PIR}_k > 1\}| / |\{k: \mathrm{PIR}_k
        \text{ finite}\}|`; NaN for an image without a finite PIR. Theory gives
        :math:`S_k \le S_{Tk}`, so any region above 1 reflects estimator noise.
    """
    p = _as_2d(pir, "pir")
    finite = torch.isfinite(p)
    above = (finite & (p > 1)).sum(1).double()
    return above / finite.sum(1).double()


def importance_difference(
    indices: Tensor, foreground: Tensor, *, reduce: Literal["sum", "mean"] = "sum"
) -> Tensor:
    r"""Foreground minus background importance, per image (paper Figs. 4b and 5b).

    .. math::

        \Delta_i = \rho_{k \in F_i}(I_{ik}) - \rho_{k \notin F_i}(I_{ik}),

    with :math:`I` the indices (:math:`S_T` in Fig. 4b, :math:`S_1` in Fig. 5b),
    :math:`F_i` the foreground regions of image :math:`i` and :math:`\rho` the sum or the
    mean. With one foreground and one background segment both give
    :math:`S_T(\text{fg}) - S_T(\text{bg})`; the paper does not say how several foreground
    segments combine, and the sum (their joint importance, to first order) is the default.

    Parameters
    ----------
    indices : torch.Tensor
        ``N×d`` (or ``d``) region indices; NaN (empty regions) is ignored.
    foreground : torch.Tensor
        Bool ``N×d`` or ``d`` (shared) marking the foreground regions, e.g.
        ``region_overlap(regions, masks) >= 0.5``.
    reduce : {"sum", "mean"}, default "sum"
        How the regions of each side are combined.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64; NaN for an image whose foreground or background has no region with
        a finite index.
    """
    if reduce not in ("sum", "mean"):
        raise InputError(f"reduce must be 'sum' or 'mean', got {reduce!r}.")
    v = _as_2d(indices, "indices").double()
    if isinstance(foreground, np.ndarray):
        foreground = torch.from_numpy(foreground)
    if not isinstance(foreground, Tensor) or foreground.dtype != torch.bool:
        raise InputError(
            "foreground must be a bool tensor marking the foreground regions, e.g. "
            "region_overlap(regions, masks) >= 0.5."
        )
    fg = foreground.to(v.device)
    if fg.ndim == 1:
        fg = fg.unsqueeze(0)
    if fg.ndim != 2 or fg.shape[1] != v.shape[1] or fg.shape[0] not in (1, v.shape[0]):
        raise InputError(
            f"foreground must have shape ({v.shape[0]}, {v.shape[1]}) or ({v.shape[1]},) like "
            f"the indices, got {tuple(foreground.shape)}."
        )
    fg = fg.expand_as(v)
    finite = torch.isfinite(v)
    zero = torch.zeros_like(v)

    def side(mask: Tensor) -> Tensor:
        use = mask & finite
        count = use.sum(1)
        total = torch.where(use, v, zero).sum(1)
        value = total if reduce == "sum" else total / count
        return torch.where(count > 0, value, torch.full_like(value, math.nan))

    return side(fg) - side(~fg)


def region_overlap(regions: Regions, mask: Tensor) -> Tensor:
    r"""Fraction of each region's pixels inside a mask: :math:`|R_k \cap M| / |R_k|`.

    Parameters
    ----------
    regions : Regions
        Shared or per-image partition.
    mask : torch.Tensor
        Bool ``N×H×W`` (or ``H×W``) mask, e.g. the object masks of
        :func:`convscope.datasets.shapes`.

    Returns
    -------
    torch.Tensor
        ``N×d`` float64 in ``[0, 1]``; NaN for empty regions. Label grid cells as foreground
        with ``region_overlap(regions, mask) >= 0.5``.
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise InputError(
            "mask must be a bool tensor (True inside), N×H×W or H×W; use mask.bool() or mask > 0.5."
        )
    if not isinstance(regions, Regions):
        raise InputError(f"regions must be a Regions object, got {type(regions).__name__}.")
    means = region_means(mask.double(), regions)
    return means.unsqueeze(0) if means.ndim == 1 else means
