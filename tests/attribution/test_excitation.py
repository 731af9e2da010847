"""Excitation backprop against an explicit per-unit implementation of the MWP rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from convscope.attribution.excitation import (
    contrastive_excitation_backprop,
    excitation_backprop,
)
from convscope.core import InputError, LayerReuseError


class EBPNet(nn.Module):
    """conv-BN-ReLU-maxpool, conv-ReLU-avgpool, global pool, linear: every EBP rule once."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Identity()  # the image as a (non-negative) saliency layer
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(self.inp(x)))))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(self.flatten(self.gap(x)))


@pytest.fixture
def net() -> EBPNet:
    torch.manual_seed(3)
    model = EBPNet()
    with torch.no_grad():
        model.bn1.weight.copy_(torch.tensor([1.0, -0.7, 0.5, -1.2]))  # negative gammas flip W
        model.bn1.running_mean.uniform_(-0.3, 0.3)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.conv1.bias.fill_(0.1)
        model.conv2.bias.fill_(0.05)
    return model.eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def _conv(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, H, W = a.shape
    pad = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], H, W))
    for j in range(w.shape[0]):
        for u in range(H):
            for v in range(W):
                out[j, u, v] = (w[j] * pad[:, u : u + 3, v : v + 3]).sum() + b[j]
    return out


def _conv_mwp(a: np.ndarray, w: np.ndarray, p_out: np.ndarray) -> np.ndarray:
    """P(a_i) = sum_j a_i w+_ij / (sum_i' a_i' w+_i'j) P(a_j), unit by unit."""
    wp = np.maximum(w, 0)
    pad = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    p_in = np.zeros_like(pad)
    for j in range(w.shape[0]):
        for u in range(a.shape[1]):
            for v in range(a.shape[2]):
                contrib = wp[j] * pad[:, u : u + 3, v : v + 3]
                total = contrib.sum()
                if total > 0:
                    p_in[:, u : u + 3, v : v + 3] += contrib / total * p_out[j, u, v]
    return p_in[:, 1:-1, 1:-1]


