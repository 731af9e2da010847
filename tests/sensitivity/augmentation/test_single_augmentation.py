"""Single-augmentation inputs and the Table 1 accuracy, against by-hand and brute-force oracles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import stats
from torch import nn

from convscope.core.errors import InputError
from convscope.sensitivity.augmentation.augmentations import (
    AUGMENTATIONS,
    FunctionAugmentation,
    Parameter,
    minmax_rescale,
)
from convscope.sensitivity.augmentation.masking import MaskConfig, masked_predictions
from convscope.sensitivity.augmentation.single_augmentation import (
    SingleAugmentationAccuracy,
    labels_for,
    single_augmentation_accuracy,
    single_augmentation_inputs,
    single_augmentation_parameters,
)

AUGS = [
    "erasing",
    "sharpness_const",
    "rolling",
    "grayscale",
    "gaussian_blur",
    "brightness",
    "hflip",
]
PARAMETERISED = ["erasing", "rolling", "gaussian_blur", "brightness"]


def _images(n: int = 4, size: int = 12, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_entries_equal_each_augmentation_alone_with_the_drawn_parameters() -> None:
    x = _images()
    n, d = x.shape[0], 3
    inputs = single_augmentation_inputs(x, AUGS, n_draws=d, seed=7)
    params = single_augmentation_parameters(AUGS, n, 12, 12, n_draws=d, seed=7)
    assert list(inputs) == ["original", *AUGS]
    assert sorted(params) == sorted(PARAMETERISED)
    for name in PARAMETERISED:
        aug = AUGMENTATIONS[name]
        assert params[name].shape == (d, n, aug.n_params)
        assert inputs[name].shape == (d * n, 3, 12, 12)
        for draw in range(d):
            for i in range(n):  # image by image: independent of the batched call
                theta = params[name][draw, i : i + 1]
                expected = minmax_rescale(aug.apply(x[i : i + 1], theta))
                torch.testing.assert_close(inputs[name][draw * n + i], expected[0])
        # independent draws: the parameter rows differ between draws of one image
        assert not torch.equal(params[name][0], params[name][1])


def test_original_is_rescaled_and_parameter_free_entries_repeat() -> None:
    x = _images() * 0.5 + 0.2  # not spanning [0, 1]: the rescale is visible
    inputs = single_augmentation_inputs(x, AUGS, n_draws=3)
    n = x.shape[0]
    # min-max per image and channel by hand; ITU-R 601 luma with torchvision's 0.2989
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(inputs["original"][:n], (x - lo) / (hi - lo))
    gray = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None].expand(-1, 3, -1, -1)
    torch.testing.assert_close(inputs["grayscale"][:n], minmax_rescale(gray), atol=1e-5, rtol=0)
    torch.testing.assert_close(inputs["hflip"][:n], minmax_rescale(x.flip(-1)))
    for name in ("original", "sharpness_const", "grayscale", "hflip"):
        for draw in (1, 2):
            assert torch.equal(inputs[name][draw * n : (draw + 1) * n], inputs[name][:n])
    raw = single_augmentation_inputs(x, ["hflip"], n_draws=2, rescale=None)
    assert torch.equal(raw["original"], x.repeat(2, 1, 1, 1))
    assert torch.equal(raw["hflip"], x.flip(-1).repeat(2, 1, 1, 1))


def test_draws_follow_the_marginal_and_the_seed() -> None:
    # sigma of the Gaussian blur is U(0.1, 2): Kolmogorov-Smirnov against that law
    sigma = single_augmentation_parameters("gaussian_blur", 1000, 16, 16, n_draws=2)[
        "gaussian_blur"
    ]
    p = stats.kstest(sigma.reshape(-1).numpy(), stats.uniform(loc=0.1, scale=1.9).cdf).pvalue
    assert p > 1e-3
    a = single_augmentation_parameters(AUGS, 5, 12, 12, seed=1)
    b = single_augmentation_parameters(AUGS, 5, 12, 12, seed=1)
    c = single_augmentation_parameters(AUGS, 5, 12, 12, seed=2)
    alone = single_augmentation_parameters(["rolling"], 5, 12, 12, seed=1)
    for name in PARAMETERISED:
        assert torch.equal(a[name], b[name])
        assert not torch.equal(a[name], c[name])
    # an augmentation's draws do not depend on the rest of the set
    assert torch.equal(alone["rolling"], a["rolling"])


def test_labels_for_matches_the_draw_major_layout() -> None:
    assert labels_for([2, 0, 1], 2).tolist() == [2, 0, 1, 2, 0, 1]
    assert labels_for(torch.tensor([4]), 3).tolist() == [4, 4, 4]
    with pytest.raises(InputError, match="n_draws"):
        labels_for([1], 0)


def _brute_force(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...], seed: int
) -> torch.Tensor:
    """Top-k accuracy by an image-by-image, draw-by-draw loop with python sorting."""
    n, d = x.shape[0], 3
    params = single_augmentation_parameters(AUGS, n, x.shape[2], x.shape[3], n_draws=d, seed=seed)
    acc = torch.zeros(len(ks), len(AUGS) + 1, dtype=torch.float64)
    for j, name in enumerate(["original", *AUGS]):
        hits = [0] * len(ks)
        for draw in range(d):
            for i in range(n):
                img = x[i : i + 1]
                if name != "original":
                    aug = AUGMENTATIONS[name]
                    theta = params[name][draw, i : i + 1] if aug.n_params else None
                    img = aug(img, theta)
                with torch.no_grad():
                    scores = model(minmax_rescale(img))[0].tolist()
                order = sorted(range(len(scores)), key=lambda c: -scores[c])
                for t, k in enumerate(ks):
                    hits[t] += int(int(y[i]) in order[:k])
        for t in range(len(ks)):
            acc[t, j] = hits[t] / (n * d)
    return acc


def test_accuracy_equals_a_brute_force_loop(tiny_cnn: nn.Module) -> None:
    x = _images(n=5)
    with torch.no_grad():  # planted labels: the clean predictions, so "original" is exact
        y = tiny_cnn(minmax_rescale(x)).argmax(1)
    y[0] = (y[0] + 1) % 4
    res = single_augmentation_accuracy(tiny_cnn, x, y, AUGS, top=(1, 2), seed=4, batch_size=2)
    assert isinstance(res, SingleAugmentationAccuracy)
    assert res.names == ("original", *AUGS)
    assert res.labels[0] == "Orig." and res.labels[-1] == AUGMENTATIONS["hflip"].label
    assert res.top1[0] == pytest.approx(4 / 5)
    torch.testing.assert_close(res.accuracy, _brute_force(tiny_cnn, x, y, (1, 2), 4))
    torch.testing.assert_close(res.per_draw.mean(-1), res.accuracy)
    for j, name in enumerate(res.names):
        if name == "original" or AUGMENTATIONS[name].n_params == 0:
            assert torch.equal(res.per_draw[:, j, 0], res.per_draw[:, j, 1])


def test_accuracy_agrees_with_masked_predictions_on_the_inputs(tiny_cnn: nn.Module) -> None:
    x, y = _images(n=6), torch.tensor([0, 1, 2, 3, 0, 1])
    augs = ["rolling", "grayscale"]
    inputs = single_augmentation_inputs(x, augs, n_draws=3, seed=5)
    res = single_augmentation_accuracy(tiny_cnn, x, y, augs, top=1, seed=5)
    # an all-ones raw mask leaves the network intact: a second, independent code path
    ones = torch.ones(1, 4, 12, 12)
    masked = masked_predictions(
        tiny_cnn, inputs, {"conv1": ones}, ["v"], labels=labels_for(y, 3),
        configs=(MaskConfig("raw"),), top_k=1,
    )  # fmt: skip
    assert masked.input_names == res.names
    assert masked.unmasked_accuracy is not None
    torch.testing.assert_close(masked.unmasked_accuracy, res.top1)


def test_table_markdown_and_round_trip(tiny_cnn: nn.Module, tmp_path: Path) -> None:
    x, y = _images(n=4), torch.tensor([0, 1, 2, 3])
    res = single_augmentation_accuracy(tiny_cnn, x, y, ["hflip", "brightness"], top=(1, 3))
    rows = res.table()
    assert [r["augmentation"] for r in rows] == list(res.labels)
    assert [r["top-3"] for r in rows] == res.top_k(3).tolist()
    lines = res.to_markdown().splitlines()
    assert lines[0] == "| metric | " + " | ".join(res.labels) + " |"
    assert lines[2].split(" | ")[1] == f"{float(res.top1[0]):.4f}"
    res.save(tmp_path / "acc")
    back = SingleAugmentationAccuracy.load(tmp_path / "acc")
    assert back.names == res.names and back.top == res.top
    torch.testing.assert_close(back.accuracy, res.accuracy)
    with pytest.raises(InputError, match="top-5"):
        _ = res.top5
    fig = res.plot(bars=False)
    (table,) = fig.axes[0].tables
    assert table.get_celld()[(1, 0)].get_text().get_text() == f"{float(res.top1[0]):.4f}"


def test_user_augmentation_and_bad_arguments(tiny_cnn: nn.Module) -> None:
    x = _images(n=2)
    shift = FunctionAugmentation(
        "shift", lambda im, t: (im + t[:, 0, None, None, None].to(im)).clamp(0, 1),
        params=[Parameter("delta", 0.0, 0.3)], identity=[0.0],
    )  # fmt: skip
    inputs = single_augmentation_inputs(x, [shift], n_draws=2, rescale=None)
    delta = single_augmentation_parameters([shift], 2, 12, 12, n_draws=2)["shift"]
    torch.testing.assert_close(
        inputs["shift"], (x.repeat(2, 1, 1, 1) + delta.reshape(4, 1, 1, 1).float()).clamp(0, 1)
    )
    y = torch.tensor([0, 1])
    with pytest.raises(InputError, match="top-5 needs at least 5 classes"):
        single_augmentation_accuracy(tiny_cnn, x, y, ["hflip"])
    with pytest.raises(InputError, match="labels go up to 7"):
        single_augmentation_accuracy(tiny_cnn, x, torch.tensor([7, 0]), ["hflip"], top=1)
    with pytest.raises(InputError, match="n_draws"):
        single_augmentation_inputs(x, ["hflip"], n_draws=0)
    with pytest.raises(InputError, match="rescale"):
        single_augmentation_inputs(x, ["hflip"], rescale="zscore")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="Unknown augmentation"):
        single_augmentation_inputs(x, ["hflp"])
    with pytest.raises(InputError, match="top must be"):
        single_augmentation_accuracy(tiny_cnn, x, y, ["hflip"], top=(1, 1))
    orig = FunctionAugmentation("original", lambda im, t: im)
    with pytest.raises(InputError, match="original"):
        single_augmentation_inputs(x, [orig])
