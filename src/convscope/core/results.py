"""Base class of every convscope result: arrays plus the settings that produced them.

A result is a dataclass. :meth:`Result.save` writes ``<path>.npz`` holding every array field
(torch tensors are stored as numpy arrays, dicts of arrays as ``field/key`` entries) and
``<path>.json`` holding every other field and the result type; nothing is pickled, and
:meth:`Result.load` refuses a file written for another result type.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from convscope.core import persist
from convscope.core.errors import ResultFormatError
from convscope.core.jsonable import to_jsonable

__all__ = ["Result", "to_jsonable"]

R = TypeVar("R", bound="Result")

_FORMAT_VERSION = 1


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _is_array_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(_is_array(v) for v in value.values())


@dataclasses.dataclass
class Result:
    """Base result: subclasses are dataclasses whose array fields are tensors or arrays.

    Tensors come back from :meth:`load` as tensors and numpy arrays as numpy arrays.
    """

    def save(self, path: str | Path) -> Path:
        """Write ``path.npz`` (arrays) and ``path.json`` (settings); return the npz path."""
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if _is_array(value):
                arrays[f.name] = persist.to_numpy(value)
                kinds[f.name] = "tensor" if isinstance(value, torch.Tensor) else "array"
            elif _is_array_dict(value):
                for key, item in value.items():
                    if "/" in str(key):
                        raise ResultFormatError(f"Key {key!r} of field {f.name!r} contains '/'.")
                    arrays[f"{f.name}/{key}"] = persist.to_numpy(item)
                kinds[f.name] = (
                    "tensor_dict"
                    if any(isinstance(v, torch.Tensor) for v in value.values())
                    else "array_dict"
                )
                meta[f.name] = list(value.keys())
            else:
                meta[f.name] = to_jsonable(value)
        header = {
            "result_type": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "kinds": kinds,
            "fields": meta,
        }
        return persist.write(path, arrays, header, compress=True)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save` (no pickle is ever loaded)."""
        _, json_path = persist.pair_paths(path)
        arrays, header = persist.read(path, what=cls.__name__)
        if header.get("result_type") != cls.__name__:
            raise ResultFormatError(
                f"{json_path} holds a {header.get('result_type')!r}, not a {cls.__name__}. "
                f"Load it with {header.get('result_type')}.load."
            )
        kinds: dict[str, str] = header["kinds"]
        fields_meta: dict[str, Any] = header["fields"]
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kind = kinds.get(f.name)
            if kind in ("tensor", "array"):
                arr = arrays[f.name]
                values[f.name] = torch.from_numpy(arr) if kind == "tensor" else arr
            elif kind in ("tensor_dict", "array_dict"):
                values[f.name] = {
                    key: torch.from_numpy(arrays[f"{f.name}/{key}"])
                    if kind == "tensor_dict"
                    else arrays[f"{f.name}/{key}"]
                    for key in fields_meta[f.name]
                }
            elif f.name in fields_meta:
                values[f.name] = cls._restore_field(f.name, fields_meta[f.name])
        return cls(**values)

    @classmethod
    def _restore_field(cls, name: str, value: Any) -> Any:
        """Turn a JSON value back into the field's type (lists become tuples by default)."""
        return tuple(value) if isinstance(value, list) else value
