from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribution import default_layer, grad_cam
from convscope.core import layer_gradient


def _manual_grad_cam(
    model: nn.Module, x: torch.Tensor, target: list[int], layer: str
) -> torch.Tensor:
    act, grad = layer_gradient(model, x, target, layer)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_grad_cam_matches_the_formula(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    target = [0, 1, 2, 3, 1]
    cams = grad_cam(tiny_cnn, images, target, layer="bn")
    torch.testing.assert_close(cams, _manual_grad_cam(tiny_cnn, images, target, "bn"))
    assert cams.shape == (5, 1, 8, 8)


def test_grad_cam_targets_and_batches_agree(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    by_index = grad_cam(tiny_cnn, images, 2, layer="conv2")
    by_callable = grad_cam(tiny_cnn, images, lambda out: out[:, 2], layer="conv2")
    by_batches = grad_cam(tiny_cnn, images, [2] * 5, layer="conv2", batch_size=2)
    torch.testing.assert_close(by_index, by_callable)
    torch.testing.assert_close(by_index, by_batches)


def test_grad_cam_without_upsampling_and_relu(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    raw = grad_cam(tiny_cnn, images, 1, layer="conv2", relu=False, upsample=False)
    assert raw.shape == (5, 1, 8, 8)
    assert bool((raw < 0).any())  # negative evidence kept without the ReLU


def test_grad_cam_restores_model_state(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    tiny_cnn.train()
    grad_cam(tiny_cnn, images, 0, layer="conv2")
    assert tiny_cnn.training and all(
        p.requires_grad and p.grad is None for p in tiny_cnn.parameters()
    )


def test_default_layer(tiny_cnn: nn.Module) -> None:
    assert default_layer(tiny_cnn) == "conv2"
    with pytest.raises(ValueError, match="layer="):
        default_layer(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
