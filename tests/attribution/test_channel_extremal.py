"""Channel extremal perturbation (thesis ch. 4 §5) against brute force and a NumPy re-derivation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import convscope
from convscope.attribution.channel_extremal import (
    THESIS_CHANNEL_AREAS,
    ChannelExtremalResult,
    channel_extremal_perturbation,
    channel_saliency,
    default_channel_areas,
    lambda_schedule,
    resolve_channel_areas,
    upsample_saliency,
)
from convscope.core import InputError, LayerNotFoundError
from convscope.datasets import shapes


class PooledHead(nn.Module):
    """conv -> ReLU (``act``, the probed layer) -> global mean -> linear head.

    The score is linear in a channel mask m applied at ``act``:
    Φ(m ⊗ A) = b + Σ_k m_k w_k mean(A_k), so the best subset of a channels is found by brute
    force and the optimisation's gradient is known in closed form.
    """

    def __init__(self, channels: int, weight: torch.Tensor, bias: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(channels, weight.shape[0])
        with torch.no_grad():
            self.conv.bias.fill_(0.2)  # every channel alive on [0, 1] images
            self.head.weight.copy_(weight)
            self.head.bias.fill_(bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.pool(self.features(x))))


def _images(n: int, seed: int = 0, side: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _planted(channels: int = 8, relevant: tuple[int, ...] = (2, 5)) -> PooledHead:
    torch.manual_seed(0)
    weight = torch.zeros(2, channels)
    weight[0, list(relevant)] = 1.0
    weight[1] = torch.randn(channels)
    return PooledHead(channels, weight).eval()


def _brute_force(
    model: PooledHead, x: torch.Tensor, target: int, count: int, delete: bool = False
) -> torch.Tensor:
    """Best score over every binary mask with ``count`` ones: max (preserve) or min (delete)."""
    with torch.no_grad():
        acts = model.features(x)
        channels = acts.shape[1]
        best = []
        for subset in itertools.combinations(range(channels), count):
            mask = torch.zeros(channels)
            mask[list(subset)] = 1.0
            keep = 1.0 - mask if delete else mask
            logits = model.head(model.flatten(model.pool(acts * keep.view(1, -1, 1, 1))))
            best.append(logits[:, target])
        scores = torch.stack(best, dim=1)
        return scores.min(1).values if delete else scores.max(1).values


def test_planted_channels_are_recovered() -> None:
    model = _planted()
    x = _images(3)
    res = channel_extremal_perturbation(
        model, x, 0, "act", (1, 2, 4, 8), max_iter=80, ramp_iters=40, progress=False
    )
    assert res.masks.shape == (3, 4, 8)
    # Area 2: exactly the two planted channels, as a (near) binary mask of sum 2.
    planted = torch.zeros(8)
    planted[[2, 5]] = 1.0
    for i in range(3):
        assert torch.equal((res.masks[i, 1] > 0.5).float(), planted)
    torch.testing.assert_close(res.masks.sum(-1), res.areas.float().expand(3, 4), atol=0.05, rtol=0)
    # Scores of the binarised masks equal the brute-force optimum at every area.
    for j, count in enumerate(res.areas.tolist()):
        torch.testing.assert_close(res.binary_scores[:, j], _brute_force(model, x, 0, count))
    with torch.no_grad():
        full = model(x)[:, 0]
    torch.testing.assert_close(res.full_score, full)
    torch.testing.assert_close(res.null_score, torch.full((3,), 0.3))  # head bias alone
    # a* (eq. 10): both planted channels are needed to reach Φ(x).
    assert res.optimal_area.tolist() == [2, 2, 2]
    torch.testing.assert_close(res.optimal_masks(), res.masks[:, 1])
    # The first recorded score is that of the all-ones start, i.e. Φ(x).
    torch.testing.assert_close(res.history[:, :, 0, 0], full.view(3, 1).expand(3, 4))


def test_score_increases_with_channels_and_matches_brute_force() -> None:
    torch.manual_seed(1)
    weight = torch.rand(2, 6) + 0.05  # every channel contributes positively
    model = PooledHead(6, weight).eval()
    x = _images(2, seed=3)
    res = channel_extremal_perturbation(
        model, x, 1, "act", max_iter=80, ramp_iters=40, progress=False
    )
    assert res.areas.tolist() == [1, 2, 3, 4, 5, 6]  # default for a narrow layer
    assert bool((res.binary_scores.diff(dim=1) > 0).all())
    assert bool((res.scores.diff(dim=1) > 0).all())
    for j, count in enumerate(res.areas.tolist()):
        torch.testing.assert_close(res.binary_scores[:, j], _brute_force(model, x, 1, count))
    assert res.optimal_area.tolist() == [6, 6]  # only every channel gives back Φ(x)


def test_deletion_finds_the_channels_whose_removal_hurts_most() -> None:
    model = _planted()
    x = _images(2, seed=4)
    res = channel_extremal_perturbation(
        model, x, 0, "act", (1, 2, 3), variant="delete", max_iter=80, ramp_iters=40,
        progress=False,
    )  # fmt: skip
    for j, count in enumerate(res.areas.tolist()):
        expected = _brute_force(model, x, 0, count, delete=True)
        torch.testing.assert_close(res.binary_scores[:, j], expected)
    # Deleting both planted channels leaves the bias alone: the null score, reached at a = 2.
    assert res.optimal_area.tolist() == [2, 2]
    assert bool((res.masks[:, 1, [2, 5]] > 0.99).all())


def _numpy_reference(
    contributions: np.ndarray,
    count: int,
    *,
    iters: int,
    lr: float,
    momentum: float,
    dampening: float,
    lambda_max: float,
    ramp: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The thesis optimisation written out for a linear score Φ = b + Σ_k m_k c_k.

    The reward gradient is c for both variants. The sorted-vector loss assigns reference 1 to
    the ``count`` largest entries, ties broken by the reward gradient; SGD as in PyTorch
    (first step without dampening), clamp to [0, 1]. Returns the final mask and R_a per step.
    """
    channels = contributions.shape[0]
    m = np.ones(channels)
    velocity = np.zeros(channels)
    losses = []
    for t in range(iters):
        lam = lambda_max * min(1.0, t / ramp)
        order = sorted(range(channels), key=lambda k: (m[k], contributions[k]))
        ref = np.zeros(channels)
        ref[order[channels - count :]] = 1.0
        losses.append(np.mean((m - ref) ** 2))
        grad = lam * 2.0 * (m - ref) / channels - contributions
        velocity = grad if t == 0 else momentum * velocity + (1.0 - dampening) * grad
        m = np.clip(m - lr * velocity, 0.0, 1.0)
    return m, np.array(losses)


