"""Pointing game: TorchRay's semantics checked against brute-force distances and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.ndimage import distance_transform_edt, gaussian_filter

from convscope.core import InputError
from convscope.metrics import (
    PointingGame,
    PointingGameResult,
    center_baseline,
    center_points,
    masks_to_saliency,
    pointing_game,
    pointing_game_from_points,
    pointing_hits,
    saliency_to_point,
)


def _single_pixel_mask(h: int, w: int, y: int, x: int) -> torch.Tensor:
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, y, x] = True
    return mask


def _brute_force_hit(point: tuple[float, float], mask: np.ndarray, tol: float) -> bool:
    """TorchRay's rule written as a plain loop: any GT pixel with dy² + dx² < tol²."""
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if mask[y, x]:
                d2 = (y - point[0]) ** 2 + (x - point[1]) ** 2
                if (d2 < tol**2) if tol > 0 else (d2 == 0):
                    return True
    return False


@pytest.mark.parametrize(
    ("dy", "dx", "expected"),
    [
        (9, 12, False),  # exactly 15 px: strict inequality, a miss
        (0, 15, False),
        (15, 0, False),
        (10, 11, True),  # sqrt(221) = 14.87 px
        (0, 14, True),
        (-11, -10, True),
        (11, 11, False),  # sqrt(242) = 15.56 px
    ],
)
def test_tolerance_is_a_strict_15_pixel_radius(dy: int, dx: int, expected: bool) -> None:
    mask = _single_pixel_mask(64, 64, 30, 30)
    point = torch.tensor([[30 + dy, 30 + dx]])
    assert bool(pointing_hits(point, mask, tolerance=15)[0]) is expected
    assert (math.hypot(dy, dx) < 15) is expected
    assert PointingGame(1).evaluate(mask[0], (30 + dy, 30 + dx)) is expected


def test_tolerance_zero_is_an_exact_pixel_hit() -> None:
    mask = _single_pixel_mask(10, 10, 4, 6)
    points = torch.tensor([[4, 6], [4, 7], [5, 6]])
    hits = pointing_hits(points, mask.expand(3, -1, -1), tolerance=0)
    assert hits.tolist() == [True, False, False]


def test_hits_match_the_euclidean_distance_transform_and_a_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    n, h, w = 12, 20, 24
    masks = torch.rand(n, h, w, generator=gen) > 0.97
    masks[0] = False  # an empty mask never hits
    points = torch.stack(
        (torch.randint(0, h, (n,), generator=gen), torch.randint(0, w, (n,), generator=gen)), 1
    )
    for tol in (0, 1, 2.5, 4, 7, 15):
        ours = pointing_hits(points, masks, tolerance=tol).tolist()
        loop = [
            _brute_force_hit((int(p[0]), int(p[1])), m.numpy(), tol)
            for p, m in zip(points, masks, strict=True)
        ]
        assert ours == loop
        # EDT of ~mask: distance of every pixel to the nearest ground-truth pixel.
        edt = [
            distance_transform_edt(~m.numpy())[int(p[0]), int(p[1])] if m.any() else math.inf
            for p, m in zip(points, masks, strict=True)
        ]
        assert ours == [(d < tol) if tol > 0 else (d == 0) for d in edt]
    assert not bool(pointing_hits(points[:1], masks[:1], 100)[0])


def test_float_points_are_measured_exactly() -> None:
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(6, 9, 11, generator=gen) > 0.9
    points = torch.rand(6, 2, generator=gen, dtype=torch.float64) * torch.tensor([9.0, 11.0])
    ours = pointing_hits(points, masks, tolerance=2).tolist()
    loop = [
        _brute_force_hit((float(p[0]), float(p[1])), m.numpy(), 2)
        for p, m in zip(points, masks, strict=True)
    ]
    assert ours == loop


