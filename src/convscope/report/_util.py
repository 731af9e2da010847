"""Small helpers shared by the report modules: slugs, value formatting, JSON conversion."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import numpy as np
import torch

from convscope.core.errors import InputError
from convscope.core.jsonable import scalar as _scalar
from convscope.core.jsonable import to_jsonable

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
