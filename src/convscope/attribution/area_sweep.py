r"""Area sweeps of extremal perturbations and the extremal area (thesis ch. 4 §2 and §4).

For masks :math:`m_a` over a set of areas, the *extremal area* is the smallest area whose
preserved score reaches a fraction :math:`\tau` of the full image's score (eq. 3):

.. math::

    a^* = \min\{a : \Phi(m_a \otimes x) \ge \Phi_0\},\qquad \Phi_0 = \tau\,\Phi(x),

with :math:`\tau = 1` in the paper's experiments. Because each :math:`m_a` maximizes the
score among masks of area :math:`a`, every smaller mask scores below :math:`\Phi_0`, so a
single mask characterizes a family. Optimal masks should satisfy the monotonicity of eq. 8,
:math:`a_1 \le a_2 \Rightarrow \Phi(m_{a_1}\otimes x) \le \Phi(m_{a_2}\otimes x)` for
:math:`a_1, a_2 < a^*`; the paper finds it holds for 98.45% of ImageNet validation images.
Along the sweep, the preservation curve :math:`\Phi(m_a \otimes x)` and the deletion curve
:math:`\Phi((1 - m_a)\otimes x)` are compared with the full and the fully blurred image
(Fig. 3), and the masks side by side with :math:`\Phi(m_a\otimes x)/\Phi_0` (Fig. 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convscope.attribution.extremal import ExtremalResult, extremal_perturbation
from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.core.targets import TargetLike

__all__ = [
    "PAPER_AREAS",
    "AreaSweepResult",
    "extremal_area_sweep",
    "monotonicity",
    "optimal_area",
]

#: The areas of the paper's sweeps (Fig. 3 and 5).
PAPER_AREAS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def optimal_area(
    areas: Sequence[float], scores: torch.Tensor, reference: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    r"""The extremal area :math:`a^*` per image: smallest :math:`a` with score
    :math:`\ge \tau \cdot` reference.

    Parameters
    ----------
    areas
        K areas.
    scores
        N×K preserved scores :math:`\Phi(m_a \otimes x)`.
    reference
        N scores :math:`\Phi(x)` of the full images.
    tau
        The fraction :math:`\tau` of the full score to reach.

    Returns
    -------
    torch.Tensor
        N areas (float); NaN where no area reaches the threshold.
    """
    order = sorted(range(len(areas)), key=lambda i: areas[i])
    sorted_areas = torch.tensor([float(areas[i]) for i in order], dtype=torch.float64)
    s = scores[:, order].double()
    reached = s >= tau * reference.double()[:, None]
    first = reached.double().argmax(1)  # argmax returns the first maximal index
    first[~reached.any(1)] = -1
    out = torch.full((s.shape[0],), float("nan"), dtype=torch.float64)
    ok = first >= 0
    out[ok] = sorted_areas[first[ok]]
    return out


def monotonicity(
    areas: Sequence[float], scores: torch.Tensor, a_star: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Whether the preserved score grows with the area below :math:`a^*` (eq. 8), per image.

    Checks :math:`\Phi(m_{a_1}\otimes x) \le \Phi(m_{a_2}\otimes x)` for all
    :math:`a_1 \le a_2` (below ``a_star`` if given, NaN meaning "all areas"). Returns N bools.
    """
    order = sorted(range(len(areas)), key=lambda i: areas[i])
    sorted_areas = torch.tensor([float(areas[i]) for i in order], dtype=torch.float64)
    s = scores[:, order].double()
    out = torch.ones(s.shape[0], dtype=torch.bool)
    for i in range(s.shape[0]):
        keep = torch.ones(len(order), dtype=torch.bool)
        if a_star is not None and not torch.isnan(a_star[i]):
            star = float(a_star[i])
            # float32 a* (0.6 -> 0.6000000238) must not count the area a* itself as below it
            keep = (sorted_areas < star) & ~torch.isclose(
                sorted_areas, torch.tensor(star, dtype=torch.float64), rtol=1e-6, atol=0.0
            )
        row = s[i, keep]
        out[i] = bool((row[1:] >= row[:-1]).all()) if row.numel() > 1 else True
    return out


