r"""Excitation backprop and its contrastive variant (Zhang et al., ECCV 2016).

Excitation backprop models top-down attention as a probabilistic winner-take-all process.
Every neuron :math:`a_i` of a layer has a *marginal winning probability* (MWP)
:math:`P(a_i)`; the output units receive the top-down prior (one-hot on the target class)
and each layer passes its MWP down to the layer below with

.. math::

    P(a_i) = \sum_j P(a_i \mid a_j)\, P(a_j), \qquad
    P(a_i \mid a_j) = \frac{a_i\, w^+_{ij}}{\sum_{i'} a_{i'}\, w^+_{i'j}},
    \qquad w^+_{ij} = \max(w_{ij}, 0),

where :math:`j` runs over the units of the layer above that :math:`a_i` feeds. Only
excitatory connections (:math:`w_{ij} > 0`) carry probability; biases are ignored. The rule
assumes non-negative inputs :math:`a_i` (outputs of a ReLU or of a pooling of ReLUs), which is
why the maps are read at an intermediate layer (``layer``) and not at the normalised image.
The probabilities sum to one at every layer: :math:`\sum_i P(a_i) = \sum_j P(a_j)` whenever
every denominator is positive.

Writing :math:`z = W^+ a` and :math:`\hat p = p \oslash z`, the rule is
:math:`p' = a \odot W^{+\top} \hat p`: a vector-Jacobian product of the positive part of the
layer. It is implemented as a replacement backward for each layer, attached with forward
hooks inside a context manager (always removed on exit), so ordinary autograd carries the
MWP from the target score down to ``layer``:

* ``nn.Conv1d/2d/3d`` and ``nn.Linear``: the rule above, with :math:`W^+`;
* ``nn.AvgPool*`` and ``nn.AdaptiveAvgPool*``: linear layers with positive weights, same rule;
* ``nn.MaxPool*``: winner-take-all, which is the ordinary gradient (it routes to the argmax);
* ``nn.ReLU`` and other element-wise or reshaping operations: the ordinary gradient. A unit
  with zero activation has zero MWP (the factor :math:`a_i`), so masking it changes nothing;
* ``nn.BatchNorm*`` (eval mode) is a per-channel affine map :math:`\gamma_j/\sigma_j\,x + c`.
  It is *folded* into the convolution or linear layer that feeds it: the effective weights
  are :math:`w_{ij}\gamma_j/\sigma_j`, whose positive part is :math:`|\gamma_j|/\sigma_j\,
  w^{\pm}_{ij}`; the positive scale cancels in the normalisation, so the layer uses
  :math:`W^+` for channels with :math:`\gamma_j > 0` and :math:`W^- = \max(-W, 0)` for
  channels with :math:`\gamma_j < 0`. The MWP itself passes through unchanged. (TorchRay
  passes the MWP through batch norm and ignores the sign of :math:`\gamma`; the two agree
  when every :math:`\gamma_j > 0`.) A batch norm not fed directly by a hooked layer only
  passes the MWP through.

Limitations: the rules act on the modules listed; functional calls (``F.conv2d`` inside a
``forward``) and residual additions use their ordinary gradient, so for a ResNet the MWP is
copied into both branches of a skip connection and no longer sums to one.

**Contrastive excitation backprop** (Zhang et al., §3.3) makes the map discriminative. For the
target unit a *dual* unit is built by negating its classifier weights (its excitatory
connections are the target's inhibitory ones). The contrastive MWP is the target's MWP minus
the dual's, formed at a ``contrast_layer`` and propagated down to ``layer`` with the usual
rules. Below the classifier every rule is linear in the top-down signal, so the difference
can be taken at any layer between ``layer`` and the classifier with the same result; by
default it is taken at ``layer`` itself. The map keeps the positive part of the channel sum
(``clamp=True``, as in the paper's figures and TorchRay); without the clamp it sums to
:math:`1 - 1 = 0` over the layer.

Reference: J. Zhang, Z. Lin, J. Brandt, X. Shen, S. Sclaroff, *Top-down Neural Attention by
Excitation Backprop*, ECCV 2016 (arXiv:1608.00507).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from convscope.core.batching import batch_slices
from convscope.core.device import to_model
from convscope.core.errors import InputError, TargetError
from convscope.core.hooks import Activations, default_layer, probe
from convscope.core.layers import resolve_layer
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images

__all__ = ["contrastive_excitation_backprop", "excitation_backprop"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Rule:
    """The excitation rule of one call of one layer (state read at backward time)."""

    def __init__(self, module: nn.Module, output: torch.Tensor) -> None:
        self.module = module
        self.output: torch.Tensor | None = output
        self.sign: torch.Tensor | None = None  # per output channel, from a folded batch norm
        self.negate = False  # the dual unit of contrastive EBP
        self.backward_calls = 0

    def positive_part(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`W^+ x` without bias (the layer restricted to its excitatory weights)."""
        module = self.module
        if isinstance(module, _POOL):
            return module.forward(x)  # not module(x): the hooks are still in place
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        if self.negate:
            weight = -weight
        if self.sign is not None:
            shape = (-1,) + (1,) * (weight.ndim - 1)
            weight = weight * self.sign.view(shape).to(weight.dtype)
        weight = weight.clamp(min=0)
        if isinstance(module, nn.Linear):
            return F.linear(x, weight)
        assert isinstance(module, _CONV)
        return module._conv_forward(x, weight, None)


