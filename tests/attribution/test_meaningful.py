"""Meaningful perturbations: planted-box recovery, brute-force terms, circle init, seeding."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy import ndimage
from torch import nn

from convscope.attribution.meaningful import (
    MeaningfulResult,
    _Adam,
    _crop,
    _draw_offsets,
    mask_total_variation,
    meaningful_perturbation,
    meaningful_perturbation_preset,
)
from convscope.core import InputError, TargetError

SIDE = 32
BOX = (8, 16, 16, 24)  # rows y0:y1, cols x0:x1; off-centre, aligned to 4-pixel mask cells
GREY = 0.5


class BoxModel(nn.Module):
    """Logits ``[gain·(mean red inside BOX − 0.75), 0]``: class 0 only sees the box."""

    def __init__(self, gain: float = 20.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = BOX
        red = x[:, 0, y0:y1, x0:x1].mean((1, 2))
        return torch.stack([self.gain * (red - 0.75), torch.zeros_like(red)], 1)


def box_images(n: int = 2, seed: int = 0) -> torch.Tensor:
    """Random green/blue; red is 1 inside BOX and 0 elsewhere."""
    x = torch.rand(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
    y0, y1, x0, x1 = BOX
    x[:, 0] = 0.0
    x[:, 0, y0:y1, x0:x1] = 1.0
    return x


def box_mask() -> torch.Tensor:
    y0, y1, x0, x1 = BOX
    mask = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Settings under which the box is the exact optimum on an 8×8 mask (see the docs: λ1 must grow
# when the mask has far fewer cells than the paper's 28×28).
TOY: dict[str, Any] = {
    "mask_size": 8,
    "mask_blur_sigma": 1.0,
    "l1_coeff": 1e-2,
    "tv_coeff": 1e-3,
    "max_iter": 100,
    "jitter": 2,
    "progress": False,
}


def brute_tv(mask: np.ndarray, beta: float) -> float:
    h, w = mask.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            dy = mask[i + 1, j] - mask[i, j] if i + 1 < h else 0.0
            dx = mask[i, j + 1] - mask[i, j] if j + 1 < w else 0.0
            total += (dy * dy + dx * dx) ** (beta / 2)
    return total


def reference_upsample(low: torch.Tensor, size: int, sigma: float) -> np.ndarray:
    """Nearest upsampling by repetition, then scipy's Gaussian with edge replication."""
    factor = size // low.shape[-1]
    up = low.numpy().repeat(factor, axis=-2).repeat(factor, axis=-1)
    return ndimage.gaussian_filter(up, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)


# --------------------------------------------------------------------------- regularisers


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_total_variation_matches_a_loop(beta: float) -> None:
    masks = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    tv = mask_total_variation(masks, beta)
    expected = [brute_tv(m[0].numpy(), beta) for m in masks]
    np.testing.assert_allclose(tv.numpy(), expected, rtol=1e-12)


def test_total_variation_gradient_is_finite_on_flat_regions() -> None:
    mask = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, 0, 0] = 0.0
    mask.requires_grad_(True)
    mask_total_variation(mask, 1.0).sum().backward()
    assert mask.grad is not None and torch.isfinite(mask.grad).all()
    assert mask.grad[0, 0, 3, 3] == 0  # no difference touches this corner


