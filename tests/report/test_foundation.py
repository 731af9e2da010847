"""The numbers the foundation's demo sections compute."""

from __future__ import annotations

import torch

from convscope.report.foundation import mask_energy


def test_mask_energy_against_a_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 1, 6, 5, generator=gen) - 0.2  # some negative values, clamped away
    masks = torch.rand(4, 6, 5, generator=gen) > 0.6
    expected = []
    for m, k in zip(maps, masks, strict=True):
        inside = total = 0.0
        for i in range(6):
            for j in range(5):
                v = max(float(m[0, i, j]), 0.0)
                total += v
                inside += v if bool(k[i, j]) else 0.0
        expected.append(inside / total)
    torch.testing.assert_close(mask_energy(maps, masks), torch.tensor(expected))


def test_mask_energy_reference_values() -> None:
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # half the image
    uniform = torch.ones(1, 1, 4, 4)
    assert float(mask_energy(uniform, masks)) == 0.5  # a blind map scores the area fraction
    assert float(mask_energy(masks[:, None].float(), masks)) == 1.0
    assert float(mask_energy(torch.zeros(1, 1, 4, 4), masks)) == 0.0