@pytest.mark.parametrize("variant", ["preserve", "delete"])
def test_optimisation_matches_the_formulas(variant: str) -> None:
    torch.manual_seed(2)
    model = PooledHead(7, torch.randn(3, 7)).eval()  # mixed signs: some channels hurt
    x = _images(2, seed=5)
    settings = {"lr": 0.05, "momentum": 0.8, "dampening": 0.5, "lambda_max": 40.0}
    res = channel_extremal_perturbation(
        model, x, 2, "act", (2, 5), max_iter=60, ramp_iters=30, variant=variant,
        progress=False, **settings,
    )  # fmt: skip
    torch.testing.assert_close(res.lambdas, lambda_schedule(60, 40.0, 30).float())
    with torch.no_grad():
        contributions = (model.head.weight[2] * model.features(x).mean((2, 3))).double().numpy()
    for i in range(2):
        for j, count in enumerate((2, 5)):
            mask, losses = _numpy_reference(contributions[i], count, iters=60, ramp=30, **settings)
            np.testing.assert_allclose(res.masks[i, j].numpy(), mask, atol=1e-4)
            np.testing.assert_allclose(res.history[i, j, 1].numpy(), losses, atol=1e-5)


def test_lambda_ramp() -> None:
    lam = lambda_schedule(300, 1500.0, 150)
    assert lam.shape == (300,)
    assert lam[0] == 0.0 and lam[75] == 750.0
    torch.testing.assert_close(lam[1:151].diff(), torch.full((149,), 10.0, dtype=torch.float64))
    assert bool((lam[150:] == 1500.0).all())
    assert bool((lambda_schedule(5, 2.0, 0) == 2.0).all())


