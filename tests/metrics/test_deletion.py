"""Deletion and insertion curves against hand-computable models and a brute-force loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.integrate import trapezoid
from scipy.ndimage import correlate, gaussian_filter
from torch import nn

from convscope.core import InputError
from convscope.data.normalization import with_normalization
from convscope.metrics import (
    InsertionDeletionResult,
    deletion_curve,
    insertion_curve,
    rise_blur_kernel,
)


class LinearScore(nn.Module):
    """Class 0 scores sum(W ⊙ x) + b, class 1 its negative: every curve is a partial sum."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.3) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weight).flatten(1).sum(1) + self.bias
        return torch.stack((s, -s), dim=1)


class BoxMean(nn.Module):
    """Class 0 scores the mean intensity inside a planted box, class 1 outside it."""

    def __init__(self, box: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("box", box.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x.mean(1) * self.box).flatten(1).sum(1) / self.box.sum()
        outside = (x.mean(1) * (1 - self.box)).flatten(1).sum(1) / (1 - self.box).sum()
        return torch.stack((inside, outside), dim=1)


def _data(n: int = 3, h: int = 6, w: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, h, w, generator=gen)
    weight = torch.randn(3, h, w, generator=gen)
    sal = torch.rand(n, 1, h, w, generator=gen)
    return x, weight, sal


def _order(sal: np.ndarray) -> list[int]:
    """Pixels by decreasing saliency, ties by row-major index (a Python stable sort)."""
    flat = sal.ravel().tolist()
    return sorted(range(len(flat)), key=lambda u: -flat[u])


def _counts_steps(hw: int, steps: int) -> list[int]:
    return [t * hw // steps for t in range(steps + 1)]


def _trapezoid(y: np.ndarray, dx: float) -> float:
    return float(trapezoid(y, dx=dx))


@pytest.mark.parametrize("steps", [1, 4, 7, 30])
def test_deletion_of_a_linear_model_is_a_partial_sum_over_the_ranking(steps: int) -> None:
    x, weight, sal = _data()
    model = LinearScore(weight)
    res = deletion_curve(
        model, x, 0, sal, protocol=None, steps=steps, substrate="zero", output="logit"
    )
    hw = 30
    contrib = (x * weight).sum(1).flatten(1).double().numpy()  # per-pixel w·x
    for i in range(x.shape[0]):
        order = _order(sal[i, 0].numpy())
        expected = [
            contrib[i].sum() - contrib[i][order[:k]].sum() + 0.3 for k in _counts_steps(hw, steps)
        ]
        assert np.allclose(res.scores[i].numpy(), expected, atol=1e-4)
    assert res.counts.tolist() == _counts_steps(hw, steps)
    assert torch.allclose(res.fractions, res.counts.double() / hw)


def test_insertion_of_a_linear_model_mixes_image_and_constant_substrate() -> None:
    x, weight, sal = _data()
    model = LinearScore(weight)
    res = insertion_curve(
        model, x, 1, sal, protocol=None, pixels_per_step=4, substrate=0.25, output="logit"
    )
    counts = [min(4 * t, 30) for t in range(9)]  # ceil(30 / 4) = 8 steps
    assert res.counts.tolist() == counts
    img = (x * weight).sum(1).flatten(1).double().numpy()
    sub = (0.25 * weight).sum(0).flatten().double().numpy()
    for i in range(x.shape[0]):
        order = _order(sal[i, 0].numpy())
        expected = [
            -(sub.sum() - sub[order[:k]].sum() + img[i][order[:k]].sum() + 0.3) for k in counts
        ]
        assert np.allclose(res.scores[i].numpy(), expected, atol=1e-4)


def test_auc_is_the_trapezoid_on_the_step_axis() -> None:
    x, weight, sal = _data()
    res = deletion_curve(LinearScore(weight), x, 0, sal, protocol="xplique", steps=7)
    for i in range(x.shape[0]):
        scores = res.scores[i].numpy()
        assert res.auc[i].item() == pytest.approx(_trapezoid(scores, 1 / 7), rel=1e-9)
        # Xplique's formula: mean of the step midpoints.
        assert res.auc[i].item() == pytest.approx(np.mean(scores[:-1] + scores[1:]) * 0.5)
    assert res.mean_auc == pytest.approx(float(res.auc.mean()))


def test_ties_are_broken_in_row_major_order() -> None:
    x, weight, _ = _data(n=2)
    flat_sal = torch.ones(2, 1, 6, 5)
    res = deletion_curve(
        LinearScore(weight),
        x,
        0,
        flat_sal,
        protocol=None,
        steps=30,
        substrate="zero",
        output="logit",
    )
    contrib = (x * weight).sum(1).flatten(1).double()
    expected = contrib.sum(1, keepdim=True) - torch.cat(
        (torch.zeros(2, 1, dtype=torch.float64), contrib.cumsum(1)), dim=1
    )
    assert torch.allclose(res.scores, expected + 0.3, atol=1e-4)


def test_saliency_channels_are_averaged_and_resized() -> None:
    x, weight, _ = _data(n=2, h=8, w=8)
    model = LinearScore(weight)
    gen = torch.Generator().manual_seed(5)
    rgb = torch.rand(2, 3, 8, 8, generator=gen)
    kw = {"protocol": None, "steps": 8, "substrate": "zero", "output": "logit"}
    a = deletion_curve(model, x, 0, rgb, **kw)  # type: ignore[arg-type]
    b = deletion_curve(model, x, 0, rgb.mean(1, keepdim=True), **kw)  # type: ignore[arg-type]
    assert torch.allclose(a.scores, b.scores)
    low = torch.rand(2, 1, 4, 4, generator=gen)
    up = nn.functional.interpolate(low, size=(8, 8), mode="bilinear", align_corners=False)
    c = deletion_curve(model, x, 0, low, **kw)  # type: ignore[arg-type]
    d = deletion_curve(model, x, 0, up, **kw)  # type: ignore[arg-type]
    assert torch.allclose(c.scores, d.scores)


def _rise_loop(
    model: nn.Module, x: torch.Tensor, target: int, sal: torch.Tensor, substrate: torch.Tensor
) -> np.ndarray:
    """RISE's CausalMetric.single_run (deletion), as a loop over steps of W pixels."""
    n_pix = x.shape[2] * x.shape[3]
    step = x.shape[3]
    n_steps = (n_pix + step - 1) // step
    start = x.clone().reshape(3, n_pix)
    finish = substrate.reshape(3, n_pix)
    order = _order(sal.numpy())
    scores = []
    for i in range(n_steps + 1):
        with torch.no_grad():
            probs = model(start.reshape(1, *x.shape[1:])).softmax(1)
        scores.append(float(probs[0, target]))
        for u in order[step * i : step * (i + 1)]:
            start[:, u] = finish[:, u]
    return np.array(scores)


def test_rise_protocol_matches_a_brute_force_loop(tiny_cnn: nn.Module) -> None:
    model = with_normalization(tiny_cnn, mean=(0.3, 0.5, 0.7), std=(0.2, 0.25, 0.3))
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    sal = torch.rand(2, 1, 8, 8, generator=gen)
    res = deletion_curve(model, x, [1, 3], sal, protocol="rise", batch_size=5)
    assert res.steps == 8 and res.output == "softmax" and res.substrate == "mean"
    mean = torch.tensor([0.3, 0.5, 0.7]).view(3, 1, 1)
    for i, c in enumerate([1, 3]):
        # RISE deletes to zeros of the normalised image: the normalisation mean colour.
        oracle = _rise_loop(model, x[i : i + 1], c, sal[i, 0], mean.expand(3, 8, 8))
        assert np.allclose(res.scores[i].numpy(), oracle, atol=1e-5)
        auc = (oracle.sum() - oracle[0] / 2 - oracle[-1] / 2) / (len(oracle) - 1)  # RISE's auc
        assert res.auc[i].item() == pytest.approx(auc, abs=1e-6)


def test_rise_insertion_substrate_is_the_normalised_space_blur(tiny_cnn: nn.Module) -> None:
    mean, std = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)
    model = with_normalization(tiny_cnn, mean=mean, std=std)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 12, 12, generator=gen)
    sal = torch.rand(1, 1, 12, 12, generator=gen)
    res = insertion_curve(model, x, 2, sal, protocol="rise")
    assert res.substrate == "blur" and res.steps == 12
    # RISE: gkern(11, 5) = gaussian_filter of an impulse; conv2d(normalised, padding=5).
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kern = gaussian_filter(impulse, 5)
    assert np.allclose(rise_blur_kernel().numpy(), kern, atol=1e-12)
    m = np.array(mean).reshape(3, 1, 1)
    s = np.array(std).reshape(3, 1, 1)
    normed = (x[0].double().numpy() - m) / s
    blurred = np.stack([correlate(ch, kern, mode="constant", cval=0.0) for ch in normed])
    substrate = torch.from_numpy(blurred * s + m).float()
    with torch.no_grad():
        first = model(substrate[None]).softmax(1)[0, 2].item()
        last = model(x).softmax(1)[0, 2].item()
    assert res.scores[0, 0].item() == pytest.approx(first, abs=1e-5)
    assert res.scores[0, -1].item() == pytest.approx(last, abs=1e-5)


