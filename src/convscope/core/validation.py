"""Validation of arguments: one clear error per problem, naming the fix.

Every method validates its arguments with these functions, so that the same mistake gets the
same message everywhere: :func:`check_images` for image batches, and the scalar validators
:func:`number`, :func:`positive_number`, :func:`non_negative_number`, :func:`integer`,
:func:`positive_int`, :func:`non_negative_int`, :func:`fraction` and :func:`choice`. Each
returns the value converted to its Python type, and takes a ``hint`` appended to the message
(the paper's value, what 0 means, ...).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from convscope.core.errors import InputError

__all__ = [
    "RANGE_TOLERANCE",
    "check_images",
    "choice",
    "fraction",
    "integer",
    "non_negative_int",
    "non_negative_number",
    "number",
    "positive_int",
    "positive_number",
]


def _tail(hint: str) -> str:
    return f" {hint}" if hint else ""


def _is_int(value: Any) -> bool:
    # bool is an int subclass, numpy bools are not numbers.Integral: both are refused
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def number(value: Any, name: str, *, hint: str = "") -> float:
    """A finite real number (int, float or numpy scalar; not bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}.{_tail(hint)}")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name} must be finite, got {value!r}.{_tail(hint)}")
    return out


def positive_number(value: Any, name: str, *, hint: str = "") -> float:
    """A finite number > 0, as a float."""
    out = number(value, name, hint=hint)
    if out <= 0:
        raise InputError(f"{name} must be positive, got {value!r}.{_tail(hint)}")
    return out


def non_negative_number(value: Any, name: str, *, hint: str = "") -> float:
    """A finite number >= 0, as a float."""
    out = number(value, name, hint=hint)
    if out < 0:
        raise InputError(f"{name} must be 0 or more, got {value!r}.{_tail(hint)}")
    return out


def integer(value: Any, name: str, *, minimum: int | None = None, hint: str = "") -> int:
    """An int (Python or numpy; not bool) of at least ``minimum``, as an int."""
    if not _is_int(value):
        kind = "an int" if minimum is None else f"an int >= {minimum}"
        raise InputError(f"{name} must be {kind}, got {value!r}.{_tail(hint)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value!r}.{_tail(hint)}")
    return int(value)


def positive_int(value: Any, name: str, *, hint: str = "") -> int:
    """An int >= 1."""
    if not _is_int(value) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}.{_tail(hint)}")
    return int(value)


def non_negative_int(value: Any, name: str, *, hint: str = "") -> int:
    """An int >= 0."""
    if not _is_int(value) or value < 0:
        raise InputError(f"{name} must be an int >= 0, got {value!r}.{_tail(hint)}")
    return int(value)


def fraction(
    value: Any,
    name: str,
    *,
    include_low: bool = False,
    include_high: bool = True,
    hint: str = "",
) -> float:
    """A number in the unit interval, by default (0, 1]; the ends are chosen by the flags."""
    lo, hi = ("[" if include_low else "("), ("]" if include_high else ")")
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok:
        v = float(value)
        ok = (v >= 0.0 if include_low else v > 0.0) and (v <= 1.0 if include_high else v < 1.0)
    if not ok:
        raise InputError(f"{name} must be a number in {lo}0, 1{hi}, got {value!r}.{_tail(hint)}")
    return float(value)


def choice(value: Any, name: str, options: Sequence[str], *, hint: str = "") -> str:
    """One of ``options`` (strings); the message lists them."""
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise InputError(f"Unknown {name} {value!r}; use one of {listed}.{_tail(hint)}")
    return value


#: Values further than this outside [0, 1] trigger a warning about normalization.
RANGE_TOLERANCE = 1e-3


