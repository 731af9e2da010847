from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.core import InputError, batch_slices, forward_batched, map_batches, set_progress


class CountingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.sizes: list[int] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.lin(x.mean(dim=(2, 3)))


@pytest.mark.parametrize(("n", "bs"), [(10, 3), (9, 3), (1, 64), (64, 64), (65, 64)])
def test_batch_slices_cover_range(n: int, bs: int) -> None:
    slices = batch_slices(n, bs)
    covered = [i for sl in slices for i in range(n)[sl]]
    assert covered == list(range(n))
    assert max(sl.stop - sl.start for sl in slices) <= bs


def test_forward_batched_bounds_batches_and_runs_without_grad() -> None:
    model = CountingModel()
    x = torch.rand(10, 3, 4, 4)
    out = forward_batched(model, x, batch_size=4)
    assert model.sizes == [4, 4, 2]
    assert model.grad_enabled == [False, False, False]
    torch.testing.assert_close(out, model.lin(x.mean(dim=(2, 3))))


def test_map_batches_grad_flag_even_inside_no_grad() -> None:
    def grad_mode(sl: slice) -> bool:
        return torch.is_grad_enabled()

    with torch.no_grad():
        seen = [v for _, v in map_batches(grad_mode, 3, batch_size=1, grad=True)]
    assert seen == [True, True, True]
    assert [v for _, v in map_batches(grad_mode, 2, batch_size=1)] == [False, False]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size(bad: object) -> None:
    with pytest.raises(InputError, match="batch_size"):
        batch_slices(10, bad)  # type: ignore[arg-type]


def test_progress_bar_shown_when_asked_and_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    model = CountingModel()
    x = torch.rand(20, 3, 2, 2)
    forward_batched(model, x, batch_size=1, progress=True, desc="probe-bar")
    assert "probe-bar" in capsys.readouterr().err
    forward_batched(model, x, batch_size=1, progress=False, desc="probe-bar")
    assert "probe-bar" not in capsys.readouterr().err
    set_progress(False)
    try:
        forward_batched(model, x, batch_size=1, desc="probe-bar")
        assert "probe-bar" not in capsys.readouterr().err
    finally:
        set_progress(True)


def test_empty_input_is_refused() -> None:
    with pytest.raises(InputError, match="empty"):
        forward_batched(CountingModel(), torch.rand(0, 3, 2, 2))


def test_map_batches_does_not_leak_no_grad_to_the_caller() -> None:
    def grad_mode(sl: slice) -> torch.Tensor:
        return torch.tensor(torch.is_grad_enabled())

    inside, outside = [], []
    for _, value in map_batches(grad_mode, 3, batch_size=1):
        inside.append(bool(value))
        outside.append(torch.is_grad_enabled())
    assert inside == [False, False, False]
    assert outside == [True, True, True]
