"""Errors raised by convscope.

Every error names the problem and the fix in one message. They all derive from
:class:`ConvscopeError`, which is also a :class:`ValueError` (or :class:`LookupError`, ...)
so that generic ``except ValueError`` code written against PyTorch keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConvscopeError(Exception):
    """Base class of every error convscope raises on purpose."""


class InputError(ConvscopeError, ValueError):
    """An input tensor or argument has the wrong rank, shape, range, dtype or value."""


class LayerNotFoundError(ConvscopeError, KeyError):
    """A layer name does not name a module of the model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LayerReuseError(ConvscopeError, RuntimeError):
    """A hooked module ran more than once in one forward pass."""


class TargetError(ConvscopeError, ValueError):
    """A target does not fit the model's output."""


class ModelNotFoundError(ConvscopeError, LookupError):
    """A model name is not an embedded model, a torchvision architecture or a file."""


class WeightsError(ConvscopeError, OSError):
    """A weights file is missing, unreadable, corrupted or does not fit the architecture."""


class ImageReadError(ConvscopeError, OSError):
    """An image file is missing or cannot be decoded."""


class ResultFormatError(ConvscopeError, ValueError):
    """A saved result is missing, corrupted or of another result type."""


def closest_names(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates closest to ``name``.

    Close spellings come first (``difflib``); names that contain ``name`` or share its last
    dotted component fill the rest, so ``"conv"`` still suggests ``"features.conv1"``.
    """
    pool = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    leaf = name.rsplit(".", 1)[-1]
    for cand in pool:
        if len(close) >= n:
            break
        if cand not in close and (name in cand or (leaf and cand.rsplit(".", 1)[-1] == leaf)):
            close.append(cand)
    return close


def suggestion(name: str, candidates: Iterable[str], what: str = "names") -> str:
    """Format a 'did you mean' clause for an error message."""
    close = closest_names(name, candidates)
    if not close:
        return ""
    return f" Closest valid {what}: " + ", ".join(repr(c) for c in close) + "."
