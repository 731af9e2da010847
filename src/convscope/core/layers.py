"""Resolve layers of a model by their dotted module name.

Layers are named as in ``model.named_modules()`` (``"layer3.1.conv2"``). A model wrapped by
:func:`convscope.data.with_normalization` keeps its inner names reachable without the
``model.`` prefix, so ``"layer3"`` and ``"model.layer3"`` name the same module.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from convscope.core.errors import InputError, LayerNotFoundError, suggestion

__all__ = ["layer_names", "resolve_layer", "resolve_layers"]

#: Prefixes tried when a name is not found as given: the wrapper of ``with_normalization``.
_WRAPPER_PREFIXES = ("model.",)


def layer_names(model: nn.Module, *, leaves_only: bool = False) -> list[str]:
    """List the dotted names of every submodule of ``model`` (the root excluded).

    Parameters
    ----------
    model
        Any ``nn.Module``.
    leaves_only
        Only modules without children (convolutions, activations, ...).
    """
    return [
        name
        for name, module in model.named_modules()
        if name and (not leaves_only or not any(True for _ in module.children()))
    ]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule of ``model`` called ``name``.

    Raises
    ------
    LayerNotFoundError
        If no submodule has that name; the message lists the closest valid names.
    """
    if not isinstance(name, str):
        raise InputError(
            f"A layer is named by a string such as 'layer3.1.conv2', got {type(name).__name__}. "
            "List the valid names with convscope.core.layer_names(model)."
        )
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    for prefix in _WRAPPER_PREFIXES:
        if prefix + name in modules:
            return modules[prefix + name]
    names = [n for n in modules if n]
    for prefix in _WRAPPER_PREFIXES:
        inner = [n.removeprefix(prefix) for n in names if n.startswith(prefix)]
        if inner and not name.startswith(prefix):
            names = inner  # suggest names in the form the user wrote them
    raise LayerNotFoundError(
        f"Model {type(model).__name__} has no layer named {name!r}."
        + suggestion(name, names, "layer names")
        + " List them all with convscope.core.layer_names(model) or `convscope layers MODEL`."
    )


def resolve_layers(model: nn.Module, names: str | Sequence[str]) -> dict[str, nn.Module]:
    """Resolve several layer names at once, keeping their order; duplicates are refused."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise InputError("No layer given: pass at least one layer name such as 'layer3'.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"Layer names given twice: {duplicates}. Pass each layer once.")
    return {name: resolve_layer(model, name) for name in names}
