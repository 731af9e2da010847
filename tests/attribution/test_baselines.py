from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribution import default_layer, grad_cam
from convscope.attribution.baselines import (
    BASELINES,
    deconvnet,
    gradient,
    guided_backprop,
    integrated_gradients,
    linear_approx,
    occlusion,
    smoothgrad,
)
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


# --- the other baselines -----------------------------------------------------------------------


class _ModifiedReLU(torch.autograd.Function):
    """ReLU whose backward follows guided backprop or DeconvNet (written from the papers)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, guided: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.guided = guided
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        passed = grad.clamp(min=0)
        return (passed * (x > 0) if ctx.guided else passed), None


class _ReLUModule(nn.Module):
    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided = guided

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ModifiedReLU.apply(x, self.guided)


def _with_modified_relus(model: nn.Module, guided: bool) -> nn.Module:
    clone = copy.deepcopy(model)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, _ReLUModule(guided))
    return clone


def _input_grad(model: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    score = model(x).gather(1, torch.tensor(target).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad


def _by_row(target: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    index = torch.tensor(target).view(-1, 1)
    return lambda out: out.gather(1, index)[:, 0]


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def test_gradient_is_the_max_abs_input_gradient(small_net: nn.Module) -> None:
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    target = [0, 1, 2, 3, 1]
    expected = _input_grad(small_net, x, target).abs().amax(1, keepdim=True)
    torch.testing.assert_close(gradient(small_net, x, target, batch_size=2), expected)
    torch.testing.assert_close(gradient(small_net, x, _by_row(target)), expected)


@pytest.mark.parametrize("guided", [True, False])
def test_modified_relu_backprop_matches_its_definition(
    small_net: nn.Module, reused_relu_model: nn.Module, images: torch.Tensor, guided: bool
) -> None:
    method = guided_backprop if guided else deconvnet
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    for model, inputs, target in (
        (small_net, x, [3, 0, 1, 2]),  # in-place nn.ReLU modules
        (reused_relu_model, images[:4], [1, 0, 1, 1]),  # one ReLU module used twice
    ):
        reference = _with_modified_relus(model, guided)
        expected = _input_grad(reference, inputs, target).abs().amax(1, keepdim=True)
        got = method(model, inputs, target, batch_size=3)
        torch.testing.assert_close(got, expected)
        plain = gradient(model, inputs, target)
        assert not torch.allclose(got, plain)  # the override did act
    torch.testing.assert_close(
        method(small_net, x, _by_row([3, 0, 1, 2])), method(small_net, x, [3, 0, 1, 2])
    )


def test_functional_relus_are_not_overridden(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = FunctionalReLU().eval()
    with pytest.warns(UserWarning, match="no nn.ReLU module"):
        guided = guided_backprop(model, images, 1)
    torch.testing.assert_close(guided, gradient(model, images, 1))


def test_linear_approx_is_gradient_times_activation(small_net: nn.Module) -> None:
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    target = [2, 0, 1]
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        store["a"] = out
        return out.clone()

    handle = small_net.features.conv3.register_forward_hook(keep)
    try:
        score = small_net(x).gather(1, torch.tensor(target).view(-1, 1)).sum()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, store["a"])
    raw = (grad * store["a"]).sum(1, keepdim=True).detach()
    got = linear_approx(small_net, x, target, layer="features.conv3", upsample=False, batch_size=2)
    torch.testing.assert_close(got, raw)
    up = linear_approx(small_net, x, _by_row(target), layer="features.conv3")
    torch.testing.assert_close(up, F.interpolate(raw, size=(32, 32), mode="bilinear"))
    with pytest.raises(InputError, match="linear_approx needs"):
        linear_approx(small_net, x, 0, layer="classifier")


def test_integrated_gradients_midpoint_rule_and_completeness(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    target = [0, 3, 1, 2, 2]
    grey = torch.tensor([0.5, 0.4, 0.6]).view(1, 3, 1, 1)
    n = 16
    total = torch.zeros_like(images)
    for k in range(n):  # midpoint rule, written out
        total += _input_grad(tiny_cnn, grey + (k + 0.5) / n * (images - grey), target)
    attr = (images - grey) * total / n
    for reduce, expected in (
        ("sum", attr.sum(1, keepdim=True)),
        ("abs", attr.abs().sum(1, keepdim=True)),
        ("max_abs", attr.abs().amax(1, keepdim=True)),
    ):
        got = integrated_gradients(
            tiny_cnn, images, target, baseline=grey, n_steps=n, method="riemann_middle",
            reduce=reduce, batch_size=7,  # type: ignore[arg-type]
        )  # fmt: skip
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)

    # completeness, black baseline, a non-linear (row-wise) score: the map sums to f(x) - f(0)
    def prob(out: torch.Tensor) -> torch.Tensor:
        return 100 * out.softmax(1)[:, 2]  # in percent: the tiny model's outputs barely move

    ig = integrated_gradients(tiny_cnn, images, prob, n_steps=300, batch_size=64)
    with torch.no_grad():
        expected_sum = prob(tiny_cnn(images)) - prob(tiny_cnn(torch.zeros_like(images)))
    torch.testing.assert_close(ig.sum((1, 2, 3)), expected_sum, rtol=1e-2, atol=1e-4)
    assert float(expected_sum.abs().min()) > 0.02  # far from the trivial 0 = 0


def _noise_stream(x: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=gen) for _ in range(n)]


def test_smoothgrad_averages_gradients_of_noisy_copies(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    target = [1, 0, 3, 2, 1]
    level = 0.2
    sigma = level * (images.amax((1, 2, 3)) - images.amin((1, 2, 3))).view(-1, 1, 1, 1)
    total = torch.zeros_like(images)
    for eps in _noise_stream(images, 6, seed=3):
        total += _input_grad(tiny_cnn, images + sigma * eps, target)
    expected = (total / 6).abs().amax(1, keepdim=True)
    state = torch.get_rng_state()
    for batch_size in (2, 5, 12, 64):  # split images, one copy, two copies, all copies per pass
        got = smoothgrad(
            tiny_cnn, images, target, n_samples=6, noise_level=level, seed=3, batch_size=batch_size
        )
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    assert torch.equal(torch.get_rng_state(), state)
    no_noise = smoothgrad(tiny_cnn, images, lambda out: out[:, 3], n_samples=2, noise_level=0.0)
    torch.testing.assert_close(no_noise, gradient(tiny_cnn, images, 3))


def test_occlusion_matches_a_loop_of_occluded_forwards(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    target = [2, 1, 0, 3, 3]
    window, stride, grey = 3, 2, 0.5
    with torch.no_grad():
        base = tiny_cnn(images).gather(1, torch.tensor(target).view(-1, 1))[:, 0]
        drop = torch.zeros(5, 1, 8, 8)
        count = torch.zeros(1, 1, 8, 8)
        for r in range(0, 8 - window + stride, stride):  # offsets up to ceil((8-3)/2)*2 = 6
            for c in range(0, 8 - window + stride, stride):
                occluded = images.clone()
                occluded[:, :, r : r + window, c : c + window] = grey
                score = tiny_cnn(occluded).gather(1, torch.tensor(target).view(-1, 1))[:, 0]
                drop[:, :, r : r + window, c : c + window] += (base - score).view(-1, 1, 1, 1)
                count[:, :, r : r + window, c : c + window] += 1
    expected = drop / count
    for batch_size in (1, 7, 64):
        got = occlusion(
            tiny_cnn, images, target, window=window, stride=stride, baseline=grey,
            batch_size=batch_size,
        )  # fmt: skip
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # default: ceil(8/8) = 1 pixel window, stride 1, grey: each pixel's own score drop
    single = occlusion(tiny_cnn, images[:1], lambda out: out[:, 2])
    pixel = images[:1].clone()
    pixel[:, :, 3, 5] = 0.5
    with torch.no_grad():
        expected_drop = tiny_cnn(images[:1])[0, 2] - tiny_cnn(pixel)[0, 2]
    torch.testing.assert_close(single[0, 0, 3, 5], expected_drop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_has_the_common_shape_and_contract(name: str, small_net: nn.Module) -> None:
    options: dict[str, Any] = {
        "rise": {"num_masks": 16},
        "smoothgrad": {"n_samples": 3},
        "integrated_gradients": {"n_steps": 4},
        "occlusion": {"window": 8, "stride": 8},
    }.get(name, {})
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    small_net.train()
    method = BASELINES[name]
    by_index = method(small_net, x, [1, 0, 3], batch_size=2, **options)
    assert by_index.shape == (3, 1, 32, 32) and by_index.dtype == torch.float32
    assert by_index.device == x.device and torch.isfinite(by_index).all()
    assert small_net.training
    assert all(p.requires_grad and p.grad is None for p in small_net.parameters())
    for module in small_net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    # a callable target (row-wise, as the perturbation methods need) gives the class score
    with_logit = {"score": "logit"} if name == "rise" else {}
    by_class = method(small_net, x, 2, batch_size=2, **options, **with_logit)
    by_callable = method(small_net, x, lambda out: out[:, 2], batch_size=2, **options)
    torch.testing.assert_close(by_callable, by_class)
    by_batch = method(small_net, x, [1, 0, 3], **options)
    torch.testing.assert_close(by_batch, by_index, rtol=1e-4, atol=1e-7)
    assert method(small_net.double(), x, 1, **options).dtype == torch.float64


def test_baseline_bad_requests(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(TargetError, match="valid indices 0 to 3"):
        gradient(tiny_cnn, images, 4)
    with pytest.raises(TargetError, match="valid indices 0 to 3"):
        integrated_gradients(tiny_cnn, images, [0, 1, 2, 3, 7], n_steps=2)
    with pytest.raises(InputError, match="larger than the 8×8 images"):
        occlusion(tiny_cnn, images, 0, window=9)
    with pytest.raises(InputError, match="stride"):
        occlusion(tiny_cnn, images, 0, window=2, stride=3)
    with pytest.raises(InputError, match="window"):
        occlusion(tiny_cnn, images, 0, window=0)
    with pytest.raises(InputError, match="baseline"):
        occlusion(tiny_cnn, images, 0, baseline=torch.zeros(2, 8, 8))
    with pytest.raises(InputError, match="method"):
        integrated_gradients(tiny_cnn, images, 0, method="simpson")
    with pytest.raises(InputError, match="reduce"):
        integrated_gradients(tiny_cnn, images, 0, reduce="mean")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="noise_level"):
        smoothgrad(tiny_cnn, images, 0, noise_level=-0.1)
    with pytest.raises(InputError, match="n_samples"):
        smoothgrad(tiny_cnn, images, 0, n_samples=0)
    with pytest.raises(TargetError, match="differentiabl"):
        smoothgrad(tiny_cnn, images, lambda out: out.argmax(1).float(), n_samples=1)
    with torch.inference_mode(), pytest.raises(InputError, match="inference_mode"):
        gradient(tiny_cnn, images, 0)
