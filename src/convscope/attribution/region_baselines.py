r"""Region-level baselines for Sobol region attribution: KernelSHAP, LIME, IG and random.

Sobol region attribution (:mod:`~convscope.attribution.region_sobol`, the SBSA paper) scores
the :math:`d` regions of a partition (:class:`~convscope.data.regions.Regions`) of an image.
Its paper compares it with four methods over the **same regions** (§3.2); this module
implements them with one output convention: an ``N×d`` tensor of per-region scores on the
model's device, higher = more important, NaN for the empty trailing regions of a per-image
partition (image :math:`i` uses regions :math:`0..d_i-1`).

Each region :math:`k` is one player (one interpretable feature). A coalition
:math:`z \in \{0, 1\}^d` keeps the regions with :math:`z_k = 1` and replaces the others by a
baseline image :math:`b` (black by default):

.. math::

    x_z = \sum_k \mathbb{1}[\text{pixel} \in R_k]\,\bigl(z_k\,x + (1 - z_k)\,b\bigr),
    \qquad v(z) = \Phi_c(x_z),

with :math:`\Phi_c` the target score.

* **KernelSHAP** (Lundberg & Lee, 2017; the SBSA paper cites Kononenko et al.): the Shapley
  values :math:`\phi_k` of the game :math:`v` are the solution of the weighted least-squares
  problem :math:`\min_\phi \sum_z \pi(z)\,(v(z) - \phi_0 - \sum_k \phi_k z_k)^2` with the
  Shapley kernel :math:`\pi(z) = (d-1)/\bigl(\binom{d}{|z|}\,|z|\,(d-|z|)\bigr)`. Captum's
  ``KernelShap`` samples coalition sizes :math:`|z| \propto (d-1)/(|z|(d-|z|))`, then a
  uniform coalition of that size (so the kernel is realised by the sampling), evaluates the
  full and the empty coalitions first and gives them a weight of :math:`10^6` (the efficiency
  constraint :math:`\sum_k \phi_k = v(\mathbf 1) - v(\mathbf 0)`), and fits an ordinary
  linear regression. For an additive game :math:`v(z) = v(\mathbf 0) + \sum_k a_k z_k` the
  fit is exact: :math:`\phi_k = a_k`.
* **LIME** (Ribeiro et al., 2016): a sparse linear surrogate fitted to :math:`v` around
  :math:`x`. Captum's ``Lime`` defaults: coalitions with every region kept independently with
  probability 1/2; sample weights :math:`\exp(-D^2/2)` with :math:`D` the cosine distance
  between the flattened original and perturbed images (kernel width 1); interpretable model
  ``SkLearnLasso(alpha=0.01)`` (scikit-learn's ``Lasso`` with an intercept). The scores are
  the Lasso coefficients.
* **Integrated gradients** (Sundararajan et al., 2017), a pixel method: "we aggregate pixel
  importance in regions and rank region importance based on this aggregation". The
  aggregation is unspecified; the default is the signed sum over the region's pixels and
  channels, which keeps completeness: :math:`\sum_k \mathrm{IG}(R_k) = \Phi_c(x) - \Phi_c(b)`
  up to the quadrature error.
* **Random**: i.i.d. :math:`U[0, 1)` scores, a uniformly random ranking (the control).

Captum's ``KernelShap`` and ``Lime`` draw one coalition at a time from torch's global CPU
generator and fit scikit-learn models on the CPU, so they sync with the host per sample; here
they run one image at a time (as Captum does internally anyway), with up to ``batch_size``
perturbed images per forward pass on the model's device.

Budget: the paper does not state the SHAP/LIME sample counts; the default is the budget of
Sobol region attribution with its default :math:`n = 64`, i.e. ``64 * (d + 2)`` model
evaluations per image, with :math:`d` = ``regions.n_regions``.

:data:`REGION_METHODS` maps method names to callables with the common signature
``(model, input, target, regions, *, baseline, batch_size, seed, n_samples)``.

References
----------
S. M. Lundberg, S.-I. Lee, *A Unified Approach to Interpreting Model Predictions*, NeurIPS 2017.
M. T. Ribeiro, S. Singh, C. Guestrin, *"Why Should I Trust You?": Explaining the Predictions of
Any Classifier*, KDD 2016.
M. Sundararajan, A. Taly, Q. Yan, *Axiomatic Attribution for Deep Networks*, ICML 2017.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from captum.attr import KernelShap, Lime
from torch import nn

from convscope.attribution.baselines import integrated_gradients
from convscope.core.batching import check_batch_size
from convscope.core.device import model_device, model_dtype, to_model
from convscope.core.errors import InputError
from convscope.core.progress import progress_bar
from convscope.core.seeding import SeedLike, torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images
from convscope.data.regions import Regions

__all__ = [
    "REGION_METHODS",
    "integrated_gradients_regions",
    "kernel_shap_regions",
    "lime_regions",
    "random_regions",
]

#: Samples per region and per image of the default budget (Sobol region attribution's n).
DEFAULT_N_PER_REGION = 64

Aggregate = Literal["sum", "abs_sum", "mean"]


# --- validation -------------------------------------------------------------------------------


def _check_regions(regions: Regions, input: torch.Tensor) -> None:
    if not isinstance(regions, Regions):
        raise InputError(
            f"regions must be a convscope.data.regions.Regions, got {type(regions).__name__}; "
            "build one with grid_regions(H, W, cells=...) or regions_from_masks(...)."
        )
    n, _, h, w = input.shape
    if regions.shape != (h, w):
        raise InputError(
            f"The regions are {regions.shape[0]}×{regions.shape[1]} but the images are "
            f"{h}×{w}; build the partition at the image size, e.g. grid_regions({h}, {w}, "
            "cells=4)."
        )
    if regions.is_batched and regions.labels.shape[0] != n:
        raise InputError(
            f"The per-image regions hold {regions.labels.shape[0]} label maps for {n} images; "
            "pass one H×W label map per image, or a single shared H×W partition."
        )


def _check_n_samples(n_samples: int | None, d: int, minimum: int = 1) -> int:
    if n_samples is None:
        return DEFAULT_N_PER_REGION * (d + 2)
    if (
        isinstance(n_samples, (bool, np.bool_))
        or not isinstance(n_samples, (int, np.integer))
        or n_samples < minimum
    ):
        raise InputError(
            f"n_samples must be an int >= {minimum}, got {n_samples!r}; pass None for the "
            f"default budget of {DEFAULT_N_PER_REGION} * (d + 2) = "
            f"{DEFAULT_N_PER_REGION * (d + 2)} model evaluations per image."
        )
    return int(n_samples)


def _baseline_images(
    baseline: float | torch.Tensor, input: torch.Tensor, model: nn.Module
) -> torch.Tensor:
    """The baseline as an N×C×H×W view on the model's device and dtype."""
    if isinstance(baseline, torch.Tensor):
        check_images(baseline, channels=input.shape[1], name="baseline")
        if baseline.shape[0] not in (1, input.shape[0]):
            raise InputError(
                f"baseline holds {baseline.shape[0]} images for {input.shape[0]} inputs; pass "
                "one baseline image (1×C×H×W) or one per input (N×C×H×W)."
            )
        fill = to_model(baseline.detach(), model)
    elif isinstance(baseline, (int, float, np.integer, np.floating)) and not isinstance(
        baseline, (bool, np.bool_)
    ):
        if not math.isfinite(float(baseline)):
            raise InputError(f"baseline must be finite, got {baseline!r}; e.g. 0.0 (black).")
        fill = torch.tensor(float(baseline), device=model_device(model), dtype=model_dtype(model))
    else:
        raise InputError(
            f"baseline must be a float or a 1×C×H×W / N×C×H×W image tensor in [0, 1], got "
            f"{type(baseline).__name__}."
        )
    try:
        return fill.expand(input.shape)
    except RuntimeError as exc:
        raise InputError(
            f"baseline of shape {tuple(fill.shape)} does not match the images of shape "
            f"{tuple(input.shape)}; pass 1×C×H×W or N×C×H×W (1×C×1×1 for one colour)."
        ) from exc


