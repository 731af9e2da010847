from __future__ import annotations

import pytest
from torch import nn

from convscope.core import LayerNotFoundError, layer_names, resolve_layer, resolve_layers
from convscope.core.errors import InputError, closest_names


def test_resolve_valid_names(tiny_cnn: nn.Module) -> None:
    assert resolve_layer(tiny_cnn, "conv2") is tiny_cnn.conv2
    seq = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()))
    assert resolve_layer(seq, "0.1") is seq[0][1]


def test_wrong_name_lists_closest(tiny_cnn: nn.Module) -> None:
    with pytest.raises(LayerNotFoundError) as err:
        resolve_layer(tiny_cnn, "conv3")
    msg = str(err.value)
    assert "'conv3'" in msg and "'conv2'" in msg and "'conv1'" in msg
    assert "layer_names" in msg


def test_wrong_name_is_a_key_error_too(tiny_cnn: nn.Module) -> None:
    with pytest.raises(KeyError):
        resolve_layer(tiny_cnn, "nope")


def test_layer_names_match_named_modules(tiny_cnn: nn.Module) -> None:
    expected = [n for n, _ in tiny_cnn.named_modules() if n]
    assert layer_names(tiny_cnn) == expected
    assert "conv1" in layer_names(tiny_cnn, leaves_only=True)


def test_resolve_layers_rejects_duplicates_and_empty(tiny_cnn: nn.Module) -> None:
    with pytest.raises(InputError, match="twice"):
        resolve_layers(tiny_cnn, ["conv1", "conv1"])
    with pytest.raises(InputError):
        resolve_layers(tiny_cnn, [])
    with pytest.raises(InputError):
        resolve_layer(tiny_cnn, 3)  # type: ignore[arg-type]


def test_closest_names_substring_fallback() -> None:
    names = ["features.conv1", "features.conv2", "classifier"]
    assert closest_names("conv1", names)[0] == "features.conv1"
