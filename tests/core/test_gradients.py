from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.core import (
    InputError,
    TargetError,
    gradients,
    input_gradient,
    layer_gradient,
)


def test_input_gradient_of_linear_model_is_weight() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).eval()
    x = torch.rand(2, 3, 4, 4)
    grad = input_gradient(model, x, [2, 0])
    w = model[1].weight.detach()
    torch.testing.assert_close(grad[0], w[2].view(3, 4, 4))
    torch.testing.assert_close(grad[1], w[0].view(3, 4, 4))


def test_input_gradient_matches_finite_differences(tiny_cnn: nn.Module) -> None:
    model = tiny_cnn.double()
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    grad = input_gradient(model, x, 1)
    eps = 1e-6
    for idx in [(0, 0, 2, 2), (0, 1, 0, 4), (0, 2, 3, 1)]:
        xp, xm = x.clone(), x.clone()
        xp[idx] += eps
        xm[idx] -= eps
        with torch.no_grad():
            fd = (model(xp)[0, 1] - model(xm)[0, 1]) / (2 * eps)
        assert abs(float(fd) - float(grad[idx])) < 1e-6


def test_layer_gradient_matches_manual_split(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    act, grad = layer_gradient(tiny_cnn, images, 3, "conv2")
    a = tiny_cnn.conv2(torch.relu(tiny_cnn.conv1(images))).detach().requires_grad_(True)
    out = tiny_cnn.fc(tiny_cnn.flatten(tiny_cnn.pool(torch.relu(tiny_cnn.bn(a)))))
    (expected,) = torch.autograd.grad(out[:, 3].sum(), a)
    torch.testing.assert_close(act, a.detach())
    torch.testing.assert_close(grad, expected)


def test_batched_equals_unbatched(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    full = gradients(tiny_cnn, images, [0, 1, 2, 3, 0], layers=["conv1"])
    parts = gradients(tiny_cnn, images, [0, 1, 2, 3, 0], layers=["conv1"], batch_size=2)
    assert full.input_gradient is not None and parts.input_gradient is not None
    torch.testing.assert_close(full.input_gradient, parts.input_gradient)
    torch.testing.assert_close(full.layer_gradients["conv1"], parts.layer_gradients["conv1"])
    torch.testing.assert_close(
        full.scores, tiny_cnn(images).gather(1, torch.tensor([[0], [1], [2], [3], [0]])).squeeze(1)
    )


def test_state_restored_and_no_param_grads(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    tiny_cnn.train()
    tiny_cnn.fc.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in tiny_cnn.named_parameters()}
    gradients(tiny_cnn, images, 0, layers=["conv2"])
    assert tiny_cnn.training and all(m.training for m in tiny_cnn.modules())
    assert {n: p.requires_grad for n, p in tiny_cnn.named_parameters()} == flags
    assert all(p.grad is None for p in tiny_cnn.parameters())


def test_state_restored_after_error(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    tiny_cnn.train()
    with pytest.raises(TargetError):
        gradients(tiny_cnn, images, 7)
    assert tiny_cnn.training and all(p.requires_grad for p in tiny_cnn.parameters())


def test_bad_inputs(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(InputError, match="unsqueeze"):
        input_gradient(tiny_cnn, images[0], 0)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        input_gradient(tiny_cnn, bad, 0)
    with pytest.raises(TargetError, match="2 per-sample targets for 5 inputs"):
        input_gradient(tiny_cnn, images, [0, 1], batch_size=2)


def test_works_inside_callers_no_grad(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    expected = input_gradient(tiny_cnn, images, 1)
    with torch.no_grad():
        torch.testing.assert_close(input_gradient(tiny_cnn, images, 1), expected)
    with torch.inference_mode(), pytest.raises(InputError, match="inference_mode"):
        input_gradient(tiny_cnn, images, 1)


def test_nothing_to_differentiate_and_non_differentiable_target(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    with pytest.raises(InputError, match="layers="):
        gradients(tiny_cnn, images, 0, wrt_input=False)
    with pytest.raises(TargetError, match="differentiabl"):
        input_gradient(tiny_cnn, images, lambda out: out.argmax(1).float())


def test_eval_mode_is_used_and_batchnorm_statistics_untouched(
    tiny_cnn: nn.Module, images: torch.Tensor
) -> None:
    expected = tiny_cnn(images)[:, 2]  # eval-mode scores
    stats = tiny_cnn.bn.running_mean.clone()
    tiny_cnn.train()
    result = gradients(tiny_cnn, images, 2, layers=["bn"])
    torch.testing.assert_close(result.scores, expected.detach())
    assert torch.equal(tiny_cnn.bn.running_mean, stats)
    assert tiny_cnn.training


def test_inputs_follow_the_model_dtype(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    model = tiny_cnn.double()
    grad = input_gradient(model, images, 0)  # float32 images, float64 model
    assert grad.dtype == torch.float64
    act, g = layer_gradient(model, images, 0, "conv2")
    assert act.dtype == g.dtype == torch.float64
