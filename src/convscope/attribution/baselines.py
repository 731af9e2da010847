r"""Baseline attribution methods with the common call shape ``(model, input, target, ...)``.

Every baseline returns an N×1×H×W map at the input resolution, on the model's device. Where
Captum implements a method correctly it is wrapped rather than rewritten; RISE
(:mod:`~convscope.attribution.rise`) and excitation backprop
(:mod:`~convscope.attribution.excitation`) have their own modules. :data:`BASELINES` maps
method names to the functions.

With :math:`\Phi_c(x)` the target score (a logit for a class index, or any callable score):

* **Gradient** (Simonyan et al., 2014): :math:`\max_k |\partial \Phi_c / \partial x_k|`
  over the colour channels :math:`k` (TorchRay's ``gradient_to_saliency``).
* **Guided backprop** (Springenberg et al., 2015) and **DeconvNet** (Zeiler & Fergus, 2014):
  the gradient with a modified ReLU backward. Guided backprop passes the gradient only where
  both the forward input and the gradient are positive; DeconvNet passes the positive part of
  the gradient whatever the forward input. Map: :math:`\max_k |\cdot|`. Captum overrides the
  backward of ``nn.ReLU`` *modules* only: a ``torch.relu``/``F.relu`` call inside a
  ``forward`` keeps its ordinary gradient (a warning is issued when a model has no ReLU
  module at all).
* **Grad-CAM** (Selvaraju et al., 2017): for the activation :math:`A^k` of channel :math:`k`
  of a layer, :math:`\alpha_k = \frac{1}{Z}\sum_{ij} \partial \Phi_c / \partial A^k_{ij}`
  and the map is :math:`\mathrm{ReLU}(\sum_k \alpha_k A^k)`, upsampled bilinearly.
* **Linear approximation** (TorchRay's ``linear_approx``; the thesis, ch. 2):
  :math:`\sum_k A^k \odot \partial \Phi_c / \partial A^k` at a layer, upsampled bilinearly.
* **Integrated gradients** (Sundararajan et al., 2017):
  :math:`(x - x_0) \odot \int_0^1 \partial \Phi_c(x_0 + \alpha(x - x_0))/\partial x\,d\alpha`
  with a black baseline :math:`x_0 = 0`, reduced over channels by a signed sum (which keeps
  completeness: the map sums to :math:`\Phi_c(x) - \Phi_c(x_0)`), a sum of absolute values,
  or a maximum of absolute values.
* **SmoothGrad** (Smilkov et al., 2017): the gradient averaged over noisy copies
  :math:`x + \varepsilon`, :math:`\varepsilon \sim \mathcal{N}(0, \sigma^2)`, with
  :math:`\sigma` = ``noise_level`` × (max − min of the image); map
  :math:`\max_k |\frac{1}{n}\sum_j \partial \Phi_c(x + \varepsilon_j)/\partial x_k|`.
* **Occlusion** (Zeiler & Fergus, 2014): a grey square slides over the image; every pixel
  gets the mean drop of the score :math:`\Phi_c(x) - \Phi_c(x_{\text{occluded}})` over the
  window positions that cover it (Captum's ``Occlusion``).

Callable targets must act row by row (``lambda out: out.softmax(1)[:, 3]``) for the methods
whose forward passes hold several perturbed copies of an image (integrated gradients,
SmoothGrad, occlusion, RISE).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    Occlusion,
    Saliency,
)
from torch import nn

from convscope.attribution.excitation import (
    contrastive_excitation_backprop,
    excitation_backprop,
)
from convscope.attribution.rise import rise
from convscope.core.batching import batch_slices, check_batch_size
from convscope.core.device import model_device, model_dtype, to_model
from convscope.core.errors import InputError, TargetError
from convscope.core.hooks import Activations, default_layer, probe
from convscope.core.layers import resolve_layer
from convscope.core.progress import progress_bar
from convscope.core.seeding import SeedLike, torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images, positive_int

__all__ = [
    "BASELINES",
    "deconvnet",
    "default_layer",
    "grad_cam",
    "gradient",
    "guided_backprop",
    "integrated_gradients",
    "linear_approx",
    "occlusion",
    "smoothgrad",
]


def grad_cam(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    layer: str | None = None,
    relu: bool = True,
    upsample: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Grad-CAM maps through Captum's ``LayerGradCam``.

    Parameters
    ----------
    model, input, target
        Model taking [0, 1] images, N×3×H×W images, and the target (class index, per-sample
        indices or callable).
    layer
        Dotted layer name (default: the model's recommended layer, else its last convolution).
    relu
        Keep only positive evidence, as in the paper.
    upsample
        Bilinearly upsample to the input size (else the layer's resolution is kept).
    batch_size
        Samples per forward/backward pass.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps (N×1×h×w at the layer's resolution if ``upsample=False``).
    """
    check_images(input)
    name = layer or default_layer(model, (input.shape[2], input.shape[3]))
    module = resolve_layer(model, name)
    tgt = check_target_count(target, input.shape[0])
    maps = []
    with inference_state(model):
        for sl in batch_slices(input.shape[0], batch_size):
            x = to_model(input[sl], model)
            with probe(model, record=[name]) as acts:  # refuses a module that runs twice
                try:
                    attr = _captum_grad_cam(model, module, x, tgt.subset(sl), relu)
                except (IndexError, RuntimeError, ValueError):
                    # Replace Captum's error by ours when the cause is a bad layer or target.
                    _check_spatial(acts, name)
                    with torch.no_grad():
                        resolve_target(tgt.subset(sl), model(x))  # out-of-range class index
                    raise
            _check_spatial(acts, name)
            if upsample:
                attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")
            maps.append(attr.detach())
    return torch.cat(maps)


