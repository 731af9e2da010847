"""Every attribution method by name, each turned into an N×1×H×W saliency map.

The perturbation methods return masks rather than maps; :func:`attribution_map` converts
them the way the thesis's evaluations do: extremal perturbation masks over several areas are
summed and blurred with σ = 9% of the shorter side (TorchRay's pointing-game conversion),
and the meaningful-perturbation saliency is :math:`1 - m` for the deletion game.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convscope.attribution.baselines import BASELINES
from convscope.core.errors import InputError, suggestion
from convscope.core.results import Result
from convscope.core.targets import TargetLike

__all__ = [
    "ALIASES",
    "METHODS",
    "AttributionMaps",
    "attribution_map",
    "compare_methods",
    "method_names",
    "resolve_method",
]


def _extremal(model: nn.Module, input: torch.Tensor, target: TargetLike, **options: Any) -> Any:
    from convscope.attribution.extremal import extremal_perturbation

    sigma_fraction = options.pop("sigma_fraction", 0.09)
    result = extremal_perturbation(model, input, target, **options)
    return result.saliency(sigma_fraction)


def _meaningful(model: nn.Module, input: torch.Tensor, target: TargetLike, **options: Any) -> Any:
    from convscope.attribution.meaningful import meaningful_perturbation

    return meaningful_perturbation(model, input, target, **options).saliency


#: Method name → function ``(model, input, target, **options) -> N×1×H×W`` map.
METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "extremal": _extremal,
    "meaningful": _meaningful,
    **BASELINES,
}

#: Alternative spellings accepted on the command line.
ALIASES: dict[str, str] = {
    "gradcam": "grad_cam",
    "ep": "extremal",
    "extremal_perturbation": "extremal",
    "mp": "meaningful",
    "meaningful_perturbation": "meaningful",
    "guided": "guided_backprop",
    "ig": "integrated_gradients",
    "ebp": "excitation_backprop",
    "cebp": "contrastive_excitation_backprop",
}


def method_names() -> list[str]:
    """The canonical method names."""
    return list(METHODS)


def resolve_method(name: str) -> str:
    """The canonical name of ``name`` (aliases and dashes accepted); a clear error if unknown."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise InputError(
            f"Unknown attribution method {name!r}."
            + suggestion(name, [*METHODS, *ALIASES], "methods")
            + f" Methods: {', '.join(METHODS)}."
        )
    return key


def attribution_map(
    method: str, model: nn.Module, input: torch.Tensor, target: TargetLike, **options: Any
) -> torch.Tensor:
    """The N×1×H×W saliency map of ``method`` (see :data:`METHODS`), on the CPU.

    ``options`` go to the method; for ``"extremal"``, ``sigma_fraction`` sets the blur of the
    summed masks.
    """
    fn = METHODS[resolve_method(method)]
    out = fn(model, input, target, **options)
    return out.detach().float().cpu()


@dataclass
class AttributionMaps(Result):
    """Saliency maps of several methods for the same images.

    Attributes
    ----------
    maps
        Method name → N×1×H×W map (float32, CPU).
    seconds
        Method name → wall time of the call in seconds.
    options
        Method name → the options it was called with.
    """

    maps: dict[str, torch.Tensor]
    seconds: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def plot(
        self,
        images: torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        points: Mapping[str, torch.Tensor] | None = None,
        hits: Mapping[str, torch.Tensor] | None = None,
        row_titles: Sequence[str] | None = None,
    ) -> Any:
        """Method comparison grid: one row per image, one column per method."""
        from convscope.plots.attribution import method_grid

        return method_grid(
            images, dict(self.maps), masks=masks, points=points, hits=hits,
            row_titles=row_titles,
        )  # fmt: skip


def compare_methods(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    methods: Sequence[str],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> AttributionMaps:
    """Run several attribution methods on the same images and targets.

    ``options`` maps a method name to the keyword arguments of that method.
    """
    options = options or {}
    names = [resolve_method(m) for m in methods]
    if len(set(names)) != len(names):
        raise InputError(f"Methods are listed twice: {list(methods)}.")
    maps: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    used: dict[str, Any] = {}
    for method, name in zip(methods, names, strict=True):
        opts = dict(options.get(method, options.get(name, {})))
        start = time.perf_counter()
        maps[name] = attribution_map(name, model, input, target, **opts)
        seconds[name] = time.perf_counter() - start
        used[name] = opts
    return AttributionMaps(maps=maps, seconds=seconds, options=used)
