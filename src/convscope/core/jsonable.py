"""Conversion of results and summaries to plain JSON values (no pickle anywhere)."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from convscope.core.errors import InputError

__all__ = ["scalar", "to_jsonable"]


def scalar(value: Any) -> Any:
    """Unwrap numpy / torch scalars and 0-d arrays into Python scalars (shapes are kept)."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return value.detach().cpu().item()
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_jsonable(value: Any, path: str = "summary") -> Any:
    """Convert ``value`` into plain JSON-serialisable Python objects.

    numpy / torch scalars become ``int`` / ``float`` / ``bool``; arrays and tensors become
    (nested) lists; non-finite floats (NaN, ±inf) become ``None`` (JSON ``null``); tuples and
    sets become lists; paths become strings; datetimes ISO strings; mapping keys strings.

    Parameters
    ----------
    value : Any
        The object to convert.
    path : str, default "summary"
        Where ``value`` sits, used in error messages.

    Returns
    -------
    Any
        A structure made of dict, list, str, int, float, bool and None only.

    Raises
    ------
    InputError
        If an object of an unsupported type is found (its location is named).
    """
    value = scalar(value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist(), path)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), path)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, f"{path}[...]") for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    raise InputError(
        f"{path} holds a {type(value).__name__}, which cannot be written to summary.json. "
        "Use numbers, strings, bools, None, lists, dicts, numpy arrays or tensors."
    )
