"""The data a similarity-overlay viewer reads: one JSON object (format version 1).

Arrays travel as base64 of their little-endian C-order bytes (embedded in the HTML file) or as
raw ``.bin`` files next to a ``manifest.json`` (served by ``convscope overlay serve``).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ARRAY_DTYPES",
    "COLORMAPS",
    "colormap_tables",
    "decode_array",
    "encode_array",
    "linked_array",
    "little_endian",
    "png_data_url",
]

ARRAY_DTYPES: dict[str, str] = {"float16": "<f2", "int16": "<i2", "uint8": "u1"}


def little_endian(array: npt.ArrayLike, dtype: str) -> np.ndarray:
    """The array as a C-ordered little-endian ``dtype`` array (the viewer's byte layout)."""
    if dtype not in ARRAY_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(ARRAY_DTYPES)}, got {dtype!r}.")
    return np.ascontiguousarray(np.asarray(array), dtype=ARRAY_DTYPES[dtype])


def encode_array(array: npt.ArrayLike, dtype: str) -> dict[str, Any]:
    """``{"dtype", "shape", "data"}``: the array as base64 little-endian bytes in C order."""
    arr = little_endian(array, dtype)
    return {
        "dtype": dtype,
        "shape": list(arr.shape),
        "data": base64.b64encode(arr.tobytes()).decode("ascii"),
    }


def linked_array(array: npt.ArrayLike, dtype: str, url: str) -> tuple[dict[str, Any], bytes]:
    """``({"dtype", "shape", "url"}, raw bytes)``: an array stored in a file next to the page."""
    arr = little_endian(array, dtype)
    return {"dtype": dtype, "shape": list(arr.shape), "url": url}, arr.tobytes()


def png_data_url(png: bytes) -> str:
    """A ``data:`` URL embedding PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_array(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array` (embedded form)."""
    raw = base64.b64decode(encoded["data"])
    return np.frombuffer(raw, dtype=ARRAY_DTYPES[encoded["dtype"]]).reshape(encoded["shape"])


#: Colour maps shipped with every viewer: grayscale is the original's (brighter = more similar);
#: coolwarm is the diverging map for signed similarities.
COLORMAPS: tuple[str, ...] = ("gray", "viridis", "magma", "coolwarm")


def colormap_tables(names: tuple[str, ...] = COLORMAPS) -> dict[str, dict[str, Any]]:
    """256-entry uint8 RGB lookup tables of matplotlib colour maps, encoded for the viewer."""
    from matplotlib import colormaps

    levels = np.linspace(0.0, 1.0, 256)
    tables: dict[str, dict[str, Any]] = {}
    for name in names:
        rgba = colormaps[name](levels)
        tables[name] = encode_array(np.round(rgba[:, :3] * 255.0).astype(np.uint8), "uint8")
    return tables
