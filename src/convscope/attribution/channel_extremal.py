r"""Channel extremal perturbations: which channels of a layer carry a prediction (thesis ch. 4 §5).

Extremal perturbations (Fong, Patrick & Vedaldi, ICCV 2019; Fong, DPhil thesis 2020, ch. 4)
are moved from the image to an intermediate layer :math:`l`. With
:math:`\Phi_l(x) \in \mathbb{R}^{K_l \times H_l \times W_l}` the activation of layer :math:`l`
and :math:`\Phi_{l+}` the rest of the network (to the pre-softmax target score), a *channel
mask* :math:`m \in [0, 1]^{K_l}` holds one value per channel, broadcast over space, and the
perturbation multiplies the activation by it (the reference value is 0, thesis ch. 7.1.5). For
a budget of :math:`a` channels the preservation game is (eq. 9)

.. math::

    m_a = \operatorname*{argmax}_{m \in [0, 1]^{K_l}}
          \Phi_{l+}(m \otimes \Phi_l(x)) - \lambda R_a(m),

where :math:`R_a` is the sorted-vector area loss of spatial extremal perturbations
(:func:`convscope.attribution.masks.area_loss`) with a reference of exactly :math:`a` ones
among :math:`K_l` entries: :math:`a` is counted in *channels*. The *extremal area* is the
smallest budget that recovers the unperturbed score (eq. 10),

.. math::

    a^* = \min\{a : \Phi_{l+}(m_a \otimes \Phi_l(x)) \ge \Phi_0\}, \qquad \Phi_0 = \tau\Phi(x),

with :math:`\tau = 1` in the thesis, and the *channel saliency map* is the mask-weighted sum of
the activation's channels (eq. 11), :math:`v = \sum_k m^k_{a^*} \Phi^k_l(x)`, a CAM-like
:math:`H_l \times W_l` heatmap. Plotting :math:`\Phi_{l+}(m_a \otimes \Phi_l(x))` against
:math:`a` shows how evidence accumulates over channels (thesis fig. 8: the score rises
monotonically).

The *deletion* variant removes the channels the mask selects and minimises the score,
:math:`m_a = \operatorname{argmax}_m -\Phi_{l+}((1 - m) \otimes \Phi_l(x)) - \lambda R_a(m)`:
the smallest set of channels whose removal destroys the prediction.

**Schedule** (thesis, GoogLeNet ``inception4d``, :math:`K_l = 528`): 300 iterations, learning
rate :math:`10^{-2}`, :math:`\lambda` rising linearly from 0 to 1500 over the first 150
iterations and constant afterwards, and the areas
:math:`\{1, 5, 10, 20, 25, 35, 40, 50, 60, \dots, 100, 150, \dots, 450, 528\}`.

**Choices where the thesis is silent** (Fong 2020, ch. 4, Sec. 5):

* optimiser: SGD with momentum 0.9 and dampening 0.9, as TorchRay's spatial extremal
  perturbation (the thesis author's reference implementation); masks start at all ones and are
  clamped to :math:`[0, 1]` after every step (no sigmoid parameterisation);
* :math:`R_a` is the *mean* of the squared differences (TorchRay's convention, which the
  :math:`\lambda = 1500` of the thesis presupposes: with a sum the penalty would be
  :math:`K_l` times stiffer);
* ties: the all-ones start and the clamp create exact ties among mask values, where the
  sorted-vector loss is not differentiable and *which* tied channel receives a reference 0 is
  arbitrary. Breaking ties by channel index would favour high-index channels permanently
  (a channel held at 1 by the clamp and never assigned a reference 0 is never pushed down). We
  break exact ties by the current gradient of the reward: among equal mask values, the channel
  the score needs more gets the reference 1 (the steepest-ascent subgradient); remaining ties
  (equal gradients, e.g. dead channels) are broken in a seeded random order (``seed``). This
  is done by adding a detached offset below :math:`10^{-8}` before the area loss, computed in
  float64 (float32 on MPS), so values that differ are never reordered;
* :math:`a^*` uses the optimised (soft) masks, as eq. 10; the scores of the masks binarised to
  their top-:math:`a` channels are reported too, and :meth:`ChannelExtremalResult.extremal_area`
  recomputes :math:`a^*` from either with any :math:`\tau`. A score counts as reaching
  :math:`\Phi_0` up to a round-off of :math:`10^{-5}\max(1, |\Phi(x)|)`;
* deletion: :math:`a^*` is the smallest :math:`a` with
  :math:`\Phi_{l+}((1 - m_a) \otimes \Phi_l(x)) \le \Phi(x) - \tau(\Phi(x) - \Phi_{l+}(0))`,
  i.e. the deletion achieves the fraction :math:`\tau` of the drop caused by removing every
  channel;
* default areas: the thesis list rescaled to the layer,
  :math:`\{\lfloor a K_l / 528 + 1/2 \rfloor\} \cup \{1, K_l\}` — exactly the thesis list for
  :math:`K_l = 528`, every count from 1 to :math:`K_l` for narrow layers.

**Cost.** :math:`\Phi_l(x)` is recorded once per image. Each iteration runs the whole model on
``N·K`` samples (images × areas, at most ``batch_size`` per forward pass) with the layer's
output replaced by :math:`m \otimes \Phi_l(x)` through a forward hook: forward hooks cannot skip
the layers before :math:`l`, so they are recomputed (and discarded), but the backward pass only
traverses :math:`\Phi_{l+}`. The real images are fed, so skip connections that bypass
:math:`l` see the unperturbed input. Total: ``max_iter`` forward and backward passes of
``N·K`` samples, plus three forward passes for the final scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from convscope.attribution.masks import area_loss
from convscope.core.batching import batch_slices, check_batch_size
from convscope.core.device import model_device, to_model
from convscope.core.errors import InputError
from convscope.core.hooks import edit_activations, record_activations
from convscope.core.layers import resolve_layer
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.seeding import torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import (
    check_images,
    non_negative_int,
    positive_int,
    positive_number,
)

__all__ = [
    "THESIS_CHANNEL_AREAS",
    "ChannelExtremalResult",
    "channel_extremal_perturbation",
    "channel_saliency",
    "default_channel_areas",
    "lambda_schedule",
    "resolve_channel_areas",
    "upsample_saliency",
]

Variant = Literal["preserve", "delete"]

#: The channel counts of the thesis (ch. 4 §5), for GoogLeNet ``inception4d`` (528 channels).
THESIS_CHANNEL_AREAS: tuple[int, ...] = (
    1, 5, 10, 20, 25, 35, 40, 50, 60, 70, 80, 90, 100, 150, 200, 250, 300, 350, 400, 450, 528,
)  # fmt: skip
_THESIS_CHANNELS = 528

# Tie-breaking offsets stay below the spacing of distinct float32 mask values near 1 (6e-8).
_TIE_EPS = 1e-8
_TIE_EPS_FLOAT32 = 1e-4
# Relative round-off allowed when comparing a score with Phi_0.
_REACH_RTOL = 1e-5


def default_channel_areas(channels: int) -> list[int]:
    r"""The thesis's channel counts rescaled to a layer of ``channels`` channels.

    :math:`\{\lfloor a K / 528 + 1/2 \rfloor : a \in` :data:`THESIS_CHANNEL_AREAS`
    :math:`\} \cup \{1, K\}`, sorted: the thesis list itself for :math:`K = 528` (GoogLeNet
    ``inception4d``), every count from 1 to :math:`K` for :math:`K \le 13`.
    """
    if channels < 1:
        raise InputError(f"A layer needs at least one channel, got {channels}.")
    counts = {math.floor(a * channels / _THESIS_CHANNELS + 0.5) for a in THESIS_CHANNEL_AREAS}
    return sorted({c for c in counts if c >= 1} | {1, channels})


def resolve_channel_areas(areas: Any, channels: int) -> list[int]:
    """Convert ``areas`` to sorted, distinct channel counts for a layer of ``channels`` channels.

    Parameters
    ----------
    areas
        ``None`` (:func:`default_channel_areas`), one value or a sequence / 1-D tensor of them.
        An ``int`` is a number of channels, ``1 ≤ a ≤ channels``; a ``float`` in ``(0, 1]`` is
        a fraction of the channels, rounded to the nearest count (at least 1).

    Returns
    -------
    list of int
        Sorted distinct counts (fractions that round to the same count are merged).

    Raises
    ------
    InputError
        For a count outside ``[1, channels]``, a float outside ``(0, 1]``, a boolean, a
        non-number, or an empty list.
    """
    if areas is None:
        return default_channel_areas(channels)
    if isinstance(areas, (torch.Tensor, np.ndarray)):
        if areas.ndim > 1:
            raise InputError(f"areas must be 1-D, got shape {tuple(areas.shape)}.")
        values: list[Any] = areas.reshape(-1).tolist()
    elif isinstance(areas, (int, float, np.integer, np.floating)):
        values = [areas]
    elif isinstance(areas, Sequence) and not isinstance(areas, str):
        values = list(areas)
    else:
        raise InputError(
            f"areas must be channel counts (ints) or fractions (floats in (0, 1]), got "
            f"{type(areas).__name__}. Pass e.g. areas=(1, 5, 10) or areas=(0.1, 0.5)."
        )
    if not values:
        raise InputError("areas is empty; pass at least one channel count, e.g. areas=(1, 5).")
    counts = set()
    for value in values:
        if isinstance(value, (bool, np.bool_)):
            raise InputError(f"areas must be numbers, got the boolean {value!r}.")
        if isinstance(value, (int, np.integer)):
            if not 1 <= value <= channels:
                raise InputError(
                    f"Channel count {int(value)} is out of range: the layer has {channels} "
                    f"channels, so counts run from 1 to {channels}."
                )
            counts.add(int(value))
        elif isinstance(value, (float, np.floating)):
            if not 0.0 < value <= 1.0:
                raise InputError(
                    f"A float area is a fraction of the {channels} channels and must lie in "
                    f"(0, 1], got {value!r}. Pass channel counts as ints, e.g. {round(value)}."
                )
            counts.add(max(1, math.floor(value * channels + 0.5)))
        else:
            raise InputError(
                f"areas must hold ints (channel counts) or floats (fractions), got "
                f"{type(value).__name__} {value!r}."
            )
    return sorted(counts)


def lambda_schedule(max_iter: int, lambda_max: float, ramp_iters: int) -> torch.Tensor:
    r"""The area weight of every iteration, shape ``(max_iter,)``, float64.

    :math:`\lambda_t = \lambda_{\max} \min(1, t / T_{\mathrm{ramp}})` for
    :math:`t = 0, \dots, T - 1`: a linear ramp from 0 over the first ``ramp_iters``
    iterations, then constant (thesis ch. 4 §5: 0 to 1500 over 150 of 300 iterations).
    ``ramp_iters=0`` gives :math:`\lambda_{\max}` from the start.
    """
    t = torch.arange(max_iter, dtype=torch.float64)
    if ramp_iters == 0:
        return torch.full((max_iter,), float(lambda_max), dtype=torch.float64)
    return float(lambda_max) * torch.clamp(t / ramp_iters, max=1.0)


def channel_saliency(masks: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    r"""Channel saliency map (thesis eq. 11): :math:`v = \sum_k m^k \Phi^k_l(x)`.

    Parameters
    ----------
    masks
        ``N×K×C`` (``K`` masks per image, e.g. one per area) or ``N×C`` channel masks.
    activations
        ``N×C×...`` activations of the layer (``N×C×h×w`` for a convolutional layer).

    Returns
    -------
    torch.Tensor
        ``N×K×...`` (or ``N×...`` for ``N×C`` masks): the mask-weighted sum over channels,
        ``N×K`` for a non-spatial ``N×C`` layer.
    """
    if masks.ndim not in (2, 3) or activations.ndim < 2:
        raise InputError(
            f"channel_saliency needs N×K×C or N×C masks and N×C×... activations, got shapes "
            f"{tuple(masks.shape)} and {tuple(activations.shape)}."
        )
    n, c = activations.shape[:2]
    if masks.shape[0] != n or masks.shape[-1] != c:
        raise InputError(
            f"Masks of shape {tuple(masks.shape)} do not fit activations of shape "
            f"{tuple(activations.shape)}: both need the same N and C (one mask value per "
            "channel)."
        )
    squeeze = masks.ndim == 2
    m = masks.unsqueeze(1) if squeeze else masks
    flat = activations.reshape(n, c, -1)
    sal = torch.einsum("nkc,ncs->nks", m.to(flat.dtype), flat)
    sal = sal.reshape(n, m.shape[1], *activations.shape[2:])
    return sal[:, 0] if squeeze else sal


def upsample_saliency(
    saliency: torch.Tensor, size: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Upsample ``N×K×h×w`` (or ``N×h×w``) saliency maps to ``size`` = (H, W) of the input.

    Bilinear interpolation with ``align_corners=False`` (the pixel-centre convention of
    Grad-CAM); ``mode`` is any mode of :func:`torch.nn.functional.interpolate` for 2-D maps.
    """
    if saliency.ndim not in (3, 4):
        raise InputError(
            f"upsample_saliency needs N×K×h×w or N×h×w maps, got shape {tuple(saliency.shape)}; "
            "maps of a non-spatial layer have nothing to upsample."
        )
    squeeze = saliency.ndim == 3
    maps = saliency.unsqueeze(1) if squeeze else saliency
    align = False if mode in ("linear", "bilinear", "bicubic", "trilinear") else None
    out = F.interpolate(maps, size=tuple(size), mode=mode, align_corners=align)
    return out[:, 0] if squeeze else out


