"""ExtremalOptions, the resume= keyword (checkpoint= deprecated) and the deprecated seed=."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from convscope.attribution.extremal import (
    EarlyStopping,
    ExtremalOptions,
    extremal_perturbation,
)
from convscope.core.errors import InputError

_FAST: dict[str, Any] = {"max_iter": 5, "step": 2, "sigma": 2.0, "max_blur": 2.0}

#: The settings keys of extremal_perturbation (``target`` is added by the call).
_SETTINGS_KEYS = {
    "perturbation", "variant", "max_iter", "num_levels", "max_blur", "step", "sigma", "jitter",
    "reward_func", "resize", "resize_mode", "smooth", "lr", "momentum", "dampening",
    "area_weight", "area_weight_growth", "schedule", "early_stop", "coldness", "pooling",
    "kernel", "padding", "mask_stride", "area_domain", "batch_size", "target",
}  # fmt: skip


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(2, 3 * 8 * 8, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def test_options_match_the_keywords_of_the_function() -> None:
    params = inspect.signature(extremal_perturbation).parameters
    for f in dataclasses.fields(ExtremalOptions):
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[f.name].default == f.default, f.name
        assert f.metadata["help"], f.name
    assert "seed" not in ExtremalOptions.field_names()
    assert set(ExtremalOptions().to_dict()) == _SETTINGS_KEYS - {"target"}


def test_options_give_the_same_result_and_settings_as_keywords(x: torch.Tensor) -> None:
    model = _Linear()
    opts = ExtremalOptions(variant="dual", early_stop=EarlyStopping(min_iter=0), **_FAST)
    by_keywords = extremal_perturbation(
        model, x, 1, (0.2, 0.4), variant="dual", early_stop=EarlyStopping(min_iter=0),
        progress=False, **_FAST,
    )  # fmt: skip
    by_options = extremal_perturbation(model, x, 1, (0.2, 0.4), options=opts, progress=False)
    assert torch.equal(by_keywords.masks, by_options.masks)
    assert by_options.settings == by_keywords.settings
    assert set(by_options.settings) == _SETTINGS_KEYS
    assert by_options.settings == {**opts.to_dict(), "target": 1}
    assert by_options.settings["max_iter"] == 5
    assert by_options.settings["early_stop"] == vars(EarlyStopping(min_iter=0))
    # Keywords left at their defaults are ignored; a changed one conflicts.
    same = extremal_perturbation(model, x, 1, (0.2, 0.4), options=opts, lr=0.01, progress=False)
    assert torch.equal(same.masks, by_options.masks)
    with pytest.raises(InputError, match=r"options= and also lr=.*options\.replace\(lr="):
        extremal_perturbation(model, x, 1, options=opts, lr=0.1, progress=False)
    replaced = extremal_perturbation(model, x, 1, options=opts.replace(lr=0.1), progress=False)
    assert replaced.settings["lr"] == 0.1


def test_options_validate_when_made() -> None:
    with pytest.raises(InputError, match="Unknown variant"):
        ExtremalOptions(variant="both")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="lr must be positive"):
        ExtremalOptions().replace(lr=0.0)
    with pytest.raises(InputError, match="batch_size"):
        ExtremalOptions(batch_size=0)
    assert ExtremalOptions(schedule="paper").to_dict()["max_iter"] == 1600
    assert "Mask cell side" in ExtremalOptions.help("step")


def test_checkpoint_is_a_deprecated_name_of_resume(x: torch.Tensor, tmp_path: Path) -> None:
    model = _Linear()
    new = extremal_perturbation(model, x, 1, resume=tmp_path / "new", progress=False, **_FAST)
    with pytest.warns(DeprecationWarning, match="checkpoint= is deprecated.*use resume="):
        old = extremal_perturbation(
            model, x, 1, checkpoint=tmp_path / "old", progress=False, **_FAST
        )
    assert torch.equal(new.masks, old.masks)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("old"))
    with pytest.raises(InputError, match="both checkpoint= and resume="):
        extremal_perturbation(
            model, x, 1, checkpoint=tmp_path / "a", resume=tmp_path / "b", **_FAST
        )


def test_seed_is_deprecated_and_the_result_is_deterministic(x: torch.Tensor) -> None:
    model = _Linear()
    first = extremal_perturbation(model, x, 1, (0.2,), progress=False, **_FAST)
    torch.manual_seed(123)  # the global generator plays no part either
    second = extremal_perturbation(model, x, 1, (0.2,), progress=False, **_FAST)
    assert torch.equal(first.masks, second.masks)
    assert torch.equal(
        first.history,
        second.history,
    )
    with pytest.warns(DeprecationWarning, match="seed= is deprecated and has no effect"):
        seeded = extremal_perturbation(model, x, 1, (0.2,), seed=7, progress=False, **_FAST)
    assert torch.equal(seeded.masks, first.masks)
    assert "seed" not in seeded.settings
