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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convscope.core import persist
from convscope.core.errors import InputError
from convscope.core.fingerprint import RunFingerprint
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
        File prefix; ``<path>.npz`` and ``<path>.json`` are written
        (:mod:`convscope.core.persist`, atomically).
    run
        Fingerprint of the run: a :class:`~convscope.core.fingerprint.RunFingerprint` (a
        mismatch names what differs) or a digest string (see :func:`fingerprint`).
    """

    def __init__(self, path: str | Path, run: str | RunFingerprint) -> None:
        self.path = path
        self.npz, self.meta = persist.pair_paths(path)
        self.run = run
        self._arrays: dict[str, np.ndarray] = {}
        self._done: dict[int, list[str]] = {}
        if self.meta.is_file() and self.npz.is_file():
            self._arrays, header = persist.read(path, what="checkpoint")
            saved = header.get("run")
            if isinstance(run, RunFingerprint) and isinstance(saved, dict):
                RunFingerprint.from_dict(saved).check(run, self.meta)
            elif saved != self._run_json():
                raise InputError(
                    f"The checkpoint {self.meta} was written by a different run (other model, "
                    "images, targets or settings). Delete it, or pass another resume path."
                )
            self._done = {int(g): list(names) for g, names in header["groups"].items()}

    def _run_json(self) -> Any:
        return self.run.to_dict() if isinstance(self.run, RunFingerprint) else self.run

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
            self._arrays[f"{group}/{name}"] = persist.to_numpy(value)
        self._done[group] = list(arrays)
        header = {"run": self._run_json(), "groups": {str(g): v for g, v in self._done.items()}}
        persist.write(self.path, self._arrays, header)