class _Excite(torch.autograd.Function):
    """Forward: the layer's own output. Backward: the excitation backprop rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rule: _Rule) -> torch.Tensor:
        ctx.excitation_rule = rule
        ctx.save_for_backward(x)
        assert rule.output is not None
        output, rule.output = rule.output, None  # no reference cycle through the rule
        return output

    @staticmethod
    def backward(ctx: Any, p: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        rule: _Rule = ctx.excitation_rule
        rule.backward_calls += 1
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            z = rule.positive_part(xd)
            positive = z > 0
            # A unit with no excitatory input passes nothing down (its mass is lost).
            p_hat = torch.where(positive, p / torch.where(positive, z, 1.0), 0.0)
            (back,) = torch.autograd.grad(z, xd, p_hat)
        return x * back, None


class _PassThrough(torch.autograd.Function):
    """Forward: the layer's own output. Backward: the MWP unchanged (batch norm)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output.clone()

    @staticmethod
    def backward(ctx: Any, p: torch.Tensor) -> tuple[torch.Tensor, None]:
        return p, None


def _source_rule(x: torch.Tensor) -> _Rule | None:
    """The rule of the hooked layer whose output ``x`` is (through probe clones), if any."""
    node = x.grad_fn
    while node is not None:
        rule = getattr(node, "excitation_rule", None)
        if isinstance(rule, _Rule):
            return rule
        if type(node).__name__ != "CloneBackward0":
            return None
        node = node.next_functions[0][0]
    return None


class _Session:
    """The rules created during the forward passes of one ``_excitation_rules`` block."""

    def __init__(self) -> None:
        self.rules: dict[nn.Module, list[_Rule]] = {}

    def set_negate(self, module: nn.Module, negate: bool) -> None:
        for rule in self.rules.get(module, []):
            rule.negate = negate

    def backward_calls(self, module: nn.Module) -> int:
        return sum(rule.backward_calls for rule in self.rules.get(module, []))

    def linear_hook(self, module: nn.Module, args: Any, output: Any) -> torch.Tensor | None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
            return None
        if not x.requires_grad:
            return None  # below the saliency layer: nothing flows back here
        rule = _Rule(module, output.detach())
        self.rules.setdefault(module, []).append(rule)
        out: torch.Tensor = _Excite.apply(x, rule)
        return out

    def norm_hook(self, module: nn.Module, args: Any, output: Any) -> torch.Tensor | None:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
            return None
        if not x.requires_grad:
            return None
        source = _source_rule(x)
        if source is not None and not isinstance(source.module, _POOL):
            assert isinstance(module, nn.modules.batchnorm._BatchNorm)
            if module.weight is not None:
                source.sign = torch.sign(module.weight.detach())
        out: torch.Tensor = _PassThrough.apply(x, output.detach())
        return out


