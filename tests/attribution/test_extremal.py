"""Extremal perturbations on planted problems, against per-row runs and closed forms.

The planted model scores class 0 as 100 × the mean intensity inside a known box (class 1 is
its negative). With the fade perturbation the perturbed image is m·x, so every score has a
closed form in the mask, and the optimal preservation mask of the box's area is the box.
Rows (image × area) are independent problems, so a batched run must equal separate runs.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from convscope.attribution.extremal import (
    EarlyStopping,
    ExtremalResult,
    area_weight_schedule,
    contrastive_reward,
    extremal_perturbation,
    simple_reward,
)
from convscope.core.errors import InputError, TargetError
from convscope.core.jsonable import to_jsonable
from convscope.core.targets import Target
from convscope.data.filters import gaussian_blur


class BoxScore(nn.Module):
    """Class 0: 100 × mean intensity inside ``box``; class 1: its negative."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 100.0 * x[:, :, self.rows, self.cols].mean((1, 2, 3))
        return torch.stack([score, -score], 1)


class WeightedScore(nn.Module):
    """100 × a weighted mean intensity: every pixel counts, those of an object five times more."""

    weights: torch.Tensor

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights
        score = 100.0 * (x * w).sum((1, 2, 3)) / (3 * w.sum())
        return torch.stack([score, -score], 1)


BOX = (slice(16, 48), slice(8, 40))  # 32×32 in a 64×64 image: area 0.25
SMALL_BOX = (slice(8, 24), slice(4, 20))  # 16×16 in a 32×32 image: area 0.25
PLANTED: dict[str, Any] = {
    "perturbation": "fade",
    "step": 4,
    "sigma": 8.0,
    "jitter": False,
    "progress": False,
}
SMALL: dict[str, Any] = {
    "perturbation": "fade",
    "step": 4,
    "sigma": 4.0,
    "jitter": False,
    "progress": False,
}


def _box_image(size: int, box: tuple[slice, slice], inside: float = 0.9) -> torch.Tensor:
    x = torch.full((1, 3, size, size), 0.1)
    x[:, :, box[0], box[1]] = inside
    return x


def _box_mask(size: int, box: tuple[slice, slice]) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[box] = True
    return mask


def _top(mask: torch.Tensor, area: float) -> torch.Tensor:
    """The binarized mask: the round(a n) largest values."""
    flat = mask.flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(round(area * flat.numel())).indices] = True
    return keep.reshape(mask.shape)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.fixture(scope="module")
def planted_preserve() -> ExtremalResult:
    return extremal_perturbation(
        BoxScore(*BOX), _box_image(64, BOX), 0, 0.25, max_iter=500, **PLANTED
    )


def test_preservation_recovers_the_planted_box(planted_preserve: ExtremalResult) -> None:
    mask = planted_preserve.masks[0, 0, 0]
    assert mask.shape == (64, 64)
    assert _iou(_top(mask, 0.25), _box_mask(64, BOX)) >= 0.8
    # keeping the box keeps most of the score, fading everything else costs nothing
    assert float(planted_preserve.scores[0, 0]) >= 0.85 * float(planted_preserve.full_scores[0])


def test_deletion_marks_the_planted_box_as_the_region_to_delete() -> None:
    # variant="delete" perturbs (1 - m) ⊗ x: the returned mask is 1 on the deleted region.
    result = extremal_perturbation(
        BoxScore(*BOX), _box_image(64, BOX), 0, 0.25, variant="delete", max_iter=500, **PLANTED
    )
    mask = result.masks[0, 0, 0]
    assert _iou(_top(mask, 0.25), _box_mask(64, BOX)) >= 0.8
    # deleting the marked region removes most of the score
    assert float(result.deletion_scores[0, 0]) <= 0.15 * float(result.full_scores[0])


