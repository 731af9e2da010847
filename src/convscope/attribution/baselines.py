r"""Baseline attribution methods with the common call shape ``(model, input, target, ...)``.

Every baseline returns an N×1×H×W map at the input resolution. Where Captum implements a
method correctly it is wrapped rather than rewritten.

Grad-CAM (Selvaraju et al., 2017): for the activation :math:`A^k` of channel :math:`k` of a
layer, the weights are the spatially averaged gradients
:math:`\alpha_k = \frac{1}{Z}\sum_{ij} \partial \Phi_c / \partial A^k_{ij}`, and the map is
:math:`\mathrm{ReLU}(\sum_k \alpha_k A^k)`, upsampled bilinearly to the input size.
"""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from convscope.core.batching import batch_slices
from convscope.core.device import to_model
from convscope.core.errors import InputError
from convscope.core.hooks import Activations, last_spatial_layer, probe
from convscope.core.layers import resolve_layer
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images

__all__ = ["default_layer", "grad_cam"]


def default_layer(model: nn.Module, input_size: tuple[int, int] | None = None) -> str:
    """The layer a model's metadata recommends for Grad-CAM, else its last spatial layer.

    The last spatial layer is the last module with an N×C×h×w output (h·w > 1) that runs once
    per forward pass (:func:`convscope.core.last_spatial_layer`), e.g. ``layer4`` of a ResNet.
    """
    info = getattr(model, "convscope_info", None)
    if info is not None and getattr(info, "default_layer", None):
        return str(info.default_layer)
    if input_size is None:
        side = getattr(info, "input_size", None) or 224
        input_size = (side, side)
    return last_spatial_layer(model, input_size)


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


def _check_spatial(acts: Activations, name: str) -> None:
    if name in acts and acts[name].ndim != 4:
        raise InputError(
            f"Grad-CAM needs a layer with an N×C×h×w output; {name!r} gives shape "
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
