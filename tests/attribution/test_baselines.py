from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribution import default_layer, grad_cam
from convscope.core import InputError, LayerReuseError, TargetError, last_spatial_layer
from convscope.models import ShapesCNN


@pytest.fixture
def small_net() -> nn.Module:
    """A ShapesCNN whose last block is 4×4 for 32×32 inputs (so upsampling matters)."""
    torch.manual_seed(0)
    return ShapesCNN(num_classes=4, widths=(4, 6, 8, 8)).eval()


def _manual_grad_cam(
    model: nn.Module, x: torch.Tensor, target: list[int], layer: nn.Module
) -> torch.Tensor:
    """Grad-CAM from the paper's formula, with plain autograd (no convscope code)."""
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        store["a"] = out
        return out.clone()

    handle = layer.register_forward_hook(keep)
    try:
        out = model(x)
    finally:
        handle.remove()
    score = out.gather(1, torch.tensor(target).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, store["a"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * store["a"]).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).detach()


def test_grad_cam_matches_the_formula(small_net: nn.Module) -> None:
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    target = [0, 1, 2, 3, 1]
    cams = grad_cam(small_net, x, target, layer="features.relu4", batch_size=2)
    expected = _manual_grad_cam(small_net, x, target, small_net.features.relu4)
    assert cams.shape == (5, 1, 32, 32)
    torch.testing.assert_close(cams, expected)


def test_grad_cam_targets_and_batches_agree(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    target = [2, 0, 3, 1, 2]
    by_list = grad_cam(tiny_cnn, images, target, layer="conv2")
    by_callable = grad_cam(
        tiny_cnn,
        images,
        lambda out: out.gather(1, torch.tensor(target).view(-1, 1))[:, 0],
        layer="conv2",
    )
    by_batches = grad_cam(tiny_cnn, images, target, layer="conv2", batch_size=2)
    torch.testing.assert_close(by_list, by_callable)
    torch.testing.assert_close(by_list, by_batches)


def test_grad_cam_without_upsampling_and_relu(small_net: nn.Module) -> None:
    x = torch.rand(3, 3, 32, 32)
    raw = grad_cam(small_net, x, 1, layer="features.relu4", relu=False, upsample=False)
    assert raw.shape == (3, 1, 4, 4)
    assert bool((raw < 0).any())  # negative evidence kept without the ReLU


def test_grad_cam_restores_model_state(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    stats = tiny_cnn.bn.running_mean.clone()
    tiny_cnn.train()
    grad_cam(tiny_cnn, images, 0, layer="conv2")
    assert tiny_cnn.training
    assert all(p.requires_grad and p.grad is None for p in tiny_cnn.parameters())
    assert torch.equal(tiny_cnn.bn.running_mean, stats)


def test_grad_cam_follows_model_dtype(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    assert grad_cam(tiny_cnn.double(), images, 0, layer="conv2").dtype == torch.float64


def test_grad_cam_bad_requests(
    tiny_cnn: nn.Module, reused_relu_model: nn.Module, images: torch.Tensor
) -> None:
    with pytest.raises(TargetError, match="6 per-sample targets for 5 inputs"):
        grad_cam(tiny_cnn, images, [0] * 6, layer="conv2")
    with pytest.raises(TargetError, match="4 per-sample targets for 5 inputs"):
        grad_cam(tiny_cnn, images, [0] * 4, layer="conv2")
    with pytest.raises(TargetError, match="0 or more"):
        grad_cam(tiny_cnn, images, -1, layer="conv2")
    with pytest.raises(TargetError, match="valid indices 0 to 3"):
        grad_cam(tiny_cnn, images, 4, layer="conv2")
    with pytest.raises(InputError, match="N×C×h×w"):
        grad_cam(tiny_cnn, images, 0, layer="fc")
    with pytest.raises(LayerReuseError):
        grad_cam(reused_relu_model, images, 0, layer="relu")


def test_default_layer(tiny_cnn: nn.Module, small_net: nn.Module) -> None:
    # relu2 gives the last 8×8 map that runs once; the pool after it is 1×1.
    assert last_spatial_layer(tiny_cnn, (8, 8)) == "relu2"
    assert default_layer(small_net, (32, 32)) == "features"
    with pytest.raises(InputError, match="layer="):
        default_layer(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)), (4, 4))


def test_default_layer_of_a_torchvision_resnet() -> None:
    import torchvision

    assert last_spatial_layer(torchvision.models.resnet18().eval(), (64, 64)) == "layer4"
