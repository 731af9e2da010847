"""Every perturbation method pads/fills with the same mean colour for one model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import convscope.attribution.extremal as extremal_module
from convscope.attribution.extremal import extremal_perturbation
from convscope.attribution.meaningful import meaningful_perturbation
from convscope.attribution.perturbation import model_mean_colour
from convscope.attribution.region_sobol import region_baseline
from convscope.data.normalization import normalization_mean, with_normalization
from convscope.metrics.deletion import normalization_mean as deletion_normalization_mean

MEAN = (0.2, 0.4, 0.6)
STD = (0.5, 0.5, 0.5)
SIDE = 16


def _wrapped() -> nn.Module:
    torch.manual_seed(0)
    inner = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    return with_normalization(inner.eval(), MEAN, STD)


def _mean_image() -> torch.Tensor:
    return torch.tensor(MEAN).view(1, 3, 1, 1).expand(1, 3, SIDE, SIDE).clone()


def _record_inner_inputs(model: nn.Module) -> list[torch.Tensor]:
    """Inputs the wrapped network sees (after normalisation)."""
    seen: list[torch.Tensor] = []
    model.model.register_forward_pre_hook(  # type: ignore[union-attr, operator]
        lambda _m, args: seen.append(args[0].detach().clone())
    )
    return seen


def test_one_mean_for_a_wrapped_model() -> None:
    model = _wrapped()
    mean = normalization_mean(model)
    assert mean is not None
    torch.testing.assert_close(mean, torch.tensor(MEAN).view(1, 3, 1, 1))
    assert deletion_normalization_mean is normalization_mean
    assert model_mean_colour(model) == pytest.approx(MEAN)
    base = region_baseline(model, _mean_image(), 2, "scale")
    torch.testing.assert_close(base, _mean_image())


def test_declared_mean_is_the_fallback_and_plain_models_have_none() -> None:
    plain = nn.Conv2d(3, 3, 1)
    assert normalization_mean(plain) is None
    assert normalization_mean(None) is None
    plain.convscope_info = SimpleNamespace(mean=(0.1, 0.2, 0.3))  # type: ignore[assignment]
    assert model_mean_colour(plain) == pytest.approx((0.1, 0.2, 0.3))


def test_extremal_mean_padding_uses_the_wrapped_models_mean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fills: list[object] = []
    original = extremal_module.Perturbation

    def spy(*args: object, **kwargs: object) -> object:
        fills.append(kwargs.get("fill"))
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(extremal_module, "Perturbation", spy)
    model = _wrapped()
    seen = _record_inner_inputs(model)
    extremal_perturbation(
        model, _mean_image(), 0, 0.3, max_iter=2, step=4, sigma=2.0, max_blur=4.0,
        padding="mean", progress=False,
    )  # fmt: skip
    assert fills and all(f is not None for f in fills)
    assert tuple(fills[0]) == pytest.approx(MEAN)  # type: ignore[arg-type]
    # the blur of a mean-coloured image padded with the mean is the mean: the network sees 0
    assert seen and all(float(t.abs().max()) < 1e-5 for t in seen)


def test_meaningful_perturbation_reference_is_the_wrapped_models_mean() -> None:
    model = _wrapped()
    seen = _record_inner_inputs(model)
    res = meaningful_perturbation(
        model, _mean_image(), 0, perturbation="constant", max_iter=0, init="ones", progress=False
    )
    assert res.reference_color == pytest.approx(MEAN)
    # the fully perturbed image is the reference colour, which normalises to 0
    assert seen and float(seen[-1].abs().max()) < 1e-5


def test_resnet_wrapped_with_normalization_gets_its_mean_in_meaningful_perturbation() -> None:
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    model = with_normalization(net, MEAN, STD)
    res = meaningful_perturbation(
        model, torch.rand(1, 3, 32, 32), 0, perturbation="constant", max_iter=0, init="ones",
        progress=False,
    )  # fmt: skip
    assert res.reference_color == pytest.approx(MEAN)