@pytest.mark.parametrize("game", ["delete", "preserve"])
def test_history_terms_match_brute_force(game: str) -> None:
    """At iteration 0 (a negligible Adam step): L1, TV, score and objective from scratch."""
    model, x = BoxModel(), box_images(3)
    l1_coeff, tv_coeff, beta, sigma = 3e-3, 2e-2, 3.0, 1.5
    res = meaningful_perturbation(
        model,
        x,
        0,
        game=game,
        perturbation="constant",
        init="random",
        lr=1e-9,
        max_iter=1,
        jitter=0,
        l1_coeff=l1_coeff,
        tv_coeff=tv_coeff,
        tv_beta=beta,
        mask_size=8,
        mask_blur_sigma=sigma,
        progress=False,
    )
    low = res.low_res_masks.double()
    hist = res.history[:, 0].double()
    assert res.history.shape == (3, 1, 4)
    l1_expected = l1_coeff * ((1 - low) if game == "delete" else low).abs().sum((1, 2, 3))
    tv_expected = torch.tensor([tv_coeff * brute_tv(m[0].numpy(), beta) for m in low])
    torch.testing.assert_close(hist[:, 1], l1_expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(hist[:, 2], tv_expected.double(), atol=1e-6, rtol=1e-5)
    # The smoothed full-resolution mask, then the blend with the grey reference.
    masks = torch.from_numpy(reference_upsample(res.low_res_masks, SIDE, sigma))
    torch.testing.assert_close(res.masks, masks, atol=1e-5, rtol=0)
    with torch.no_grad():
        perturbed = x * masks + GREY * (1 - masks)
        score = model(perturbed).softmax(1)[:, 0].double()
    torch.testing.assert_close(hist[:, 3], score, atol=1e-5, rtol=0)
    sign = 1.0 if game == "delete" else -1.0
    torch.testing.assert_close(hist[:, 0], hist[:, 1] + hist[:, 2] + sign * hist[:, 3])
    saliency = 1 - res.masks if game == "delete" else res.masks
    torch.testing.assert_close(res.saliency, saliency)


def test_adam_matches_torch_adam() -> None:
    gen = torch.Generator().manual_seed(5)
    ours = torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64)
    theirs = ours.clone().requires_grad_(True)
    adam = _Adam(ours, 0.1)
    reference = torch.optim.Adam([theirs], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(5):
        grad = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
        adam.step(grad)
        theirs.grad = grad.clone()
        reference.step()
    torch.testing.assert_close(ours, theirs.detach())


# --------------------------------------------------------------------------- planted ground truth


@pytest.mark.parametrize("perturbation", ["constant", "blur"])
def test_deletion_mask_hides_the_box(perturbation: str) -> None:
    model, x = BoxModel(), box_images(2)
    res = meaningful_perturbation(model, x, 0, perturbation=perturbation, **TOY)
    box = box_mask()
    deleted = res.saliency[:, 0]  # 1 - m
    share_in_box = (deleted * box).sum((1, 2)) / deleted.sum((1, 2))
    chance = box.float().mean()
    assert bool((share_in_box > 0.6).all()), share_in_box  # chance is 0.0625
    assert bool((share_in_box > 8 * chance).all())
    assert bool((res.scores_perturbed < 0.1 * res.scores_original).all())


@pytest.mark.parametrize("perturbation", ["constant", "blur"])
def test_preservation_mask_keeps_the_box(perturbation: str) -> None:
    model, x = BoxModel(), box_images(2)
    res = meaningful_perturbation(
        model,
        x,
        0,
        game="preserve",
        perturbation=perturbation,
        **TOY,
    )
    box = box_mask()
    kept = res.masks[:, 0]
    assert bool((kept[:, box].mean(1) > 0.8).all())
    assert bool((kept[:, ~box].mean(1) < 0.2).all())
    assert bool((res.scores_perturbed > 0.9).all())
    torch.testing.assert_close(res.saliency, res.masks)


# --------------------------------------------------------------------------- jitter and seeding


def test_jitter_offsets_cover_the_range_and_are_seeded() -> None:
    draw = _draw_offsets(torch.Generator().manual_seed(3), 4000, 4, torch.device("cpu"))
    assert draw.shape == (4000, 2)
    assert set(draw[:, 0].tolist()) == {0, 1, 2, 3}
    assert set(draw[:, 1].tolist()) == {0, 1, 2, 3}
    # Roughly uniform: each value within 15% of its expected 1000 draws per axis.
    counts = torch.stack([torch.bincount(draw[:, a], minlength=4) for a in range(2)])
    assert bool((counts - 1000).abs().le(150).all())
    again = _draw_offsets(torch.Generator().manual_seed(3), 4000, 4, torch.device("cpu"))
    assert torch.equal(draw, again)


def test_crop_matches_slicing() -> None:
    big = torch.rand(3, 3, 11, 13)
    offsets = torch.tensor([[0, 3], [2, 0], [1, 2]])
    crops = _crop(big, offsets, 8, 10)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(crops[i], big[i, :, dy : dy + 8, dx : dx + 10])


def test_same_seed_same_result_different_seed_differs() -> None:
    model, x = BoxModel(), box_images(2)
    kwargs = {**TOY, "max_iter": 15, "jitter": 4, "init": "ones"}
    a = meaningful_perturbation(model, x, 0, seed=1, **kwargs)
    b = meaningful_perturbation(model, x, 0, seed=1, **kwargs)
    c = meaningful_perturbation(model, x, 0, seed=2, **kwargs)
    assert torch.equal(a.low_res_masks, b.low_res_masks)
    assert torch.equal(a.history, b.history)
    assert not torch.equal(a.low_res_masks, c.low_res_masks)


def test_noise_is_redrawn_every_iteration() -> None:
    model, x = BoxModel(), box_images(1)
    common = {"init": "random", "lr": 1e-9, "max_iter": 3, "jitter": 0, "progress": False}
    noise = meaningful_perturbation(model, x, 0, perturbation="noise", **common)
    const = meaningful_perturbation(model, x, 0, perturbation="constant", **common)
    scores_noise, scores_const = noise.history[0, :, 3], const.history[0, :, 3]
    assert len(set(scores_noise.tolist())) == 3  # a fresh draw each step
    torch.testing.assert_close(scores_const, scores_const[:1].expand(3))


def test_batch_size_does_not_change_the_result() -> None:
    model, x = BoxModel(), box_images(3)
    kwargs = {**TOY, "max_iter": 20, "jitter": 4}
    whole = meaningful_perturbation(model, x, 0, **kwargs)
    split = meaningful_perturbation(model, x, 0, batch_size=1, **kwargs)
    torch.testing.assert_close(whole.low_res_masks, split.low_res_masks, atol=1e-5, rtol=0)


def test_masks_stay_in_the_unit_interval() -> None:
    model, x = BoxModel(), box_images(2)
    res = meaningful_perturbation(model, x, 0, lr=1.0, init="random", **{**TOY, "max_iter": 10})
    low = res.low_res_masks
    assert float(low.min()) >= 0.0 and float(low.max()) <= 1.0
    assert bool(((low == 0) | (low == 1)).any())  # a step of 1 overshoots: the clamp acted
    assert float(res.masks.min()) >= 0.0 and float(res.masks.max()) <= 1.0


# --------------------------------------------------------------------------- circle initialisation


def brute_force_circle(
    model: nn.Module, x: torch.Tensor, reference: torch.Tensor, game: str
) -> tuple[list[float], list[np.ndarray]]:
    """Radii 0:5:170 scaled by side/224, blurred disks (σ = 10·side/224), 99% criterion."""
    scale = SIDE / 224
    radii = [5 * k * scale for k in range(35)]
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] - (SIDE - 1) / 2
    chosen_r, chosen_m = [], []
    with torch.no_grad():
        s_orig = model(x).softmax(1)[:, 0]
        s_ref = model(reference).softmax(1)[:, 0]
    for i in range(x.shape[0]):
        keeps = []
        pick = None
        for r in radii:
            disk = (yy**2 + xx**2 <= r * r).astype(np.float64)
            disk = ndimage.gaussian_filter(disk, 10 * scale, mode="nearest", truncate=4.0)
            keep = 1 - disk if game == "delete" else disk
            keeps.append(keep)
            k = torch.from_numpy(keep).float()
            with torch.no_grad():
                s = model((x[i] * k + reference[i] * (1 - k))[None]).softmax(1)[0, 0]
            p = float((s - s_ref[i]) / (s_orig[i] - s_ref[i]))
            if pick is None and (p < 0.01 if game == "delete" else p >= 0.99):
                pick = len(keeps) - 1
        pick = len(radii) - 1 if pick is None else pick
        chosen_r.append(radii[pick])
        chosen_m.append(keeps[pick])
    return chosen_r, chosen_m