def test_xplique_protocol_settings() -> None:
    x, weight, sal = _data(n=2, h=8, w=8)
    res = deletion_curve(LinearScore(weight), x, 0, sal, protocol="xplique")
    expected = np.linspace(0, 64, 11, dtype=np.int32).tolist()  # Xplique's schedule
    assert res.counts.tolist() == expected
    assert res.output == "logit" and res.substrate == "constant 0"
    half = deletion_curve(LinearScore(weight), x, 0, sal, protocol="xplique", max_fraction=0.5)
    assert half.counts.tolist() == np.linspace(0, 32, 11, dtype=np.int32).tolist()
    # A preset's value is overridden by an explicit argument.
    assert deletion_curve(LinearScore(weight), x, 0, sal, protocol="xplique", steps=4).steps == 4


def test_batch_size_does_not_change_the_curves(tiny_cnn: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 8, 8, generator=gen)
    sal = torch.rand(3, 1, 8, 8, generator=gen)
    target = torch.tensor([0, 2, 1])
    runs = [
        insertion_curve(tiny_cnn, x, target, sal, protocol="xplique", batch_size=b).scores
        for b in (1, 5, 64)
    ]
    assert torch.allclose(runs[0], runs[1], atol=1e-6)
    assert torch.allclose(runs[0], runs[2], atol=1e-6)
    callable_target = insertion_curve(
        tiny_cnn, x, lambda out: out[:, 0] - out[:, 1], sal, protocol="xplique", batch_size=5
    )
    logits = insertion_curve(tiny_cnn, x, 0, sal, protocol="xplique").scores
    other = insertion_curve(tiny_cnn, x, 1, sal, protocol="xplique").scores
    assert torch.allclose(callable_target.scores, logits - other, atol=1e-5)