def _seed_value(seed: SeedLike) -> int:
    """An int seed (a generator passed in is advanced by one draw)."""
    if isinstance(seed, (torch.Generator, np.random.Generator)):
        return int(torch.randint(0, 2**62, (1,), generator=torch_generator(seed)).item())
    return int(torch_generator(seed).initial_seed())  # validates; None draws fresh entropy


@contextmanager
def _restored_cpu_rng() -> Iterator[None]:
    # Captum's KernelShap/Lime sample coalitions from torch's global CPU generator.
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


def _empty_to_nan(scores: torch.Tensor, regions: Regions) -> torch.Tensor:
    if regions.is_batched:
        empty = regions.sizes().to(scores.device) == 0
        scores = scores.masked_fill(empty, float("nan"))
    return scores


# --- Captum plumbing --------------------------------------------------------------------------


class _ScoreModel(nn.Module):
    """``x -> score(model(x))`` as an N×1 output, so that Captum can take a callable target."""

    def __init__(self, model: nn.Module, function: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resolve_target(Target(function=self.function), self.model(x)).unsqueeze(1)


def _captum_target(model: nn.Module, target: Target, i: int) -> tuple[nn.Module, int]:
    if target.function is not None:
        return _ScoreModel(model, target.function), 0
    if isinstance(target.index, int):
        return model, target.index
    return model, int(target.indices(i + 1)[i])


def _surrogate(
    method: str,
    make: Callable[[nn.Module], KernelShap | Lime],
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    n_samples: int,
    baseline: float | torch.Tensor,
    batch_size: int | None,
    seed: SeedLike,
    progress: bool | None,
    exact_single: bool,
) -> torch.Tensor:
    """Fit Captum's surrogate image by image over the regions (``feature_mask``)."""
    n, _, h, w = input.shape
    tgt = check_target_count(target, n)
    size = check_batch_size(batch_size)
    fill = _baseline_images(baseline, input, model)
    seed_int = _seed_value(seed)
    device, dtype = model_device(model), model_dtype(model)
    labels = regions.labels.to(device).reshape(-1, h, w)
    d_per_image = regions.n_regions_per_image
    scores = torch.full((n, regions.n_regions), float("nan"), device=device, dtype=dtype)
    with inference_state(model), torch.no_grad(), _restored_cpu_rng():
        for i in progress_bar(range(n), total=n, desc=method, show=progress):
            x = to_model(input[i : i + 1], model)
            b = fill[i : i + 1]
            fwd, index = _captum_target(model, tgt, i)
            j = i if regions.is_batched else 0
            d_i = d_per_image[j]
            try:
                if exact_single and d_i == 1:
                    # One player: its Shapley value is v(1) - v(0) (Captum's sampler breaks).
                    out = fwd(torch.cat([x, b]))[:, index]
                    coefs = (out[0] - out[1]).reshape(1)
                else:
                    # The same seed for every image: an image's scores do not depend on the
                    # batch it is in, and all images see the same coalitions.
                    torch.default_generator.manual_seed(seed_int)
                    coefs = make(fwd).attribute(
                        x,
                        baselines=b,
                        target=index,
                        feature_mask=labels[j].view(1, 1, h, w),
                        n_samples=n_samples,
                        perturbations_per_eval=min(size, n_samples),
                        return_input_shape=False,
                    )
            except (IndexError, RuntimeError, ValueError):
                # Replace Captum's error by ours when the cause is a bad target.
                resolve_target(tgt.subset(slice(i, i + 1)), model(x))
                raise
            scores[i, :d_i] = coefs.reshape(-1).to(device=device, dtype=dtype)
    return scores


def _prepare(input: torch.Tensor, regions: Regions, n_samples: int | None, minimum: int = 1) -> int:
    check_images(input)
    _check_regions(regions, input)
    return _check_n_samples(n_samples, regions.n_regions, minimum)


# --- public API -------------------------------------------------------------------------------


def kernel_shap_regions(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    *,
    n_samples: int | None = None,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = 64,
    seed: SeedLike = 0,
    progress: bool | None = False,
) -> torch.Tensor:
    r"""KernelSHAP Shapley values of the regions (Captum's ``KernelShap``, Shap-SBSA).

    The game is :math:`v(z) = \Phi_c(x_z)`, with region :math:`k` of :math:`x_z` equal to
    :math:`x` if :math:`z_k = 1` and to the baseline :math:`b` otherwise. KernelSHAP solves

    .. math::

        \min_{\phi} \sum_{z} \pi(z) \Bigl(v(z) - \phi_0 - \sum_k \phi_k z_k\Bigr)^2, \quad
        \pi(z) = \frac{d - 1}{\binom{d}{|z|}\,|z|\,(d - |z|)},

    over sampled coalitions (see the module docstring for Captum's sampling). The scores
    satisfy :math:`\sum_k \phi_k \approx \Phi_c(x) - \Phi_c(b)` and are the exact Shapley values
    for an additive game.

    Parameters
    ----------
    model
        Model taking [0, 1] images.
    input
        N×C×H×W images in [0, 1].
    target
        Class index, one index per image, or a callable on the outputs acting row by row
        (the model is then wrapped as ``x -> target(model(x))[:, None]`` with Captum target 0).
    regions
        The partition: shared ``H×W`` or per-image ``N×H×W`` labels.
    n_samples
        Model evaluations per image, including the full and empty coalitions Captum always
        evaluates first (default ``64 * (d + 2)``, Sobol region attribution's default budget).
        At least 2. An image with a single region uses exactly 2 (its Shapley value is
        :math:`\Phi_c(x) - \Phi_c(b)`).
    baseline
        The image a region takes when it is "off": a float (default 0, black) or a 1×C×H×W /
        N×C×H×W tensor in [0, 1] (e.g. a blurred copy of the input).
    batch_size
        Most samples per forward pass (Captum's ``perturbations_per_eval``).
    seed
        Seeds Captum's coalition sampling (torch's global CPU generator, whose state is
        restored afterwards). Every image is seeded alike, so the same seed gives the same
        scores whatever the batch.
    progress
        Show a progress bar over the images.

    Returns
    -------
    torch.Tensor
        ``N×d`` Shapley values on the model's device, NaN for empty regions.

    References
    ----------
    S. M. Lundberg, S.-I. Lee, *A Unified Approach to Interpreting Model Predictions*,
    NeurIPS 2017.
    """
    budget = _prepare(input, regions, n_samples, minimum=2)
    return _surrogate(
        "KernelSHAP",
        KernelShap,
        model,
        input,
        target,
        regions,
        budget,
        baseline,
        batch_size,
        seed,
        progress,
        exact_single=True,
    )


def lime_regions(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    *,
    n_samples: int | None = None,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = 64,
    seed: SeedLike = 0,
    progress: bool | None = False,
) -> torch.Tensor:
    r"""LIME region scores (Captum's ``Lime`` with its defaults, LIME-SBSA).

    With :math:`v(z) = \Phi_c(x_z)` as in :func:`kernel_shap_regions`, LIME fits

    .. math::

        \min_{w_0, w} \frac{1}{2 n} \sum_{j=1}^{n} \pi_j
        \Bigl(v(z_j) - w_0 - \sum_k w_k z_{j,k}\Bigr)^2 + \alpha \lVert w \rVert_1,

    and returns :math:`w`. Captum's defaults, kept here: :math:`z_{j,k} \sim
    \mathrm{Bernoulli}(1/2)` independently; :math:`\pi_j = \exp(-D_j^2 / 2)` with :math:`D_j`
    the cosine distance between the flattened images :math:`x` and :math:`x_{z_j}` (kernel
    width 1); scikit-learn's ``Lasso`` with :math:`\alpha = 0.01` and an intercept.

    Parameters
    ----------
    model, input, target, regions, baseline, batch_size, seed, progress
        As in :func:`kernel_shap_regions`.
    n_samples
        Model evaluations per image (default ``64 * (d + 2)``).

    Returns
    -------
    torch.Tensor
        ``N×d`` Lasso coefficients on the model's device, NaN for empty regions.

    References
    ----------
    M. T. Ribeiro, S. Singh, C. Guestrin, *"Why Should I Trust You?": Explaining the
    Predictions of Any Classifier*, KDD 2016.
    """
    budget = _prepare(input, regions, n_samples)
    return _surrogate(
        "LIME",
        Lime,
        model,
        input,
        target,
        regions,
        budget,
        baseline,
        batch_size,
        seed,
        progress,
        exact_single=False,
    )


def integrated_gradients_regions(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    *,
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 50,
    aggregate: Aggregate = "sum",
    batch_size: int | None = 64,
) -> torch.Tensor:
    r"""Integrated gradients aggregated per region.

    With the pixel-channel attributions
    :math:`\mathrm{IG}_{p,c} = (x_{p,c} - b_{p,c}) \int_0^1 \partial_{p,c}
    \Phi_c(b + \alpha (x - b))\, d\alpha`
    (:func:`convscope.attribution.integrated_gradients`, Gauss-Legendre quadrature), the score
    of region :math:`R_k` is

    * ``"sum"``: :math:`\sum_{p \in R_k} \sum_c \mathrm{IG}_{p,c}` (default; completeness
      gives :math:`\sum_k = \Phi_c(x) - \Phi_c(b)`);
    * ``"abs_sum"``: :math:`\sum_{p \in R_k} \sum_c |\mathrm{IG}_{p,c}|`;
    * ``"mean"``: :math:`\frac{1}{|R_k|} \sum_{p \in R_k} \sum_c \mathrm{IG}_{p,c}`, the mean
      over the region's pixels of the channel-summed attribution.

    Parameters
    ----------
    model, input, target, regions
        As in :func:`kernel_shap_regions` (a callable target must act row by row).
    baseline
        IG's reference image :math:`b`: a float (default 0, black) or a 1×C×H×W / N×C×H×W
        tensor in [0, 1].
    n_steps
        Quadrature points.
    aggregate
        ``"sum"``, ``"abs_sum"`` or ``"mean"``.
    batch_size
        Most samples (images × quadrature points) per forward pass.

    Returns
    -------
    torch.Tensor
        ``N×d`` region scores on the model's device, NaN for empty regions.

    References
    ----------
    M. Sundararajan, A. Taly, Q. Yan, *Axiomatic Attribution for Deep Networks*, ICML 2017.
    """
    if aggregate not in ("sum", "abs_sum", "mean"):
        raise InputError(f"aggregate must be 'sum', 'abs_sum' or 'mean', got {aggregate!r}.")
    check_images(input)
    _check_regions(regions, input)
    fill = _baseline_images(baseline, input, model)
    maps = integrated_gradients(
        model,
        input,
        target,
        baseline=fill,
        n_steps=n_steps,
        reduce="abs" if aggregate == "abs_sum" else "sum",
        batch_size=batch_size,
    )
    n, d = input.shape[0], regions.n_regions
    labels = regions.labels.to(maps.device).reshape(-1, maps[0].numel()).expand(n, -1)
    sums = torch.zeros(n, d, device=maps.device, dtype=maps.dtype)
    sums.scatter_add_(1, labels, maps.reshape(n, -1))
    if aggregate == "mean":
        sizes = regions.sizes().to(maps.device)
        sums = sums / sizes.expand(n, d).to(sums.dtype)  # 0/0 = NaN on empty regions
    return _empty_to_nan(sums, regions)


def random_regions(input: torch.Tensor, regions: Regions, *, seed: SeedLike = 0) -> torch.Tensor:
    """Random region scores: i.i.d. :math:`U[0, 1)`, i.e. a uniformly random ranking.

    Parameters
    ----------
    input
        N×C×H×W images (only their number, size and device are used).
    regions
        The partition.
    seed
        Seed of the generator (on the input's device).

    Returns
    -------
    torch.Tensor
        ``N×d`` scores on the input's device, NaN for empty regions.
    """
    check_images(input)
    _check_regions(regions, input)
    gen = torch_generator(seed, input.device)
    scores = torch.rand(
        input.shape[0],
        regions.n_regions,
        generator=gen,
        device=input.device,
        dtype=input.dtype,
    )
    return _empty_to_nan(scores, regions)


# --- registry ---------------------------------------------------------------------------------


def _sampling_method(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """KernelSHAP/LIME under the common registry signature (extra keywords ignored)."""

    def method(
        model: nn.Module,
        input: torch.Tensor,
        target: TargetLike,
        regions: Regions,
        *,
        baseline: float | torch.Tensor = 0.0,
        batch_size: int | None = 64,
        seed: SeedLike = 0,
        n_samples: int | None = None,
        **_: Any,
    ) -> torch.Tensor:
        return fn(
            model, input, target, regions, n_samples=n_samples, baseline=baseline,
            batch_size=batch_size, seed=seed,
        )  # fmt: skip

    return method


def _integrated_gradients_method(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    *,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = 64,
    **_: Any,
) -> torch.Tensor:
    return integrated_gradients_regions(
        model, input, target, regions, baseline=baseline, batch_size=batch_size
    )


def _random_method(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    regions: Regions,
    *,
    seed: SeedLike = 0,
    **_: Any,
) -> torch.Tensor:
    return random_regions(to_model(input, model), regions, seed=seed)


#: Region methods by name, all with the call shape
#: ``(model, input, target, regions, *, baseline, batch_size, seed, n_samples)``; keywords a
#: method does not use are ignored (IG ignores ``seed`` and ``n_samples``; random ignores all
#: but ``seed``).
REGION_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "kernel_shap": _sampling_method(kernel_shap_regions),
    "lime": _sampling_method(lime_regions),
    "integrated_gradients": _integrated_gradients_method,
    "random": _random_method,
}