def test_scores_have_the_closed_form_of_the_fade_perturbation(
    planted_preserve: ExtremalResult,
) -> None:
    # fade: m ⊗ x = m x, so Φ(m ⊗ x) = 100 mean_box(m x) and Φ((1 - m) ⊗ x) = 100 mean_box((1-m) x)
    mask = planted_preserve.masks[0, 0, 0][BOX]
    torch.testing.assert_close(
        planted_preserve.scores[0, 0], 100.0 * (0.9 * mask).mean(), rtol=1e-5, atol=1e-4
    )
    torch.testing.assert_close(
        planted_preserve.deletion_scores[0, 0], 100.0 * (0.9 * (1 - mask)).mean(),
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip
    torch.testing.assert_close(planted_preserve.full_scores, torch.tensor([90.0]))
    torch.testing.assert_close(planted_preserve.perturbed_scores, torch.tensor([0.0]))


def test_final_masks_cover_their_area_of_the_image() -> None:
    # A realistic run (default 800 iterations and schedule) on a model that uses every pixel:
    # the area constraint ||m||_1 = a|Ω| must hold on the image (paper, eq. 2), whatever
    # the area, also when it is larger than the object.
    weights = torch.full((32, 32), 0.2)
    weights[SMALL_BOX] = 1.0
    x = torch.full((1, 3, 32, 32), 0.5)
    x[:, :, SMALL_BOX[0], SMALL_BOX[1]] = 0.9
    areas = (0.1, 0.25, 0.6)
    result = extremal_perturbation(WeightedScore(weights), x, 0, areas, **SMALL)
    means = result.masks[0, :, 0].mean((1, 2))
    torch.testing.assert_close(means, torch.tensor(areas), rtol=0, atol=0.05)


def _small_problem() -> tuple[BoxScore, torch.Tensor]:
    x = torch.cat([_box_image(32, SMALL_BOX, 0.9), _box_image(32, SMALL_BOX, 0.6)])
    x[1, :, :4] = 0.3  # the two images differ outside the box too
    return BoxScore(*SMALL_BOX), x


def test_batched_rows_equal_one_call_per_image_and_area(tiny_cnn: nn.Module) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    options: dict[str, Any] = {
        "max_iter": 25,
        "step": 2,
        "sigma": 2.0,
        "max_blur": 3.0,
        "progress": False,
    }
    areas, targets = (0.2, 0.5), [1, 3]
    batched = extremal_perturbation(tiny_cnn, x, targets, areas, **options)
    assert batched.masks.shape == (2, 2, 1, 16, 16)
    for n in range(2):
        for k, area in enumerate(areas):
            single = extremal_perturbation(tiny_cnn, x[n : n + 1], targets[n], area, **options)
            torch.testing.assert_close(batched.masks[n, k], single.masks[0, 0], rtol=0, atol=1e-5)
            torch.testing.assert_close(batched.scores[n, k], single.scores[0, 0])
            torch.testing.assert_close(
                batched.history[n, k], single.history[0, 0], rtol=1e-4, atol=1e-5
            )
    # the masks are not all alike, so the comparison above can tell rows apart
    assert (batched.masks[0, 0] - batched.masks[1, 0]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["preserve", "dual"])
def test_batch_size_below_the_number_of_rows_changes_nothing(
    tiny_cnn: nn.Module, variant: str
) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    options: dict[str, Any] = {
        "max_iter": 20, "step": 2, "sigma": 2.0, "max_blur": 3.0, "progress": False,
        "variant": variant,
    }  # fmt: skip
    full = extremal_perturbation(tiny_cnn, x, [0, 2], (0.3, 0.6), **options)
    for batch_size in (1, 3):  # the dual variant spends two images per row
        split = extremal_perturbation(
            tiny_cnn, x, [0, 2], (0.3, 0.6), batch_size=batch_size, **options
        )
        torch.testing.assert_close(split.masks, full.masks, rtol=0, atol=1e-5)
        torch.testing.assert_close(split.scores, full.scores, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(split.deletion_scores, full.deletion_scores)


def test_model_state_is_restored_and_no_parameter_gradient_is_created(
    tiny_cnn: nn.Module,
) -> None:
    model = tiny_cnn.train()
    model.conv1.bias.requires_grad_(False)  # type: ignore[union-attr]
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    extremal_perturbation(model, x, 1, 0.3, max_iter=4, step=2, sigma=2.0, progress=False)
    assert all(module.training for module in model.modules())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    for name, b in model.named_buffers():  # eval mode during the run: BN statistics untouched
        assert torch.equal(b, buffers[name]), name
    model.eval()
    extremal_perturbation(model, x, 1, 0.3, max_iter=2, step=2, sigma=2.0, progress=False)
    assert not any(module.training for module in model.modules())


def test_two_calls_give_identical_results(tiny_cnn: nn.Module) -> None:
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    options: dict[str, Any] = {
        "max_iter": 15,
        "step": 3,
        "sigma": 3.0,
        "max_blur": 2.0,
        "progress": False,
    }
    first = extremal_perturbation(tiny_cnn, x, 2, (0.2, 0.4), **options)
    second = extremal_perturbation(tiny_cnn, x, 2, (0.2, 0.4), **options)
    assert torch.equal(first.masks, second.masks)
    assert torch.equal(first.history, second.history)


def test_torchray_area_weights_grow_by_1_0035_per_iteration() -> None:
    weights = area_weight_schedule(800)
    assert weights.shape == (800,)
    expected, w = [], 300.0
    for _ in range(800):  # TorchRay: regul_weight *= 1.0035 after every iteration
        expected.append(w)
        w *= 1.0035
    torch.testing.assert_close(
        weights, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0
    )
    assert float(weights[198] / weights[0]) == pytest.approx(2.0, rel=0.01)  # ~198-step doubling
    custom = area_weight_schedule(5, area_weight=10.0, growth=2.0)
    assert custom.tolist() == [10.0, 20.0, 40.0, 80.0, 160.0]


@pytest.mark.parametrize("iterations", [9, 10, 11, 1600])
def test_paper_area_weights_double_at_one_and_two_thirds(iterations: int) -> None:
    weights = area_weight_schedule(iterations, schedule="paper")
    expected = [
        300.0 * 2 ** ((t >= iterations / 3) + (t >= 2 * iterations / 3)) for t in range(iterations)
    ]
    assert weights.tolist() == expected
    assert weights[0] == 300.0 and weights[-1] == 1200.0


def test_unknown_schedule_raises_input_error() -> None:
    with pytest.raises(InputError, match="'torchray' or 'paper'"):
        area_weight_schedule(10, schedule=cast(Any, "cosine"))


def test_early_stopping_stops_before_max_iter_near_the_full_run(
    planted_preserve: ExtremalResult,
) -> None:
    stopper = EarlyStopping(check_every=25, min_iter=100, area_tol=0.05)
    result = extremal_perturbation(
        BoxScore(*BOX), _box_image(64, BOX), 0, 0.25, max_iter=500, early_stop=stopper, **PLANTED
    )
    stopped = int(result.iterations[0, 0])
    assert 100 <= stopped < 500 and stopped % 25 == 0
    assert result.settings["early_stop"] == vars(stopper)
    history = result.history[0, 0]
    assert torch.isfinite(history[:, :stopped]).all()
    assert torch.isnan(history[:, stopped:]).all()
    full_mask = _top(planted_preserve.masks[0, 0, 0], 0.25)
    assert _iou(_top(result.masks[0, 0, 0], 0.25), full_mask) >= 0.9
    assert int(planted_preserve.iterations[0, 0]) == 500


def test_early_stopping_settings_are_validated() -> None:
    with pytest.raises(InputError, match="check_every"):
        EarlyStopping(check_every=0)
    with pytest.raises(InputError, match="min_iter"):
        EarlyStopping(min_iter=-1)


def test_contrastive_reward_is_the_margin_to_the_best_other_class() -> None:
    outputs = torch.tensor([[1.0, 5.0, 3.0], [4.0, -2.0, 0.0], [2.0, 2.0, -1.0]])
    per_sample = Target(index=torch.tensor([1, 0, 0]))
    # hand computed: 5 - 3, 4 - 0, 2 - 2 (a tie with another class is a zero margin)
    assert contrastive_reward(outputs, per_sample).tolist() == [2.0, 4.0, 0.0]
    assert contrastive_reward(outputs, Target(index=2)).tolist() == [-2.0, -4.0, -3.0]
    assert simple_reward(outputs, Target(index=2)).tolist() == [3.0, 0.0, -1.0]
    with pytest.raises(TargetError, match="callable"):
        contrastive_reward(outputs, Target(function=lambda out: out[:, 0]))


def test_callable_targets_give_the_masks_of_the_equivalent_class_index() -> None:
    model, x = _small_problem()
    options: dict[str, Any] = {"max_iter": 12, **SMALL}
    by_index = extremal_perturbation(model, x, 0, (0.2, 0.5), **options)
    by_function = extremal_perturbation(model, x, lambda out: out[:, 0], (0.2, 0.5), **options)
    assert torch.equal(by_function.masks, by_index.masks)
    assert torch.equal(by_function.scores, by_index.scores)
    with pytest.raises(TargetError, match="callable"):
        extremal_perturbation(
            model, x, lambda out: out[:, 0], 0.2, reward_func="contrastive", **options
        )


def test_a_callable_reward_replaces_the_built_in_one() -> None:
    model, x = _small_problem()
    options: dict[str, Any] = {"max_iter": 12, **SMALL}
    builtin = extremal_perturbation(model, x, 0, 0.3, **options)
    custom = extremal_perturbation(
        model, x, 0, 0.3, reward_func=lambda out, t: out[:, 0], **options
    )
    assert torch.equal(custom.masks, builtin.masks)
    # the negated class-1 score is the same reward by construction of BoxScore
    negated = extremal_perturbation(
        model, x, 1, 0.3, reward_func=lambda out, t: -t.scores(out), **options
    )
    torch.testing.assert_close(negated.masks, builtin.masks, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_reward_history_is_the_reward_of_the_mask_at_each_iteration(variant: str) -> None:
    # Iteration T of a run of T + 1 iterations evaluates the mask that a run of T iterations
    # returns, so its recorded reward must equal that run's scores.
    model, x = _small_problem()
    steps = 10
    options: dict[str, Any] = {"variant": variant, **SMALL}
    short = extremal_perturbation(model, x, 0, (0.2, 0.5), max_iter=steps, **options)
    longer = extremal_perturbation(model, x, 0, (0.2, 0.5), max_iter=steps + 1, **options)
    assert longer.history.shape == (2, 2, 2, steps + 1)
    assert torch.isfinite(longer.history).all()
    assert (longer.history[:, :, 1] >= 0).all()  # R_a is a mean of squares
    expected = {
        "preserve": short.scores,
        "delete": -short.deletion_scores,
        "dual": short.scores - short.deletion_scores,
    }[variant]
    torch.testing.assert_close(longer.history[:, :, 0, steps], expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(longer.history[..., :steps], short.history, rtol=1e-5, atol=1e-5)


def test_jitter_flips_the_perturbed_image_horizontally_on_even_iterations() -> None:
    model, x = _small_problem()
    steps = 10  # iteration 10 is even: the reward is taken on the mirrored image
    short = extremal_perturbation(model, x, 0, 0.3, max_iter=steps, **{**SMALL, "jitter": True})
    longer = extremal_perturbation(
        model, x, 0, 0.3, max_iter=steps + 1, **{**SMALL, "jitter": True}
    )
    perturbed = short.masks[:, 0] * x  # fade
    expected = 100.0 * perturbed.flip(3)[:, :, SMALL_BOX[0], SMALL_BOX[1]].mean((1, 2, 3))
    torch.testing.assert_close(longer.history[:, 0, 0, steps], expected, rtol=1e-5, atol=1e-4)
    unflipped = 100.0 * perturbed[:, :, SMALL_BOX[0], SMALL_BOX[1]].mean((1, 2, 3))
    assert (expected - unflipped).abs().min() > 1.0  # the box is off-centre: flips matter


def test_resize_and_smooth_post_process_the_masks() -> None:
    model, x = _small_problem()
    options: dict[str, Any] = {"max_iter": 8, **SMALL}
    plain = extremal_perturbation(model, x, 0, (0.2, 0.5), **options)
    flat = plain.masks.reshape(4, 1, 32, 32)
    resized = extremal_perturbation(model, x, 0, (0.2, 0.5), resize=(20, 24), **options)
    assert resized.masks.shape == (2, 2, 1, 20, 24)
    expected = F.interpolate(flat, size=(20, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resized.masks.reshape(4, 1, 20, 24), expected)
    nearest = extremal_perturbation(
        model, x, 0, (0.2, 0.5), resize=(64, 64), resize_mode="nearest", **options
    )
    torch.testing.assert_close(
        nearest.masks.reshape(4, 1, 64, 64), flat.repeat_interleave(2, 2).repeat_interleave(2, 3)
    )
    smoothed = extremal_perturbation(model, x, 0, (0.2, 0.5), smooth=0.1, **options)
    assert smoothed.masks.shape == plain.masks.shape
    expected = gaussian_blur(flat, 0.1 * 32, padding_mode="constant")  # TorchRay's imsmooth
    torch.testing.assert_close(smoothed.masks.reshape(4, 1, 32, 32), expected)
    # scores are those of the optimized masks, not of the post-processed ones
    torch.testing.assert_close(smoothed.scores, plain.scores)


def test_saliency_is_the_blurred_sum_of_the_masks_over_areas() -> None:
    model, x = _small_problem()
    result = extremal_perturbation(model, x, 0, (0.2, 0.5), max_iter=5, **SMALL)
    expected = gaussian_blur(result.masks.sum(1), 0.09 * 32, padding_mode="constant")
    torch.testing.assert_close(result.saliency(), expected)
    torch.testing.assert_close(result.saliency(0.0), result.masks.sum(1))
    assert isinstance(result.plot(1, x[1]), Figure)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"areas": 0.0}, r"\(0, 1\]"),
        ({"areas": 1.5}, r"\(0, 1\]"),
        ({"areas": (0.1, -0.2)}, r"\(0, 1\]"),
        ({"areas": float("nan")}, r"\(0, 1\]"),
        ({"areas": ()}, "empty"),
        ({"variant": "hybrid"}, "'preserve', 'delete' or 'dual'"),
        ({"perturbation": "noise"}, "'blur' or 'fade'"),
        ({"reward_func": "margin"}, "'simple' or 'contrastive'"),
        ({"reward_func": 3}, "callable"),
        ({"schedule": "cosine"}, "'torchray' or 'paper'"),
        ({"max_iter": 0}, "max_iter"),
        ({"lr": 0.0}, "lr"),
        ({"smooth": -1.0}, "smooth"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict[str, Any], message: str) -> None:
    model, x = _small_problem()
    settings: dict[str, Any] = {"areas": 0.2, "max_iter": 2, "progress": False, **kwargs}
    with pytest.raises(InputError, match=message):
        extremal_perturbation(model, x, 0, **settings)


def test_inference_mode_is_refused_with_a_clear_error() -> None:
    model, x = _small_problem()
    with torch.inference_mode(), pytest.raises(InputError, match="inference_mode"):
        extremal_perturbation(model, x, 0, 0.2, max_iter=2, progress=False)


def test_result_survives_a_save_load_round_trip(tmp_path: Path) -> None:
    model, x = _small_problem()
    stopper = EarlyStopping(check_every=2, min_iter=2, mask_tol=1.0, reward_rtol=1.0, area_tol=1.0)
    result = extremal_perturbation(
        model, x, [0, 1], (0.2, 0.5), max_iter=12, early_stop=stopper, **SMALL
    )
    assert torch.isnan(result.history).any()  # stopped early: NaN padding must survive too
    result.save(tmp_path / "ep")
    loaded = ExtremalResult.load(tmp_path / "ep")
    for name in (
        "masks", "scores", "deletion_scores", "full_scores", "perturbed_scores",
        "area_weights", "iterations",
    ):  # fmt: skip
        assert torch.equal(getattr(loaded, name), getattr(result, name)), name
    torch.testing.assert_close(loaded.history, result.history, equal_nan=True, rtol=0, atol=0)
    assert loaded.areas == (0.2, 0.5)
    assert loaded.settings == json.loads(json.dumps(to_jsonable(result.settings)))
    assert loaded.settings["target"] == [0, 1]
    assert math.isclose(loaded.settings["sigma"], 4.0)


def test_canvas_area_domain_counts_the_margin_as_torchray_does() -> None:
    # area_domain="canvas": a is a fraction of image + margin, so the kept region inside
    # the image is larger than with the paper's image domain, but never more than a·canvas.
    weights = torch.full((32, 32), 0.2)
    weights[SMALL_BOX] = 1.0
    x = torch.full((1, 3, 32, 32), 0.5)
    x[:, :, SMALL_BOX[0], SMALL_BOX[1]] = 0.9
    image = extremal_perturbation(WeightedScore(weights), x, 0, 0.25, **SMALL)
    canvas = extremal_perturbation(
        WeightedScore(weights), x, 0, 0.25, area_domain="canvas", **SMALL
    )
    margin = SMALL["step"] * math.ceil(SMALL["sigma"] / SMALL["step"])
    ratio = (32 + 2 * margin) ** 2 / 32**2
    inside_image = float(image.masks.mean())
    inside_canvas = float(canvas.masks.mean())
    assert inside_image == pytest.approx(0.25, abs=0.05)
    assert inside_canvas > inside_image + 0.1
    assert inside_canvas <= 0.25 * ratio + 0.02
    assert canvas.settings["area_domain"] == "canvas"
    with pytest.raises(InputError, match="area_domain"):
        extremal_perturbation(WeightedScore(weights), x, 0, 0.25, area_domain="pad")


class _Interrupting(nn.Module):
    """Counts forward passes and raises KeyboardInterrupt at a chosen one."""

    def __init__(self, model: nn.Module, stop_at: int | None) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.stop_at = stop_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.model(x)


def test_checkpoint_keeps_finished_groups_across_an_interruption(
    tiny_cnn: nn.Module, tmp_path: Path
) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    opts: dict[str, Any] = {
        "max_iter": 6, "step": 2, "sigma": 2.0, "batch_size": 2, "progress": False,
    }  # fmt: skip
    reference = extremal_perturbation(tiny_cnn, x, 1, (0.1, 0.3), **opts)
    path = tmp_path / "ep"
    # 2 images × 2 areas in groups of 2 rows; 2 forwards before the loop, 6 per group.
    flaky = _Interrupting(tiny_cnn, stop_at=2 + 6 + 3)
    with pytest.raises(KeyboardInterrupt):
        extremal_perturbation(flaky, x, 1, (0.1, 0.3), resume=path, **opts)
    resumed_model = _Interrupting(tiny_cnn, stop_at=None)
    resumed = extremal_perturbation(resumed_model, x, 1, (0.1, 0.3), resume=path, **opts)
    # Only the second group was optimised again: 2 + 6 forwards, plus 2×2 final scores.
    assert resumed_model.calls == 2 + 6 + 4
    torch.testing.assert_close(resumed.masks, reference.masks)
    torch.testing.assert_close(resumed.history, reference.history, equal_nan=True)
    # A checkpoint of another run is refused.
    with pytest.raises(InputError, match="different run"):
        extremal_perturbation(tiny_cnn, x.flip(3), 1, (0.1, 0.3), resume=path, **opts)


def test_resume_with_a_changed_model_is_refused(tiny_cnn: nn.Module, tmp_path: Path) -> None:
    # The fingerprint covers the model's whole state_dict, not only the images and settings.
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    opts: dict[str, Any] = {"max_iter": 2, "step": 2, "sigma": 2.0, "progress": False}
    extremal_perturbation(tiny_cnn, x, 1, (0.1,), resume=tmp_path / "ep", **opts)
    changed = copy.deepcopy(tiny_cnn)
    with torch.no_grad():
        list(changed.parameters())[-1].view(-1)[-1] += 1e-3
    with pytest.raises(InputError, match="the model"):
        extremal_perturbation(changed, x, 1, (0.1,), resume=tmp_path / "ep", **opts)