def check_images(x: Tensor, *, channels: int = 3, name: str = "input") -> Tensor:
    """Validate an image batch and return it unchanged.

    Parameters
    ----------
    x : torch.Tensor
        Expected: a finite floating ``N×C×H×W`` tensor with ``C == channels``, ``N, H, W >= 1``
        and values in ``[0, 1]``.
    channels : int, default 3
        Expected channel count.
    name : str, default "input"
        Name used in the messages (e.g. ``"baseline"``).

    Returns
    -------
    torch.Tensor
        ``x`` itself.

    Raises
    ------
    InputError
        ``x`` is not a tensor, not 4-D (a 3-D ``C×H×W`` image gets a ``x.unsqueeze(0)``
        suggestion), has the wrong channel count (channels-last gets a ``permute`` suggestion),
        is empty, is not floating (uint8 gets ``x.float() / 255``), or has NaN/inf values (the
        message counts them and gives the first index).

    Warns
    -----
    UserWarning
        Values are outside ``[0, 1]`` by more than ``1e-3``: images should stay in ``[0, 1]``
        and the model should carry its normalisation (:func:`convscope.data.with_normalization`).
    """
    if not isinstance(x, Tensor):
        hint = (
            f" Convert it with {name} = torch.from_numpy(...)."
            if type(x).__module__.startswith("numpy")
            else f" Convert it with torch.as_tensor({name})."
        )
        raise InputError(
            f"{name} must be a torch.Tensor of shape N×{channels}×H×W, got "
            f"{type(x).__name__}.{hint}"
        )
    shape = tuple(x.shape)
    if x.ndim != 4:
        if x.ndim == 3 and x.shape[0] == channels:
            fix = f"add the batch dimension: {name}.unsqueeze(0)"
        elif x.ndim == 3 and x.shape[-1] == channels:
            fix = f"it looks like one H×W×C image: {name}.permute(2, 0, 1).unsqueeze(0)"
        elif x.ndim == 2:
            fix = f"it looks like one grayscale H×W image: {name}[None, None]" + (
                f".expand(1, {channels}, -1, -1)" if channels != 1 else ""
            )
        else:
            fix = f"reshape it to N×{channels}×H×W"
        raise InputError(
            f"{name} must be a 4-D N×{channels}×H×W tensor, got a {x.ndim}-D tensor of shape "
            f"{shape}; {fix}."
        )
    if x.shape[1] != channels:
        if x.shape[-1] == channels:
            fix = f"it looks channels-last (N×H×W×C): use {name}.permute(0, 3, 1, 2)"
        elif x.shape[1] == 1:
            fix = f"repeat the grayscale channel: {name}.expand(-1, {channels}, -1, -1)"
        else:
            fix = f"pass {channels}-channel images"
        raise InputError(
            f"{name} must have {channels} channels (N×{channels}×H×W), got shape {shape}; {fix}."
        )
    if x.numel() == 0:
        raise InputError(
            f"{name} is empty (shape {shape}); pass at least one image with at least one pixel."
        )
    if not x.is_floating_point():
        if x.dtype == torch.uint8:
            fix = f"convert 0-255 images with {name}.float() / 255"
        elif x.dtype == torch.bool:
            fix = f"convert with {name}.float()"
        elif x.is_complex():
            fix = f"pass a real tensor, e.g. {name}.real or {name}.abs()"
        else:
            fix = f"convert with {name}.float() and scale the values to [0, 1]"
        raise InputError(
            f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}; {fix}."
        )
    data = x.detach()
    finite = torch.isfinite(data)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(data).sum())
        n_inf = int(torch.isinf(data).sum())
        first = tuple(int(i) for i in (~finite).nonzero()[0].tolist())
        raise InputError(
            f"{name} has {n_nan} NaN and {n_inf} inf values (first at index {first}); fix the "
            f"step that produced them, or replace them with torch.nan_to_num({name})."
        )
    lo, hi = float(data.min()), float(data.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        warnings.warn(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]. convscope expects "
            "images in [0, 1] with the normalisation inside the model: pass un-normalised images "
            "and wrap the model with convscope.data.with_normalization(model, mean, std).",
            UserWarning,
            stacklevel=2,
        )
    return x
