"""Fingerprints of a run, so that a resume can never mix two different runs.

A resumable computation records a :class:`RunFingerprint` in its checkpoint: a SHA-256 digest
of the model's **whole** ``state_dict`` (every parameter and buffer, with its name, shape and
dtype), one digest per input tensor (every element), and every setting by value. A resume
compares the saved fingerprint with the current one (:meth:`RunFingerprint.check`) and refuses
a mismatch with an error that says what differs: the model, which input, or which setting
(with the old and new values).

Tensors are hashed in place, chunk by chunk, as raw bytes: a CPU tensor is read without a
copy, a tensor on another device is brought to the CPU one chunk at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convscope.core.errors import InputError
from convscope.core.jsonable import to_jsonable

__all__ = ["RunFingerprint", "hash_tensor", "model_digest", "run_fingerprint", "tensor_digest"]

_CHUNK_BYTES = 1 << 24


def hash_tensor(digest: Any, value: torch.Tensor | np.ndarray) -> None:
    """Feed a tensor's shape, dtype and bytes into ``digest`` (a hashlib object), streamed."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    t = value.detach()
    digest.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    if t.numel() == 0:
        return
    if not t.is_contiguous():
        t = t.contiguous()
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    raw = flat.view(torch.uint8)
    for start in range(0, raw.numel(), _CHUNK_BYTES):
        chunk = raw[start : start + _CHUNK_BYTES]
        digest.update(chunk.cpu().numpy().data)


def tensor_digest(value: torch.Tensor | np.ndarray) -> str:
    """SHA-256 hex digest of one tensor (shape, dtype and every element)."""
    digest = hashlib.sha256()
    hash_tensor(digest, value)
    return digest.hexdigest()


def model_digest(model: nn.Module) -> str:
    """SHA-256 hex digest of a model's whole ``state_dict`` (names, shapes, dtypes, values)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode() + b"\0")
        if isinstance(value, torch.Tensor):
            hash_tensor(digest, value)
        else:  # extra state
            digest.update(json.dumps(to_jsonable(value), sort_keys=True).encode())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class RunFingerprint:
    """What identifies a run: model digest, input digests and settings.

    Attributes
    ----------
    model : str or None
        :func:`model_digest` of the model (None for a plain function).
    inputs : dict[str, str]
        :func:`tensor_digest` of each named input tensor.
    settings : dict[str, Any]
        Every setting, JSON-able, by value.
    """

    model: str | None
    inputs: dict[str, str]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in checkpoints)."""
        return {"model": self.model, "inputs": dict(self.inputs), "settings": self.settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFingerprint:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model=data.get("model"),
            inputs=dict(data.get("inputs", {})),
            settings=dict(data.get("settings", {})),
        )

    def differences(self, other: RunFingerprint) -> list[str]:
        """What differs between the run that wrote ``self`` and ``other``, in words."""
        out: list[str] = []
        if self.model != other.model:
            out.append("the model (its parameters or buffers)")
        for name in sorted(set(self.inputs) | set(other.inputs)):
            if self.inputs.get(name) != other.inputs.get(name):
                out.append(f"the input {name!r}")
        for name in sorted(set(self.settings) | set(other.settings)):
            old, new = self.settings.get(name), other.settings.get(name)
            if old != new:
                out.append(f"the setting {name!r} ({_short(old)} then, {_short(new)} now)")
        return out

    def check(self, current: RunFingerprint, path: str | Path) -> None:
        """Raise :class:`InputError` naming what differs if ``current`` is another run."""
        diff = self.differences(current)
        if diff:
            raise InputError(
                f"The resume file {path} was written by a different run: "
                + "; ".join(diff)
                + " differ. Delete it to start afresh, or pass another resume path."
            )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def run_fingerprint(
    model: nn.Module | None,
    inputs: Mapping[str, torch.Tensor | np.ndarray | None],
    settings: Mapping[str, Any],
) -> RunFingerprint:
    """The :class:`RunFingerprint` of a model, named input tensors and settings.

    Settings are normalised through JSON (tuples become lists), so that the fingerprint
    computed now compares equal to the one read back from a checkpoint.
    """
    return RunFingerprint(
        model=None if model is None else model_digest(model),
        inputs={k: tensor_digest(v) for k, v in inputs.items() if v is not None},
        settings=json.loads(json.dumps(to_jsonable(dict(settings)), sort_keys=True)),
    )
