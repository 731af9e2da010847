"""Record and edit layer activations during a forward pass, as context managers.

Forward hooks are registered on entry and always removed on exit, also when an exception
escapes, so a model never keeps a stray hook::

    with record_activations(model, ["layer2", "layer3"]) as acts:
        model(images)
    acts["layer3"]            # N x C x H x W, cloned and detached

    with edit_activations(model, {"layer3": lambda a: a * mask}):
        masked_logits = model(images)

Captured tensors are cloned, so an in-place operation after the layer (``ReLU(inplace=True)``)
cannot change what was recorded. When gradients are needed (``detach=False``) the recorded
tensor is the layer's own output, and the layer passes a clone downstream: an in-place
operation then modifies the clone, and ``torch.autograd.grad(score, acts[name])`` is exactly
the gradient with respect to the layer's output.

A module that runs more than once in one forward pass (a ``ReLU`` object reused at several
depths, a weight-shared block) has no single activation: the hooks detect the second call and
raise :class:`~convscope.core.errors.LayerReuseError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from convscope.core.device import to_model
from convscope.core.errors import InputError, LayerNotFoundError, LayerReuseError
from convscope.core.layers import resolve_layer, resolve_layers
from convscope.core.model_info import model_info
from convscope.core.state import inference_state

__all__ = [
    "Activations",
    "EditFunction",
    "default_layer",
    "edit_activations",
    "probe",
    "record_activations",
]

EditFunction = Callable[[torch.Tensor], torch.Tensor]


class Activations(Mapping[str, torch.Tensor]):
    """The activations recorded during the last forward pass, by layer name."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = list(names)
        self._values: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise LayerNotFoundError(
                f"{name!r} was not recorded; recorded layers: {self._names}. Add it to the "
                "layers passed to record_activations/probe."
            )
        if name not in self._values:
            raise LayerNotFoundError(
                f"Layer {name!r} has not run yet: call the model inside the `with` block, or "
                "check that the layer is on the model's forward path (`convscope layers MODEL` "
                "lists the layers that run)."
            )
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(n for n in self._names if n in self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shapes = {n: tuple(v.shape) for n, v in self._values.items()}
        return f"Activations({shapes})"

    def clear(self) -> None:
        """Forget the recorded tensors (done automatically at every new forward pass)."""
        self._values.clear()


def _check_output(name: str, output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise InputError(
            f"Layer {name!r} returns {type(output).__name__}, not a tensor; convscope probes "
            "layers that return a single tensor. Pick a submodule that does."
        )
    return output


@contextmanager
def probe(
    model: nn.Module,
    record: Sequence[str] | str = (),
    edit: Mapping[str, EditFunction] | None = None,
    *,
    detach: bool = True,
) -> Iterator[Activations]:
    """Record some layers and edit others in the same forward passes.

    Parameters
    ----------
    model
        The model; hooks are removed on exit.
    record
        Names of the layers whose outputs are recorded. A layer that is also edited is
        recorded after the edit.
    edit
        ``{layer name: function}``; each function maps the layer's output to the tensor passed
        on to the rest of the network.
    detach
        Record detached clones (``True``, no graph kept) or graph-connected tensors usable with
        ``torch.autograd.grad`` (``False``).

    Yields
    ------
    Activations
        Mapping from layer name to the tensor recorded in the latest forward pass.
    """
    edit = dict(edit or {})
    record_modules = resolve_layers(model, record) if record else {}
    edit_modules = {name: resolve_layer(model, name) for name in edit}
    for name, fn in edit.items():
        if not callable(fn):
            raise InputError(f"The edit for layer {name!r} must be a function tensor -> tensor.")
    acts = Activations(list(record_modules))
    calls: dict[str, int] = {}
    depth = [0]  # nesting of calls of the root model: a pass is one outermost call
    handles: list[RemovableHandle] = []

    def start_pass(_module: nn.Module, _args: Any) -> None:
        depth[0] += 1
        if depth[0] == 1:
            calls.clear()
            acts.clear()

    def end_pass(_module: nn.Module, _args: Any, _output: Any) -> None:
        depth[0] -= 1

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], torch.Tensor | None]:
        fn = edit.get(name)
        recorded = name in record_modules

        def hook(_module: nn.Module, _args: Any, output: Any) -> torch.Tensor | None:
            # Outside a call of the root model (a submodule called directly) each call is its
            # own pass; inside one, a second call of the same module is a reuse.
            calls[name] = calls.get(name, 0) + 1 if depth[0] > 0 else 1
            if calls[name] > 1:
                raise LayerReuseError(
                    f"Layer {name!r} ran {calls[name]} times in one forward pass (a module "
                    "object reused at several places, e.g. one ReLU for every block), so it has "
                    "no single activation. Give each use its own module, or probe a layer "
                    "that runs once."
                )
            out = _check_output(name, output)
            if fn is not None:
                out = fn(out)
                if not isinstance(out, torch.Tensor):
                    raise InputError(
                        f"The edit function for layer {name!r} returned "
                        f"{type(out).__name__}; it must return a tensor."
                    )
            if not recorded:
                return out if fn is not None else None
            if detach:
                acts._values[name] = out.detach().clone()
                return out if fn is not None else None
            if not out.requires_grad:
                out = out.detach().requires_grad_(True)
            acts._values[name] = out
            return out.clone()

        return hook

    try:
        handles.append(model.register_forward_pre_hook(start_pass))
        handles.append(model.register_forward_hook(end_pass, always_call=True))
        for name, module in {**record_modules, **edit_modules}.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_activations(
    model: nn.Module, layers: Sequence[str] | str, *, detach: bool = True
) -> Iterator[Activations]:
    """Record the outputs of ``layers`` in every forward pass run inside the block.

    See :func:`probe` for the parameters; ``detach=False`` keeps the graph for gradients.
    """
    with probe(model, record=layers, detach=detach) as acts:
        yield acts