@pytest.mark.parametrize("game", ["delete", "preserve"])
def test_circle_init_is_the_smallest_circle_meeting_the_criterion(game: str) -> None:
    model, x = BoxModel(), box_images(3)
    x[1, 0, 8:16, 20:24] = 0.4  # weaker evidence in part of the box: other radii
    x[2, 0, 8:12, 16:24] = 0.9
    res = meaningful_perturbation(
        model,
        x,
        0,
        game=game,
        perturbation="constant",
        max_iter=0,
        mask_size=8,
        batch_size=4,  # 3 images × 35 radii in chunks of 4
        progress=False,
    )
    radii, keeps = brute_force_circle(model, x, torch.full_like(x, GREY), game)
    assert res.init_radii is not None
    np.testing.assert_allclose(res.init_radii.numpy(), radii, rtol=1e-6)
    assert min(radii) > 0 and max(radii) < 5 * 34 * SIDE / 224  # a real search, not an edge
    low = F.adaptive_avg_pool2d(torch.from_numpy(np.stack(keeps))[:, None].float(), 8)
    torch.testing.assert_close(res.low_res_masks, low, atol=1e-4, rtol=0)


def test_circle_init_falls_back_to_the_largest_circle() -> None:
    """A grey image is unchanged by the grey perturbation: no radius can suppress it."""
    model = BoxModel()
    x = torch.full((1, 3, SIDE, SIDE), GREY)
    res = meaningful_perturbation(model, x, 0, perturbation="constant", max_iter=0, progress=False)
    assert res.init_radii is not None
    assert float(res.init_radii[0]) == pytest.approx(5 * 34 * SIDE / 224)