def test_a_perfect_map_beats_random_maps_on_a_planted_region() -> None:
    box = torch.zeros(16, 16)
    box[4:9, 6:12] = 1
    model = BoxMean(box)
    gen = torch.Generator().manual_seed(0)
    x = 0.5 + 0.5 * torch.rand(4, 3, 16, 16, generator=gen)
    perfect = box.expand(4, 1, 16, 16)
    kw = {"protocol": "xplique", "steps": 16}
    best_del = deletion_curve(model, x, 0, perfect, **kw).auc  # type: ignore[arg-type]
    best_ins = insertion_curve(model, x, 0, perfect, **kw).auc  # type: ignore[arg-type]
    for seed in range(3):
        rand = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(10 + seed))
        assert bool((best_del < deletion_curve(model, x, 0, rand, **kw).auc).all())  # type: ignore[arg-type]
        assert bool((best_ins > insertion_curve(model, x, 0, rand, **kw).auc).all())  # type: ignore[arg-type]


def test_mean_substrate_is_black_without_a_normalisation(tiny_cnn: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 8, 8, generator=gen)
    sal = torch.rand(1, 1, 8, 8, generator=gen)
    res = deletion_curve(tiny_cnn, x, 1, sal, protocol="rise")
    with torch.no_grad():
        black = tiny_cnn(torch.zeros(1, 3, 8, 8)).softmax(1)[0, 1].item()
        start = tiny_cnn(x).softmax(1)[0, 1].item()
    assert res.scores[0, -1].item() == pytest.approx(black, abs=1e-6)
    assert res.scores[0, 0].item() == pytest.approx(start, abs=1e-6)


def test_user_model_state_is_restored(tiny_cnn: nn.Module) -> None:
    tiny_cnn.train()
    x = torch.rand(1, 3, 8, 8)
    deletion_curve(tiny_cnn, x, 0, torch.rand(1, 1, 8, 8), protocol="xplique")
    assert tiny_cnn.training
    assert all(p.requires_grad for p in tiny_cnn.parameters())


def test_bad_input_is_named(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 8, 8)
    sal = torch.rand(2, 1, 8, 8)
    with pytest.raises(InputError, match="steps= or pixels_per_step="):
        deletion_curve(tiny_cnn, x, 0, sal, protocol=None, substrate="zero", output="logit")
    with pytest.raises(InputError, match="not both"):
        deletion_curve(tiny_cnn, x, 0, sal, steps=3, pixels_per_step=2)
    with pytest.raises(InputError, match="N = 2 maps"):
        deletion_curve(tiny_cnn, x, 0, sal[:1])
    with pytest.raises(InputError, match="NaN"):
        deletion_curve(tiny_cnn, x, 0, torch.full_like(sal, float("nan")))
    with pytest.raises(InputError, match="Unknown substrate"):
        deletion_curve(tiny_cnn, x, 0, sal, substrate="gray")
    with pytest.raises(InputError, match="protocol"):
        deletion_curve(tiny_cnn, x, 0, sal, protocol="quantus")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="broadcast"):
        deletion_curve(tiny_cnn, x, 0, sal, substrate=torch.zeros(4, 1, 1))
    with pytest.raises(InputError, match="max_fraction"):
        deletion_curve(tiny_cnn, x, 0, sal, max_fraction=0.0)


def test_result_round_trip_and_plot(tmp_path: object) -> None:
    x, weight, sal = _data()
    res = deletion_curve(LinearScore(weight), x, 0, sal, protocol="xplique")
    back = InsertionDeletionResult.load(res.save(f"{tmp_path}/del"))
    assert torch.equal(back.scores, res.scores)
    assert back.protocol == "xplique" and back.steps == 10
    assert isinstance(res.plot(), Figure)
