"""Small helpers shared by the report modules: slugs, value formatting, JSON conversion."""

from __future__ import annotations

import datetime as _dt
import math
import re
import unicodedata
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from convscope.core.errors import InputError

__all__ = ["format_value", "is_number", "slugify", "to_jsonable"]

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


def slugify(text: str, fallback: str = "section") -> str:
    """Turn ``text`` into a lowercase ASCII slug made of ``[a-z0-9-]``.

    Parameters
    ----------
    text : str
        Any text, e.g. a section title.
    fallback : str, default "section"
        Returned when nothing is left of ``text`` (e.g. a title made only of symbols).

    Returns
    -------
    str
        The slug, never empty, safe in file names, URLs and HTML ``id`` attributes.

    Examples
    --------
    >>> slugify("Occlusion & RISE (ResNet-18)")
    'occlusion-rise-resnet-18'
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = _SLUG_STRIP.sub("-", ascii_text.lower()).strip("-")
    return slug[:80].strip("-") or fallback


def _scalar(value: Any) -> Any:
    """Unwrap numpy / torch scalars (and 0-d / 1-element arrays) into Python scalars."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return value.detach().cpu().reshape(()).item()
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_number(value: Any) -> bool:
    """Return True for real numbers (Python, numpy or 1-element torch), excluding bools."""
    value = _scalar(value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value: Any, float_format: str = ".4g") -> str:
    """Format a table cell as plain (not yet escaped) text.

    Parameters
    ----------
    value : Any
        Python, numpy or torch scalar, string, ``None`` or anything with a ``str``.
    float_format : str, default ".4g"
        A :func:`format` spec applied to floats (ints are printed exactly).

    Returns
    -------
    str
        ``""`` for ``None``, ``"nan"`` / ``"inf"`` for non-finite floats, comma-separated
        items for lists and tuples, else the formatted value.
    """
    value = _scalar(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        try:
            return format(value, float_format)
        except ValueError as exc:
            raise InputError(
                f"float_format {float_format!r} is not a valid format spec for floats "
                f"({exc}). Use e.g. '.3f' or '.4g'."
            ) from None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_item(v, float_format) for v in value)
    return str(value)


def _format_item(value: Any, float_format: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_item(v, float_format) for v in value) + "]"
    return format_value(value, float_format)


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
    value = _scalar(value)
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
