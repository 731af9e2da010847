"""MeaningfulOptions: the same result as the keywords; conflicts are refused."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from convscope.attribution.meaningful import MeaningfulOptions, meaningful_perturbation
from convscope.core.errors import InputError


def test_meaningful_options_match_the_keywords(tiny_cnn: nn.Module) -> None:
    params = inspect.signature(meaningful_perturbation).parameters
    for f in dataclasses.fields(MeaningfulOptions):
        assert params[f.name].default == f.default, f.name
        assert f.metadata["help"], f.name
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    opts = MeaningfulOptions(max_iter=3, init="random", seed=3, mask_size=4)
    by_options = meaningful_perturbation(tiny_cnn, x, 1, options=opts, progress=False)
    by_keywords = meaningful_perturbation(
        tiny_cnn, x, 1, max_iter=3, init="random", seed=3, mask_size=4, progress=False
    )
    assert torch.equal(by_options.masks, by_keywords.masks)
    assert by_options.seed == 3 and by_options.init == "random"
    with pytest.raises(InputError, match="options= and also max_iter="):
        meaningful_perturbation(tiny_cnn, x, 1, options=opts, max_iter=5)
