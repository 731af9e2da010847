"""Tests of the Shapley-effect estimators against analytic Shapley values."""

from __future__ import annotations

import itertools
import math

import matplotlib
import pytest
import torch

from convscope.core.errors import InputError
from convscope.sensitivity.shapley import ShapleyResult, shapley_effects

matplotlib.use("Agg")

PI = math.pi
ISH_BOUNDS = [[-PI, PI]] * 3


def ishigami(x: torch.Tensor) -> torch.Tensor:
    return (
        torch.sin(x[:, 0]) + 7 * torch.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * torch.sin(x[:, 0])
    )


def shapley_by_permutations(cost: dict[frozenset[int], float], d: int) -> list[float]:
    """Brute force: average marginal contributions over all d! orderings."""
    sh = [0.0] * d
    for perm in itertools.permutations(range(d)):
        before: frozenset[int] = frozenset()
        for j in perm:
            sh[j] += cost[before | {j}] - cost[before]
            before = before | {j}
    return [s / math.factorial(d) for s in sh]


def ishigami_truth() -> torch.Tensor:
    """Shapley fractions from the analytic closed variances (Ishigami & Homma 1990)."""
    a, b = 7.0, 0.1
    v1 = 0.5 * (1 + b * PI**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * PI**8 * (1 / 18 - 1 / 50)
    total = v1 + v2 + v13
    closed = {(): 0.0, (0,): v1, (1,): v2, (2,): 0.0, (0, 1): v1 + v2, (0, 2): v1 + v13}
    closed.update({(1, 2): v2, (0, 1, 2): total})
    cost = {frozenset(u): c for u, c in closed.items()}
    return torch.tensor(shapley_by_permutations(cost, 3), dtype=torch.float64) / total


def test_oracle_matches_published_ishigami_values() -> None:
    torch.testing.assert_close(
        ishigami_truth(),
        torch.tensor([0.4357, 0.4424, 0.1218], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )


@pytest.mark.parametrize(
    ("method", "kwargs", "tol"),
    [
        ("exact", {"n": 8192}, 0.01),
        ("random_permutation", {"n": 4096, "n_perm": 3000}, 0.05),
        ("goda", {"n": 40000}, 0.03),
    ],
)
def test_ishigami(method: str, kwargs: dict[str, int], tol: float) -> None:
    res = shapley_effects(
        ishigami, ISH_BOUNDS, method=method, batch_size=8192, progress=False, **kwargs
    )
    truth = ishigami_truth()
    torch.testing.assert_close(res.values, truth, atol=tol, rtol=0)
    assert res.values.sum().item() == pytest.approx(1.0, abs=1e-12)
    if res.intervals is not None:
        assert res.intervals.shape == (3, 2)
        # 95% intervals per effect: all three cover the truth for this seed (and most seeds)
        assert bool(((res.intervals[:, 0] <= truth) & (truth <= res.intervals[:, 1])).all())


def linear_model(a: torch.Tensor) -> tuple[object, list[list[float]], torch.Tensor]:
    widths = torch.linspace(1.0, 2.0, a.numel(), dtype=torch.float64)
    bounds = [[0.0, float(w)] for w in widths]
    var = a**2 * widths**2 / 12  # Var(a_i X_i) for X_i ~ U(0, w_i)
    return (lambda x: x @ a.to(x.dtype)), bounds, var


def test_additive_exact_equals_first_order_fractions() -> None:
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    func, bounds, var = linear_model(a)
    res = shapley_effects(func, bounds, 4096, progress=False)
    torch.testing.assert_close(res.values, var / var.sum(), atol=2e-3, rtol=0)
    assert res.n_evaluations == 4096 * 2**4
    assert res.values.sum().item() == pytest.approx(1.0, abs=1e-12)
    raw = shapley_effects(func, bounds, 4096, normalize=False, progress=False)
    torch.testing.assert_close(raw.values, var, rtol=0.03, atol=0)
    torch.testing.assert_close(raw.values.sum(), raw.variance, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("random_permutation", {"n": 4000, "n_perm": 1000}), ("goda", {"n": 20000})],
)
def test_additive_permutation_methods(method: str, kwargs: dict[str, int]) -> None:
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    func, bounds, var = linear_model(a)
    res = shapley_effects(func, bounds, method=method, progress=False, batch_size=4096, **kwargs)
    torch.testing.assert_close(res.values, var / var.sum(), atol=0.03, rtol=0)
    d = a.numel()
    if method == "goda":
        assert res.n_evaluations == kwargs["n"] * (d + 1)
    else:
        assert res.n_evaluations == kwargs["n"] + kwargs["n_perm"] * (d - 1) * 1 * 3


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("random_permutation", {"n": 2000, "n_perm": 2000}), ("goda", {"n": 20000})],
)
def test_standard_errors_are_calibrated(method: str, kwargs: dict[str, int]) -> None:
    # Over independent seeds, the errors divided by the reported standard errors should be
    # roughly standard normal: mean square near 1 (the variance estimate's own noise, shared
    # by all permutations, is small at these budgets).
    a = torch.tensor([1.0, 2.0, -1.5], dtype=torch.float64)
    func, bounds, var = linear_model(a)
    z2 = []
    for seed in range(12):
        res = shapley_effects(
            func,
            bounds,
            method=method,
            normalize=False,
            seed=seed,
            progress=False,
            batch_size=8192,
            **kwargs,
        )
        assert res.intervals is not None
        se = (res.intervals[:, 1] - res.intervals[:, 0]) / (2 * 1.959964)
        z2.append(((res.values - var) / se) ** 2)
    ms = torch.stack(z2).mean().item()
    assert 0.4 < ms < 2.0


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("exact", {"n": 1024}),
        ("random_permutation", {"n": 500, "n_perm": 200}),
        ("goda", {"n": 3000}),
    ],
)
def test_groups_sum_member_effects_for_additive_model(method: str, kwargs: dict[str, int]) -> None:
    a = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    func, bounds, var = linear_model(a)
    groups = [[0, 3], [1], [2, 4]]
    res = shapley_effects(func, bounds, method=method, groups=groups, progress=False, **kwargs)
    assert res.values.shape == (3,)
    truth = torch.stack([var[g].sum() for g in groups]) / var.sum()
    tol = 0.01 if method == "exact" else 0.06
    torch.testing.assert_close(res.values, truth, atol=tol, rtol=0)
    if method != "exact":
        # same draws over variables: groups are exactly the sums of member effects
        single = shapley_effects(func, bounds, method=method, progress=False, **kwargs)
        summed = torch.stack([single.values[g].sum() for g in groups])
        torch.testing.assert_close(res.values, summed, rtol=1e-10, atol=1e-12)
    else:
        assert res.n_evaluations == kwargs["n"] * 2**3


