from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from convscope.core import InputError, Result, ResultFormatError, numpy_generator, torch_generator
from convscope.core.results import to_jsonable


@dataclasses.dataclass
class DemoResult(Result):
    maps: torch.Tensor
    scores: np.ndarray
    per_layer: dict[str, torch.Tensor]
    layers: tuple[str, ...]
    n_evaluations: int
    settings: dict[str, object]


@dataclasses.dataclass
class OtherResult(Result):
    x: np.ndarray


def test_round_trip(tmp_path: Path) -> None:
    res = DemoResult(
        maps=torch.rand(2, 1, 4, 4),
        scores=np.array([0.5, np.nan]),
        per_layer={"layer1": torch.ones(3), "layer2.0": torch.zeros(2, 2)},
        layers=("layer1", "layer2.0"),
        n_evaluations=12,
        settings={"areas": [0.1, 0.2], "mode": "preserve"},
    )
    res.save(tmp_path / "res")
    back = DemoResult.load(tmp_path / "res.npz")
    assert torch.equal(back.maps, res.maps)
    np.testing.assert_array_equal(back.scores, res.scores)
    assert set(back.per_layer) == {"layer1", "layer2.0"}
    assert torch.equal(back.per_layer["layer2.0"], res.per_layer["layer2.0"])
    assert back.layers == res.layers and back.n_evaluations == 12
    assert back.settings == {"areas": [0.1, 0.2], "mode": "preserve"}


def test_load_errors(tmp_path: Path) -> None:
    OtherResult(x=np.zeros(2)).save(tmp_path / "other")
    with pytest.raises(ResultFormatError, match="OtherResult"):
        DemoResult.load(tmp_path / "other")
    with pytest.raises(ResultFormatError, match="missing"):
        DemoResult.load(tmp_path / "absent")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultFormatError):
        OtherResult.load(tmp_path / "bad")


def test_to_jsonable() -> None:
    assert to_jsonable({"a": np.float32(1.5), "b": np.nan, "c": (np.int64(2),)}) == {
        "a": 1.5,
        "b": None,
        "c": [2],
    }


def test_generators_are_seeded() -> None:
    a = torch.rand(4, generator=torch_generator(3))
    b = torch.rand(4, generator=torch_generator(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(4, generator=torch_generator(4)))
    assert numpy_generator(5).random() == numpy_generator(5).random()
    g = torch_generator(1)
    assert torch_generator(g) is g
    with pytest.raises(InputError):
        torch_generator(-1)
    with pytest.raises(InputError):
        numpy_generator("x")  # type: ignore[arg-type]


def test_dotted_names_do_not_collide(tmp_path: Path) -> None:
    OtherResult(x=np.zeros(2)).save(tmp_path / "resnet18.layer3")
    OtherResult(x=np.ones(2)).save(tmp_path / "resnet18.layer4")
    np.testing.assert_array_equal(OtherResult.load(tmp_path / "resnet18.layer3").x, np.zeros(2))
    np.testing.assert_array_equal(OtherResult.load(tmp_path / "resnet18.layer4.npz").x, np.ones(2))


def test_one_element_arrays_keep_their_shape() -> None:
    assert to_jsonable(torch.tensor([5.0])) == [5.0]
    assert to_jsonable(np.array([5.0])) == [5.0]
    assert to_jsonable(torch.tensor(5.0)) == 5.0