def _mwp_oracle(net: EBPNet, image: torch.Tensor, c: int, dual: bool) -> dict[str, np.ndarray]:
    """Forward pass and marginal winning probabilities, written from the paper's formulas."""
    p = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    a0 = image.double().numpy()
    z1 = _conv(a0, p["conv1.weight"], p["conv1.bias"])
    scale = p["bn1.weight"] / np.sqrt(p["bn1.running_var"] + net.bn1.eps)
    a1 = np.maximum(
        scale[:, None, None] * (z1 - p["bn1.running_mean"][:, None, None])
        + p["bn1.bias"][:, None, None],
        0,
    )
    pooled = a1.reshape(4, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(4, 4, 4, 4)
    p1 = pooled.max(-1)
    a2 = np.maximum(_conv(p1, p["conv2.weight"], p["conv2.bias"]), 0)
    q2 = a2.reshape(5, 2, 2, 2, 2).mean((2, 4))
    g = q2.mean((1, 2))
    w_fc = -p["fc.weight"] if dual else p["fc.weight"]
    # top-down
    p_out = np.eye(3)[c]
    wp = np.maximum(w_fc, 0)
    p_g = (g[None, :] * wp / (wp @ g)[:, None] * p_out[:, None]).sum(0)
    p_q2 = q2 / q2.sum((1, 2), keepdims=True) * p_g[:, None, None]
    p_a2 = np.zeros_like(a2)
    for i in range(5):
        for u in range(2):
            for v in range(2):
                win = a2[i, 2 * u : 2 * u + 2, 2 * v : 2 * v + 2]
                if win.sum() > 0:
                    p_a2[i, 2 * u : 2 * u + 2, 2 * v : 2 * v + 2] = win / win.sum() * p_q2[i, u, v]
    p_p1 = _conv_mwp(p1, p["conv2.weight"], p_a2)  # ReLU passes the MWP through
    p_a1 = np.zeros_like(a1)
    for i in range(4):
        for u in range(4):
            for v in range(4):
                win = a1[i, 2 * u : 2 * u + 2, 2 * v : 2 * v + 2]
                du, dv = np.unravel_index(np.argmax(win), (2, 2))
                p_a1[i, 2 * u + du, 2 * v + dv] += p_p1[i, u, v]  # max-pool: winner takes all
    folded = p["conv1.weight"] * scale[:, None, None, None]  # eval-mode BN folded into conv1
    p_a0 = _conv_mwp(a0, folded, p_a1)
    return {"inp": p_a0, "relu1": p_a1, "pool1": p_p1}


@pytest.mark.parametrize("layer", ["inp", "relu1", "pool1"])
def test_excitation_backprop_matches_the_unit_by_unit_rule(
    net: EBPNet, x: torch.Tensor, layer: str
) -> None:
    target = [0, 2, 1]
    maps = excitation_backprop(net, x, target, layer=layer, upsample=False, batch_size=2)
    for n in range(3):
        expected = _mwp_oracle(net, x[n], target[n], dual=False)[layer].sum(0)
        np.testing.assert_allclose(maps[n, 0].double().numpy(), expected, rtol=1e-4, atol=1e-6)
    # conservation: the winning probability of one unit is spread, never created or lost
    torch.testing.assert_close(maps.sum((1, 2, 3)), torch.ones(3), rtol=1e-5, atol=1e-5)
    assert bool((maps >= 0).all())


def test_contrastive_excitation_backprop_matches_the_dual_unit_rule(
    net: EBPNet, x: torch.Tensor
) -> None:
    raw = contrastive_excitation_backprop(net, x, 1, layer="relu1", clamp=False, upsample=False)
    clamped = contrastive_excitation_backprop(net, x, 1, layer="relu1", upsample=False)
    plain = excitation_backprop(net, x, 1, layer="relu1", upsample=False)
    for n in range(3):
        own = _mwp_oracle(net, x[n], 1, dual=False)["relu1"].sum(0)
        dual = _mwp_oracle(net, x[n], 1, dual=True)["relu1"].sum(0)
        np.testing.assert_allclose(raw[n, 0].double().numpy(), own - dual, rtol=1e-4, atol=1e-6)
    # both MWPs sum to one, so the contrastive signal sums to zero before the clamp
    torch.testing.assert_close(raw.sum((1, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(clamped, raw.clamp(min=0))
    assert bool((raw < -1e-4).any()) and not torch.allclose(clamped, plain)


def test_contrast_layer_does_not_change_the_map(net: EBPNet, x: torch.Tensor) -> None:
    # EBP is linear in the top-down signal below the classifier: the subtraction can happen
    # at any layer between the saliency layer and the classifier.
    at_layer = contrastive_excitation_backprop(net, x, 2, layer="relu1", clamp=False)
    for contrast in ("relu2", "gap", "flatten"):
        other = contrastive_excitation_backprop(
            net, x, 2, layer="relu1", contrast_layer=contrast, classifier_layer="fc", clamp=False
        )
        torch.testing.assert_close(other, at_layer, rtol=1e-4, atol=1e-6)


def test_callable_targets_batches_and_upsampling(net: EBPNet, x: torch.Tensor) -> None:
    by_index = excitation_backprop(net, x, [2, 0, 1], layer="pool1")
    by_callable = excitation_backprop(
        net,
        x,
        lambda out: out[:, 0] * 0 + out.gather(1, torch.tensor([[2], [0], [1]]))[:, 0],
        layer="pool1",
    )
    one_by_one = excitation_backprop(net, x, [2, 0, 1], layer="pool1", batch_size=1)
    torch.testing.assert_close(by_callable, by_index)
    torch.testing.assert_close(one_by_one, by_index)
    assert by_index.shape == (3, 1, 8, 8)
    small = excitation_backprop(net, x, [2, 0, 1], layer="pool1", upsample=False)
    expected = torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear")
    torch.testing.assert_close(by_index, expected)


def test_hooks_removed_and_state_restored(net: EBPNet, x: torch.Tensor) -> None:
    net.train()
    stats = net.bn1.running_mean.clone()
    excitation_backprop(net, x, 0, layer="relu1")
    contrastive_excitation_backprop(net, x, 0, layer="relu1", contrast_layer="gap")
    assert net.training and torch.equal(net.bn1.running_mean, stats)
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks
    # the model computes exactly what it did before
    torch.testing.assert_close(net.eval()(x), EBPNet.forward(net, x))


def test_bad_requests(net: EBPNet, x: torch.Tensor, reused_relu_model: nn.Module) -> None:
    with pytest.raises(InputError, match="N×C×h×w"):
        excitation_backprop(net, x, 0, layer="flatten")
    with pytest.raises(InputError, match="classifier_layer"):
        contrastive_excitation_backprop(net, x, 0, layer="relu1", classifier_layer="relu2")
    with pytest.raises(InputError, match="below the classifier"):
        contrastive_excitation_backprop(net, x, 0, layer="relu1", contrast_layer="fc")
    with pytest.raises(InputError, match="must come after layer"):
        contrastive_excitation_backprop(net, x, 0, layer="relu1", contrast_layer="conv1")
    with pytest.raises(LayerReuseError):
        excitation_backprop(reused_relu_model, x, 0, layer="relu")
    with torch.inference_mode(), pytest.raises(InputError, match="inference_mode"):
        excitation_backprop(net, x, 0, layer="relu1")


def test_trained_model_puts_the_mass_on_the_object() -> None:
    import convscope
    import convscope.datasets

    model = convscope.load_model("shapes-cnn")
    world = convscope.datasets.shapes(12, seed=4)
    masks = world.masks[:, None].float()
    area = masks.mean().item()
    for fn in (excitation_backprop, contrastive_excitation_backprop):
        maps = fn(model, world.images, world.labels, layer="features.relu3")
        inside = ((maps * masks).sum((1, 2, 3)) / maps.sum((1, 2, 3))).mean().item()
        assert bool((maps >= 0).all())
        assert inside > 2.5 * area  # the object holds far more than its share of the mass
