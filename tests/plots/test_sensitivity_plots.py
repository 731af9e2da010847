"""Sensitivity-map figures draw the values they are given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.core.errors import InputError
from convscope.plots.sensitivity import sensitivity_map_grid, unit_map_panel


def test_map_grid_draws_each_variable_and_channel() -> None:
    maps = torch.rand(3, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    fig = sensitivity_map_grid(maps, ["a", "b", "c"], channels=[1, 4])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3 * 2
    np.testing.assert_allclose(images[0].get_array(), maps[0, 1].numpy())
    np.testing.assert_allclose(images[-1].get_array(), maps[2, 4].numpy())
    assert images[0].get_clim() == (0.0, 1.0)


def test_map_grid_fully_connected_and_errors() -> None:
    maps = torch.rand(2, 7)
    fig = sensitivity_map_grid(maps, ["a", "b"])
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), maps.numpy())
    with pytest.raises(InputError, match="labels"):
        sensitivity_map_grid(maps, ["a"])
    with pytest.raises(InputError, match="channels"):
        sensitivity_map_grid(torch.rand(2, 3, 4, 4), ["a", "b"], channels=[5])


def test_unit_panel_shows_maps_and_log_cov() -> None:
    maps, cov = torch.rand(2, 3, 4, 4), torch.rand(3, 4, 4)
    fig = unit_map_panel(maps, cov, ["a", "b"], channel=2)
    arrays = [ax.images[0].get_array() for ax in fig.axes]
    np.testing.assert_allclose(arrays[1], maps[1, 2].numpy())
    np.testing.assert_allclose(arrays[2], cov[2].numpy())