@contextmanager
def _excitation_rules(model: nn.Module) -> Iterator[_Session]:
    """Give the model's conv, linear, average-pool and batch-norm modules EBP backward rules."""
    session = _Session()
    handles: list[RemovableHandle] = []
    try:
        for module in model.modules():
            if isinstance(module, (*_CONV, nn.Linear, *_POOL)):
                handles.append(module.register_forward_hook(session.linear_hook))
            elif isinstance(module, _NORM):
                handles.append(module.register_forward_hook(session.norm_hook))
        yield session
    finally:
        for handle in handles:
            handle.remove()


def _saliency_layer(model: nn.Module, layer: str | None, input: torch.Tensor) -> str:
    if layer is not None:
        resolve_layer(model, layer)
        return layer
    return default_layer(model, (input.shape[2], input.shape[3]))


def _classifier(model: nn.Module, name: str | None) -> nn.Module:
    if name is not None:
        module = resolve_layer(model, name)
        if not isinstance(module, (nn.Linear, *_CONV)):
            raise InputError(
                f"classifier_layer {name!r} is a {type(module).__name__}; it must be the "
                "nn.Linear (or convolution) that computes the class scores."
            )
        return module
    last = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONV)):
            last = module
    if last is None:
        raise InputError(
            f"{type(model).__name__} has no nn.Linear or convolution to use as the classifier; "
            "pass classifier_layer= explicitly."
        )
    return last


def _check_map(acts: Activations, name: str, method: str) -> torch.Tensor:
    act = acts[name]
    if act.ndim != 4:
        raise InputError(
            f"{method} needs a layer with an N×C×h×w output; {name!r} gives shape "
            f"{tuple(act.shape)}. Pick a convolutional layer (convscope.attribution."
            "default_layer(model) finds the last one)."
        )
    return act


def _differentiable(scores: torch.Tensor) -> torch.Tensor:
    if not scores.requires_grad:
        raise TargetError(
            "The target scores do not depend differentiably on the layer (e.g. an argmax in a "
            "callable target, or a layer after the output). Pass a class index or a "
            "differentiable score."
        )
    return scores


def _to_map(mwp: torch.Tensor, size: tuple[int, int], upsample: bool) -> torch.Tensor:
    saliency = mwp.sum(1, keepdim=True)
    if upsample and tuple(saliency.shape[-2:]) != size:
        saliency = F.interpolate(saliency, size=size, mode="bilinear", align_corners=False)
    return saliency.detach()


def _run(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    batch_size: int | None,
    one_batch: Callable[[torch.Tensor, Target], torch.Tensor],
) -> torch.Tensor:
    check_images(input)
    if torch.is_inference_mode_enabled():
        raise InputError(
            "Excitation backprop uses autograd and cannot run inside torch.inference_mode(); "
            "call it outside."
        )
    tgt = check_target_count(target, input.shape[0])
    maps = []
    with inference_state(model), torch.enable_grad():
        for sl in batch_slices(input.shape[0], batch_size):
            maps.append(one_batch(to_model(input[sl], model), tgt.subset(sl)))
    return torch.cat(maps)