# --------------------------------------------------------------------------- targets and presets


class Linear4(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * 5


def test_top_k_objective_sums_the_predicted_classes() -> None:
    model = Linear4()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    res = meaningful_perturbation(
        model, x, None, top_k=2, max_iter=1, lr=1e-9, init="ones", jitter=0, progress=False
    )
    with torch.no_grad():
        probs = model(x).softmax(1)
    top = probs.argsort(1, descending=True)[:, :2]
    assert res.top_classes is not None
    assert torch.equal(res.top_classes.sort(1).values, top.sort(1).values)
    torch.testing.assert_close(res.scores_original, probs.gather(1, top).sum(1))
    # Iteration 0 scores the (smoothed all-ones, i.e. unperturbed) image.
    torch.testing.assert_close(res.history[:, 0, 3], probs.gather(1, top).sum(1))


def test_top_k_with_too_few_classes() -> None:
    model = Linear4()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="sum to 1"):
        meaningful_perturbation(model, x, None, top_k=5, max_iter=1, progress=False)
    with pytest.warns(UserWarning, match="only 4 classes"):
        res = meaningful_perturbation(
            model, x, None, top_k=5, use_softmax=False, max_iter=0, init="ones", progress=False
        )
    assert res.top_classes is not None and res.top_classes.shape == (1, 4)
    with torch.no_grad():
        torch.testing.assert_close(res.scores_original, model(x).sum(1))


def test_callable_target_receives_probabilities() -> None:
    model, x = BoxModel(), box_images(2)
    kwargs = {**TOY, "max_iter": 5}
    by_index = meaningful_perturbation(model, x, 0, **kwargs)
    by_callable = meaningful_perturbation(model, x, lambda p: p[:, 0], **kwargs)
    torch.testing.assert_close(by_index.low_res_masks, by_callable.low_res_masks)
    torch.testing.assert_close(by_index.scores_original, by_callable.scores_original)


