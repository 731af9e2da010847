"""GroupCheckpoint: finished groups survive, other runs are refused, nothing is pickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.core.checkpoint import GroupCheckpoint, fingerprint
from convscope.core.errors import InputError


def test_groups_round_trip_and_reopen(tmp_path: Path) -> None:
    run = fingerprint(torch.arange(6.0), {"a": 1})
    first = GroupCheckpoint(tmp_path / "ck", run)
    assert first.groups == []
    first.put(1, {"masks": torch.ones(2, 3), "iterations": np.array([4, 5])})
    again = GroupCheckpoint(tmp_path / "ck.npz", run)
    assert again.groups == [1] and again.has(1) and not again.has(0)
    got = again.get(1)
    np.testing.assert_array_equal(got["masks"], np.ones((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(got["iterations"], [4, 5])
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["1/iterations", "1/masks"]


def test_fingerprint_sees_values_shapes_and_settings() -> None:
    base = fingerprint(torch.zeros(4), {"lr": 0.01})
    assert base == fingerprint(torch.zeros(4), {"lr": 0.01})
    assert base != fingerprint(torch.zeros(2, 2), {"lr": 0.01})
    assert base != fingerprint(torch.zeros(4), {"lr": 0.02})
    assert base != fingerprint(torch.tensor([0.0, 0.0, 0.0, 1e-6]), {"lr": 0.01})


def test_another_run_is_refused(tmp_path: Path) -> None:
    GroupCheckpoint(tmp_path / "ck", "run-a").put(0, {"x": np.zeros(1)})
    with pytest.raises(InputError, match="different run"):
        GroupCheckpoint(tmp_path / "ck", "run-b")
