"""Checkpoints of long computations done in groups: finished work survives an interruption.

A method that processes its work in independent groups (e.g. the image × area rows of
extremal perturbations) saves each finished group with :meth:`GroupCheckpoint.put`; a rerun
with the same inputs and settings finds it with :meth:`GroupCheckpoint.get` and only computes
the rest. The file pair ``<path>.npz`` / ``<path>.json`` is replaced atomically after every
group, holds arrays only (loaded with ``allow_pickle=False``) and a fingerprint of the run:
a checkpoint written by a different run is refused rather than silently mixed in.
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

from convscope.core.errors import InputError
from convscope.core.jsonable import to_jsonable

__all__ = ["GroupCheckpoint", "fingerprint"]


def fingerprint(*parts: Any) -> str:
    """A SHA-256 digest of tensors, arrays and JSON-able settings (order matters)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            digest.update(str((part.shape, part.dtype.str)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(to_jsonable(part), sort_keys=True).encode())
    return digest.hexdigest()


class GroupCheckpoint:
    """Finished groups of one run, saved after each group.

    Parameters
    ----------
    path
        File prefix; ``<path>.npz`` and ``<path>.json`` are written.
    run
        Fingerprint of the run (inputs and settings, see :func:`fingerprint`).
    """

    def __init__(self, path: str | Path, run: str) -> None:
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        self.npz = base.with_name(base.name + ".npz")
        self.meta = base.with_name(base.name + ".json")
        self.run = run
        self._arrays: dict[str, np.ndarray] = {}
        self._done: dict[int, list[str]] = {}
        if self.meta.is_file() and self.npz.is_file():
            header = json.loads(self.meta.read_text())
            if header.get("run") != run:
                raise InputError(
                    f"The checkpoint {self.meta} was written by a different run (other images, "
                    "targets or settings). Delete it, or pass another checkpoint path."
                )
            with np.load(self.npz, allow_pickle=False) as data:
                self._arrays = {key: data[key] for key in data.files}
            self._done = {int(g): list(names) for g, names in header["groups"].items()}

    @property
    def groups(self) -> list[int]:
        """Indices of the finished groups."""
        return sorted(self._done)

    def has(self, group: int) -> bool:
        """Whether ``group`` is finished."""
        return group in self._done

    def get(self, group: int) -> dict[str, np.ndarray]:
        """The arrays saved for ``group``."""
        return {name: self._arrays[f"{group}/{name}"] for name in self._done[group]}

    def put(self, group: int, arrays: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """Record a finished group and rewrite the checkpoint atomically."""
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            self._arrays[f"{group}/{name}"] = np.asarray(value)
        self._done[group] = list(arrays)
        self.npz.parent.mkdir(parents=True, exist_ok=True)
        tmp_npz = self.npz.with_name(self.npz.name + ".tmp.npz")
        np.savez(tmp_npz, **self._arrays)  # type: ignore[arg-type]
        os.replace(tmp_npz, self.npz)
        tmp_meta = self.meta.with_name(self.meta.name + ".tmp")
        tmp_meta.write_text(json.dumps({"run": self.run, "groups": self._done}))
        os.replace(tmp_meta, self.meta)
