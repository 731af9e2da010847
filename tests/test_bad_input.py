"""Every kind of bad input gets one clear error that names the problem and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from convscope.attribution import grad_cam
from convscope.core import (
    ImageReadError,
    InputError,
    LayerNotFoundError,
    ModelNotFoundError,
    TargetError,
    WeightsError,
    input_gradient,
    record_activations,
)
from convscope.data import load_images
from convscope.models import load_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("shapes-cnn")


X = torch.rand(2, 3, 32, 32)


def _with(value: float) -> torch.Tensor:
    x = X.clone()
    x[1, 2, 3, 4] = value
    return x


CASES: list[tuple[str, Callable[[torch.nn.Module], object], type[Exception], list[str]]] = [
    (
        "wrong layer",
        lambda m: grad_cam(m, X, 0, layer="features.conv9"),
        LayerNotFoundError,
        ["'features.conv9'", "'features.conv1'", "layer_names"],
    ),
    (
        "wrong layer in hooks",
        lambda m: record_activations(m, "featurs.relu4").__enter__(),
        LayerNotFoundError,
        ["features.relu4"],
    ),
    (
        "target out of range",
        lambda m: input_gradient(m, X, 6),
        TargetError,
        ["6 outputs", "0 to 5"],
    ),
    (
        "target out of range, Grad-CAM",
        lambda m: grad_cam(m, X, [0, 9]),
        TargetError,
        ["out of range", "0 to 5"],
    ),
    ("one image without batch", lambda m: input_gradient(m, X[0], 0), InputError, ["unsqueeze(0)"]),
    ("wrong rank", lambda m: input_gradient(m, X[None], 0), InputError, ["4-D"]),
    (
        "channels-last",
        lambda m: input_gradient(m, X.permute(0, 2, 3, 1), 0),
        InputError,
        ["permute(0, 3, 1, 2)"],
    ),
    ("grayscale", lambda m: grad_cam(m, X[:, :1], 0), InputError, ["3 channels", "expand"]),
    ("uint8", lambda m: grad_cam(m, (X * 255).to(torch.uint8), 0), InputError, ["/ 255"]),
    (
        "NaN",
        lambda m: input_gradient(m, _with(float("nan")), 0),
        InputError,
        ["1 NaN", "(1, 2, 3, 4)"],
    ),
    ("inf", lambda m: grad_cam(m, _with(float("inf")), 0), InputError, ["1 inf", "nan_to_num"]),
]


@pytest.mark.parametrize(("label", "call", "error", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_model_input(
    model: torch.nn.Module,
    label: str,
    call: Callable[[torch.nn.Module], object],
    error: type[Exception],
    fragments: list[str],
) -> None:
    with pytest.raises(error) as info:
        call(model)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (label, message)


def test_unknown_model_name() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_model("shapes_cnn")
    assert "'shapes-cnn'" in str(info.value) and "torchvision:<arch>" in str(info.value)


def test_missing_and_corrupted_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"does not exist\. Check the path"):
        load_model("shapes-cnn", weights=tmp_path / "nope.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(WeightsError, match="corrupted") as info:
        load_model(broken, arch="shapes-cnn")
    assert "state_dict" in str(info.value)


def test_unreadable_image(tmp_path: Path) -> None:
    fake = tmp_path / "photo.png"
    fake.write_bytes(b"this is not a png")
    with pytest.raises(ImageReadError) as info:
        load_images([fake])
    assert "photo.png" in str(info.value)
    with pytest.raises(ImageReadError, match=r"absent\.jpg"):
        load_images([tmp_path / "absent.jpg"])
