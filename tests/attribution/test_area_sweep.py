"""Area sweeps: the extremal area and monotonicity against brute-force loops, and a planted sweep.

a* = min{a : Φ(m_a ⊗ x) >= τ Φ(x)} (thesis ch. 4 eq. 3) and the monotonicity of eq. 8 are
recomputed by explicit loops over areas and pairs of areas; the sweep runs on a model whose
score is the mean intensity inside a box of known area, where a* must be that area.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from convscope.attribution.area_sweep import (
    PAPER_AREAS,
    AreaSweepResult,
    extremal_area_sweep,
    monotonicity,
    optimal_area,
)
from convscope.core.errors import InputError


def _brute_optimal_area(
    areas: list[float], scores: torch.Tensor, reference: torch.Tensor, tau: float
) -> list[float]:
    out = []
    for i in range(scores.shape[0]):
        threshold = tau * float(reference[i])
        reached = [a for j, a in enumerate(areas) if float(scores[i, j]) >= threshold]
        out.append(min(reached) if reached else math.nan)
    return out


def _brute_monotonic(areas: list[float], scores: torch.Tensor, a_star: list[float]) -> list[bool]:
    out = []
    for i in range(scores.shape[0]):
        limit = math.inf if math.isnan(a_star[i]) else a_star[i]
        ok = True
        for j, a1 in enumerate(areas):
            for k, a2 in enumerate(areas):
                if a1 <= a2 < limit:
                    ok &= bool(scores[i, j] <= scores[i, k])
        out.append(ok)
    return out


def test_optimal_area_matches_a_loop_over_areas() -> None:
    gen = torch.Generator().manual_seed(0)
    areas = [0.4, 0.05, 0.8, 0.1, 0.2, 0.6]  # unsorted on purpose
    scores = torch.rand(40, 6, generator=gen) * 2
    reference = torch.rand(40, generator=gen) + 0.5
    scores[0] = 0.0  # no area reaches the threshold: NaN
    scores[1, 2] = reference[1]  # reached exactly at the largest area (>= is inclusive)
    scores[1, [0, 1, 3, 4, 5]] = 0.0
    for tau in (0.5, 1.0, 1.5):
        got = optimal_area(areas, scores, reference, tau)
        expected = _brute_optimal_area(areas, scores, reference, tau)
        torch.testing.assert_close(
            got, torch.tensor(expected, dtype=torch.float64), equal_nan=True, rtol=0, atol=0
        )
    got = optimal_area(areas, scores, reference, 1.0)
    assert math.isnan(float(got[0])) and float(got[1]) == 0.8
    assert not torch.isnan(got[2:]).all()  # the random rows are not all NaN


def test_monotonicity_matches_a_loop_over_pairs_of_areas() -> None:
    gen = torch.Generator().manual_seed(1)
    areas = [0.2, 0.05, 0.6, 0.1, 0.4]
    increasing = torch.tensor([2.0, 0.5, 9.0, 1.0, 4.0])  # sorted by area: 0.5, 1, 2, 4, 9
    noise = torch.randn(30, 5, generator=gen) * 0.8
    scores = increasing + noise
    scores[0] = increasing  # monotone everywhere
    a_star = torch.tensor([math.nan] * 10 + [0.2] * 10 + [0.6] * 10, dtype=torch.float64)
    got = monotonicity(areas, scores, a_star)
    assert got.tolist() == _brute_monotonic(areas, scores, a_star.tolist())
    assert got.any() and not got.all()  # both outcomes occur: the check discriminates
    no_limit = monotonicity(areas, scores)
    assert no_limit.tolist() == _brute_monotonic(areas, scores, [math.nan] * 30)
    # a violation above a* does not count (eq. 8 is for a1, a2 < a*)
    above = increasing.clone()[None]
    above[0, 2] = 0.0  # the largest area (0.6) scores below everything
    star = torch.tensor([0.6], dtype=torch.float64)  # as optimal_area returns it
    assert monotonicity(areas, above, star).tolist() == [True]
    assert monotonicity(areas, above, torch.tensor([math.nan])).tolist() == [False]


class BoxScore(nn.Module):
    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 100.0 * x[:, :, self.rows, self.cols].mean((1, 2, 3))
        return torch.stack([score, -score], 1)


BOX = (slice(8, 24), slice(4, 20))  # 16×16 in a 32×32 image: area 0.25
SWEEP: dict[str, Any] = {
    "perturbation": "fade", "step": 4, "sigma": 4.0, "jitter": False, "max_iter": 300,
    "progress": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def planted_sweep() -> AreaSweepResult:
    x = torch.full((1, 3, 32, 32), 0.1)
    x[:, :, BOX[0], BOX[1]] = 0.9
    return extremal_area_sweep(BoxScore(*BOX), x, 0, (0.4, 0.1, 0.25, 0.6), tau=0.9, **SWEEP)


def test_planted_sweep_finds_the_box_area_as_extremal_area(
    planted_sweep: AreaSweepResult,
) -> None:
    r = planted_sweep
    assert r.areas == (0.1, 0.25, 0.4, 0.6)  # sorted
    assert r.masks.shape == (1, 4, 1, 32, 32)
    assert r.preservation.shape == r.deletion.shape == (1, 4)
    # the smallest area that can hold the box is its own: a* = 0.25 (eq. 3 with τ = 0.9)
    assert float(r.a_star[0]) == 0.25
    expected = _brute_optimal_area(list(r.areas), r.preservation, r.full_scores, 0.9)
    assert float(r.a_star[0]) == expected[0]
    assert float(r.preservation[0, 0]) < 0.9 * float(r.full_scores[0])
    assert bool(r.monotonic[0])
    # the preserved score grows with the area up to a*, then saturates at the full score
    s = r.preservation[0]
    assert s[0] < s[1]
    assert (s[2:] >= s[1] - 0.02 * r.full_scores[0]).all()
    torch.testing.assert_close(r.ratios, r.preservation / (0.9 * r.full_scores[:, None]))
    # deletion mirrors preservation for the fade perturbation of a linear score
    torch.testing.assert_close(r.preservation + r.deletion, r.full_scores[:, None].expand(1, 4))


def test_sweep_masks_follow_the_sorted_areas(planted_sweep: AreaSweepResult) -> None:
    # masks are stored in the order of r.areas: larger areas cover more of the image
    means = planted_sweep.masks[0, :, 0].mean((1, 2))
    assert (means[1:] > means[:-1]).all()


def test_sweep_result_survives_a_save_load_round_trip(
    planted_sweep: AreaSweepResult, tmp_path: Path
) -> None:
    planted_sweep.save(tmp_path / "sweep")
    loaded = AreaSweepResult.load(tmp_path / "sweep")
    for name in ("masks", "preservation", "deletion", "full_scores", "perturbed_scores"):
        assert torch.equal(getattr(loaded, name), getattr(planted_sweep, name)), name
    assert torch.equal(loaded.a_star, planted_sweep.a_star)
    assert torch.equal(loaded.monotonic, planted_sweep.monotonic)
    assert loaded.areas == planted_sweep.areas and loaded.tau == 0.9
    assert loaded.settings["max_iter"] == 300


@pytest.mark.parametrize("kind", ["strip", "curves"])
def test_sweep_plots_return_figures(planted_sweep: AreaSweepResult, kind: str) -> None:
    assert isinstance(planted_sweep.plot(kind=kind), Figure)


def test_sweep_plot_rejects_unknown_kinds(planted_sweep: AreaSweepResult) -> None:
    with pytest.raises(InputError, match="'strip' or 'curves'"):
        planted_sweep.plot(kind="bars")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 0.0}, "tau"),
        ({"areas": (0.1, 0.2, 0.1)}, "distinct"),
        ({"areas": (0.1, 1.2)}, r"\(0, 1\]"),
    ],
)
def test_bad_sweep_arguments_raise_input_error(kwargs: dict[str, Any], message: str) -> None:
    x = torch.rand(1, 3, 8, 8)
    settings: dict[str, Any] = {"max_iter": 1, "progress": False, **kwargs}
    with pytest.raises(InputError, match=message):
        extremal_area_sweep(BoxScore(slice(0, 4), slice(0, 4)), x, 0, **settings)


def test_paper_areas_are_the_sweep_of_fig_5() -> None:
    assert PAPER_AREAS == (0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
