r"""Sanity checks for saliency methods: "unit tests", not quality scores (thesis ch. 7.1.3).

**Model parameter randomisation** (Adebayo et al., 2018, "Sanity checks for saliency maps").
A map that explains the *model* must change when the model's weights are destroyed. The
layers :math:`\ell_1, \dots, \ell_L` are re-initialised from the output towards the input:

* *cascading*: at step :math:`k` the layers :math:`\ell_1..\ell_k` are random (the top of
  the network is destroyed progressively, EP Fig. 7: VGG16 fc8 → conv1_1);
* *independent*: at step :math:`k` only :math:`\ell_k` is random.

At each step the map :math:`s_k` is compared with the original :math:`s_0` by the Spearman
rank correlation per image, with and without absolute values (Adebayo's two variants),

.. math::

    \rho(s_0, s_k) = \frac{\operatorname{cov}(r(s_0), r(s_k))}
                          {\sigma_{r(s_0)}\,\sigma_{r(s_k)}},

where :math:`r` gives average ranks to ties (as ``scipy.stats.spearmanr``); a constant map has
an undefined correlation (NaN). A method whose correlation stays near 1 fails the check: its
maps do not depend on what the model learnt (an edge detector, the input itself).

The randomisation runs on a deep copy, so the user's model is never modified. A layer is
re-initialised by its own ``reset_parameters()`` (PyTorch's default initialisation, as in a
freshly constructed model, which the TorchRay fork of the thesis author uses), or
:math:`\mathcal N(0, 0.01^2)` for modules without one, under a forked RNG seeded per layer from
``seed``: layer :math:`\ell_k` gets the same random weights in both modes. Normalisation
layers are reset too, to their fixed initial state (:math:`\gamma = 1, \beta = 0`, running
mean 0 and variance 1): not random, but what a freshly constructed model holds. By default the
layers are every module with parameters of its own, in the reverse order of their first call
in a forward pass. The target stays the original one (``target_policy="fixed"``, Adebayo);
``"argmax"`` uses the class predicted by the partially random model at each step (the TorchRay
fork's ``sanity_check``).

**Class sensitivity** (Rebuffi, Fong, Ji & Vedaldi, 2020, "There and back again", thesis
App. C.2). A class-discriminative method gives different maps for different classes; the
check is the Spearman correlation between the maps for the most and the least likely class
of each image. Near 0 is better; guided backprop and excitation backprop give about 1.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.batching import batch_slices, forward_batched
from convscope.core.errors import InputError
from convscope.core.hooks import layer_calls
from convscope.core.layers import resolve_layer
from convscope.core.results import Result
from convscope.core.seeding import SeedLike, torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count
from convscope.core.validation import check_images

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ClassSensitivityResult",
    "SaliencyFunction",
    "SanityResult",
    "class_sensitivity",
    "parameter_randomization",
    "randomize_module",
    "spearman",
]

#: ``saliency_fn(model, input, target) -> maps`` with one map per input (N×1×H×W).
SaliencyFunction = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]
RandomizationMode = Literal["cascading", "independent"]
TargetPolicy = Literal["fixed", "argmax"]


# --------------------------------------------------------------------------- Spearman


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last axis, tied values sharing their average rank."""
    ordered = x.sort(dim=-1).values.contiguous()
    below = torch.searchsorted(ordered, x.contiguous(), right=False)
    upto = torch.searchsorted(ordered, x.contiguous(), right=True)
    # Ties occupy 0-based positions below..upto-1: average (below + upto - 1) / 2, plus 1.
    return (below + upto + 1).double() / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Spearman rank correlation of each pair of samples, ties given average ranks.

    Parameters
    ----------
    a, b
        Tensors of the same shape N×... (each sample is flattened).

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64 correlations; NaN where a sample is constant (zero rank variance),
        as ``scipy.stats.spearmanr``.
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise InputError("spearman expects two tensors of the same shape N×....")
    if a.shape != b.shape or a.ndim < 1:
        raise InputError(
            f"spearman needs two tensors of the same shape N×..., got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    fa = a.detach().reshape(a.shape[0], -1).double()
    fb = b.detach().reshape(b.shape[0], -1).to(fa.device).double()
    if bool(torch.isnan(fa).any()) or bool(torch.isnan(fb).any()):
        raise InputError("spearman got NaN values; ranks of NaN are undefined.")
    ra = _average_ranks(fa)
    rb = _average_ranks(fb)
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    corr = (ra * rb).sum(1) / denom
    return torch.where(denom > 0, corr, torch.full_like(corr, math.nan)).clamp(-1, 1)


# --------------------------------------------------------------------------- randomisation


def randomize_module(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameter of ``module`` (and its submodules) in place.

    Each submodule with parameters of its own calls its ``reset_parameters()``; one without
    draws them from :math:`\\mathcal N(0, 0.01^2)`. The global RNG is forked and seeded with
    ``seed``, so the caller's random state is untouched and the result is reproducible.
    """
    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        for sub in module.modules():
            own = list(sub.parameters(recurse=False))
            if not own:
                continue
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for param in own:
                    param.normal_(0.0, 0.01)


def _default_layers(model: nn.Module, input: torch.Tensor) -> list[str]:
    """Modules with parameters of their own, in reverse order of their first call."""
    calls = layer_calls(model, input[:1])
    modules = dict(model.named_modules())
    names = [n for n in calls if any(True for _ in modules[n].parameters(recurse=False))]
    if not names:
        raise InputError(
            f"{type(model).__name__} has no module with parameters that runs in the forward "
            "pass; there is nothing to randomise."
        )
    return names[::-1]


def _plain_target(target: Target) -> Any:
    """The target in the plainest form (int, index tensor or callable) for user functions."""
    if target.function is not None:
        return target.function
    return target.index


def _maps(
    fn: SaliencyFunction,
    model: nn.Module,
    input: torch.Tensor,
    target: Target,
    batch_size: int | None,
) -> torch.Tensor:
    parts = []
    for sl in batch_slices(input.shape[0], batch_size):
        out = fn(model, input[sl], _plain_target(target.subset(sl)))
        n = sl.stop - sl.start
        if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != n:
            shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"saliency_fn(model, input, target) must return one map per input (N×1×H×W "
                f"with N = {n}), got {shown}."
            )
        parts.append(out.detach())
    maps = torch.cat(parts)
    if not bool(torch.isfinite(maps).all()):
        raise InputError(
            "saliency_fn returned NaN or inf values; the rank correlation needs finite maps."
        )
    return maps


def _stored(maps: torch.Tensor, map_size: tuple[int, int] | None) -> torch.Tensor:
    if map_size is not None and maps.ndim == 4 and tuple(maps.shape[-2:]) != map_size:
        maps = F.interpolate(maps.float(), size=map_size, mode="bilinear", align_corners=False)
    return maps.cpu()


def _check_map_size(map_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if map_size is None:
        return None
    pair: Any = (
        (map_size, map_size)
        if isinstance(map_size, int) and not isinstance(map_size, bool)
        else map_size
    )
    try:
        h, w = (int(s) for s in pair)
    except (TypeError, ValueError):
        raise InputError(f"map_size must be (H, W), one int or None, got {map_size!r}.") from None
    if h < 1 or w < 1:
        raise InputError(f"map_size must be positive, got {(h, w)}.")
    return h, w


@dataclass
class SanityResult(Result):
    """Maps and rank correlations of a model-parameter-randomisation check.

    Attributes
    ----------
    layers
        The randomised layers, in order (step k randomises ``layers[k - 1]``).
    maps
        (L+1)×N×... maps: index 0 for the original model, index k after step k.
    spearman, spearman_abs
        L×N Spearman correlations between the original map and the map after step k, on the
        maps and on their absolute values.
    targets
        (L+1)×N class indices used at each step (None for a callable target).
    mode, target_policy, seed
        Settings.
    """

    layers: tuple[str, ...]
    maps: torch.Tensor
    spearman: torch.Tensor
    spearman_abs: torch.Tensor
    targets: torch.Tensor | None = None
    mode: str = "cascading"
    target_policy: str = "fixed"
    seed: int | None = 0

    def randomized(self, step: int) -> tuple[str, ...]:
        """The layers that are random at ``step`` (1..L; 0 is the original model)."""
        if not 0 <= step <= len(self.layers):
            raise InputError(f"step must be in 0..{len(self.layers)}, got {step}.")
        if step == 0:
            return ()
        if self.mode == "cascading":
            return tuple(self.layers[:step])
        return (self.layers[step - 1],)

    def plot(self) -> Figure:
        """Mean rank correlation (± one standard deviation over images) per randomised layer."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(4.0, 0.45 * len(self.layers) + 2), 3.4), layout="constrained")
        ax = fig.add_subplot()
        steps = list(range(len(self.layers) + 1))
        for values, label, color in (
            (self.spearman, "Spearman", "C0"),
            (self.spearman_abs, "Spearman (absolute values)", "C1"),
        ):
            v = values.double()
            mean = [1.0, *(float(x) for x in v.nanmean(1))]
            std = [0.0, *(float(x) for x in _nanstd(v))]
            ax.plot(steps, mean, marker="o", color=color, label=label)
            ax.fill_between(
                steps,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=color,
                alpha=0.15,
            )
        ax.set_xticks(steps)
        ax.set_xticklabels(["original", *self.layers], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("rank correlation with original")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="0.5", lw=0.8, ls="--")
        ax.set_title(f"{self.mode.capitalize()} randomisation")
        ax.legend(fontsize=8, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        return fig


def _nanstd(v: torch.Tensor) -> torch.Tensor:
    mean = v.nanmean(1, keepdim=True)
    return ((v - mean).square().nanmean(1)).sqrt()


def parameter_randomization(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    saliency_fn: SaliencyFunction,
    *,
    mode: RandomizationMode = "cascading",
    layers: Sequence[str] | None = None,
    seed: SeedLike = 0,
    target_policy: TargetPolicy = "fixed",
    batch_size: int | None = None,
    map_size: int | Sequence[int] | None = None,
) -> SanityResult:
    """Model parameter randomisation test (Adebayo et al., 2018), cascading or independent.

    Parameters
    ----------
    model, input, target
        The model (left untouched: a deep copy is randomised), N×3×H×W images and the target.
    saliency_fn
        ``saliency_fn(model, input, target) -> N×1×H×W`` maps, e.g.
        ``lambda m, x, t: grad_cam(m, x, t)``. It receives a copy of the model, a batch of at
        most ``batch_size`` images, and the target as an int, an index tensor or a callable.
    mode
        ``"cascading"`` (layers stay random, from the output down) or ``"independent"``.
    layers
        Layer names in the order to randomise (default: every module with parameters of its
        own, from the output towards the input). A container randomises all its parameters.
    seed
        Seed of the re-initialisation (per layer, the same in both modes).
    target_policy
        ``"fixed"``: the given target throughout (Adebayo). ``"argmax"``: at each step, the
        class the partially random model predicts (TorchRay fork).
    batch_size
        Images per ``saliency_fn`` call and per forward pass.
    map_size
        Store the maps resized to this size (correlations use the full maps).

    Returns
    -------
    SanityResult
        Maps per step and the Spearman correlations (plain and absolute) per layer and image.
    """
    check_images(input)
    if mode not in ("cascading", "independent"):
        raise InputError(f"mode must be 'cascading' or 'independent', got {mode!r}.")
    if target_policy not in ("fixed", "argmax"):
        raise InputError(f"target_policy must be 'fixed' or 'argmax', got {target_policy!r}.")
    if not callable(saliency_fn):
        raise InputError("saliency_fn must be a callable (model, input, target) -> maps.")
    size = _check_map_size(map_size)
    tgt = check_target_count(target, input.shape[0])
    work = copy.deepcopy(model)
    if layers is None:
        names = _default_layers(work, input)
    else:
        if isinstance(layers, str):
            layers = [layers]
        names = list(layers)
        if not names:
            raise InputError("layers is empty; pass at least one layer name, or None for all.")
    modules = [resolve_layer(work, name) for name in names]
    for name, module in zip(names, modules, strict=True):
        if not any(True for _ in module.parameters()):
            raise InputError(
                f"Layer {name!r} has no parameters to randomise; pick a convolution or linear "
                "layer (or leave layers=None)."
            )
    gen = torch_generator(seed)
    layer_seeds = torch.randint(0, 2**62, (len(names),), generator=gen).tolist()

    def indices(t: Target) -> torch.Tensor | None:
        return None if t.function is not None else t.indices(input.shape[0]).cpu()

    original = _maps(saliency_fn, work, input, tgt, batch_size)
    stored = [_stored(original, size)]
    targets = [indices(tgt)]
    corr, corr_abs = [], []
    for module, layer_seed in zip(modules, layer_seeds, strict=True):
        saved = (
            {k: v.detach().clone() for k, v in module.state_dict().items()}
            if mode == "independent"
            else None
        )
        randomize_module(module, int(layer_seed))
        step_target = tgt
        if target_policy == "argmax":
            with inference_state(work):
                outputs = forward_batched(work, input, batch_size=batch_size)
            step_target = Target(index=outputs.argmax(dim=1).cpu())
        maps = _maps(saliency_fn, work, input, step_target, batch_size)
        if maps.shape != original.shape:
            raise InputError(
                f"saliency_fn returned maps of shape {tuple(maps.shape)} after randomisation "
                f"but {tuple(original.shape)} before; it must return one fixed shape."
            )
        corr.append(spearman(original, maps))
        corr_abs.append(spearman(original.abs(), maps.abs()))
        stored.append(_stored(maps, size))
        targets.append(indices(step_target))
        if saved is not None:
            module.load_state_dict(saved)
    all_targets = (
        torch.stack([t for t in targets if t is not None])
        if all(t is not None for t in targets)
        else None
    )
    return SanityResult(
        layers=tuple(names),
        maps=torch.stack(stored),
        spearman=torch.stack(corr).cpu(),
        spearman_abs=torch.stack(corr_abs).cpu(),
        targets=all_targets,
        mode=mode,
        target_policy=target_policy,
        seed=int(seed) if isinstance(seed, int) else None,
    )


# --------------------------------------------------------------------------- class sensitivity


@dataclass
class ClassSensitivityResult(Result):
    """Class sensitivity (Rebuffi et al., 2020): maps for the most vs least likely class.

    Attributes
    ----------
    correlations
        ``(N,)`` Spearman correlation per image (NaN for a constant map).
    max_class, min_class
        ``(N,)`` most and least likely class of each image.
    mean
        Mean correlation over the images with a defined correlation (near 0 is better).
    """

    correlations: torch.Tensor
    max_class: torch.Tensor
    min_class: torch.Tensor
    mean: float

    def plot(self) -> Figure:
        """Histogram of the per-image correlations, with the mean."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.2, 3.0), layout="constrained")
        ax = fig.add_subplot()
        corr = self.correlations.double()
        values = corr[~torch.isnan(corr)].numpy()
        ax.hist(values, bins=20, range=(-1, 1), color="C0", alpha=0.8)
        if math.isfinite(self.mean):
            ax.axvline(self.mean, color="k", ls="--", lw=1, label=f"mean {self.mean:.3f}")
            ax.legend(fontsize=8, frameon=False)
        ax.set_xlabel("Spearman(max-class map, min-class map)")
        ax.set_ylabel("images")
        ax.set_title("Class sensitivity")
        ax.spines[["top", "right"]].set_visible(False)
        return fig


def class_sensitivity(
    model: nn.Module,
    input: torch.Tensor,
    saliency_fn: SaliencyFunction,
    *,
    batch_size: int | None = None,
) -> ClassSensitivityResult:
    r"""Spearman correlation between the maps of the most and least likely class per image.

    The classes are the argmax and argmin of the model's outputs (the same for logits and
    softmax). Rebuffi et al. (2020) report the mean over 1000 ImageNet images; near 0 means
    the method is class sensitive, near 1 that it ignores the class.

    Parameters
    ----------
    model, input
        The model and N×3×H×W images.
    saliency_fn
        ``saliency_fn(model, input, target) -> N×1×H×W`` (target: an index tensor).
    batch_size
        Images per forward pass and per ``saliency_fn`` call.

    Returns
    -------
    ClassSensitivityResult
        Correlations per image, the two classes, and their mean.
    """
    check_images(input)
    if not callable(saliency_fn):
        raise InputError("saliency_fn must be a callable (model, input, target) -> maps.")
    with inference_state(model):
        outputs = forward_batched(model, input, batch_size=batch_size)
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise InputError(
            f"class_sensitivity needs N×C outputs with C ≥ 2 classes, got shape "
            f"{tuple(outputs.shape)}."
        )
    top = outputs.argmax(dim=1).cpu()
    bottom = outputs.argmin(dim=1).cpu()
    maps_top = _maps(saliency_fn, model, input, Target(index=top), batch_size)
    maps_bottom = _maps(saliency_fn, model, input, Target(index=bottom), batch_size)
    if maps_top.shape != maps_bottom.shape:
        raise InputError("saliency_fn returned maps of different shapes for the two classes.")
    corr = spearman(maps_top, maps_bottom).cpu()
    defined = corr[~torch.isnan(corr)]
    return ClassSensitivityResult(
        correlations=corr,
        max_class=top,
        min_class=bottom,
        mean=float(defined.mean()) if defined.numel() else math.nan,
    )
