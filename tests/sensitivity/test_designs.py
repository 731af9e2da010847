"""Pick-freeze designs: structure, SALib parity, stratification, layouts and streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.core.errors import InputError
from convscope.sensitivity import PickFreezeDesign, pick_freeze_design

BOUNDS = [[-np.pi, np.pi], [0.0, 1.0], [2.0, 5.0], [-1.0, 3.0]]


def _brute_hybrids(
    a: np.ndarray, b: np.ndarray, groups: list[list[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """AB_j and BA_j column by column, straight from the definition."""
    k, (n, d) = len(groups), a.shape
    ab, ba = np.empty((k, n, d)), np.empty((k, n, d))
    for j, group in enumerate(groups):
        for col in range(d):
            ab[j, :, col] = b[:, col] if col in group else a[:, col]
            ba[j, :, col] = a[:, col] if col in group else b[:, col]
    return ab, ba


@pytest.mark.parametrize("method", ["sobol", "random", "lhs"])
@pytest.mark.parametrize("second_order", [False, True])
def test_shapes_and_hybrids_match_definition(method: str, second_order: bool) -> None:
    groups = [[0, 2], [3], [1]]
    design = pick_freeze_design(
        4, 16, groups=groups, second_order=second_order, method=method, seed=1
    )
    assert design.a.shape == design.b.shape == (16, 4)
    assert design.ab.shape == (3, 16, 4)
    assert design.k == 3 and design.n == 16 and design.groups == ((0, 2), (3,), (1,))
    assert design.n_evaluations == 16 * (2 * 3 + 2 if second_order else 3 + 2)
    a, b = design.a.numpy(), design.b.numpy()
    ab, ba = _brute_hybrids(a, b, groups)
    np.testing.assert_array_equal(design.ab.numpy(), ab)
    if second_order:
        assert design.ba is not None
        np.testing.assert_array_equal(design.ba.numpy(), ba)
    else:
        assert design.ba is None
    # A and B are independent draws: no column of A repeats B.
    assert not np.isclose(a, b).all(axis=0).any()
    assert ((a >= 0) & (a < 1)).all() and ((b >= 0) & (b < 1)).all()


def test_group_is_swapped_as_a_whole_by_name() -> None:
    design = pick_freeze_design(
        3, 8, groups=[["x", "z"], ["y"]], names=["x", "y", "z"], second_order=True
    )
    assert design.groups == ((0, 2), (1,))
    a, b, ab, ba = design.a, design.b, design.ab, design.ba
    assert ba is not None
    torch.testing.assert_close(ab[0][:, [0, 2]], b[:, [0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(ab[0][:, 1], a[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(ba[1][:, 1], a[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(ba[1][:, [0, 2]], b[:, [0, 2]], rtol=0, atol=0)


def test_default_groups_are_single_variables() -> None:
    design = pick_freeze_design(5, 4)
    assert design.groups == tuple((i,) for i in range(5))
    assert design.method == "sobol" and design.seed == 0


@pytest.mark.parametrize("second_order", [False, True])
@pytest.mark.parametrize("scramble", [True, False])
def test_salib_parity(second_order: bool, scramble: bool) -> None:
    sobol = pytest.importorskip("SALib.sample.sobol")
    problem = {"num_vars": 4, "names": ["a", "b", "c", "d"], "bounds": BOUNDS}
    expected = sobol.sample(problem, 32, calc_second_order=second_order, scramble=scramble, seed=7)
    design = pick_freeze_design(
        4, 32, second_order=second_order, scramble=scramble, bounds=BOUNDS, seed=7
    )
    np.testing.assert_array_equal(design.rows("salib").numpy(), expected)


@pytest.mark.parametrize("second_order", [False, True])
def test_salib_parity_with_groups(second_order: bool) -> None:
    sobol = pytest.importorskip("SALib.sample.sobol")
    problem = {
        "num_vars": 4,
        "names": ["a", "b", "c", "d"],
        "bounds": BOUNDS,
        "groups": ["g1", "g2", "g1", "g3"],  # SALib orders groups by first appearance
    }
    expected = sobol.sample(problem, 16, calc_second_order=second_order, seed=11)
    design = pick_freeze_design(
        4, 16, groups=[[0, 2], [1], [3]], second_order=second_order, bounds=BOUNDS, seed=11
    )
    assert expected.shape == (design.n_evaluations, 4)
    np.testing.assert_array_equal(design.rows("salib").numpy(), expected)


def test_bounds_scale_the_unit_design_affinely() -> None:
    unit = pick_freeze_design(4, 8, second_order=True, seed=5)
    scaled = pick_freeze_design(4, 8, second_order=True, seed=5, bounds=BOUNDS)
    lim = torch.tensor(BOUNDS, dtype=torch.float64)
    assert unit.bounds is None and scaled.bounds is not None
    torch.testing.assert_close(scaled.bounds, lim)
    for u, s in [(unit.a, scaled.a), (unit.ab, scaled.ab), (unit.ba, scaled.ba)]:
        assert u is not None and s is not None
        torch.testing.assert_close(s, lim[:, 0] + u * (lim[:, 1] - lim[:, 0]))


def test_seeded_reproducibility() -> None:
    for method in ["sobol", "random", "lhs"]:
        one = pick_freeze_design(3, 8, method=method, seed=3)
        two = pick_freeze_design(3, 8, method=method, seed=3)
        other = pick_freeze_design(3, 8, method=method, seed=4)
        torch.testing.assert_close(one.rows(), two.rows(), rtol=0, atol=0)
        assert not torch.equal(one.a, other.a)
    fresh = pick_freeze_design(3, 8, seed=None)
    assert isinstance(fresh.seed, int)
    again = pick_freeze_design(3, 8, seed=fresh.seed)
    torch.testing.assert_close(fresh.rows(), again.rows(), rtol=0, atol=0)
    from_generator = pick_freeze_design(3, 8, seed=np.random.default_rng(0))
    assert from_generator.seed is None


def test_sobol_requires_a_power_of_two() -> None:
    with pytest.raises(InputError, match=r"n=50.*n=32 or n=64"):
        pick_freeze_design(3, 50)
    assert pick_freeze_design(3, 50, method="random").n == 50
    assert pick_freeze_design(3, 50, method="lhs").n == 50


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_each_stratum_of_each_column_holds_one_point(method: str) -> None:
    # Latin hypercubes by construction; for Sobol' the first 2^m points of every 1-D
    # projection are a (0, m, 1)-net, which also shows that no point was skipped.
    n = 64
    design = pick_freeze_design(6, n, method=method, seed=2)
    for x in (design.a, design.b):
        strata = torch.floor(x * n).long()
        for col in range(x.shape[1]):
            assert torch.equal(torch.sort(strata[:, col]).values, torch.arange(n))


def test_random_design_is_not_stratified() -> None:
    # Control for the test above: i.i.d. points almost surely leave strata empty.
    n = 64
    design = pick_freeze_design(6, n, method="random", seed=2)
    strata = torch.floor(design.a * n).long()
    assert any(len(torch.unique(strata[:, col])) < n for col in range(6))


def _explicit_rows(design: PickFreezeDesign, layout: str) -> np.ndarray:
    """Rows assembled one by one from the documented orders."""
    a, b, ab = design.a.numpy(), design.b.numpy(), design.ab.numpy()
    ba = None if design.ba is None else design.ba.numpy()
    rows: list[np.ndarray] = []
    if layout == "blocks":
        rows += list(a) + list(b)
        for j in range(design.k):
            rows += list(ab[j])
        for j in range(design.k if ba is not None else 0):
            rows += list(ba[j])  # type: ignore[index]
    else:
        for i in range(design.n):
            rows.append(a[i])
            rows += [ab[j, i] for j in range(design.k)]
            if ba is not None:
                rows += [ba[j, i] for j in range(design.k)]
            rows.append(b[i])
    return np.stack(rows)


@pytest.mark.parametrize("layout", ["blocks", "salib"])
@pytest.mark.parametrize("second_order", [False, True])
def test_rows_order_and_split_round_trip(layout: str, second_order: bool) -> None:
    design = pick_freeze_design(4, 8, groups=[[0, 1], [2], [3]], second_order=second_order, seed=9)
    rows = design.rows(layout)  # type: ignore[arg-type]
    assert rows.shape == (design.n_evaluations, 4)
    np.testing.assert_array_equal(rows.numpy(), _explicit_rows(design, layout))

    weights = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:  # (..., 4) -> (..., 2, 3): a non-flat output
        y = torch.sin(x) @ weights
        return torch.stack([y, y**2, -y], dim=-1)

    f_a, f_b, f_ab, f_ba = design.split(f(rows), layout)  # type: ignore[arg-type]
    # split() only reorders, but the references re-evaluate f (a float64 matmul, K=4) on
    # differently shaped batches, whose BLAS kernel may sum in another order: allow float64
    # rounding (|y| <= 7, |y²| <= 49), far below what a wrong row would change.
    tol = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(f_a, f(design.a), **tol)
    torch.testing.assert_close(f_b, f(design.b), **tol)
    torch.testing.assert_close(f_ab, f(design.ab), **tol)
    if second_order:
        assert design.ba is not None and f_ba is not None
        torch.testing.assert_close(f_ba, f(design.ba), **tol)
    else:
        assert f_ba is None


def test_split_rejects_wrong_row_count() -> None:
    design = pick_freeze_design(3, 4)
    with pytest.raises(InputError, match=r"20 = 4 x 5"):
        design.split(torch.zeros(19))
    with pytest.raises(InputError, match="layout"):
        design.rows("interleaved")  # type: ignore[arg-type]


@pytest.mark.parametrize("batch_size", [1, 3, 8, 20])
def test_blocks_cover_base_rows_exactly_once(batch_size: int) -> None:
    design = pick_freeze_design(3, 8, second_order=True, seed=1)
    seen = torch.zeros(design.n, dtype=torch.long)
    parts: list[torch.Tensor] = []
    for rows, block in design.blocks(batch_size):
        seen[rows] += 1
        assert block.n == rows.stop - rows.start <= batch_size
        assert block.groups == design.groups and block.ba is not None
        torch.testing.assert_close(block.a, design.a[rows], rtol=0, atol=0)
        torch.testing.assert_close(block.ba, design.ba[:, rows], rtol=0, atol=0)  # type: ignore[index]
        parts.append(block.rows("salib"))
    assert torch.equal(seen, torch.ones(design.n, dtype=torch.long))
    # Base-row blocks are contiguous runs of the SALib layout.
    torch.testing.assert_close(torch.cat(parts), design.rows("salib"), rtol=0, atol=0)
    with pytest.raises(InputError, match="batch_size"):
        next(design.blocks(0))


def test_device_and_dtype() -> None:
    wide = pick_freeze_design(3, 8, second_order=True, bounds=BOUNDS[:3])
    narrow = pick_freeze_design(
        3, 8, second_order=True, bounds=BOUNDS[:3], dtype=torch.float32, device="cpu"
    )
    assert narrow.a.dtype == narrow.ab.dtype == torch.float32
    torch.testing.assert_close(narrow.rows(), wide.rows().float(), rtol=0, atol=0)
    with pytest.raises(InputError, match="dtype"):
        pick_freeze_design(3, 8, dtype=torch.int64)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": [[0, 1], [1, 2]]}, "exactly one group"),
        ({"groups": [[0], [1]]}, r"\[2\] are in no group"),
        ({"groups": [[0, 1, 2], []]}, "empty"),
        ({"groups": [[0, 1, 5]]}, "outside range"),
        ({"groups": [0, 1, 2]}, "list of variable indices"),
        ({"groups": [["x"], [1, 2]]}, "names="),
        ({"bounds": [[0, 1], [2, 2], [0, 1]]}, "lower < upper"),
        ({"bounds": [[0, 1], [0, 1]]}, r"shape \(d, 2\)"),
        ({"method": "halton"}, "Unknown design method"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_arguments_raise_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        pick_freeze_design(3, 8, **kwargs)


def test_bad_sizes() -> None:
    with pytest.raises(InputError, match="d must be a positive int"):
        pick_freeze_design(0, 8)
    with pytest.raises(InputError, match="n must be a positive int"):
        pick_freeze_design(3, 0)
    with pytest.raises(InputError, match="2d=30000"):
        pick_freeze_design(15000, 2)
