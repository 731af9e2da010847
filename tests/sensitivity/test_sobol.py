"""sobol_indices: the one-call API against analytic values, with streaming and replicates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from convscope.core.errors import InputError
from convscope.sensitivity import SobolResult, sobol_indices

PI = math.pi
ISHIGAMI_BOUNDS = [[-PI, PI]] * 3
S1 = torch.tensor([0.3139, 0.4424, 0.0], dtype=torch.float64)
ST = torch.tensor([0.5576, 0.4424, 0.2437], dtype=torch.float64)


def ishigami(x: torch.Tensor) -> torch.Tensor:
    x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
    return torch.sin(x1) + 7 * torch.sin(x2) ** 2 + 0.1 * x3**4 * torch.sin(x1)


def test_ishigami_first_total_and_second_order() -> None:
    result = sobol_indices(ishigami, ISHIGAMI_BOUNDS, 2**13, second_order=True, progress=False)
    assert torch.allclose(result.first_order, S1, atol=0.02)
    assert torch.allclose(result.total_order, ST, atol=0.02)
    assert result.second_order is not None
    assert abs(float(result.second_order[0, 2]) - 0.2437) < 0.03
    assert result.n_evaluations == 2**13 * (2 * 3 + 2)


def test_replicate_intervals_cover_the_analytic_values() -> None:
    result = sobol_indices(ishigami, ISHIGAMI_BOUNDS, 2**10, replicates=8, progress=False)
    assert result.first_order_interval is not None and result.total_order_interval is not None
    low, high = result.total_order_interval[:, 0], result.total_order_interval[:, 1]
    assert bool(((low <= ST + 0.01) & (high >= ST - 0.01)).all())
    assert bool((high - low < 0.1).all())
    assert result.n_evaluations == 8 * 2**10 * 5


def test_vector_outputs_equal_scalar_runs_and_batch_size_does_not_matter() -> None:
    def two(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([ishigami(x), x[:, 0] + 2 * x[:, 1]], dim=1)

    both = sobol_indices(two, ISHIGAMI_BOUNDS, 256, batch_size=100, progress=False)
    alone = sobol_indices(ishigami, ISHIGAMI_BOUNDS, 256, batch_size=1000, progress=False)
    assert both.first_order.shape == (3, 2)
    torch.testing.assert_close(both.first_order[:, 0], alone.first_order)
    torch.testing.assert_close(both.total_order[:, 0], alone.total_order)
    # a linear function: S1 = ST = a_i^2 / sum a^2 (input variances equal)
    torch.testing.assert_close(
        both.total_order[:, 1], torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64), atol=0.02,
        rtol=0,
    )  # fmt: skip


def test_groups_are_swapped_together(tmp_path: Path) -> None:
    grouped = sobol_indices(ishigami, ISHIGAMI_BOUNDS, 2**12, groups=[[0, 2], [1]], progress=False)
    # S1 of the group {x1, x3} = S1 + S3 + S13 = 0.3139 + 0 + 0.2437
    assert abs(float(grouped.first_order[0]) - 0.5576) < 0.02
    assert abs(float(grouped.first_order[1]) - 0.4424) < 0.02
    grouped.save(tmp_path / "s")
    again = SobolResult.load(tmp_path / "s")
    torch.testing.assert_close(again.first_order, grouped.first_order)
    assert grouped.plot(["x1+x3", "x2"]) is not None


def test_constant_output_gives_zero_not_nan() -> None:
    result = sobol_indices(lambda x: torch.ones(len(x)), ISHIGAMI_BOUNDS, 64, progress=False)
    assert bool(result.zero_variance) and torch.equal(result.first_order, torch.zeros(3).double())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bounds": [[0, 1, 2]]}, "bounds"),
        ({"n": 100}, "64 or n=128"),
        ({"replicates": 0}, "replicates"),
    ],
)
def test_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"bounds": ISHIGAMI_BOUNDS, "n": 64, **kwargs}
    with pytest.raises(InputError, match=message):
        sobol_indices(ishigami, progress=False, **args)  # type: ignore[arg-type]


def test_func_returning_the_wrong_rows_is_named() -> None:
    with pytest.raises(InputError, match="m rows"):
        sobol_indices(lambda x: x[:1, 0], ISHIGAMI_BOUNDS, 64, progress=False)