def excitation_backprop(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    layer: str | None = None,
    upsample: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Excitation backprop maps: the marginal winning probability at ``layer``.

    The map is :math:`\sum_k P(a_{k,u})` over the channels :math:`k` of ``layer`` at each
    position :math:`u`, for the prior :math:`P = 1` on the target unit (see the module
    docstring for the rules). It sums to one over the layer for a class-index target.

    Parameters
    ----------
    model, input, target
        Model taking [0, 1] images, N×3×H×W images, and the target (class index, per-sample
        indices or callable). For a callable target the top-down signal at the outputs is the
        gradient of the score with respect to them (one-hot for ``out[:, c]``); EBP's
        probabilistic reading needs it non-negative.
    layer
        Dotted name of the saliency layer, whose output must be N×C×h×w and non-negative
        (default: :func:`~convscope.attribution.default_layer`, e.g. ``features`` of the
        shapes CNN). TorchRay uses ``features.23`` (pool4) of VGG16 and ``layer3`` of ResNet50.
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
    Zhang et al., *Top-down Neural Attention by Excitation Backprop*, ECCV 2016.
    """
    name = _saliency_layer(model, layer, input)
    size = (input.shape[2], input.shape[3])

    def one_batch(x: torch.Tensor, tgt: Target) -> torch.Tensor:
        with _excitation_rules(model), probe(model, record=[name], detach=False) as acts:
            scores = _differentiable(resolve_target(tgt, model(x), n=x.shape[0]))
            act = _check_map(acts, name, "Excitation backprop")
            (mwp,) = torch.autograd.grad(scores.sum(), act)
        return _to_map(mwp, size, upsample)

    return _run(model, input, target, batch_size, one_batch)


def contrastive_excitation_backprop(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    layer: str | None = None,
    contrast_layer: str | None = None,
    classifier_layer: str | None = None,
    clamp: bool = True,
    upsample: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor:
    r"""Contrastive excitation backprop maps (Zhang et al., 2016, §3.3).

    With :math:`P_c` the MWP for the target and :math:`P_{\bar c}` the MWP for its dual unit
    (the classifier's weights negated, so that its excitatory inputs are the target's
    inhibitory ones), both computed down to ``contrast_layer``, the contrastive signal
    :math:`P_c - P_{\bar c}` is propagated down to ``layer`` with the excitation rules and
    the map is :math:`\max(\sum_k (P_c - P_{\bar c})_{k,u}, 0)` (``clamp=True``).

    Parameters
    ----------
    model, input, target
        As in :func:`excitation_backprop`.
    layer
        Saliency layer (default: :func:`~convscope.attribution.default_layer`).
    contrast_layer
        Layer where the dual's MWP is subtracted; it must lie between ``layer`` and the
        classifier (TorchRay: ``classifier.4``, relu7, of VGG16; ``avgpool`` of ResNet50).
        EBP is linear in the top-down signal below the classifier, so every valid choice gives
        the same map; the default subtracts at ``layer``.
    classifier_layer
        The nn.Linear (or convolution) computing the class scores, whose weights the dual unit
        negates (default: the model's last nn.Linear or convolution).
    clamp
        Keep the positive part of the map. Without it the map sums to 0 over the layer (both
        MWPs sum to 1).
    upsample, batch_size
        As in :func:`excitation_backprop`.

    Returns
    -------
    torch.Tensor
        N×1×H×W maps (N×1×h×w if ``upsample=False``) on the model's device.
    """
    name = _saliency_layer(model, layer, input)
    if contrast_layer is not None:
        resolve_layer(model, contrast_layer)
    classifier = _classifier(model, classifier_layer)
    size = (input.shape[2], input.shape[3])
    record = [name] if contrast_layer in (None, name) else [name, contrast_layer]

    def one_batch(x: torch.Tensor, tgt: Target) -> torch.Tensor:
        with _excitation_rules(model) as session, probe(model, record=record, detach=False) as acts:
            scores = _differentiable(resolve_target(tgt, model(x), n=x.shape[0]))
            act = _check_map(acts, name, "Contrastive excitation backprop")
            top = acts[record[-1]]
            if classifier not in session.rules:
                raise InputError(
                    f"The classifier layer ({type(classifier).__name__}) did not run after "
                    f"layer {name!r}; pass classifier_layer= naming the layer that computes the "
                    "class scores."
                )
            session.set_negate(classifier, True)
            calls = session.backward_calls(classifier)
            (dual,) = torch.autograd.grad(scores.sum(), top, retain_graph=True, allow_unused=True)
            if dual is None or session.backward_calls(classifier) == calls:
                raise InputError(
                    f"contrast_layer {record[-1]!r} does not lie below the classifier layer; "
                    "pass a layer between `layer` and the classifier, e.g. the classifier's "
                    "input."
                )
            session.set_negate(classifier, False)
            (own,) = torch.autograd.grad(scores.sum(), top, retain_graph=len(record) > 1)
            contrast = own - dual
            if len(record) > 1:
                (contrast,) = torch.autograd.grad(top, act, contrast, allow_unused=True)
                if contrast is None:
                    raise InputError(
                        f"contrast_layer {record[-1]!r} must come after layer {name!r} in the "
                        "forward pass."
                    )
        saliency = _to_map(contrast, size, upsample)
        return saliency.clamp(min=0) if clamp else saliency

    return _run(model, input, target, batch_size, one_batch)