def test_batched_equals_one_image_at_a_time(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    x, target = images[:3], [1, 3, 0]
    kwargs = {"max_iter": 40, "ramp_iters": 20, "lambda_max": 100.0, "progress": False}
    batched = channel_extremal_perturbation(
        tiny_cnn, x, target, "conv2", (1, 3, 6), batch_size=4, **kwargs
    )
    for i in range(3):
        single = channel_extremal_perturbation(
            tiny_cnn, x[i : i + 1], target[i], "conv2", (1, 3, 6), **kwargs
        )
        for name in ("masks", "scores", "binary_scores", "history", "saliency"):
            torch.testing.assert_close(getattr(batched, name)[i], getattr(single, name)[0])
        assert batched.optimal_area[i] == single.optimal_area[0]
    # A row-wise callable target is the same target.
    by_callable = channel_extremal_perturbation(
        tiny_cnn, x[:1], lambda out: out[:, 1], "conv2", (1, 3, 6), **kwargs
    )
    torch.testing.assert_close(by_callable.masks[0], batched.masks[0])


def test_non_spatial_layer(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    """The flattened pooled features (N×6) feed a linear layer: brute force is exact."""
    res = channel_extremal_perturbation(
        tiny_cnn, images[:2], 3, "flatten", (1, 2, 4), max_iter=80, ramp_iters=40,
        progress=False,
    )  # fmt: skip
    acts: dict[str, torch.Tensor] = {}
    handle = tiny_cnn.flatten.register_forward_hook(lambda _m, _i, out: acts.update(a=out))
    with torch.no_grad():
        tiny_cnn(images[:2])
    handle.remove()
    a = acts["a"]
    for j, count in enumerate((1, 2, 4)):
        best = torch.stack(
            [
                tiny_cnn.fc(a * torch.isin(torch.arange(6), torch.tensor(s)).float())[:, 3]
                for s in itertools.combinations(range(6), count)
            ],
            dim=1,
        ).max(1)
        torch.testing.assert_close(res.binary_scores[:, j], best.values.detach())
    assert res.saliency.shape == (2, 3)
    torch.testing.assert_close(res.saliency, (res.masks * a[:, None, :]).sum(-1))


def test_model_state_is_restored(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    tiny_cnn.train()
    tiny_cnn.conv1.weight.requires_grad_(False)
    stats = tiny_cnn.bn.running_mean.clone()
    channel_extremal_perturbation(tiny_cnn, images[:2], 0, "relu1", (2,), max_iter=3)
    assert tiny_cnn.training and tiny_cnn.bn.training
    assert not tiny_cnn.conv1.weight.requires_grad
    assert all(p.requires_grad for n, p in tiny_cnn.named_parameters() if n != "conv1.weight")
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert torch.equal(tiny_cnn.bn.running_mean, stats)


def test_bad_layer_lists_close_names(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(LayerNotFoundError, match="conv2"):
        channel_extremal_perturbation(tiny_cnn, images, 0, "conv3", (1,), max_iter=2)


@pytest.mark.parametrize(
    ("areas", "message"),
    [(0, "out of range"), (7, "out of range"), (1.5, "fraction"), ([True], "boolean"),
     ([], "empty"), ("3", "ints")],
)  # fmt: skip
def test_bad_areas(areas: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_channel_areas(areas, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"variant": "dual"}, "variant"), ({"max_iter": 0}, "max_iter"),
     ({"ramp_iters": -1}, "ramp_iters"), ({"lr": 0.0}, "lr"), ({"momentum": 1.0}, "momentum")],
)  # fmt: skip
def test_bad_settings(
    tiny_cnn: nn.Module, images: torch.Tensor, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        channel_extremal_perturbation(tiny_cnn, images, 0, "conv2", (1,), **kwargs)  # type: ignore[arg-type]


def test_areas_counts_fractions_and_defaults() -> None:
    assert resolve_channel_areas([5, 0.5, 1, 0.01, 10], 10) == [1, 5, 10]
    assert resolve_channel_areas(torch.tensor([3, 1]), 8) == [1, 3]
    assert default_channel_areas(528) == list(THESIS_CHANNEL_AREAS)
    assert default_channel_areas(5) == [1, 2, 3, 4, 5]
    wide = default_channel_areas(2048)
    assert wide[0] == 1 and wide[-1] == 2048 and len(wide) == len(set(wide))


def test_channel_saliency_and_upsampling() -> None:
    gen = torch.Generator().manual_seed(0)
    masks, acts = torch.rand(2, 3, 4, generator=gen), torch.rand(2, 4, 5, 6, generator=gen)
    expected = torch.zeros(2, 3, 5, 6)
    for n, k, c in itertools.product(range(2), range(3), range(4)):
        expected[n, k] += masks[n, k, c] * acts[n, c]
    torch.testing.assert_close(channel_saliency(masks, acts), expected)
    torch.testing.assert_close(channel_saliency(masks[:, 1], acts), expected[:, 1])
    with pytest.raises(InputError, match="same N and C"):
        channel_saliency(masks[:, :, :3], acts)
    up = upsample_saliency(expected, (10, 12), mode="nearest")
    torch.testing.assert_close(up, expected.repeat_interleave(2, 2).repeat_interleave(2, 3))
    flat = upsample_saliency(torch.full((2, 5, 6), 0.7), (32, 32))
    assert flat.shape == (2, 32, 32)
    torch.testing.assert_close(flat, torch.full((2, 32, 32), 0.7))


def test_extremal_area_tau_and_binary(tmp_path: Path) -> None:
    model = _planted()
    x = _images(2, seed=6)
    res = channel_extremal_perturbation(
        model, x, 0, "act", (1, 2, 8), max_iter=80, ramp_iters=40, tau=0.5, progress=False
    )
    for tau in (0.5, 0.9, 1.0):
        for binary in (False, True):
            scores = res.binary_scores if binary else res.scores
            expected = [
                next(
                    (
                        a
                        for a, s in zip(res.areas.tolist(), row.tolist(), strict=True)
                        if s >= tau * f - 1e-5 * max(1.0, abs(f))  # documented round-off
                    ),
                    -1,
                )
                for row, f in zip(scores, res.full_score.tolist(), strict=True)
            ]
            assert res.extremal_area(tau, binary=binary).tolist() == expected
    assert res.optimal_area.tolist() == res.extremal_area(0.5).tolist()
    assert res.extremal_area(10.0).tolist() == [-1, -1]  # no area reaches ten times Φ(x)
    loaded = ChannelExtremalResult.load(res.save(tmp_path / "cep"))
    for name in ("masks", "areas", "scores", "history", "saliency", "optimal_area"):
        assert torch.equal(getattr(loaded, name), getattr(res, name))
    assert (loaded.layer, loaded.variant, loaded.tau, loaded.seed) == ("act", "preserve", 0.5, 0)
    fig = res.plot(1)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), res.scores[1].numpy())
    np.testing.assert_allclose(ax.lines[1].get_ydata(), res.binary_scores[1].numpy())


def test_shapes_cnn_smoke() -> None:
    model = convscope.load_model("shapes-cnn")
    world = shapes(2, seed=0)
    labels = torch.as_tensor(world.labels)
    res = channel_extremal_perturbation(
        model, world.images, labels, "features.relu3", (1, 8, 64), max_iter=4, progress=False
    )
    assert res.masks.shape == (2, 3, 64) and res.saliency.shape == (2, 3, 16, 16)
    assert bool(((res.masks >= 0) & (res.masks <= 1)).all())
    with torch.no_grad():
        full = model(world.images).gather(1, labels.view(-1, 1))[:, 0]
    torch.testing.assert_close(res.full_score, full)
    # Keeping all 64 channels (the binarised mask of the last area) is the identity.
    torch.testing.assert_close(res.binary_scores[:, 2], full, rtol=1e-4, atol=1e-4)
    assert upsample_saliency(res.saliency, (64, 64)).shape == (2, 3, 64, 64)