@contextmanager
def edit_activations(model: nn.Module, edits: Mapping[str, EditFunction]) -> Iterator[None]:
    """Replace the output ``a`` of each named layer by ``edits[name](a)`` inside the block.

    Used for masking, ablation and channel perturbation, e.g.
    ``edit_activations(model, {"layer3": lambda a: a * channel_mask[:, :, None, None]})``.
    """
    if not edits:
        raise InputError("edit_activations needs at least one {layer name: function} pair.")
    with probe(model, edit=edits):
        yield


@dataclass(frozen=True)
class LayerCall:
    """How a module ran in one forward pass: its output shape and how many times it ran."""

    shape: tuple[int, ...] | None
    calls: int


def layer_calls(model: nn.Module, input: torch.Tensor) -> dict[str, LayerCall]:
    """Run ``model(input)`` once and report every submodule's output shape and call count.

    The model runs in eval mode (its mode is restored), without gradients, with ``input``
    moved to its device and dtype. The result is ordered by the time each module finished
    its first call. Unlike :func:`probe`, modules that run several times are not refused but counted
    (``calls > 1``: such a module cannot be probed); modules that do not run are absent, and
    modules returning something other than a tensor have ``shape=None``. All hooks are removed
    on exit.
    """
    seen: dict[str, LayerCall] = {}
    handles: list[RemovableHandle] = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            previous = seen.get(name)
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            seen[name] = LayerCall(
                shape if previous is None else previous.shape,
                1 if previous is None else previous.calls + 1,
            )

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        with inference_state(model), torch.no_grad():
            model(to_model(input, model))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def last_spatial_layer(model: nn.Module, input_size: tuple[int, int] = (224, 224)) -> str:
    """The last layer (in order of completion) with an N×C×h×w output, h·w > 1, run once.

    For torchvision's ResNets this is ``layer4``, for the shapes CNN ``features``: the usual
    choice for Grad-CAM. Found by one forward pass of an ``input_size`` image.

    Raises
    ------
    InputError
        If no layer has a spatial output that runs exactly once.
    """
    x = torch.full((1, 3, *input_size), 0.5)
    calls = layer_calls(model, x)
    spatial = [
        name
        for name, call in calls.items()
        if call.calls == 1
        and call.shape is not None
        and len(call.shape) == 4
        and call.shape[2] * call.shape[3] > 1
    ]
    if not spatial:
        raise InputError(
            f"{type(model).__name__} has no layer with an N×C×h×w output (h·w > 1) that runs "
            "once per forward pass. Pass layer= explicitly."
        )
    return spatial[-1]


def default_layer(model: nn.Module, input_size: tuple[int, int] | None = None) -> str:
    """The layer a model's metadata recommends for Grad-CAM, else its last spatial layer.

    The recommendation is ``default_layer`` of the model's
    :class:`~convscope.core.model_info.ModelInfo`. The last spatial layer is the last module
    with an N×C×h×w output (h·w > 1) that runs once per forward pass
    (:func:`last_spatial_layer`), e.g. ``layer4`` of a ResNet, probed at ``input_size``
    (default: the model's ``input_size``, else 224×224).
    """
    info = model_info(model)
    if info is not None and info.default_layer:
        return str(info.default_layer)
    if input_size is None:
        side = (info.input_size if info is not None else None) or 224
        input_size = (side, side)
    return last_spatial_layer(model, input_size)