@dataclasses.dataclass
class ChannelExtremalResult(Result):
    """Channel extremal perturbations of ``N`` images at ``K`` areas of one layer.

    Tensors are on the CPU. ``C`` is the layer's channel count, ``T`` the iteration count.

    Attributes
    ----------
    masks
        ``N×K×C`` optimised channel masks in [0, 1] (1 = channel kept for ``'preserve'``,
        removed for ``'delete'``).
    areas
        ``(K,)`` channel counts, increasing.
    scores
        ``N×K`` target score :math:`\\Phi_{l+}` of the activation perturbed by each mask.
    binary_scores
        ``N×K`` the same with each mask binarised to its top-``a`` channels.
    full_score
        ``(N,)`` :math:`\\Phi(x)`, the score of the unperturbed image.
    null_score
        ``(N,)`` :math:`\\Phi_{l+}(0)`, the score with every channel of the layer removed.
    threshold
        ``(N,)`` :math:`\\Phi_0` that defines :math:`a^*` (see the module docstring).
    optimal_area
        ``(N,)`` :math:`a^*` (eq. 10) from the soft scores, ``-1`` when no area reaches it.
    saliency
        ``N×K×...`` channel saliency maps (eq. 11) of every mask, at the layer's resolution.
    history
        ``N×K×2×T``: per iteration, the target score of the perturbed activation (before the
        step) and the area loss :math:`R_a(m_t)`; the energy is ``score − λ_t·R`` (preserve)
        or ``−score − λ_t·R`` (delete).
    lambdas
        ``(T,)`` the area weight of every iteration.
    layer, variant, tau, max_iter, lr, momentum, dampening, lambda_max, ramp_iters, seed,
    channels
        The settings.
    """

    masks: torch.Tensor
    areas: torch.Tensor
    scores: torch.Tensor
    binary_scores: torch.Tensor
    full_score: torch.Tensor
    null_score: torch.Tensor
    threshold: torch.Tensor
    optimal_area: torch.Tensor
    saliency: torch.Tensor
    history: torch.Tensor
    lambdas: torch.Tensor
    layer: str
    variant: str
    tau: float
    max_iter: int
    lr: float
    momentum: float
    dampening: float
    lambda_max: float
    ramp_iters: int
    seed: int | None
    channels: int

    def extremal_area(self, tau: float | None = None, *, binary: bool = False) -> torch.Tensor:
        """:math:`a^*` per image for another ``tau`` or from the binarised scores.

        Returns ``(N,)`` channel counts, ``-1`` where no area reaches the threshold.
        """
        tau = self.tau if tau is None else float(tau)
        scores = self.binary_scores if binary else self.scores
        threshold = _threshold(self.full_score, self.null_score, tau, self.variant)
        index = _first_reaching(scores, threshold, self.full_score, self.variant)
        return torch.where(index >= 0, self.areas[index.clamp(min=0)], -1)

    def optimal_index(self) -> torch.Tensor:
        """``(N,)`` index into ``areas`` of :math:`a^*`, ``-1`` where there is none."""
        lookup = {int(a): i for i, a in enumerate(self.areas.tolist())}
        return torch.tensor([lookup.get(int(a), -1) for a in self.optimal_area.tolist()])

    def optimal_masks(self) -> torch.Tensor:
        """``N×C`` the masks :math:`m_{a^*}`; rows of NaN for images without :math:`a^*`."""
        return _select(self.masks, self.optimal_index())

    def optimal_saliency(self) -> torch.Tensor:
        """``N×...`` the channel saliency map (eq. 11) of :math:`m_{a^*}`; NaN without one."""
        return _select(self.saliency, self.optimal_index())

    def plot(self, index: int = 0) -> Figure:
        """Target score against the number of channels for image ``index`` (thesis fig. 8).

        Shows the scores of the optimised and of the binarised masks, the unperturbed score
        :math:`\\Phi(x)`, the score with every channel removed, the threshold
        :math:`\\Phi_0` when it differs from :math:`\\Phi(x)`, and :math:`a^*`.
        """
        n = self.scores.shape[0]
        if not -n <= index < n:
            raise InputError(f"index {index} is out of range for {n} images.")
        areas = self.areas.numpy()
        fig = Figure(figsize=(5.0, 3.5), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(areas, self.scores[index].numpy(), "o-", color="C0", label="optimised mask")
        ax.plot(areas, self.binary_scores[index].numpy(), "s--", color="C1", ms=4, label="top-a")
        ax.axhline(float(self.full_score[index]), color="green", lw=1, label="Φ(x)")
        ax.axhline(float(self.null_score[index]), color="red", lw=1, label="all removed")
        if not math.isclose(float(self.threshold[index]), float(self.full_score[index])):
            ax.axhline(float(self.threshold[index]), color="gray", ls=":", lw=1, label="Φ₀")
        best = int(self.optimal_area[index])
        if best >= 0:
            ax.axvline(best, color="gray", ls="--", lw=1, label=f"a* = {best}")
        verb = "kept" if self.variant == "preserve" else "deleted"
        ax.set_xlabel(f"channels {verb} (of {self.channels})")
        ax.set_ylabel("target score")
        ax.set_title(f"{self.layer} ({self.variant})", fontsize=9)
        ax.legend(fontsize=7)
        return fig


def channel_extremal_perturbation(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    layer: str,
    areas: Any = None,
    *,
    max_iter: int = 300,
    lr: float = 1e-2,
    momentum: float = 0.9,
    dampening: float = 0.9,
    lambda_max: float = 1500.0,
    ramp_iters: int = 150,
    variant: Variant = "preserve",
    tau: float = 1.0,
    batch_size: int | None = None,
    seed: int | None = 0,
    progress: bool | None = None,
) -> ChannelExtremalResult:
    r"""Channel extremal perturbations at ``layer`` (thesis ch. 4 §5, eq. 9-11).

    For every image and every area :math:`a` (a number of channels), maximise
    :math:`\Phi_{l+}(m \otimes \Phi_l(x)) - \lambda_t R_a(m)` over channel masks
    :math:`m \in [0, 1]^{K_l}` (``'preserve'``), or
    :math:`-\Phi_{l+}((1 - m) \otimes \Phi_l(x)) - \lambda_t R_a(m)` (``'delete'``), by SGD
    from :math:`m = 1` with a clamp to :math:`[0, 1]` after every step. Each (image, area)
    pair is optimised independently; the pairs are batched.

    Parameters
    ----------
    model
        Model taking [0, 1] images; it carries its own normalisation.
    input
        ``N×3×H×W`` images in [0, 1].
    target
        Class index, one index per image, or a callable ``outputs -> (B,)`` scores
        (:mod:`convscope.core.targets`); the thesis uses the pre-softmax class score. A
        callable sees the outputs of a batch of image-area pairs, so it must act row by row.
    layer
        Dotted name of the layer whose output is masked (``N×C×h×w``, or ``N×C``: the mask
        then broadcasts over nothing).
    areas
        Channel counts (ints in ``[1, C]``) or fractions of ``C`` (floats in ``(0, 1]``);
        default :func:`default_channel_areas`. Sorted and deduplicated.
    max_iter, lr, momentum, dampening
        SGD schedule: 300 iterations and learning rate :math:`10^{-2}` (thesis); momentum and
        dampening 0.9 (TorchRay's extremal perturbation; the thesis does not say).
    lambda_max, ramp_iters
        Area weight :math:`\lambda_t = \lambda_{\max}\min(1, t/T_{\mathrm{ramp}})`
        (:func:`lambda_schedule`; thesis: 1500 reached after 150 iterations).
    variant
        ``'preserve'`` (keep ``a`` channels, eq. 9) or ``'delete'`` (remove ``a`` channels).
    tau
        :math:`a^*` threshold: :math:`\Phi_0 = \tau\Phi(x)` (preserve); for deletion the
        score must fall by the fraction ``tau`` of the drop to :math:`\Phi_{l+}(0)`.
    batch_size
        Samples (image-area pairs) per forward pass (default 64).
    seed
        Seeds the order in which exactly tied mask values with equal reward gradients are
        ranked by the area loss (the method is otherwise deterministic).
    progress
        Show a progress bar over iterations (``None``: automatic).

    Returns
    -------
    ChannelExtremalResult
        Masks, scores against the number of channels, :math:`a^*`, saliency maps and history.

    Raises
    ------
    InputError
        Bad images, areas, variant or optimisation settings.
    LayerNotFoundError
        ``layer`` does not name a module (the message lists the closest names).
    TargetError
        The target does not fit the model's outputs.

    References
    ----------
    R. Fong, M. Patrick, A. Vedaldi. Understanding Deep Networks via Extremal Perturbations
    and Smooth Masks. ICCV 2019, §5. R. Fong, Understanding Convolutional Neural Networks,
    DPhil thesis, University of Oxford, 2020, ch. 4 §5.
    """
    check_images(input)
    n = input.shape[0]
    tgt = check_target_count(target, n)
    resolve_layer(model, layer)
    _check_settings(max_iter, lr, momentum, dampening, lambda_max, ramp_iters, variant, tau)
    size = check_batch_size(batch_size)
    device = model_device(model)
    lambdas = lambda_schedule(max_iter, lambda_max, ramp_iters)

    with inference_state(model):
        acts, full = _record(model, input, tgt, layer, size)
        channels = acts.shape[1]
        counts = resolve_channel_areas(areas, channels)
        k = len(counts)
        null = _null_scores(model, input, tgt, layer, acts, size)
        gen = torch_generator(seed, device)
        perms = torch.stack(
            [torch.randperm(channels, generator=gen, device=device) for _ in counts]
        )
        masks = torch.empty(n * k, channels, device=device, dtype=acts.dtype)
        scores = torch.empty(n * k, device=device, dtype=full.dtype)
        binary_scores = torch.empty_like(scores)
        history = torch.empty(n * k, 2, max_iter, device=device, dtype=full.dtype)
        chunks = batch_slices(n * k, size)
        for i, sl in enumerate(chunks):
            units = torch.arange(sl.start, sl.stop)
            images, area_index = units // k, units % k
            problem = _Problem(
                model=model,
                layer=layer,
                x=to_model(input[images.to(input.device)], model),
                acts=acts[images.to(device)],
                score=_score_function(tgt.subset(images), device),
                counts=torch.tensor(counts)[area_index],
                perm=perms[area_index.to(device)],
                variant=variant,
            )
            desc = f"channel EP {i + 1}/{len(chunks)}" if len(chunks) > 1 else "channel EP"
            m, hist, tie_offset = _optimise(
                problem, lambdas.to(device), max_iter, lr, momentum, dampening, progress, desc
            )
            masks[sl], history[sl] = m, hist
            scores[sl] = problem.evaluate(m)
            binary_scores[sl] = problem.evaluate(_binarise(m, problem.counts, tie_offset))

    masks = masks.view(n, k, channels)
    threshold = _threshold(full, null, tau, variant)
    index = _first_reaching(scores.view(n, k), threshold, full, variant)
    area_tensor = torch.tensor(counts)
    optimal = torch.where(index.cpu() >= 0, area_tensor[index.cpu().clamp(min=0)], -1)
    return ChannelExtremalResult(
        masks=masks.cpu(),
        areas=area_tensor,
        scores=scores.view(n, k).cpu(),
        binary_scores=binary_scores.view(n, k).cpu(),
        full_score=full.cpu(),
        null_score=null.cpu(),
        threshold=threshold.cpu(),
        optimal_area=optimal,
        saliency=channel_saliency(masks, acts).cpu(),
        history=history.view(n, k, 2, max_iter).cpu(),
        lambdas=lambdas.float(),
        layer=layer,
        variant=variant,
        tau=float(tau),
        max_iter=int(max_iter),
        lr=float(lr),
        momentum=float(momentum),
        dampening=float(dampening),
        lambda_max=float(lambda_max),
        ramp_iters=int(ramp_iters),
        seed=None if seed is None else int(seed),
        channels=int(channels),
    )


@dataclasses.dataclass
class _Problem:
    """One batch of (image, area) pairs: what the loop needs to evaluate masks."""

    model: nn.Module
    layer: str
    x: torch.Tensor
    acts: torch.Tensor
    score: Callable[[torch.Tensor], torch.Tensor]
    counts: torch.Tensor
    perm: torch.Tensor
    variant: str

    def perturb(self, m: torch.Tensor) -> torch.Tensor:
        view = m.view(*m.shape, *([1] * (self.acts.ndim - 2)))
        return self.acts * (view if self.variant == "preserve" else 1.0 - view)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        """Target scores ``(B,)`` with the layer's output replaced by the perturbed activation."""
        with edit_activations(self.model, {self.layer: lambda _out: self.perturb(m)}):
            return self.score(self.model(self.x))

    def evaluate(self, m: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.forward(m)


def _optimise(
    problem: _Problem,
    lambdas: torch.Tensor,
    max_iter: int,
    lr: float,
    momentum: float,
    dampening: float,
    progress: bool | None,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SGD on the masks of one batch; returns masks, history and the last tie offsets."""
    b, channels = problem.perm.shape
    device, dtype = problem.acts.device, problem.acts.dtype
    # float64 keeps the tie offsets below the spacing of float32 masks; MPS has no float64.
    tie_dtype = torch.float32 if device.type == "mps" else torch.float64
    eps = (_TIE_EPS_FLOAT32 if tie_dtype == torch.float32 else _TIE_EPS) / channels
    fractions = problem.counts.to(torch.float64) / channels  # CPU: area_loss checks it there
    m = torch.ones(b, channels, device=device, dtype=dtype, requires_grad=True)
    velocity = torch.zeros_like(m)
    history = torch.empty(b, 2, max_iter, device=device, dtype=dtype)
    offset = torch.zeros(b, channels, device=device, dtype=tie_dtype)
    sign = 1.0 if problem.variant == "preserve" else -1.0
    with torch.enable_grad():
        for t in progress_bar(range(max_iter), total=max_iter, desc=desc, show=progress):
            score = problem.forward(m)
            (grad_reward,) = torch.autograd.grad(sign * score.sum(), m, allow_unused=True)
            if grad_reward is None:  # the target does not depend on this layer
                grad_reward = torch.zeros_like(m)
            offset = _ranks(grad_reward, problem.perm).to(tie_dtype) * eps
            area = area_loss(m.to(tie_dtype) + offset, fractions)
            (grad_area,) = torch.autograd.grad(area.sum(), m)
            # SGD on the negative energy -(reward - lambda_t R_a), written out as torch.optim.SGD
            # does it (whose first call costs seconds of imports): v_0 = g_0,
            # v_t = momentum v_{t-1} + (1 - dampening) g_t, m <- clamp(m - lr v_t, 0, 1).
            grad = lambdas[t].to(dtype) * grad_area - grad_reward
            with torch.no_grad():
                if t == 0:
                    velocity.copy_(grad)
                else:
                    velocity.mul_(momentum).add_(grad, alpha=1.0 - dampening)
                m.sub_(lr * velocity).clamp_(0.0, 1.0)
            history[:, 0, t] = score.detach()
            history[:, 1, t] = area.detach().to(dtype)
    return m.detach(), history, offset


def _ranks(values: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Ascending rank (0..C-1) of every entry of each row; ties ranked in the order ``perm``."""
    order = perm.gather(1, torch.argsort(values.gather(1, perm), dim=1, stable=True))
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _binarise(m: torch.Tensor, counts: torch.Tensor, tie_offset: torch.Tensor) -> torch.Tensor:
    """Keep the ``counts[i]`` largest entries of row ``i`` (ties as in the last area loss)."""
    key = m.to(tie_offset.dtype) + tie_offset
    ranks = _ranks(key, torch.arange(m.shape[1], device=m.device).expand_as(key))
    return (ranks >= m.shape[1] - counts.to(m.device).view(-1, 1)).to(m.dtype)


def _record(
    model: nn.Module, input: torch.Tensor, tgt: Target, layer: str, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations and the unperturbed target scores, batch by batch."""
    acts, full = [], []
    with torch.no_grad(), record_activations(model, [layer]) as recorded:
        for sl in batch_slices(input.shape[0], size):
            full.append(resolve_target(tgt.subset(sl), model(to_model(input[sl], model))))
            acts.append(recorded[layer])
    out = torch.cat(acts)
    if out.ndim < 2:
        raise InputError(
            f"Layer {layer!r} gives shape {tuple(out.shape)}; channel masks need an N×C×h×w "
            "or N×C output. Pick a convolutional or fully connected layer."
        )
    return out, torch.cat(full)


def _null_scores(
    model: nn.Module,
    input: torch.Tensor,
    tgt: Target,
    layer: str,
    acts: torch.Tensor,
    size: int,
) -> torch.Tensor:
    r""":math:`\Phi_{l+}(0)`: the target score with every channel of the layer set to 0."""
    out = []
    with torch.no_grad(), edit_activations(model, {layer: torch.zeros_like}):
        for sl in batch_slices(input.shape[0], size):
            out.append(resolve_target(tgt.subset(sl), model(to_model(input[sl], model))))
    return torch.cat(out)


def _score_function(tgt: Target, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores from outputs without the validation syncs of ``resolve_target`` (done before)."""
    if tgt.function is not None:
        return lambda out: resolve_target(tgt, out)
    if isinstance(tgt.index, int):
        c = tgt.index
        return lambda out: out[:, c]
    assert isinstance(tgt.index, torch.Tensor)
    index = tgt.index.to(device).view(-1, 1)
    return lambda out: out.gather(1, index).squeeze(1)


def _threshold(full: torch.Tensor, null: torch.Tensor, tau: float, variant: str) -> torch.Tensor:
    if variant == "preserve":
        return tau * full
    return full - tau * (full - null)


def _first_reaching(
    scores: torch.Tensor, threshold: torch.Tensor, full: torch.Tensor, variant: str
) -> torch.Tensor:
    """Index of the first area whose score reaches the threshold, ``-1`` if none."""
    tol = (_REACH_RTOL * full.abs().clamp(min=1.0)).view(-1, 1)
    if variant == "preserve":
        reached = scores >= threshold.view(-1, 1) - tol
    else:
        reached = scores <= threshold.view(-1, 1) + tol
    first = reached.to(torch.int8).argmax(dim=1)
    return torch.where(reached.any(dim=1), first, -1)


def _select(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    picked = values[torch.arange(values.shape[0]), index.clamp(min=0)].clone()
    picked[index < 0] = float("nan")
    return picked


def _check_settings(
    max_iter: int,
    lr: float,
    momentum: float,
    dampening: float,
    lambda_max: float,
    ramp_iters: int,
    variant: str,
    tau: float,
) -> None:
    positive_int(max_iter, "max_iter", hint="The thesis uses 300.")
    non_negative_int(ramp_iters, "ramp_iters", hint="The thesis uses 150; 0 = no ramp.")
    positive_number(lr, "lr", hint="The thesis uses 1e-2.")
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"momentum must lie in [0, 1), got {momentum!r} (default 0.9).")
    if not 0.0 <= dampening <= 1.0:
        raise InputError(f"dampening must lie in [0, 1], got {dampening!r} (default 0.9).")
    if not (math.isfinite(lambda_max) and lambda_max >= 0):
        raise InputError(
            f"lambda_max must be a finite number ≥ 0, got {lambda_max!r} (thesis: 1500)."
        )
    if variant not in ("preserve", "delete"):
        raise InputError(f"variant must be 'preserve' or 'delete', got {variant!r}.")
    if not math.isfinite(tau):
        raise InputError(f"tau must be a finite number, got {tau!r} (thesis: 1).")
