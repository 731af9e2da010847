"""convscope: understand convolutional neural networks.

Attribution by perturbation, variance-based sensitivity of outputs and internal activations,
layer-wise influence, concepts and representation scores, on any PyTorch CNN, with a
procedural ground-truth image world and small trained models embedded for offline use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from convscope.models import load_model


def __getattr__(name: str) -> Any:
    # Lazy, so `import convscope` stays fast and the CLI starts quickly.
    if name == "load_model":
        from convscope.models import load_model

        return load_model
    raise AttributeError(f"module 'convscope' has no attribute {name!r}")
