from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.core import Target, TargetError, as_target, resolve_target

OUT = torch.arange(12.0).reshape(3, 4)


def test_int_target() -> None:
    assert torch.equal(resolve_target(2, OUT), OUT[:, 2])
    assert torch.equal(resolve_target(np.int64(1), OUT), OUT[:, 1])


def test_per_sample_targets() -> None:
    expected = torch.tensor([OUT[0, 3], OUT[1, 0], OUT[2, 2]])
    for tgt in ([3, 0, 2], torch.tensor([3, 0, 2]), np.array([3, 0, 2])):
        assert torch.equal(resolve_target(tgt, OUT), expected)


def test_callable_target() -> None:
    scores = resolve_target(lambda out: out.softmax(1)[:, 0], OUT)
    assert torch.allclose(scores, OUT.softmax(1)[:, 0])


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        (4, "out of range"),
        (-1, "out of range"),
        ([0, -1, 2], "0 or more"),
        ([0, 1, 9], "sample 2"),
        (torch.tensor(2.7), "integer class index"),
        (torch.tensor(True), "integer class index"),
        (["cat", "dog", "cat"], "class_names.index"),
        ([0, 1], "2 per-sample targets for 3 inputs"),
        (lambda out: out, "one score per sample"),
        ([[0, 1]], "1-D"),
        ([0.5, 1.0, 2.0], "integer"),
        (True, "boolean"),
        ("cat", "Unsupported"),
    ],
)
def test_bad_targets(target: object, fragment: str) -> None:
    with pytest.raises(TargetError, match=fragment):
        resolve_target(target, OUT)  # type: ignore[arg-type]


def test_index_target_needs_2d_outputs() -> None:
    with pytest.raises(TargetError, match="callable"):
        resolve_target(0, torch.zeros(3, 4, 5))


def test_subset_and_indices() -> None:
    tgt = as_target([3, 0, 2])
    assert torch.equal(tgt.subset(slice(1, 3)).indices(2), torch.tensor([0, 2]))
    assert torch.equal(Target(index=1).indices(3), torch.tensor([1, 1, 1]))
    with pytest.raises(TargetError):
        as_target(lambda o: o[:, 0]).indices(3)


def test_callable_target_on_dict_outputs() -> None:
    outputs = {"out": torch.arange(6.0).reshape(3, 2), "aux": torch.zeros(3)}
    scores = resolve_target(lambda o: o["out"][:, 1], outputs, n=3)
    assert torch.equal(scores, torch.tensor([1.0, 3.0, 5.0]))
    with pytest.raises(TargetError, match="shape \\(3,\\)"):
        resolve_target(lambda o: o["out"], outputs, n=3)
    with pytest.raises(TargetError, match="callable"):
        resolve_target(0, outputs, n=3)