def _check_spatial(acts: Activations, name: str, method: str = "Grad-CAM") -> None:
    if name in acts and acts[name].ndim != 4:
        raise InputError(
            f"{method} needs a layer with an N×C×h×w output; {name!r} gives shape "
            f"{tuple(acts[name].shape)}. Pick a convolutional layer (convscope.attribution."
            "default_layer(model) finds the last one)."
        )


def _captum_grad_cam(
    model: nn.Module, module: nn.Module, x: torch.Tensor, target: Target, relu: bool
) -> torch.Tensor:
    if target.function is not None:
        fn = target.function

        def scores(inp: torch.Tensor) -> torch.Tensor:
            return resolve_target(Target(function=fn), model(inp)).unsqueeze(1)

        return LayerGradCam(scores, module).attribute(x, target=0, relu_attributions=relu)
    index = target.index if isinstance(target.index, int) else target.indices(x.shape[0]).tolist()
    return LayerGradCam(model, module).attribute(x, target=index, relu_attributions=relu)


# --- shared plumbing of the Captum wrappers ---------------------------------------------------


class _ScoreModel(nn.Module):
    """``x -> score(model(x))`` as an N×1 output, so Captum can take a callable target."""

    def __init__(self, model: nn.Module, function: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resolve_target(Target(function=self.function), self.model(x)).unsqueeze(1)


def _captum_model(model: nn.Module, target: Target, n: int) -> tuple[nn.Module, int | list[int]]:
    """The forward function and target to give Captum for ``n`` samples."""
    if target.function is not None:
        return _ScoreModel(model, target.function), 0
    if isinstance(target.index, int):
        return model, target.index
    return model, target.indices(n).tolist()


@contextmanager
def _target_errors(model: nn.Module, x: torch.Tensor, target: Target) -> Iterator[None]:
    """Replace Captum's error by ours when the cause is an out-of-range or bad target."""
    try:
        yield
    except (IndexError, RuntimeError, ValueError):
        with torch.no_grad():
            resolve_target(target, model(x), n=x.shape[0])
        raise


def _no_inference_mode(method: str) -> None:
    if torch.is_inference_mode_enabled():
        raise InputError(
            f"{method} uses autograd and cannot run inside torch.inference_mode(); call it outside."
        )


def _per_batch(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    batch_size: int | None,
    method: str,
    fn: Callable[[torch.Tensor, Target, slice], torch.Tensor],
) -> torch.Tensor:
    """Validate, then ``fn(x, target, slice)`` per batch of images, in inference state."""
    check_images(input)
    _no_inference_mode(method)
    tgt = check_target_count(target, input.shape[0])
    maps = []
    with inference_state(model):
        for sl in batch_slices(input.shape[0], batch_size):
            x = to_model(input[sl], model)
            with _target_errors(model, x, tgt.subset(sl)):
                maps.append(fn(x, tgt.subset(sl), sl).detach())
    return torch.cat(maps)


def _fill(
    value: float | torch.Tensor, input: torch.Tensor, model: nn.Module, name: str
) -> torch.Tensor:
    """A baseline value broadcast to the input's shape (a view), on the model's device."""
    fill = torch.as_tensor(value, device=model_device(model), dtype=model_dtype(model))
    try:
        return fill.expand(input.shape)
    except RuntimeError as exc:
        raise InputError(
            f"{name} must be a float or a tensor broadcastable to the input shape "
            f"{tuple(input.shape)} (e.g. 1×3×1×1 for one colour), got shape "
            f"{tuple(fill.shape)}."
        ) from exc


# --- gradient, guided backprop, deconvnet -----------------------------------------------------


def gradient(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Gradient saliency (Simonyan et al., 2014) through Captum's ``Saliency``.

    The map is :math:`\max_k |\partial \Phi_c(x) / \partial x_k|` over the colour channels.

    Parameters
    ----------
    model, input, target
        Model taking [0, 1] images, N×3×H×W images, and the target (class index, per-sample
        indices or callable).
    batch_size
        Samples per forward/backward pass.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device.

    References
    ----------
    K. Simonyan, A. Vedaldi, A. Zisserman, *Deep Inside Convolutional Networks: Visualising
    Image Classification Models and Saliency Maps*, ICLR workshop 2014.
    """

    def one(x: torch.Tensor, tgt: Target, _sl: slice) -> torch.Tensor:
        fwd, index = _captum_model(model, tgt, x.shape[0])
        # requires_grad set here so that Captum does not warn about setting it
        attr = Saliency(fwd).attribute(x.detach().requires_grad_(True), target=index, abs=True)
        return attr.amax(1, keepdim=True)

    return _per_batch(model, input, target, batch_size, "gradient", one)


def _modified_relu(
    cls: type[GuidedBackprop] | type[Deconvolution],
    method: str,
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    batch_size: int | None,
) -> torch.Tensor:
    if not any(isinstance(m, nn.ReLU) for m in model.modules()):
        warnings.warn(
            f"{type(model).__name__} has no nn.ReLU module: {method} overrides the backward of "
            "nn.ReLU modules only, so this is the plain gradient. Use nn.ReLU modules instead "
            "of torch.relu / F.relu calls.",
            UserWarning,
            stacklevel=3,
        )

    def one(x: torch.Tensor, tgt: Target, _sl: slice) -> torch.Tensor:
        fwd, index = _captum_model(model, tgt, x.shape[0])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            attr = cls(fwd).attribute(x.detach().requires_grad_(True), target=index)
        return attr.abs().amax(1, keepdim=True)

    return _per_batch(model, input, target, batch_size, method, one)


def guided_backprop(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Guided backpropagation (Springenberg et al., 2015) through Captum's ``GuidedBackprop``.

    At every ``nn.ReLU`` module :math:`y = \max(x, 0)` the backward pass returns
    :math:`\partial_x = [x > 0]\,[\partial_y > 0]\,\partial_y`; the map is
    :math:`\max_k |\partial_{x_k}|` over the colour channels (TorchRay's convention).

    Parameters
    ----------
    model, input, target
        As in :func:`gradient`. ReLUs must be ``nn.ReLU`` modules (in-place is fine);
        functional ReLUs keep their ordinary gradient.
    batch_size
        Samples per forward/backward pass.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device.

    References
    ----------
    J. T. Springenberg, A. Dosovitskiy, T. Brox, M. Riedmiller, *Striving for Simplicity: The
    All Convolutional Net*, ICLR workshop 2015.
    """
    return _modified_relu(GuidedBackprop, "guided backprop", model, input, target, batch_size)


def deconvnet(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""DeconvNet backpropagation (Zeiler & Fergus, 2014) through Captum's ``Deconvolution``.

    At every ``nn.ReLU`` module the backward pass returns :math:`\max(\partial_y, 0)`,
    ignoring the forward input; the map is :math:`\max_k |\partial_{x_k}|`.

    Parameters
    ----------
    model, input, target
        As in :func:`guided_backprop`.
    batch_size
        Samples per forward/backward pass.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device.

    References
    ----------
    M. D. Zeiler, R. Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014.
    """
    return _modified_relu(Deconvolution, "deconvnet", model, input, target, batch_size)


# --- linear approximation ---------------------------------------------------------------------


def linear_approx(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    layer: str | None = None,
    upsample: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Linear approximation :math:`\sum_k A^k \odot \partial \Phi_c / \partial A^k` at a layer.

    The first-order Taylor term of the score in the activation :math:`A` of ``layer`` (Captum's
    ``LayerGradientXActivation`` summed over channels), upsampled bilinearly to the input
    size. Unlike Grad-CAM the gradient is not averaged over space and no ReLU is applied.

    Parameters
    ----------
    model, input, target
        As in :func:`gradient`.
    layer
        Dotted layer name with an N×C×h×w output (default: :func:`default_layer`).
    upsample
        Bilinearly upsample to the input size (else the layer's resolution is kept).
    batch_size
        Samples per forward/backward pass.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps (N×1×h×w if ``upsample=False``) on the model's device.

    References
    ----------
    R. Fong, *Understanding Convolutional Neural Networks*, DPhil thesis, Oxford 2020, ch. 2;
    TorchRay's ``linear_approx``.
    """
    check_images(input)
    name = layer or default_layer(model, (input.shape[2], input.shape[3]))
    module = resolve_layer(model, name)

    def one(x: torch.Tensor, tgt: Target, _sl: slice) -> torch.Tensor:
        fwd, index = _captum_model(model, tgt, x.shape[0])
        with probe(model, record=[name]) as acts:  # refuses a module that runs twice
            attr = LayerGradientXActivation(fwd, module).attribute(x, target=index)
        _check_spatial(acts, name, "linear_approx")
        attr = attr.sum(1, keepdim=True)
        if upsample:
            attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")
        return attr

    return _per_batch(model, input, target, batch_size, "linear_approx", one)


# --- integrated gradients ---------------------------------------------------------------------

Reduce = Literal["sum", "abs", "max_abs"]


def _reduce_channels(attr: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce == "sum":
        return attr.sum(1, keepdim=True)
    if reduce == "abs":
        return attr.abs().sum(1, keepdim=True)
    return attr.abs().amax(1, keepdim=True)


def integrated_gradients(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 50,
    method: str = "gausslegendre",
    reduce: Reduce = "sum",
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Integrated gradients (Sundararajan et al., 2017) through Captum.

    .. math::

        \mathrm{IG}_k(x) = (x_k - x_{0,k}) \int_0^1
        \frac{\partial \Phi_c(x_0 + \alpha (x - x_0))}{\partial x_k}\, d\alpha,

    approximated with ``n_steps`` points of the quadrature ``method``. Completeness:
    :math:`\sum_k \mathrm{IG}_k = \Phi_c(x) - \Phi_c(x_0)` up to the quadrature error.

    Parameters
    ----------
    model, input, target
        As in :func:`gradient`; a callable target must act row by row.
    baseline
        :math:`x_0`: a float or a tensor broadcastable to the input (default 0, black, as in
        the thesis).
    n_steps
        Quadrature points (Captum's default 50).
    method
        Captum's quadrature: ``"gausslegendre"`` (default), ``"riemann_left"``,
        ``"riemann_right"``, ``"riemann_middle"`` or ``"riemann_trapezoid"``.
    reduce
        Channel reduction: ``"sum"`` (signed; keeps completeness, the default), ``"abs"``
        (sum of absolute values) or ``"max_abs"`` (maximum absolute value, as for
        :func:`gradient`).
    batch_size
        Samples per forward pass (images × quadrature points; Captum's
        ``internal_batch_size``).

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device.

    References
    ----------
    M. Sundararajan, A. Taly, Q. Yan, *Axiomatic Attribution for Deep Networks*, ICML 2017.
    """
    positive_int(n_steps, "n_steps")
    methods = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle")
    if method not in (*methods, "riemann_trapezoid"):
        raise InputError(
            f"method must be one of {[*methods, 'riemann_trapezoid']}, got {method!r}."
        )
    if reduce not in ("sum", "abs", "max_abs"):
        raise InputError(f"reduce must be 'sum', 'abs' or 'max_abs', got {reduce!r}.")
    size = check_batch_size(batch_size)
    check_images(input)
    fill = _fill(baseline, input, model, "baseline")

    def one(x: torch.Tensor, tgt: Target, sl: slice) -> torch.Tensor:
        fwd, index = _captum_model(model, tgt, x.shape[0])
        attr = IntegratedGradients(fwd).attribute(
            x,
            baselines=fill[sl],
            target=index,
            n_steps=n_steps,
            method=method,
            internal_batch_size=size,
        )
        return _reduce_channels(attr, reduce)

    return _per_batch(model, input, target, size, "integrated gradients", one)


# --- SmoothGrad -------------------------------------------------------------------------------


def smoothgrad(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    n_samples: int = 50,
    noise_level: float = 0.15,
    seed: SeedLike = 0,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies.

    .. math::

        S(x) = \max_k \Big| \frac{1}{n} \sum_{j=1}^{n}
        \frac{\partial \Phi_c(x + \varepsilon_j)}{\partial x_k} \Big|, \qquad
        \varepsilon_j \sim \mathcal{N}(0, \sigma^2 I),\quad
        \sigma = \text{noise\_level} \cdot (\max x - \min x).

    As in the paper and its reference code the raw gradients are averaged and the absolute
    value is taken afterwards (Captum's ``NoiseTunnel`` over ``Saliency(abs=True)`` averages
    absolute gradients instead). :math:`\sigma` is relative to each image's own value range;
    the noisy images are not clipped.

    Noise stream: a generator seeded with ``seed`` on the model's device draws, for
    :math:`j = 1, \dots, n` in turn, one standard-normal tensor of the input's shape (model
    dtype); image :math:`i` gets its row. The result therefore does not depend on
    ``batch_size``.

    Parameters
    ----------
    model, input, target
        As in :func:`gradient`; a callable target must act row by row.
    n_samples
        Number :math:`n` of noisy copies (50 in the paper).
    noise_level
        :math:`\sigma / (\max x - \min x)`, 0.15 by default (the paper recommends 10-20%).
    seed
        Seed of the noise (the global RNG is not touched).
    batch_size
        Noisy images per forward/backward pass.
    progress
        Show a progress bar (None: on long loops only).

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device.

    References
    ----------
    D. Smilkov, N. Thorat, B. Kim, F. Viégas, M. Wattenberg, *SmoothGrad: removing noise by
    adding noise*, ICML workshop 2017 (arXiv:1706.03825).
    """
    check_images(input)
    _no_inference_mode("SmoothGrad")
    positive_int(n_samples, "n_samples")
    if (
        not isinstance(noise_level, (int, float))
        or isinstance(noise_level, bool)
        or noise_level < 0
    ):
        raise InputError(f"noise_level must be a float >= 0 (e.g. 0.15), got {noise_level!r}.")
    size = check_batch_size(batch_size)
    tgt = check_target_count(target, input.shape[0])
    n = input.shape[0]
    device, dtype = model_device(model), model_dtype(model)
    x_all = to_model(input, model)
    sigma = (noise_level * (x_all.amax((1, 2, 3)) - x_all.amin((1, 2, 3)))).view(-1, 1, 1, 1)
    gen = torch_generator(seed, device)

    def noisy() -> torch.Tensor:
        eps = torch.randn(x_all.shape, generator=gen, device=device, dtype=dtype)
        return x_all + sigma * eps

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(image index of each row, noisy rows), in the order of the noise stream."""
        if n <= size:
            per_pass = size // n
            for j0 in range(0, n_samples, per_pass):
                k = min(per_pass, n_samples - j0)
                yield torch.arange(n).repeat(k), torch.cat([noisy() for _ in range(k)])
        else:
            for _ in range(n_samples):
                copy = noisy()
                for sl in batch_slices(n, size):
                    yield torch.arange(sl.start, sl.stop), copy[sl]

    total = torch.zeros_like(x_all)
    n_passes = math.ceil(n_samples / (size // n)) if n <= size else n_samples * math.ceil(n / size)
    with inference_state(model), torch.enable_grad():
        for rows, x in progress_bar(batches(), total=n_passes, desc="SmoothGrad", show=progress):
            x = x.detach().requires_grad_(True)
            row_target = tgt.subset(rows)
            with _target_errors(model, x, row_target):
                scores = resolve_target(row_target, model(x), n=x.shape[0])
            if not scores.requires_grad:
                raise TargetError(
                    "The target scores do not depend differentiably on the input (e.g. an "
                    "argmax in a callable target). Return a differentiable score."
                )
            (grad,) = torch.autograd.grad(scores.sum(), x)
            total.index_add_(0, rows.to(device), grad)
    return (total / n_samples).abs().amax(1, keepdim=True)


# --- occlusion --------------------------------------------------------------------------------


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise InputError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    return pair[0], pair[1]


def occlusion(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    window: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    baseline: float | torch.Tensor = 0.5,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""Occlusion sensitivity (Zeiler & Fergus, 2014) through Captum's ``Occlusion``.

    A ``window`` square filled with ``baseline`` (grey by default) slides over the image with
    ``stride``, at offsets :math:`0, s, 2s, \dots, \lceil (H - w)/s \rceil s` per axis (a
    last window that would cross the border is cropped). Each pixel's value is the mean score
    drop :math:`\Phi_c(x) - \Phi_c(x_{\text{occluded}})` over the windows covering it:
    positive where hiding the pixel lowers the score.

    Parameters
    ----------
    model, input, target
        As in :func:`gradient`; a callable target must act row by row.
    window
        Side of the square (or ``(h, w)``). Default: :math:`\lceil \min(H, W)/8 \rceil`
        (28 pixels at 224², 8 at 64²).
    stride
        Step between windows (or ``(h, w)``), at most the window. Default: half the window,
        rounded up, so about 15 × 15 positions whatever the image size.
    baseline
        Fill value: a float or a tensor broadcastable to the input (default 0.5, grey).
    batch_size
        Occluded images per forward pass.
    progress
        Show Captum's progress bar when True.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device. Cost per image: 1 + the number of window
        positions forward passes, grouped ``batch_size`` at a time.

    References
    ----------
    M. D. Zeiler, R. Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014.
    """
    check_images(input)
    H, W = input.shape[2], input.shape[3]
    win = _pair(window, "window") if window is not None else (math.ceil(min(H, W) / 8),) * 2
    step = _pair(stride, "stride") if stride is not None else tuple(math.ceil(w / 2) for w in win)
    if win[0] > H or win[1] > W:
        raise InputError(f"window {win} is larger than the {H}×{W} images; pass a smaller one.")
    if step[0] > win[0] or step[1] > win[1]:
        raise InputError(
            f"stride {step} is larger than the window {win}, so some pixels would never be "
            "occluded; pass stride <= window."
        )
    size = check_batch_size(batch_size)
    fill = _fill(baseline, input, model, "baseline")

    def one(x: torch.Tensor, tgt: Target, sl: slice) -> torch.Tensor:
        fwd, index = _captum_model(model, tgt, x.shape[0])
        attr = Occlusion(fwd).attribute(
            x,
            sliding_window_shapes=(3, *win),
            strides=(3, *step),
            baselines=fill[sl],
            target=index,
            perturbations_per_eval=max(1, size // x.shape[0]),
            show_progress=bool(progress),
        )
        # The window spans the channels, so all are equal. Captum divides by the window counts
        # in float32 whatever the model's dtype: cast back.
        return attr.mean(1, keepdim=True).to(x.dtype)

    with torch.no_grad():
        return _per_batch(model, input, target, size, "occlusion", one)


#: Every baseline by name, with the common call shape ``(model, input, target, **options)``.
BASELINES: dict[str, Callable[..., torch.Tensor]] = {
    "gradient": gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "grad_cam": grad_cam,
    "linear_approx": linear_approx,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "occlusion": occlusion,
    "rise": rise,
    "excitation_backprop": excitation_backprop,
    "contrastive_excitation_backprop": contrastive_excitation_backprop,
}
