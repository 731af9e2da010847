"""Tests of convscope.data.normalization: Normalize, with_normalization, check_images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from torch import nn

from convscope.core.errors import InputError
from convscope.data.normalization import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    NormalizedModel,
    check_images,
    with_normalization,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())


def _x(n: int = 2, h: int = 8, w: int = 9) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(1))


# -------------------------------------------------------------------------------- Normalize


def test_normalize_matches_manual_and_torchvision() -> None:
    x = _x()
    norm = Normalize()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), (x - mean) / std)
    torch.testing.assert_close(norm(x), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)(x))
    assert norm.mean.shape == (1, 3, 1, 1) and norm.std.shape == (1, 3, 1, 1)
    assert set(norm.state_dict()) == {"mean", "std"}
    assert "mean=(0.485, 0.456, 0.406)" in repr(norm)


def test_normalize_other_channel_counts_and_tensor_args() -> None:
    norm = Normalize(torch.tensor([0.5]), torch.tensor([0.25]))
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(norm(x), (x - 0.5) / 0.25)
    with pytest.raises(InputError, match=r"unsqueeze\(0\)"):
        Normalize()(torch.rand(3, 4, 4))
    with pytest.raises(InputError, match="N×3×H×W"):
        Normalize()(torch.rand(1, 4, 4, 4))


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        ((0.5, 0.5), (0.2, 0.2, 0.2), "2 values but std has 3"),
        ((0.5, 0.5, 0.5), (0.2, 0.0, 0.2), "positive"),
        ((0.5, 0.5, 0.5), (0.2, -1.0, 0.2), "positive"),
        ((), (), "empty"),
        ((0.5, float("nan"), 0.5), (0.2, 0.2, 0.2), "finite"),
        ("abc", (0.2, 0.2, 0.2), "sequence"),
    ],
)
def test_bad_mean_std(mean: object, std: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        with_normalization(_net(), mean, std)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=match):
        Normalize(mean, std)  # type: ignore[arg-type]


def test_pixel_unit_statistics_warn() -> None:
    with pytest.warns(UserWarning, match="255"):
        with_normalization(_net(), (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


# ------------------------------------------------------------------------ with_normalization


def test_with_normalization_equals_manual_and_torchvision() -> None:
    net = _net().eval()
    x = _x()
    wrapped = with_normalization(net, (0.4, 0.5, 0.6), (0.1, 0.2, 0.3))
    manual = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor(
        [0.1, 0.2, 0.3]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), net(manual))
        tv = T.Normalize((0.4, 0.5, 0.6), (0.1, 0.2, 0.3))
        torch.testing.assert_close(wrapped(x), net(tv(x)))
    assert isinstance(wrapped, NormalizedModel)
    assert wrapped.model is net


def test_layer_names_gain_model_prefix() -> None:
    wrapped = with_normalization(_net())
    names = [n for n, _ in wrapped.named_modules()]
    assert names[:3] == ["", "normalize", "model"]
    assert "model.0" in names and "model.1" in names
    assert set(wrapped.state_dict()) >= {"normalize.mean", "normalize.std", "model.0.weight"}


@pytest.mark.parametrize("training", [True, False])
def test_mode_is_preserved_without_touching_submodules(training: bool) -> None:
    net = _net().train(training)
    net[1].train(not training)  # a mixed-mode model stays mixed
    wrapped = with_normalization(net)
    assert wrapped.training is training
    assert wrapped.normalize.training is training
    assert net.training is training and net[1].training is (not training)


def test_dtype_and_device_follow_the_model() -> None:
    wrapped = with_normalization(_net().double())
    assert wrapped.normalize.mean.dtype == torch.float64
    assert wrapped(_x().double()).dtype == torch.float64
    meta = with_normalization(_net().to("meta"))
    assert meta.normalize.mean.device.type == "meta"
    bare = with_normalization(nn.Identity())
    assert bare.normalize.std.dtype == torch.float32
    assert bare.normalize.std.device.type == "cpu"


def test_double_wrapping_and_non_modules_are_rejected() -> None:
    wrapped = with_normalization(_net())
    with pytest.raises(InputError, match="already"):
        with_normalization(wrapped)
    with pytest.raises(InputError, match=r"nn\.Module"):
        with_normalization(lambda x: x)  # type: ignore[arg-type]


def test_gradients_flow_and_fx_tracing_works() -> None:
    wrapped = with_normalization(_net().eval())
    x = _x().requires_grad_(True)
    wrapped(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    traced = torch.fx.symbolic_trace(wrapped)
    with torch.no_grad():
        torch.testing.assert_close(traced(_x()), wrapped(_x()))


# ---------------------------------------------------------------------------- check_images


def test_check_images_returns_input_silently() -> None:
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_images(x) is x
        assert check_images(torch.rand(1, 1, 3, 3), channels=1) is not None
        check_images(x * (1 + 5e-4))  # tolerance 1e-3


@pytest.mark.parametrize(
    ("x", "fix"),
    [
        (torch.rand(3, 8, 8), "x.unsqueeze(0)"),
        (torch.rand(8, 8, 3), "x.permute(2, 0, 1).unsqueeze(0)"),
        (torch.rand(8, 8), "x[None, None]"),
        (torch.rand(2, 8, 8, 3), "x.permute(0, 3, 1, 2)"),
        (torch.rand(2, 1, 8, 8), "x.expand(-1, 3, -1, -1)"),
        (torch.rand(2, 5, 8, 8), "3 channels"),
        (torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8), "x.float() / 255"),
        (torch.randint(0, 2, (2, 3, 4, 4)), "x.float()"),
        (torch.rand(0, 3, 4, 4), "empty"),
    ],
)
def test_check_images_errors_contain_the_fix(x: torch.Tensor, fix: str) -> None:
    with pytest.raises(InputError) as info:
        check_images(x, name="x")
    assert fix in str(info.value)


def test_check_images_nan_and_inf_are_counted_and_located() -> None:
    x = _x()
    x[1, 2, 3, 4] = float("nan")
    x[1, 2, 5, 6] = float("nan")
    with pytest.raises(InputError, match=r"2 NaN and 0 inf") as info:
        check_images(x)
    assert "(1, 2, 3, 4)" in str(info.value) and "nan_to_num" in str(info.value)
    y = _x()
    y[0, 1, 0, 2] = float("inf")
    y[1, 0, 0, 0] = -float("inf")
    with pytest.raises(InputError, match=r"0 NaN and 2 inf values \(first at index \(0, 1, 0, 2\)"):
        check_images(y)


def test_check_images_rejects_numpy_with_conversion_hint() -> None:
    with pytest.raises(InputError, match=r"torch\.from_numpy"):
        check_images(np.zeros((1, 3, 2, 2), np.float32))  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [255.0, -1.0])
def test_out_of_range_values_warn_about_normalization(scale: float) -> None:
    with pytest.warns(UserWarning, match="with_normalization"):
        check_images(_x() * scale, name="images")


def test_normalized_images_warn() -> None:
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]"):
        check_images(Normalize()(_x()))
