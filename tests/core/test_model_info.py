"""model_info: the typed ModelInfo a model carries; default_layer."""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from convscope.attribution.baselines import default_layer as baselines_default_layer
from convscope.core import ModelInfo, default_layer, model_info
from convscope.models import ModelInfo as RegistryModelInfo


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten())


def test_model_info_returns_the_attached_info_or_none() -> None:
    net = _net()
    assert model_info(net) is None
    assert model_info(None) is None
    info = ModelInfo(name="x", class_names=("a", "b"), default_layer="0")
    net.convscope_info = info  # type: ignore[assignment]
    assert model_info(net) is info
    assert RegistryModelInfo is ModelInfo


def test_model_info_reads_a_duck_typed_info() -> None:
    net = _net()
    net.convscope_info = SimpleNamespace(mean=[0.1, 0.2, 0.3], class_names=["a"])  # type: ignore[assignment]
    info = model_info(net)
    assert isinstance(info, ModelInfo)
    assert info.mean == (0.1, 0.2, 0.3)
    assert info.class_names == ("a",)
    assert info.std == () and info.default_layer is None and info.name == ""


def test_default_layer_prefers_the_declared_layer_else_the_last_spatial_one() -> None:
    net = _net()
    assert baselines_default_layer is default_layer
    assert default_layer(net, (16, 16)) == "2"
    net.convscope_info = ModelInfo(name="x", default_layer="0")  # type: ignore[assignment]
    assert default_layer(net) == "0"