@pytest.mark.parametrize("method", ["exact", "random_permutation", "goda"])
def test_vector_outputs_equal_scalar_runs(method: str) -> None:
    def vec(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([ishigami(x), x[:, 0] * x[:, 1], x[:, 2] ** 2], dim=1).reshape(-1, 3, 1)

    kw: dict[str, object] = {"method": method, "progress": False, "seed": 3}
    n = 256 if method == "exact" else 200
    res = shapley_effects(vec, ISH_BOUNDS, n, **kw)
    assert res.values.shape == (3, 3, 1)
    assert res.variance.shape == (3, 1)
    for o in range(3):
        scalar = shapley_effects(lambda x, o=o: vec(x)[:, o, 0], ISH_BOUNDS, n, **kw)
        torch.testing.assert_close(res.values[:, o, 0], scalar.values, rtol=1e-10, atol=1e-12)
        if scalar.intervals is not None:
            assert res.intervals is not None
            torch.testing.assert_close(res.intervals[:, :, o, 0], scalar.intervals)


@pytest.mark.parametrize("method", ["exact", "random_permutation", "goda"])
def test_seed_and_batch_size(method: str) -> None:
    n = 256 if method == "exact" else 300
    kw: dict[str, object] = {"method": method, "progress": False}
    r1 = shapley_effects(ishigami, ISH_BOUNDS, n, seed=5, batch_size=7, **kw)
    r2 = shapley_effects(ishigami, ISH_BOUNDS, n, seed=5, batch_size=1000, **kw)
    r3 = shapley_effects(ishigami, ISH_BOUNDS, n, seed=6, **kw)
    torch.testing.assert_close(r1.values, r2.values, rtol=1e-12, atol=1e-12)
    assert r1.n_evaluations == r2.n_evaluations
    assert not torch.allclose(r1.values, r3.values)


def test_batch_size_bounds_calls() -> None:
    sizes: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        assert not torch.is_grad_enabled()
        return ishigami(x)

    res = shapley_effects(f, ISH_BOUNDS, 100, method="goda", batch_size=33, progress=False)
    assert max(sizes) <= 33
    assert sum(sizes) == res.n_evaluations == 100 * 4


def test_all_permutations_without_replacement_give_exact_game() -> None:
    # With N_O = 1 and every one of the d! permutations, an additive model's cost estimates
    # still vary, but the effects sum to the variance estimate exactly (telescoping).
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    func, bounds, _ = linear_model(a)
    res = shapley_effects(
        func, bounds, 100, method="random_permutation", n_perm=6, normalize=False, progress=False
    )
    torch.testing.assert_close(res.values.sum(), res.variance, rtol=1e-12, atol=0)


def test_save_load_and_plot(tmp_path: object) -> None:
    import pathlib

    res = shapley_effects(ishigami, ISH_BOUNDS, 200, method="goda", progress=False)
    path = pathlib.Path(str(tmp_path)) / "sh"
    res.save(path)
    back = ShapleyResult.load(path)
    torch.testing.assert_close(back.values, res.values)
    assert back.intervals is not None and res.intervals is not None
    torch.testing.assert_close(back.intervals, res.intervals)
    assert back.method == "goda" and back.n_evaluations == res.n_evaluations
    assert [list(g) for g in back.groups] == [[0], [1], [2]]
    fig = res.plot()
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx(res.values.tolist())


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="at most 10 groups"):
        shapley_effects(lambda x: x.sum(1), [[0, 1]] * 11, 16, progress=False)
    with pytest.raises(InputError, match="Unknown method"):
        shapley_effects(ishigami, ISH_BOUNDS, 16, method="kernel")
    with pytest.raises(InputError, match="bounds"):
        shapley_effects(ishigami, [[0, 1, 2]], 16)
    with pytest.raises(InputError, match="one row per input row"):
        shapley_effects(lambda x: x.sum(), ISH_BOUNDS, 16, progress=False)
    with pytest.raises(InputError, match="n_perm"):
        shapley_effects(ishigami, ISH_BOUNDS, 16, method="goda", n_perm=3)
    with pytest.raises(InputError, match="n_inner"):
        shapley_effects(ishigami, ISH_BOUNDS, 16, method="random_permutation", n_inner=1)


