"""One persistence for results, resume checkpoints and accumulator states: npz + json, atomic.

Everything convscope writes to disk is a pair of files ``<path>.npz`` (the arrays, read with
``allow_pickle=False``) and ``<path>.json`` (everything else, human-readable). :func:`write`
writes both to temporary files first and then renames them into place, the npz first and the
json last; the json records the SHA-256 digest of the npz it belongs to, so :func:`read`
recognises a pair whose writing was interrupted between the two renames and refuses it with
a clear error instead of mixing an old header with new arrays. Nothing is ever unpickled.

Nested state dicts (an accumulator's ``state_dict()``: tensors, dicts of tensors, numbers,
strings, lists) go through :func:`flatten_state` / :func:`unflatten_state`: tensors and
arrays become npz entries named by their key path (``"sums/aa"``), every other value stays in
the json tree, and reading gives back tensors as tensors and arrays as arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convscope.core.errors import ResultFormatError
from convscope.core.jsonable import to_jsonable

__all__ = ["flatten_state", "pair_paths", "read", "to_numpy", "unflatten_state", "write"]

_DIGEST_KEY = "npz_sha256"
_CHUNK = 1 << 22


def pair_paths(path: str | Path) -> tuple[Path, Path]:
    """``(<path>.npz, <path>.json)``; a given ``.npz`` or ``.json`` suffix is dropped first.

    Only those two are suffixes here: ``"resnet18.layer3"`` is a name, not a suffix.
    """
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def to_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    """A numpy view (CPU tensors) or copy (other devices) of a tensor or array."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.to(torch.float32)
        return value.cpu().numpy()
    return np.asarray(value)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write(
    path: str | Path,
    arrays: Mapping[str, torch.Tensor | np.ndarray],
    header: Mapping[str, Any],
    *,
    compress: bool = False,
) -> Path:
    """Write ``arrays`` and the JSON-able ``header`` atomically; return the npz path.

    Parameters
    ----------
    path
        File prefix (``.npz``/``.json`` suffixes are accepted and dropped).
    arrays
        Named arrays or tensors (stored as numpy arrays).
    header
        Everything else; converted with :func:`~convscope.core.jsonable.to_jsonable`.
    compress
        ``np.savez_compressed`` (results: smaller files) instead of ``np.savez``
        (checkpoints rewritten after every block: faster).
    """
    npz, js = pair_paths(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    tmp_npz = npz.with_name(npz.name + ".tmp.npz")
    tmp_js = js.with_name(js.name + ".tmp")
    data = {name: to_numpy(value) for name, value in arrays.items()}
    (np.savez_compressed if compress else np.savez)(tmp_npz, **data)  # type: ignore[arg-type]
    meta = dict(to_jsonable(dict(header)))
    meta[_DIGEST_KEY] = _file_digest(tmp_npz)
    tmp_js.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_npz, npz)
    os.replace(tmp_js, js)  # the pair is complete once this rename is done
    return npz


def read(path: str | Path, *, what: str = "file") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a pair written by :func:`write`: ``(arrays, header)``.

    Parameters
    ----------
    path
        File prefix.
    what
        What the file should hold, for the error messages (e.g. ``"SobolResult"``).

    Raises
    ------
    ResultFormatError
        A file is missing or unreadable, or the npz is not the one the json was written with
        (an interrupted write).
    """
    npz, js = pair_paths(path)
    for p in (npz, js):
        if not p.is_file():
            raise ResultFormatError(
                f"Cannot load {what}: {p} is missing. A saved {what} is a pair of files "
                "<name>.npz and <name>.json written together."
            )
    try:
        header = json.loads(js.read_text())
        if not isinstance(header, dict):
            raise ValueError("the json file does not hold an object")
        expected = header.pop(_DIGEST_KEY, None)
        if expected is not None and expected != _file_digest(npz):
            raise ResultFormatError(
                f"{npz} is not the array file {js} was written with (the writing was "
                f"interrupted, or one of the two files was replaced). Delete both and rerun."
            )
        with np.load(npz, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ResultFormatError:
        raise
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ResultFormatError(f"Cannot load {what} from {npz}: {exc}") from exc
    return arrays, header


def flatten_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor | np.ndarray], Any]:
    """Split a nested state into npz entries (tensors/arrays by key path) and a json tree.

    Tensors are recorded in the tree as ``{"__tensor__": key}`` and arrays as
    ``{"__array__": key}``, so :func:`unflatten_state` restores their types.
    """
    arrays: dict[str, torch.Tensor | np.ndarray] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            arrays[key] = value
            return {"__tensor__": key}
        if isinstance(value, np.ndarray):
            arrays[key] = value
            return {"__array__": key}
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if "/" in str(k):
                    raise ResultFormatError(f"State key {k!r} under {key!r} contains '/'.")
                out[str(k)] = walk(v, f"{key}/{k}" if key else str(k))
            return out
        return to_jsonable(value)

    return arrays, walk(state, "")


def unflatten_state(
    arrays: Mapping[str, np.ndarray], tree: Any, *, device: torch.device | str | None = None
) -> Any:
    """Inverse of :func:`flatten_state`; tensors are placed on ``device`` (default CPU)."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return torch.from_numpy(arrays[tree["__tensor__"]]).to(device or "cpu")
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: unflatten_state(arrays, v, device=device) for k, v in tree.items()}
    return tree
