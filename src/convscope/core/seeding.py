"""Seeded random generators: every stochastic function of convscope takes a ``seed``."""

from __future__ import annotations

import numpy as np
import torch

from convscope.core.errors import InputError

__all__ = ["SeedLike", "numpy_generator", "torch_generator"]

SeedLike = int | np.random.Generator | torch.Generator | None


def _as_int(seed: SeedLike) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))  # type: ignore[operator]
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InputError(
            f"seed must be an int or None, got {type(seed).__name__}. Pass e.g. seed=0."
        )
    if seed < 0:
        raise InputError(f"seed must be non-negative, got {seed}.")
    return int(seed)


def torch_generator(seed: SeedLike, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (fresh entropy if None).

    A generator passed in is returned as it is, so callers can thread one through.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(_as_int(seed))
    return gen


def numpy_generator(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` seeded with ``seed`` (returned as is if already one)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed).item())
    return np.random.default_rng(_as_int(seed))
