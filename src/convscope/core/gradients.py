r"""Gradients of a target score with respect to the input and to layer activations.

For a target score :math:`\Phi_c(x)` (see :mod:`convscope.core.targets`) these return
:math:`\partial \Phi_c / \partial x` and :math:`\partial \Phi_c / \partial a_\ell` for
activations :math:`a_\ell` of named layers. Samples are independent in eval mode, so the
gradient of the summed batch score gives every sample's own gradient in one backward pass.
The model's mode and ``requires_grad`` flags are restored afterwards, and parameter gradients
are never accumulated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.core.batching import map_batches
from convscope.core.device import to_model
from convscope.core.errors import InputError, TargetError
from convscope.core.hooks import probe
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images

__all__ = ["Gradients", "gradients", "input_gradient", "layer_gradient"]


@dataclass
class Gradients:
    """Outputs, target scores and gradients of one batch of inputs.

    Attributes
    ----------
    outputs
        Model outputs, detached.
    scores
        Target scores, shape ``(N,)``.
    input_gradient
        :math:`\\partial \\Phi / \\partial x`, shaped like the input (None if not asked).
    activations, layer_gradients
        Per layer: the activation :math:`a_\\ell` and :math:`\\partial \\Phi / \\partial a_\\ell`.
    """

    outputs: torch.Tensor | None
    scores: torch.Tensor
    input_gradient: torch.Tensor | None = None
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_gradients: dict[str, torch.Tensor] = field(default_factory=dict)


def _one_batch(
    model: nn.Module, x: torch.Tensor, target: Target, layers: Sequence[str], wrt_input: bool
) -> Gradients:
    x = to_model(x, model).detach().requires_grad_(wrt_input)
    with probe(model, record=list(layers), detach=False) as acts:
        outputs = model(x)
        scores = resolve_target(target, outputs, n=x.shape[0])
        acts_used = [acts[name] for name in layers]
    if not scores.requires_grad:
        raise TargetError(
            "The target scores do not depend differentiably on the input (e.g. an argmax or a "
            "comparison in a callable target). Return a differentiable score such as "
            "lambda out: out.softmax(1)[:, c]."
        )
    wrt = ([x] if wrt_input else []) + acts_used
    grads = torch.autograd.grad(scores.sum(), wrt, allow_unused=True)
    grads = tuple(torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt, strict=True))
    offset = 1 if wrt_input else 0
    return Gradients(
        outputs=outputs.detach() if isinstance(outputs, torch.Tensor) else None,
        scores=scores.detach(),
        input_gradient=grads[0].detach() if wrt_input else None,
        activations={n: a.detach() for n, a in zip(layers, acts_used, strict=True)},
        layer_gradients={n: g.detach() for n, g in zip(layers, grads[offset:], strict=True)},
    )


def gradients(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    layers: Sequence[str] | str = (),
    wrt_input: bool = True,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Gradients:
    """Gradients of the target score with respect to the input and/or layer activations.

    Works inside a caller's ``torch.no_grad()`` block (gradients are switched back on here).

    Parameters
    ----------
    model
        A model taking [0, 1] images; run in eval mode with frozen parameters.
    input
        N×3×H×W images.
    target
        Class index, per-sample indices, or callable (see :mod:`convscope.core.targets`).
    layers
        Layer names whose activations and gradients are returned.
    wrt_input
        Also return the input gradient.
    batch_size
        Samples per forward/backward pass.
    progress
        Show a progress bar (None: on long loops only).

    Returns
    -------
    Gradients
        ``outputs`` is None when the model returns something other than a tensor.
    """
    check_images(input)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not wrt_input and not layers:
        raise InputError("Nothing to differentiate: pass layers=[...] or wrt_input=True.")
    if torch.is_inference_mode_enabled():
        raise InputError(
            "Gradients cannot be taken inside torch.inference_mode(); call this outside it."
        )
    tgt = check_target_count(target, input.shape[0])
    with inference_state(model):
        parts = [
            part
            for _, part in map_batches(
                lambda sl: _one_batch(model, input[sl], tgt.subset(sl), layers, wrt_input),
                input.shape[0],
                batch_size=batch_size,
                grad=True,
                progress=progress,
                desc="gradients",
            )
        ]
    outputs = [p.outputs for p in parts]
    return Gradients(
        outputs=torch.cat(outputs) if all(o is not None for o in outputs) else None,  # type: ignore[arg-type]
        scores=torch.cat([p.scores for p in parts]),
        input_gradient=torch.cat([p.input_gradient for p in parts if p.input_gradient is not None])
        if wrt_input
        else None,
        activations={n: torch.cat([p.activations[n] for p in parts]) for n in layers},
        layer_gradients={n: torch.cat([p.layer_gradients[n] for p in parts]) for n in layers},
    )


def input_gradient(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """:math:`\\partial \\Phi_c / \\partial x`, shaped like ``input``."""
    grad = gradients(model, input, target, batch_size=batch_size, progress=progress).input_gradient
    assert grad is not None
    return grad


def layer_gradient(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    layer: str,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation of ``layer`` and the gradient of the target score with respect to it."""
    result = gradients(
        model,
        input,
        target,
        layers=[layer],
        wrt_input=False,
        batch_size=batch_size,
        progress=progress,
    )
    return result.activations[layer], result.layer_gradients[layer]