def test_exact_group_game_on_ishigami() -> None:
    # Two players {X1, X3} and {X2}: Sh_A = (c(A) + V - c(B)) / 2 = V1 + V13 (Owen 2014).
    res = shapley_effects(ishigami, ISH_BOUNDS, 8192, groups=[[0, 2], [1]], progress=False)
    a, b = 7.0, 0.1
    v1 = 0.5 * (1 + b * PI**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * PI**8 * (1 / 18 - 1 / 50)
    truth = torch.tensor([v1 + v13, v2], dtype=torch.float64) / (v1 + v2 + v13)
    torch.testing.assert_close(res.values, truth, atol=0.01, rtol=0)
    assert res.n_evaluations == 8192 * 2**2


def test_permutations_without_replacement_cover_all_orders() -> None:
    from convscope.sensitivity.shapley import _draw_permutations

    gen = torch.Generator().manual_seed(0)
    perms = _draw_permutations(24, 4, gen)
    assert sorted(map(tuple, perms.tolist())) == list(itertools.permutations(range(4)))
    few = _draw_permutations(10, 4, gen)
    assert len(set(map(tuple, few.tolist()))) == 10


def test_plot_vector_output_needs_index() -> None:
    def vec(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([ishigami(x), 2 * x[:, 2]], dim=1)

    res = shapley_effects(vec, ISH_BOUNDS, 64, progress=False)
    with pytest.raises(InputError, match="output="):
        res.plot()
    fig = res.plot(output=1, names=["a", "b", "c"])
    heights = [p.get_height() for p in fig.axes[0].patches]
    # output 1 depends on X3 only: all of its variance goes to X3
    assert heights == pytest.approx([0.0, 0.0, 1.0], abs=1e-9)


def test_group_game_versus_member_sums_on_three_way_interaction() -> None:
    # Y = X1 X2 X3 on [-1, 1]^3 is a pure three-way interaction: each variable gets 1/3, so
    # the member sum gives {X1, X3} 2/3, while the game over the two groups splits it 1/2.
    def f(x: torch.Tensor) -> torch.Tensor:
        return x.prod(dim=1)

    bounds = [[-1.0, 1.0]] * 3
    groups = [[0, 2], [1]]
    game = shapley_effects(f, bounds, 4096, groups=groups, progress=False)
    torch.testing.assert_close(
        game.values, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=0.01, rtol=0
    )
    summed = shapley_effects(f, bounds, 40000, method="goda", groups=groups, progress=False)
    torch.testing.assert_close(
        summed.values, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64), atol=0.03, rtol=0
    )


def test_exact_replicate_intervals_cover_ishigami() -> None:
    # intervals across independent scramblings: the analytic Shapley effects lie inside for
    # most (seed, input) pairs, and a single replicate reproduces the plain exact estimate
    truth = ishigami_truth()
    covered = []
    for seed in range(10):
        res = shapley_effects(
            ishigami, ISH_BOUNDS, 128, replicates=6, seed=10 * seed, batch_size=8192,
            progress=False,
        )  # fmt: skip
        assert res.intervals is not None and res.replicates == 6
        lo, hi = res.intervals[:, 0], res.intervals[:, 1]
        covered += ((lo <= truth) & (truth <= hi)).tolist()
    assert sum(covered) / len(covered) >= 0.8
    one = shapley_effects(ishigami, ISH_BOUNDS, 128, seed=3, progress=False)
    again = shapley_effects(ishigami, ISH_BOUNDS, 128, seed=3, replicates=1, progress=False)
    assert one.intervals is None and torch.equal(one.values, again.values)
    # the mean of R replicates is the mean of R single runs
    pooled = shapley_effects(ishigami, ISH_BOUNDS, 128, seed=3, replicates=2, progress=False)
    other = shapley_effects(ishigami, ISH_BOUNDS, 128, seed=4, progress=False)
    torch.testing.assert_close(pooled.values, (one.values + other.values) / 2)
    assert pooled.n_evaluations == 2 * one.n_evaluations


def test_replicates_only_for_exact() -> None:
    with pytest.raises(InputError, match="replicates is used only"):
        shapley_effects(ishigami, ISH_BOUNDS, 16, method="goda", replicates=2)
