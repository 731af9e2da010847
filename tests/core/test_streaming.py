"""stream(): resume equals an uninterrupted run bit for bit, other runs are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from convscope.core.errors import InputError
from convscope.core.fingerprint import run_fingerprint
from convscope.core.streaming import Accumulator, stream


class Sums:
    """Sum and sum of squares of blocks (the simplest accumulator)."""

    def __init__(self) -> None:
        self.s = torch.zeros(3, dtype=torch.float64)
        self.s2 = torch.zeros(3, dtype=torch.float64)
        self.n = 0

    def update(self, x: torch.Tensor) -> None:
        self.s += x.sum(0)
        self.s2 += (x * x).sum(0)
        self.n += x.shape[0]

    def merge(self, other: Sums) -> Sums:
        self.s, self.s2, self.n = self.s + other.s, self.s2 + other.s2, self.n + other.n
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s, "s2": self.s2, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> Sums:
        self.s, self.s2, self.n = state["s"], state["s2"], int(state["n"])
        return self

    def compute(self) -> torch.Tensor:
        return self.s2 / self.n - (self.s / self.n) ** 2


def _data() -> list[torch.Tensor]:
    return list(
        torch.rand(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).split(7)
    )


def test_protocol_and_uninterrupted_result() -> None:
    blocks = _data()
    acc = Sums()
    assert isinstance(acc, Accumulator)
    out = stream(blocks, lambda _i, b: acc.update(b), acc, progress=False)
    torch.testing.assert_close(out.compute(), torch.cat(blocks).var(0, correction=0))


def test_resume_after_interruption_is_bit_identical(tmp_path: Path) -> None:
    blocks = _data()
    run = run_fingerprint(None, {"data": torch.cat(blocks)}, {"blocks": len(blocks)})
    full = Sums()
    stream(blocks, lambda _i, b: full.update(b), full, progress=False)

    class StopError(Exception):
        pass

    first = Sums()

    def stop_at_four(i: int, b: torch.Tensor) -> None:
        if i == 4:
            raise StopError
        first.update(b)

    with pytest.raises(StopError):
        stream(blocks, stop_at_four, first, resume=tmp_path / "s", run=run, progress=False)
    seen: list[int] = []
    again = Sums()

    def record(i: int, b: torch.Tensor) -> None:
        seen.append(i)
        again.update(b)

    stream(blocks, record, again, resume=tmp_path / "s", run=run, progress=False)
    assert seen == [4, 5]  # the finished blocks were not recomputed
    assert torch.equal(again.s, full.s) and torch.equal(again.s2, full.s2)
    assert again.n == full.n


def test_another_run_is_refused_naming_the_difference(tmp_path: Path) -> None:
    blocks = _data()
    run = run_fingerprint(None, {"data": torch.cat(blocks)}, {"blocks": 6, "scale": 1.0})
    acc = Sums()
    stream(blocks, lambda _i, b: acc.update(b), acc, resume=tmp_path / "s", run=run, progress=False)
    other = run_fingerprint(None, {"data": torch.cat(blocks)}, {"blocks": 6, "scale": 2.0})
    with pytest.raises(InputError, match=r"'scale' \(1.0 then, 2.0 now\)"):
        stream(blocks, lambda _i, b: None, Sums(), resume=tmp_path / "s", run=other, progress=False)
    changed = torch.cat(blocks).clone()
    changed[-1, -1] += 1.0
    other = run_fingerprint(None, {"data": changed}, {"blocks": 6, "scale": 1.0})
    with pytest.raises(InputError, match="input 'data'"):
        stream(blocks, lambda _i, b: None, Sums(), resume=tmp_path / "s", run=other, progress=False)
