"""Sanity checks: Spearman against scipy, randomisation layer sets by brute force."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from torch import nn

from convscope.core import InputError, input_gradient
from convscope.metrics import (
    ClassSensitivityResult,
    SanityResult,
    class_sensitivity,
    parameter_randomization,
    randomize_module,
    spearman,
)


def _input_intensity(model: nn.Module, x: torch.Tensor, target: object) -> torch.Tensor:
    """A "saliency" method that ignores the model: it must fail the randomisation check."""
    return x.mean(1, keepdim=True)


def _gradient(model: nn.Module, x: torch.Tensor, target: object) -> torch.Tensor:
    return input_gradient(model, x, target).abs().amax(1, keepdim=True)  # type: ignore[arg-type]


def test_spearman_matches_scipy_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 40), generator=gen).float()  # many ties
    b = a + torch.randint(0, 4, (6, 40), generator=gen).float()
    c = torch.randn(6, 2, 4, 5, generator=gen)
    d = c + 0.5 * torch.randn(6, 2, 4, 5, generator=gen)
    for x, y in ((a, b), (c, d), (a, -b)):
        ours = spearman(x, y)
        for i in range(x.shape[0]):
            expected = spearmanr(x[i].flatten().numpy(), y[i].flatten().numpy()).statistic
            assert ours[i].item() == pytest.approx(expected, abs=1e-12)


def test_spearman_of_a_constant_map_is_nan() -> None:
    a = torch.ones(2, 10)
    b = torch.arange(20.0).view(2, 10)
    assert torch.isnan(spearman(a, b)).all()
    assert spearman(b, b).tolist() == [1.0, 1.0]
    assert spearman(b, -b).tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_a_model_independent_map_keeps_correlation_one(tiny_cnn: nn.Module, mode: str) -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    res = parameter_randomization(tiny_cnn, x, 0, _input_intensity, mode=mode)  # type: ignore[arg-type]
    assert res.layers == ("fc", "bn", "conv2", "conv1")  # output towards input
    assert torch.allclose(res.spearman, torch.ones_like(res.spearman))
    assert torch.allclose(res.spearman_abs, torch.ones_like(res.spearman_abs))
    assert res.maps.shape == (5, 3, 1, 8, 8)


def test_gradient_maps_decorrelate_when_layers_are_randomised(tiny_cnn: nn.Module) -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    res = parameter_randomization(tiny_cnn, x, 0, _gradient, layers=["fc", "conv2", "conv1"])
    # Check each stored map against an independent computation of its correlation.
    for k in range(3):
        for i in range(4):
            expected = spearmanr(
                res.maps[0, i].flatten().numpy(), res.maps[k + 1, i].flatten().numpy()
            ).statistic
            assert res.spearman[k, i].item() == pytest.approx(expected, abs=1e-9)
    # Once the convolutions are random the gradient maps no longer look like the original.
    assert bool((res.spearman[1:].mean(1) < 0.5).all())
    assert float(res.spearman[0].mean()) > float(res.spearman[1].mean())


def _differing(model: nn.Module, reference: dict[str, torch.Tensor]) -> set[str]:
    state = model.state_dict()
    return {k.rsplit(".", 1)[0] for k, v in reference.items() if not torch.equal(state[k], v)}


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_randomised_layer_sets_by_brute_force(tiny_cnn: nn.Module, mode: str) -> None:
    reference = copy.deepcopy(tiny_cnn.state_dict())
    seen: list[set[str]] = []

    def recorder(model: nn.Module, x: torch.Tensor, target: object) -> torch.Tensor:
        seen.append(_differing(model, reference))
        return _input_intensity(model, x, target)

    x = torch.rand(2, 3, 8, 8)
    res = parameter_randomization(tiny_cnn, x, 0, recorder, mode=mode)  # type: ignore[arg-type]
    layers = ["fc", "bn", "conv2", "conv1"]
    if mode == "cascading":
        expected = [set(layers[:k]) for k in range(5)]
    else:
        expected = [set()] + [{name} for name in layers]
    assert seen == expected
    assert [set(res.randomized(k)) for k in range(5)] == expected


def test_user_model_and_rng_are_untouched(tiny_cnn: nn.Module) -> None:
    tiny_cnn.train()
    before = copy.deepcopy(tiny_cnn.state_dict())
    x = torch.rand(2, 3, 8, 8)
    rng = torch.get_rng_state()
    parameter_randomization(tiny_cnn, x, 1, _gradient)
    after = tiny_cnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert tiny_cnn.training
    assert all(p.requires_grad for p in tiny_cnn.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_layer_gets_the_same_random_weights_in_both_modes(tiny_cnn: nn.Module) -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    cascade = parameter_randomization(tiny_cnn, x, 0, _gradient, mode="cascading", seed=7)
    independent = parameter_randomization(tiny_cnn, x, 0, _gradient, mode="independent", seed=7)
    # Step 1 randomises the same single layer in both modes.
    assert torch.equal(cascade.maps[1], independent.maps[1])
    again = parameter_randomization(tiny_cnn, x, 0, _gradient, mode="cascading", seed=7)
    assert torch.equal(cascade.maps, again.maps)
    other = parameter_randomization(tiny_cnn, x, 0, _gradient, mode="cascading", seed=8)
    assert not torch.equal(cascade.maps[-1], other.maps[-1])


def test_randomize_module_uses_reset_parameters_under_a_seed() -> None:
    a, b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    randomize_module(a, 5)
    with torch.random.fork_rng():  # the same seed through PyTorch's own initialiser
        torch.manual_seed(5)
        b.reset_parameters()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)

    class NoReset(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2000))

    c = NoReset()
    randomize_module(c, 0)
    w = c.w.detach()
    assert abs(float(w.std()) - 0.01) < 0.001 and abs(float(w.mean())) < 0.001


def test_target_policy(tiny_cnn: nn.Module) -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    calls: list[tuple[list[int], list[int]]] = []

    def recorder(model: nn.Module, xx: torch.Tensor, target: object) -> torch.Tensor:
        with torch.no_grad():
            pred = model.eval()(xx).argmax(1).tolist()
        t = target.tolist() if isinstance(target, torch.Tensor) else [target] * xx.shape[0]
        calls.append((t, pred))
        return _input_intensity(model, xx, target)

    fixed = parameter_randomization(tiny_cnn, x, 2, recorder, target_policy="fixed")  # type: ignore[arg-type]
    assert all(t == [2] * 4 for t, _ in calls)
    assert fixed.targets is not None and bool((fixed.targets == 2).all())
    calls.clear()
    res = parameter_randomization(tiny_cnn, x, 2, recorder, target_policy="argmax")  # type: ignore[arg-type]
    assert calls[0][0] == [2] * 4  # the original map uses the given target
    assert all(t == pred for t, pred in calls[1:])  # then the random model's own prediction
    assert res.targets is not None and res.targets[1:].tolist() == [p for _, p in calls[1:]]


def test_batches_reach_the_saliency_function_in_bounded_chunks(tiny_cnn: nn.Module) -> None:
    sizes: list[int] = []

    def recorder(model: nn.Module, x: torch.Tensor, target: object) -> torch.Tensor:
        sizes.append(x.shape[0])
        return _input_intensity(model, x, target)

    x = torch.rand(5, 3, 8, 8)
    target = torch.tensor([0, 1, 2, 3, 0])
    res = parameter_randomization(tiny_cnn, x, target, recorder, layers=["fc"], batch_size=2)  # type: ignore[arg-type]
    assert sizes == [2, 2, 1, 2, 2, 1]
    assert res.targets is not None and res.targets[0].tolist() == target.tolist()


def test_class_sensitivity_of_a_class_blind_map_is_one(tiny_cnn: nn.Module) -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    res = class_sensitivity(tiny_cnn, x, _input_intensity)  # type: ignore[arg-type]
    assert torch.allclose(res.correlations, torch.ones(4, dtype=torch.float64))
    assert res.mean == pytest.approx(1.0)
    with torch.no_grad():
        out = tiny_cnn(x)
    assert res.max_class.tolist() == out.argmax(1).tolist()
    assert res.min_class.tolist() == out.argmin(1).tolist()


def test_class_sensitivity_of_a_linear_model_compares_its_class_weights() -> None:
    gen = torch.Generator().manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 5))
    x = torch.rand(3, 3, 6, 6, generator=gen)
    # The gradient of a linear score is the class's weight vector, whatever the image.
    res = class_sensitivity(linear, x, lambda m, xx, t: input_gradient(m, xx, t).sum(1, True))
    weight = linear[1].weight.detach().view(5, 3, 6, 6).sum(1)
    for i in range(3):
        hi, lo = int(res.max_class[i]), int(res.min_class[i])
        expected = spearmanr(weight[hi].flatten().numpy(), weight[lo].flatten().numpy()).statistic
        assert res.correlations[i].item() == pytest.approx(expected, abs=1e-9)
    assert res.mean == pytest.approx(float(np.mean(res.correlations.numpy())))


def test_bad_input_is_named(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(InputError, match="no parameters"):
        parameter_randomization(tiny_cnn, x, 0, _input_intensity, layers=["relu1"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mode"):
        parameter_randomization(tiny_cnn, x, 0, _input_intensity, mode="top")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="one map per input"):
        parameter_randomization(tiny_cnn, x, 0, lambda m, xx, t: xx[:1])
    with pytest.raises(InputError, match="same shape"):
        spearman(torch.ones(2, 3), torch.ones(3, 2))


def test_results_round_trip_and_plot(tiny_cnn: nn.Module, tmp_path: object) -> None:
    x = torch.rand(2, 3, 8, 8)
    res = parameter_randomization(tiny_cnn, x, 0, _gradient, map_size=4)
    assert res.maps.shape == (5, 2, 1, 4, 4)
    back = SanityResult.load(res.save(f"{tmp_path}/sanity"))
    assert back.layers == res.layers and torch.equal(back.spearman, res.spearman)
    assert isinstance(res.plot(), Figure)
    cs = class_sensitivity(tiny_cnn, x, _gradient)
    cs_back = ClassSensitivityResult.load(cs.save(f"{tmp_path}/cs"))
    assert torch.equal(cs_back.correlations, cs.correlations)
    assert math.isfinite(cs.mean)
    assert isinstance(cs.plot(), Figure)