def test_presets_match_the_defaults_and_the_paper() -> None:
    defaults = {
        name: p.default
        for name, p in inspect.signature(meaningful_perturbation).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    paper = meaningful_perturbation_preset("paper")
    assert all(defaults[k] == v for k, v in paper.items())
    loc = meaningful_perturbation_preset("localization")
    assert (loc["top_k"], loc["l1_coeff"], loc["tv_beta"]) == (5, 1e-3, 2.0)
    assert {k: v for k, v in loc.items() if k not in ("top_k", "l1_coeff", "tv_beta")} == {
        k: v for k, v in paper.items() if k not in ("top_k", "l1_coeff", "tv_beta")
    }
    loc["top_k"] = 1  # a fresh dict each call
    assert meaningful_perturbation_preset("localization")["top_k"] == 5


def test_constant_reference_is_the_models_dataset_mean() -> None:
    model = BoxModel()
    model.convscope_info = SimpleNamespace(mean=(0.2, 0.4, 0.6))
    x = box_images(1)
    res = meaningful_perturbation(
        model, x, 0, perturbation="constant", max_iter=0, init="ones", progress=False
    )
    assert res.reference_color == (0.2, 0.4, 0.6)
    plain = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(1, 3, SIDE, SIDE)
    with torch.no_grad():
        expected = model(plain).softmax(1)[:, 0]
    torch.testing.assert_close(res.scores_fully_perturbed, expected)


# --------------------------------------------------------------------------- state, errors, I/O


def test_model_state_is_restored(tiny_cnn: nn.Module, images: torch.Tensor) -> None:
    stats = tiny_cnn.bn.running_mean.clone()
    tiny_cnn.train()
    tiny_cnn.fc.bias.requires_grad_(False)
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    meaningful_perturbation(tiny_cnn, images, 1, max_iter=3, progress=False)
    assert tiny_cnn.training and tiny_cnn.bn.training
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert torch.equal(tiny_cnn.bn.running_mean, stats)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"game": "keep"}, "'delete', 'preserve'"),
        ({"perturbation": "gaussian"}, "'blur', 'constant', 'noise'"),
        ({"init": "zeros"}, "'circle', 'ones', 'random'"),
        ({"l1_coeff": -1e-4}, "l1_coeff must be 0 or more"),
        ({"tv_coeff": -1.0}, "tv_coeff must be 0 or more"),
        ({"tv_beta": 0.0}, "tv_beta must be positive"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"max_iter": -1}, "max_iter must be 0 or more"),
        ({"jitter": 1.5}, "jitter must be an int"),
        ({"mask_size": 64}, "mask_size"),
        ({"blur_sigma": float("nan")}, "blur_sigma must be finite"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        meaningful_perturbation(BoxModel(), box_images(1), 0, **kwargs)


def test_bad_targets_and_presets() -> None:
    x = box_images(1)
    with pytest.raises(TargetError, match="target=None"):
        meaningful_perturbation(BoxModel(), x, 0, top_k=5)
    with pytest.raises(TargetError, match="top_k=5"):
        meaningful_perturbation(BoxModel(), x, None)
    with pytest.raises(TargetError, match="out of range"):
        meaningful_perturbation(BoxModel(), x, 7, max_iter=1)
    with pytest.raises(InputError, match="'paper', 'localization'"):
        meaningful_perturbation_preset("fast")
    with pytest.raises(InputError):
        meaningful_perturbation(BoxModel(), x[0], 0)  # 3-D image


def test_save_load_round_trip(tmp_path: Path) -> None:
    res = meaningful_perturbation(BoxModel(), box_images(2), 0, **{**TOY, "max_iter": 3})
    path = res.save(tmp_path / "mp")
    back = MeaningfulResult.load(path)
    for field in ("masks", "low_res_masks", "saliency", "history", "scores_perturbed"):
        assert torch.equal(getattr(back, field), getattr(res, field))
    assert back.init_radii is not None and res.init_radii is not None
    assert torch.equal(back.init_radii, res.init_radii)
    assert back.top_classes is None
    assert (back.game, back.mask_size, back.reference_color) == ("delete", (8, 8), (GREY,) * 3)
    assert (back.l1_coeff, back.tv_beta, back.seed, back.top_k) == (1e-2, 3.0, 0, None)


def test_plot_panels() -> None:
    x = box_images(2)
    res = meaningful_perturbation(BoxModel(), x, 0, **{**TOY, "max_iter": 2})
    fig = res.plot(1, image=x[1])
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3
    np.testing.assert_allclose(shown[0].images[0].get_array(), x[1].permute(1, 2, 0).numpy())
    assert len([ax for ax in res.plot(0).axes if ax.images]) == 2
    with pytest.raises(InputError, match="out of range"):
        res.plot(5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_models_device() -> None:
    model = BoxModel().cuda()
    res = meaningful_perturbation(model, box_images(2), 0, **{**TOY, "max_iter": 5})
    assert res.masks.device.type == "cuda"
    cpu = meaningful_perturbation(BoxModel(), box_images(2), 0, **{**TOY, "max_iter": 5})
    assert res.init_radii is not None and cpu.init_radii is not None
    torch.testing.assert_close(res.init_radii.cpu(), cpu.init_radii)
