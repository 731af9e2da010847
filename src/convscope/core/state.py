"""Save and restore the train/eval mode and ``requires_grad`` flags of a model.

Methods that optimise masks or take gradients switch a model to eval mode and freeze its
parameters; :func:`preserved_state` guarantees the user gets the model back exactly as it was,
also when an exception escapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["inference_state", "preserved_state"]


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's ``training`` flag and every parameter's ``requires_grad`` on exit."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, requires_grad in flags:
            param.requires_grad_(requires_grad)


@contextmanager
def inference_state(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with frozen parameters; restore it on exit.

    Parameters are frozen so that gradients with respect to inputs or activations do not
    accumulate into ``param.grad`` and cost no extra memory.
    """
    with preserved_state(model):
        if eval_mode:
            model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        yield model