@dataclass
class AreaSweepResult(Result):
    """Extremal masks over a set of areas, the extremal area and the score curves.

    Attributes
    ----------
    masks
        N×K×1×H×W masks (1 = preserved), areas sorted increasingly.
    areas
        The K areas.
    preservation, deletion
        N×K scores :math:`\\Phi(m_a\\otimes x)` and :math:`\\Phi((1 - m_a)\\otimes x)` of the
        soft masks.
    full_scores, perturbed_scores
        N scores of the full and the fully perturbed image.
    a_star
        N extremal areas (NaN: no area reached :math:`\\tau\\Phi(x)`).
    monotonic
        N flags: eq. 8 holds below :math:`a^*`.
    tau
        The threshold fraction.
    settings
        The extremal perturbation settings.
    """

    masks: torch.Tensor
    areas: tuple[float, ...]
    preservation: torch.Tensor
    deletion: torch.Tensor
    full_scores: torch.Tensor
    perturbed_scores: torch.Tensor
    a_star: torch.Tensor
    monotonic: torch.Tensor
    tau: float = 1.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ratios(self) -> torch.Tensor:
        """N×K preserved scores relative to :math:`\\Phi_0 = \\tau\\Phi(x)`."""
        return self.preservation / (self.tau * self.full_scores[:, None])

    def plot(self, index: int = 0, image: torch.Tensor | None = None, kind: str = "strip") -> Any:
        """``kind="strip"``: masks and score ratios (Fig. 5); ``"curves"``: scores against
        area with the full and blurred references (Fig. 3)."""
        from convscope.plots.attribution import area_curves, area_sweep_strip

        a_star = float(self.a_star[index])
        star = None if a_star != a_star else a_star
        if kind == "curves":
            return area_curves(
                list(self.areas), self.preservation[index].tolist(),
                self.deletion[index].tolist(), full_score=float(self.full_scores[index]),
                blurred_score=float(self.perturbed_scores[index]), a_star=star,
            )  # fmt: skip
        if kind != "strip":
            raise InputError(f"Unknown plot kind {kind!r}; use 'strip' or 'curves'.")
        base = image if image is not None else torch.ones(3, *self.masks.shape[-2:])
        return area_sweep_strip(
            base, self.masks[index, :, 0], list(self.areas), self.ratios[index].tolist(),
            a_star=star, tau=1.0,
        )  # fmt: skip


def extremal_area_sweep(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    areas: Sequence[float] = PAPER_AREAS,
    *,
    tau: float = 1.0,
    **options: Any,
) -> AreaSweepResult:
    r"""Extremal perturbations for every area, :math:`a^*`, the monotonicity check and the
    preservation/deletion curves.

    Parameters
    ----------
    model, input, target
        As in :func:`~convscope.attribution.extremal_perturbation`.
    areas
        Areas of the sweep (default: the paper's 5, 10, 20, 40, 60, 80%).
    tau
        :math:`\Phi_0 = \tau\Phi(x)`; 1 in the paper.
    **options
        Passed to :func:`~convscope.attribution.extremal_perturbation` (variant, max_iter,
        batch_size, ...). All areas of all images are optimized in one batch.
    """
    if not tau > 0:
        raise InputError(f"tau must be positive, got {tau}.")
    ordered = sorted(float(a) for a in areas)
    if len(set(ordered)) != len(ordered):
        raise InputError(f"Areas must be distinct, got {list(areas)}.")
    result: ExtremalResult = extremal_perturbation(model, input, target, ordered, **options)
    a_star = optimal_area(ordered, result.scores, result.full_scores, tau)
    return AreaSweepResult(
        masks=result.masks,
        areas=tuple(ordered),
        preservation=result.scores,
        deletion=result.deletion_scores,
        full_scores=result.full_scores,
        perturbed_scores=result.perturbed_scores,
        a_star=a_star,
        monotonic=monotonicity(ordered, result.scores, a_star),
        tau=tau,
        settings=result.settings,
    )
