"""The method registry: names, aliases, and maps equal to the methods' own outputs."""

from __future__ import annotations

import pytest
import torch

from convscope.attribution import (
    METHODS,
    extremal_perturbation,
    gradient,
    meaningful_perturbation,
)
from convscope.attribution.methods import attribution_map, compare_methods, resolve_method
from convscope.core.errors import InputError


def test_every_baseline_and_both_perturbation_methods_are_registered() -> None:
    assert {"extremal", "meaningful", "grad_cam", "rise", "occlusion"} <= set(METHODS)
    assert len(METHODS) == 13


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("gradcam", "grad_cam"), ("Grad-CAM", "grad_cam"), ("EP", "extremal"), ("mp", "meaningful")],
)
def test_aliases(name: str, canonical: str) -> None:
    assert resolve_method(name) == canonical


def test_unknown_method_lists_the_closest() -> None:
    with pytest.raises(InputError, match="'occlusion'"):
        resolve_method("oclusion")


def test_extremal_map_is_the_blurred_sum_of_masks(tiny_cnn: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    opts = {"areas": (0.1, 0.3), "max_iter": 4, "step": 3, "sigma": 4.0}
    result = extremal_perturbation(tiny_cnn, x, 1, progress=False, **opts)
    summed = result.masks.sum(1)
    assert torch.allclose(result.saliency(0), summed)
    mapped = attribution_map("extremal", tiny_cnn, x, 1, progress=False, **opts)
    assert torch.allclose(mapped, result.saliency(), atol=1e-6)


def test_meaningful_map_is_its_saliency(tiny_cnn: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    opts = {"max_iter": 3, "init": "ones", "progress": False}
    direct = meaningful_perturbation(tiny_cnn, x, 2, **opts).saliency
    assert torch.allclose(attribution_map("mp", tiny_cnn, x, 2, **opts), direct)


def test_compare_methods_keeps_order_and_options(tiny_cnn: torch.nn.Module) -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    result = compare_methods(tiny_cnn, x, 0, ["gradient", "gradcam"], options={"grad_cam": {}})
    assert list(result.maps) == ["gradient", "grad_cam"]
    assert torch.allclose(result.maps["gradient"], gradient(tiny_cnn, x, 0))
    assert set(result.seconds) == {"gradient", "grad_cam"}
    with pytest.raises(InputError, match="twice"):
        compare_methods(tiny_cnn, x, 0, ["gradcam", "grad_cam"])