def test_saliency_to_point_takes_the_first_maximum_in_row_major_order() -> None:
    sal = torch.zeros(3, 1, 6, 7)
    sal[0, 0, 2, 5] = sal[0, 0, 4, 1] = 1.0  # two rows: the upper one wins
    sal[1, 0, 3, 6] = sal[1, 0, 3, 2] = 2.0  # same row: the left one wins
    sal[2, 0, 5, 6] = 0.5
    assert saliency_to_point(sal).tolist() == [[2, 5], [3, 2], [5, 6]]
    # TorchRay's (idx % W, idx // W) for the first flat argmax, swapped to (y, x).
    idx = [int(np.argmax(s.numpy().ravel())) for s in sal]
    assert saliency_to_point(sal[:, 0]).tolist() == [[i // 7, i % 7] for i in idx]


def test_saliency_is_resized_to_the_ground_truth_before_the_argmax() -> None:
    # Bilinear ×2 (half-pixel centres) spreads a peak at (i, j) equally over 2i..2i+1 and
    # 2j..2j+1, so the first maximum is (2i, 2j) (away from the border, where clamping
    # favours the outer pixel).
    sal = torch.zeros(2, 1, 5, 4)
    sal[0, 0, 1, 2] = 1.0
    sal[1, 0, 3, 1] = 1.0
    assert saliency_to_point(sal, size=(10, 8)).tolist() == [[2, 4], [6, 2]]
    assert saliency_to_point(sal).tolist() == [[1, 2], [3, 1]]


def _unbalanced_pairs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 0: 3 hits, 1 miss; class 1: 1 miss; class 2: no pair; 16×16 masks."""
    masks = torch.zeros(5, 16, 16, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True  # GT in the top-left corner
    hit, miss = [3, 3], [13, 13]
    points = torch.tensor([hit, hit, hit, miss, miss])
    labels = torch.tensor([0, 0, 0, 0, 1])
    return points, masks, labels


def test_per_class_mean_differs_from_the_global_ratio() -> None:
    points, masks, labels = _unbalanced_pairs()
    res = pointing_game_from_points(points, masks, labels, num_classes=3, tolerance=2)
    assert res.hits.tolist() == [3, 0, 0]
    assert res.misses.tolist() == [1, 1, 0]
    assert res.class_accuracies.tolist() == [0.75, 0.0, 0.0]
    assert res.accuracy == pytest.approx((0.75 + 0 + 0) / 3)  # TorchRay: empty class counts 0
    assert res.global_accuracy == pytest.approx(3 / 5)
    evaluated = pointing_game_from_points(
        points, masks, labels, num_classes=3, tolerance=2, classes="evaluated"
    )
    assert evaluated.accuracy == pytest.approx((0.75 + 0) / 2)

    game = PointingGame(3, tolerance=2)
    for p, m, c in zip(points, masks, labels.tolist(), strict=True):
        game.aggregate(game.evaluate(m, p), c)
    assert game.accuracy == pytest.approx(res.accuracy)
    assert game.global_accuracy == pytest.approx(0.6)
    assert game.hits.tolist() == [3, 0, 0]


def test_skipped_pairs_count_neither_as_hit_nor_miss() -> None:
    points, masks, labels = _unbalanced_pairs()
    skip = torch.tensor([False, False, False, True, True])  # drop both misses
    res = pointing_game_from_points(points, masks, labels, num_classes=3, tolerance=2, skip=skip)
    assert res.hits.tolist() == [3, 0, 0]
    assert res.misses.tolist() == [0, 0, 0]
    assert res.skipped.tolist() == [1, 1, 0]
    assert res.evaluated.tolist() == [True, True, True, False, False]
    assert res.global_accuracy == 1.0
    assert res.accuracy == pytest.approx(1 / 3)

    game = PointingGame(3, tolerance=2)
    game.aggregate(True, 0)
    game.aggregate(None, 0)
    game.aggregate(None, 2)
    assert game.hits.tolist() == [1, 0, 0]
    assert game.misses.tolist() == [0, 0, 0]
    assert game.skipped.tolist() == [1, 0, 1]
    game.reset()
    assert int(game.hits.sum() + game.skipped.sum()) == 0
    assert math.isnan(game.global_accuracy)


def test_empty_masks_are_skipped_unless_asked_otherwise() -> None:
    points, masks, labels = _unbalanced_pairs()
    masks[0] = False
    res = pointing_game_from_points(points, masks, labels, num_classes=3, tolerance=2)
    assert res.skipped.tolist() == [1, 0, 0]
    assert res.hits.tolist() == [2, 0, 0]
    kept = pointing_game_from_points(
        points, masks, labels, num_classes=3, tolerance=2, skip_empty=False
    )
    assert kept.misses.tolist() == [2, 1, 0]


def test_difficult_subset_hook_by_flags_or_callable() -> None:
    points, masks, labels = _unbalanced_pairs()
    flags = torch.tensor([True, False, False, True, True])
    res = pointing_game_from_points(
        points, masks, labels, num_classes=3, tolerance=2, difficult=flags
    )
    assert res.hits.tolist() == [1, 0, 0]
    assert res.misses.tolist() == [1, 1, 0]
    assert res.skipped.tolist() == [2, 0, 0]
    by_fn = pointing_game_from_points(
        points,
        masks,
        labels,
        num_classes=3,
        tolerance=2,
        difficult=lambda i, c: i in (0, 3, 4),
    )
    assert torch.equal(by_fn.hits, res.hits)
    assert torch.equal(by_fn.misses, res.misses)
    # The skip hook sees (index, label) too.
    no_class_1 = pointing_game_from_points(
        points, masks, labels, num_classes=3, tolerance=2, skip=lambda i, c: c == 1
    )
    assert no_class_1.misses.tolist() == [1, 0, 0]


def test_pointing_game_from_saliency_maps() -> None:
    points, masks, labels = _unbalanced_pairs()
    sal = torch.zeros(5, 1, 8, 8)  # half resolution: peak (i, j) -> point (2i, 2j)
    for k, (y, x) in enumerate(points.tolist()):
        sal[k, 0, y // 2, x // 2] = 1.0
    res = pointing_game(sal, masks, labels, num_classes=3, tolerance=2)
    assert res.points.tolist() == [[2, 2]] * 3 + [[12, 12]] * 2
    assert res.hits.tolist() == [3, 0, 0]
    assert res.misses.tolist() == [1, 1, 0]


def test_center_baseline_points_at_half_the_size() -> None:
    assert center_points(2, (64, 32)).tolist() == [[32.0, 16.0]] * 2
    assert center_points(1, 9).tolist() == [[4.5, 4.5]]
    masks = torch.zeros(3, 9, 9, dtype=torch.bool)
    masks[0, 4, 4] = True  # sqrt(0.5) from (4.5, 4.5)
    masks[1, 4, 6] = True  # sqrt(0.25 + 2.25) = 1.58
    masks[2, 0, 0] = True
    res = center_baseline(masks, [0, 0, 1], num_classes=2, tolerance=1)
    # TorchRay's point (w / 2, h / 2), tested with a plain loop.
    expected = [_brute_force_hit((4.5, 4.5), m.numpy(), 1) for m in masks]
    assert expected == [True, False, False]
    assert res.hit.tolist() == expected
    assert res.hits.tolist() == [1, 0]


def test_masks_to_saliency_sums_and_blurs_with_zero_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 1, 32, 32, generator=gen)  # K = 4 areas of one pair
    plain = masks_to_saliency(masks, sigma_fraction=0)
    assert plain.shape == (1, 1, 32, 32)
    assert torch.allclose(plain[0, 0], masks.sum(0)[0])
    smooth = masks_to_saliency(masks)
    # sigma = 0.09 * 32 = 2.88; scipy's radius int(4σ + 0.5) = 12 = ceil(4σ), zero padding.
    oracle = gaussian_filter(masks.sum(0)[0].double().numpy(), 2.88, mode="constant", cval=0)
    assert np.allclose(smooth[0, 0].numpy(), oracle, atol=1e-5)
    batched = masks_to_saliency(torch.stack([masks, 2 * masks]))
    assert batched.shape == (2, 1, 32, 32)
    assert torch.allclose(batched[1], 2 * smooth[0], atol=1e-5)


def test_nested_extremal_masks_point_into_the_smallest_one() -> None:
    masks = torch.zeros(3, 1, 40, 40)
    masks[0, 0, 20:26, 24:30] = 1  # the smallest area
    masks[1, 0, 14:30, 16:34] = 1
    masks[2, 0, 6:36, 6:38] = 1
    point = saliency_to_point(masks_to_saliency(masks)).tolist()[0]
    assert 20 <= point[0] < 26 and 24 <= point[1] < 30


def test_masks_to_saliency_resizes_first() -> None:
    masks = torch.ones(2, 1, 8, 8)
    out = masks_to_saliency(masks, sigma_fraction=0, size=(16, 12))
    assert out.shape == (1, 1, 16, 12)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_bad_input_is_named() -> None:
    mask = _single_pixel_mask(8, 8, 1, 1)
    with pytest.raises(InputError, match="tolerance"):
        pointing_hits(torch.tensor([[0, 0]]), mask, tolerance=-1)
    with pytest.raises(InputError, match="boolean"):
        pointing_hits(torch.tensor([[0, 0]]), mask.float(), tolerance=1)
    with pytest.raises(InputError, match="one point per pair"):
        pointing_hits(torch.zeros(2, 2), mask)
    with pytest.raises(InputError, match="out of range"):
        pointing_game_from_points(torch.zeros(1, 2), mask, [3], num_classes=2)
    with pytest.raises(InputError, match="TorchRay"):
        PointingGame(2).aggregate(1, 0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NaN"):
        saliency_to_point(torch.full((1, 1, 4, 4), math.nan))
    with pytest.raises(InputError, match="K×1×H×W"):
        masks_to_saliency(torch.ones(2, 3, 8, 8))  # ambiguous N×K×H×W is refused
    with pytest.raises(InputError, match="one flag per pair"):
        pointing_game_from_points(torch.zeros(1, 2), mask, [0], difficult=[True, False])


def test_result_round_trip_and_plot(tmp_path: object) -> None:
    points, masks, labels = _unbalanced_pairs()
    res = pointing_game_from_points(points, masks, labels, num_classes=3, tolerance=2)
    path = res.save(f"{tmp_path}/pg")
    back = PointingGameResult.load(path)
    assert torch.equal(back.hits, res.hits)
    assert back.accuracy == pytest.approx(res.accuracy)
    assert back.tolerance == 2
    assert isinstance(res.plot(["a", "b", "c"]), Figure)
