r"""Extremal perturbations (Fong, Patrick & Vedaldi, ICCV 2019; thesis ch. 4).

An *extremal perturbation* is the mask of fixed area that maximally affects the network:

.. math::

    m_a = \operatorname*{argmax}_{m \in \mathcal M,\ \lVert m \rVert_1 = a|\Omega|}
          \Phi(m \otimes x),

where :math:`\mathcal M` is the smooth mask family of :mod:`~convscope.attribution.masks`,
:math:`m \otimes x` the blur (or fade) perturbation of
:mod:`~convscope.attribution.perturbation` (1 = keep, 0 = perturbed away), and :math:`\Phi`
the target's pre-softmax score. Fixing the area makes the trade-off between the terms of
meaningful perturbations disappear. The constraint is enforced by the sorted-vector loss
:math:`R_a` with a weight :math:`\lambda` "as large as numerics allow" (eq. 4):

.. math::

    m_a = \operatorname*{argmax}_{m} \Phi(m \otimes x) - \lambda R_a(m).

Variants: ``"preserve"`` maximizes :math:`\Phi(m\otimes x)`, ``"delete"`` maximizes
:math:`-\Phi((1 - m)\otimes x)`, ``"dual"`` the sum of both (Dabkowski & Gal's hybrid).
The *extremal area* :math:`a^* = \min\{a : \Phi(m_a \otimes x) \ge \tau\Phi(x)\}` (eq. 3) is
found by :func:`~convscope.attribution.area_sweep.extremal_area_sweep`.

Optimization follows TorchRay, the thesis author's implementation: the auxiliary mask starts
at one everywhere, SGD with learning rate 0.01, momentum 0.9 and dampening 0.9, the mask is
clamped to [0, 1] after each step, the image is flipped horizontally on even iterations
(jitter), and :math:`\lambda = 300 \cdot 1.0035^t` (``schedule="torchray"``, 800 iterations).
The paper instead uses 1600 iterations and doubles :math:`\lambda = 300` at 1/3 and 2/3 of
them (``schedule="paper"``).

Beyond TorchRay: many images and areas are optimized in one batch (rows are independent, so
the result equals one call per image and area); the optimization history stays on the
device (no host synchronization per iteration); optional early stopping; the model's
``requires_grad`` flags and mode are restored; the area is counted on the image, as in the
paper, rather than on TorchRay's padded canvas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from convscope.attribution.masks import KernelName, MaskGenerator, Pooling, area_loss
from convscope.attribution.perturbation import (
    PaddingChoice,
    Perturbation,
    PerturbationType,
    model_mean_colour,
)
from convscope.core.batching import check_batch_size
from convscope.core.checkpoint import GroupCheckpoint
from convscope.core.deprecation import removed_argument, renamed_argument
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError, TargetError
from convscope.core.fingerprint import run_fingerprint
from convscope.core.options import Options, merge_options
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images
from convscope.data.filters import gaussian_blur

__all__ = [
    "DELETE_VARIANT",
    "DUAL_VARIANT",
    "PRESERVE_VARIANT",
    "EarlyStopping",
    "ExtremalOptions",
    "ExtremalResult",
    "area_weight_schedule",
    "contrastive_reward",
    "extremal_perturbation",
    "simple_reward",
]

PRESERVE_VARIANT = "preserve"
DELETE_VARIANT = "delete"
DUAL_VARIANT = "dual"
Variant = Literal["preserve", "delete", "dual"]
Schedule = Literal["torchray", "paper"]
AreaDomain = Literal["image", "canvas"]
RewardFunction = Callable[[torch.Tensor, Target], torch.Tensor]


def simple_reward(outputs: torch.Tensor, target: Target) -> torch.Tensor:
    """The target score :math:`\\Phi_c` of each row (TorchRay's ``simple_reward``)."""
    return resolve_target(target, outputs)


def contrastive_reward(outputs: torch.Tensor, target: Target) -> torch.Tensor:
    r"""The margin :math:`\Phi_c - \max_{c' \ne c}\Phi_{c'}` (TorchRay's ``contrastive_reward``)."""
    if target.function is not None:
        raise TargetError(
            "The contrastive reward needs class indices (it compares the target class with "
            "the best other class); a callable target cannot be used with it."
        )
    own = resolve_target(target, outputs)
    index = target.indices(outputs.shape[0]).to(outputs.device)
    others = outputs.scatter(1, index[:, None], float("-inf"))
    return own - others.amax(1)


_REWARDS: dict[str, RewardFunction] = {"simple": simple_reward, "contrastive": contrastive_reward}


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once masks and objective have converged (checked every ``check_every`` steps).

    A batch of rows stops when, for every row, over the last ``check_every`` iterations the
    generated mask moved by at most ``mask_tol`` at every pixel, the reward changed by at most
    ``reward_rtol`` (relative) and the mask's area is within ``area_tol`` of its target.
    Checks start at ``min_iter``; each check is one host synchronization.
    """

    check_every: int = 50
    min_iter: int = 200
    mask_tol: float = 0.02
    reward_rtol: float = 0.01
    area_tol: float = 0.01

    def __post_init__(self) -> None:
        if self.check_every < 1 or self.min_iter < 0:
            raise InputError("EarlyStopping needs check_every >= 1 and min_iter >= 0.")


def area_weight_schedule(
    max_iter: int,
    *,
    schedule: Schedule = "torchray",
    area_weight: float = 300.0,
    growth: float = 1.0035,
) -> torch.Tensor:
    r"""The area weights :math:`\lambda_t`, :math:`t = 0, \dots, T-1`.

    ``"torchray"``: :math:`\lambda_t = \lambda_0 g^t` (:math:`g = 1.0035`, doubling about every
    198 iterations). ``"paper"``: :math:`\lambda_0` doubled at :math:`T/3` and again at
    :math:`2T/3`.
    """
    t = torch.arange(max_iter, dtype=torch.float64)
    if schedule == "torchray":
        return area_weight * growth**t
    if schedule == "paper":
        steps = (t >= max_iter / 3).double() + (t >= 2 * max_iter / 3).double()
        return area_weight * 2.0**steps
    raise InputError(f"Unknown schedule {schedule!r}; use 'torchray' or 'paper'.")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ExtremalOptions(Options):
    """Every setting of :func:`extremal_perturbation` (its keywords, same defaults).

    Pass ``options=ExtremalOptions(...)`` instead of the keywords, change one setting with
    :meth:`~convscope.core.options.Options.replace`, read a help text with
    ``ExtremalOptions.help("step")``. Invalid values raise
    :class:`~convscope.core.errors.InputError` when the options are made. :meth:`to_dict` is
    the JSON-able ``settings`` of the result (without ``target``, which the call adds).
    """

    perturbation: PerturbationType = field(
        default="blur", metadata=_help("'blur' or 'fade': how the masked-out region is perturbed.")
    )
    variant: Variant = field(
        default="preserve",
        metadata=_help("'preserve' maximizes Φ(m⊗x), 'delete' maximizes −Φ((1−m)⊗x), 'dual' both."),
    )
    max_iter: int | None = field(
        default=None,
        metadata=_help("Iterations (None: 800 for schedule='torchray', 1600 for 'paper')."),
    )
    num_levels: int = field(default=8, metadata=_help("Levels of the blur pyramid."))
    max_blur: float = field(default=20.0, metadata=_help("σ_max of the blur pyramid in pixels."))
    step: int = field(default=7, metadata=_help("Mask cell side ρ in pixels."))
    sigma: float = field(default=21.0, metadata=_help("Mask kernel scale in pixels."))
    jitter: bool = field(
        default=True,
        metadata=_help(
            "Flip the perturbed image horizontally on even iterations (TorchRay's jitter; "
            "deterministic)."
        ),
    )
    reward_func: str | RewardFunction = field(
        default="simple",
        metadata=_help(
            "'simple' (the score), 'contrastive' (margin to the best other class) or a callable "
            "(outputs, target) -> (B,)."
        ),
    )
    resize: bool | tuple[int, int] = field(
        default=False,
        metadata=_help("Resize the returned masks: False (input size) or (height, width)."),
    )
    resize_mode: str = field(
        default="bilinear", metadata=_help("Interpolation mode of the resize.")
    )
    smooth: float = field(
        default=0.0,
        metadata=_help("Blur the returned masks with σ = smooth × the shorter side (0: none)."),
    )
    lr: float = field(default=0.01, metadata=_help("SGD learning rate (TorchRay: 0.01)."))
    momentum: float = field(default=0.9, metadata=_help("SGD momentum (TorchRay: 0.9)."))
    dampening: float = field(default=0.9, metadata=_help("SGD dampening (TorchRay: 0.9)."))
    area_weight: float = field(
        default=300.0, metadata=_help("λ_0, the initial weight of the area loss R_a.")
    )
    area_weight_growth: float = field(
        default=1.0035, metadata=_help("Growth of λ per iteration (schedule='torchray').")
    )
    schedule: Schedule = field(
        default="torchray",
        metadata=_help("'torchray' (λ_0·growth^t) or 'paper' (λ_0 doubled at T/3 and 2T/3)."),
    )
    early_stop: bool | EarlyStopping = field(
        default=False, metadata=_help("False, True (default EarlyStopping) or an EarlyStopping.")
    )
    coldness: float = field(
        default=20.0, metadata=_help("Coldness of the mask generator's pooling (MaskGenerator).")
    )
    pooling: Pooling = field(
        default="softmax", metadata=_help("Pooling of the mask generator (MaskGenerator).")
    )
    kernel: KernelName = field(
        default="torchray", metadata=_help("Kernel of the mask generator (MaskGenerator).")
    )
    padding: PaddingChoice = field(
        default="mean",
        metadata=_help(
            "Border handling of the blur pyramid; 'mean' pads with the model's normalization mean."
        ),
    )
    mask_stride: int = field(
        default=1,
        metadata=_help(
            "Evaluate the smooth mask every mask_stride pixels and interpolate (1: exact)."
        ),
    )
    area_domain: AreaDomain = field(
        default="image",
        metadata=_help(
            "'image' (the paper: a fraction of the image) or 'canvas' (TorchRay: a fraction of "
            "the image plus its margin)."
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=_help(
            "Perturbed images per forward pass (None: the default batch size; the dual variant "
            "uses two per mask)."
        ),
    )

    def __post_init__(self) -> None:
        if self.variant not in (PRESERVE_VARIANT, DELETE_VARIANT, DUAL_VARIANT):
            raise InputError(
                f"Unknown variant {self.variant!r}; use 'preserve', 'delete' or 'dual'."
            )
        if isinstance(self.reward_func, str):
            if self.reward_func not in _REWARDS:
                raise InputError(
                    f"Unknown reward_func {self.reward_func!r}; use 'simple' or 'contrastive'."
                )
        elif not callable(self.reward_func):
            raise InputError("reward_func must be 'simple', 'contrastive' or a callable.")
        if self.area_domain not in ("image", "canvas"):
            raise InputError(f"Unknown area_domain {self.area_domain!r}; use 'image' or 'canvas'.")
        if self.schedule not in ("torchray", "paper"):
            raise InputError(f"Unknown schedule {self.schedule!r}; use 'torchray' or 'paper'.")
        if self.iterations < 1:
            raise InputError(f"max_iter must be at least 1, got {self.max_iter}.")
        for name in ("lr", "area_weight", "max_blur"):
            value = getattr(self, name)
            if not value > 0:
                raise InputError(f"{name} must be positive, got {value}.")
        if self.smooth < 0:
            raise InputError(f"smooth must be 0 or more, got {self.smooth}.")
        check_batch_size(self.batch_size)

    @property
    def iterations(self) -> int:
        """``max_iter``, or the schedule's default when it is None."""
        if self.max_iter is None:
            return 800 if self.schedule == "torchray" else 1600
        return int(self.max_iter)

    @property
    def reward(self) -> RewardFunction:
        """The reward function (``reward_func`` resolved)."""
        if isinstance(self.reward_func, str):
            return _REWARDS[self.reward_func]
        return self.reward_func

    @property
    def stopper(self) -> EarlyStopping | None:
        """The early stopping rule, or None."""
        if self.early_stop is True:
            return EarlyStopping()
        return self.early_stop or None

    def to_dict(self) -> dict[str, Any]:
        """The settings of the result: ``max_iter`` and ``batch_size`` resolved, the reward
        by name (callables by ``__name__``) and early stopping as a dict or None."""
        out = super().to_dict()
        out["max_iter"] = self.iterations
        if not isinstance(self.reward_func, str):
            out["reward_func"] = getattr(self.reward_func, "__name__", "custom")
        stopper = self.stopper
        out["early_stop"] = None if stopper is None else vars(stopper)
        out["batch_size"] = check_batch_size(self.batch_size)
        return out


@dataclass
class ExtremalResult(Result):
    r"""Extremal perturbation masks and how they were found.

    Attributes
    ----------
    masks
        N×K×1×H×W masks of area :math:`a`, one per image and area: the region that is
        preserved (``"preserve"``, ``"dual"``: :math:`m \otimes x` keeps it) or deleted
        (``"delete"``: :math:`(1 - m) \otimes x` blurs it away), as in TorchRay. In every
        variant a high value marks the region that matters.
    areas
        The K area fractions.
    scores
        N×K scores :math:`\Phi(m_a \otimes x)` with only the mask's region kept (no jitter).
    deletion_scores
        N×K scores :math:`\Phi((1 - m_a)\otimes x)` with the mask's region blurred away.
    full_scores, perturbed_scores
        N scores of the unperturbed and of the fully perturbed (most blurred) image.
    history
        N×K×2×T: per iteration the reward and the area loss :math:`R_a` (NaN after a row
        stopped early).
    area_weights
        The T area weights :math:`\lambda_t`.
    iterations
        N×K iterations run for each mask.
    settings
        Every argument that shaped the result.
    """

    masks: torch.Tensor
    areas: tuple[float, ...]
    scores: torch.Tensor
    deletion_scores: torch.Tensor
    full_scores: torch.Tensor
    perturbed_scores: torch.Tensor
    history: torch.Tensor
    area_weights: torch.Tensor
    iterations: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    def saliency(self, sigma_fraction: float = 0.09) -> torch.Tensor:
        """Sum of the masks over areas, blurred with σ = ``sigma_fraction`` × the shorter side.

        The conversion used for the pointing game (TorchRay's benchmark: σ = 9%); N×1×H×W.
        """
        summed = self.masks.sum(1)
        sigma = sigma_fraction * min(summed.shape[-2:])
        if sigma <= 0:
            return summed
        return gaussian_blur(summed.float(), sigma, padding_mode="constant")

    def plot(self, index: int = 0, image: torch.Tensor | None = None) -> Any:
        """Masks of image ``index`` over the areas (blacked out) and their score ratios."""
        from convscope.plots.attribution import area_sweep_strip

        full = float(self.full_scores[index])
        ratios = (self.scores[index] / full).tolist() if full != 0 else self.scores[index].tolist()
        base = image if image is not None else torch.ones(3, *self.masks.shape[-2:])
        return area_sweep_strip(base, self.masks[index, :, 0], list(self.areas), ratios)


def extremal_perturbation(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    areas: float | Sequence[float] = (0.1,),
    *,
    perturbation: PerturbationType = "blur",
    variant: Variant = "preserve",
    max_iter: int | None = None,
    num_levels: int = 8,
    max_blur: float = 20.0,
    step: int = 7,
    sigma: float = 21.0,
    jitter: bool = True,
    reward_func: str | RewardFunction = "simple",
    resize: bool | tuple[int, int] = False,
    resize_mode: str = "bilinear",
    smooth: float = 0.0,
    lr: float = 0.01,
    momentum: float = 0.9,
    dampening: float = 0.9,
    area_weight: float = 300.0,
    area_weight_growth: float = 1.0035,
    schedule: Schedule = "torchray",
    early_stop: bool | EarlyStopping = False,
    coldness: float = 20.0,
    pooling: Pooling = "softmax",
    kernel: KernelName = "torchray",
    padding: PaddingChoice = "mean",
    mask_stride: int = 1,
    area_domain: AreaDomain = "image",
    batch_size: int | None = None,
    options: ExtremalOptions | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    seed: int | None = None,
) -> ExtremalResult:
    r"""Extremal perturbation masks for every image and area, optimized in one batch.

    Solves :math:`\max_m \Phi(m \otimes x) - \lambda_t R_a(m)` over smooth masks (module
    docstring) with TorchRay's defaults.

    Parameters
    ----------
    model
        Model taking [0, 1] images and returning N×C scores (N×C×h×w outputs of fully
        convolutional models are averaged over space first).
    input
        N×3×H×W images in [0, 1].
    target
        Class index, one per image, or a callable ``outputs -> (B,)`` scores.
    areas
        Area fractions :math:`a \in (0, 1]`; one mask per image and area.
    perturbation
        ``"blur"`` or ``"fade"``.
    variant
        ``"preserve"``, ``"delete"`` or ``"dual"``.
    max_iter
        Iterations (default 800 for ``schedule="torchray"``, 1600 for ``"paper"``).
    num_levels, max_blur
        Pyramid levels and :math:`\sigma_{\max}` in pixels.
    step, sigma
        Mask cell side :math:`\rho` and kernel scale in pixels.
    jitter
        Flip the perturbed image horizontally on even iterations (TorchRay's jitter).
    reward_func
        ``"simple"`` (the score), ``"contrastive"`` (margin to the best other class) or a
        callable ``(outputs, target) -> (B,)``.
    resize
        Resize the returned masks: False (input size) or ``(height, width)``.
    resize_mode
        Interpolation mode of the resize.
    smooth
        Blur the returned masks with σ = ``smooth`` × the shorter side (0: none).
    lr, momentum, dampening
        SGD settings (TorchRay's hard-coded 0.01, 0.9, 0.9).
    area_weight, area_weight_growth, schedule
        :math:`\lambda_0`, its growth per iteration and the schedule (see
        :func:`area_weight_schedule`).
    early_stop
        False, True (default :class:`EarlyStopping`) or an :class:`EarlyStopping`.
    coldness, pooling, kernel
        Mask generator settings (:class:`~convscope.attribution.masks.MaskGenerator`).
    padding
        Border handling of the blur pyramid (:class:`~convscope.attribution.perturbation.
        Perturbation`); ``"mean"`` pads with the model's normalization mean.
    area_domain
        ``"image"`` (default, the paper's :math:`\lVert m\rVert_1 = a|\Omega|`): the masks
        keep a fraction ``a`` of the image. ``"canvas"``: TorchRay's semantics, ``a`` is a
        fraction of the image plus its margin (260×260 for a 224 image), so the kept region
        inside the image is up to :math:`(1 + 2\cdot\text{margin}/H)^2` times larger.
    mask_stride
        Evaluate the smooth mask every ``mask_stride`` pixels and interpolate (1: exact;
        3 makes the generator about 4× cheaper, see
        :class:`~convscope.attribution.masks.MaskGenerator`).
    batch_size
        Perturbed images per forward pass (the dual variant uses two per mask); rows beyond
        it are optimized one group after another.
    options
        An :class:`ExtremalOptions` holding every keyword above (``perturbation`` to
        ``batch_size``) instead of the keywords. Giving it together with a keyword whose value
        differs from its default raises :class:`~convscope.core.errors.InputError`; change
        the options with ``options.replace(name=value)`` instead.
    resume
        File prefix: every finished group of rows (``batch_size`` masks) is saved to
        ``<resume>.npz/.json``; rerunning the same call after an interruption only
        computes the missing groups. A resume file from other images, targets or settings is
        refused (callable targets and rewards are identified by name only).
    progress
        Show a progress bar (None: automatic).
    checkpoint
        Deprecated name of ``resume`` (warns).
    seed
        Deprecated, no effect (warns): nothing here is random. The initial mask is all ones
        and the jitter is TorchRay's deterministic horizontal flip on even iterations (the
        paper does not describe a jitter), so the result never depended on a seed.

    Returns
    -------
    ExtremalResult

    References
    ----------
    R. Fong, M. Patrick, A. Vedaldi. Understanding deep networks via extremal perturbations
    and smooth masks. ICCV 2019.
    """
    keywords = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
    resume = renamed_argument(
        checkpoint, resume, old="checkpoint", new="resume", function="extremal_perturbation"
    )
    removed_argument(
        seed, name="seed", function="extremal_perturbation",
        reason="the jitter is a deterministic flip and the mask starts at ones",
    )  # fmt: skip
    check_images(input)
    area_list = _check_areas(areas)
    n, k = input.shape[0], len(area_list)
    tgt = check_target_count(target, n)
    opts = merge_options(ExtremalOptions, options, keywords, function="extremal_perturbation")
    reward, iters, stopper = opts.reward, opts.iterations, opts.stopper
    variant, sigma, step, jitter = opts.variant, opts.sigma, opts.step, opts.jitter
    lr, momentum, dampening = opts.lr, opts.momentum, opts.dampening
    if torch.is_inference_mode_enabled():
        raise InputError(
            "extremal_perturbation optimizes masks by gradient descent and cannot run inside "
            "torch.inference_mode(); call it outside that block."
        )
    per_forward = check_batch_size(opts.batch_size)
    group = max(1, per_forward // (2 if variant == DUAL_VARIANT else 1))

    device, dtype = model_device(model), model_dtype(model)
    x = input.to(device=device, dtype=dtype)
    h, w = x.shape[-2:]
    # As in TorchRay, the parameters cover the image only, but the mask (and its area loss)
    # extends over a margin of about `sigma` pixels: without it, a mask touching the border
    # hides part of its soft edge outside the image and pays less area loss, so masks drift
    # towards the borders. Margin cells are fixed at 0 so every "one" lands in the image.
    margin_cells = math.ceil(sigma / step)
    margin = step * margin_cells
    generator = MaskGenerator(
        (h + 2 * margin, w + 2 * margin), step, sigma, coldness=opts.coldness,
        pooling=opts.pooling, kernel=opts.kernel, stride=opts.mask_stride, device=device,
        dtype=dtype,
    )  # fmt: skip
    canvas = (h + 2 * margin) * (w + 2 * margin)
    pyramid = Perturbation(
        x, opts.num_levels, opts.max_blur, opts.perturbation, padding=opts.padding,
        fill=model_mean_colour(model),
    )  # fmt: skip
    weights = area_weight_schedule(
        iters, schedule=opts.schedule, area_weight=opts.area_weight,
        growth=opts.area_weight_growth,
    )  # fmt: skip
    weights_dev = weights.to(device=device, dtype=dtype)
    rows_image = [i for i in range(n) for _ in range(k)]  # on the host: no device syncs
    # a|Ω| ones on the canvas: the area is a fraction of the image, as in the paper.
    rows_area = torch.tensor(area_list, dtype=torch.float64).repeat(n)
    if opts.area_domain == "image":
        rows_area = rows_area * (h * w / canvas)
    rows_target = _row_target(tgt, k)

    settings = opts.to_dict()
    settings["target"] = (
        tgt.index.tolist() if isinstance(tgt.index, torch.Tensor) else tgt.index
        if tgt.function is None else getattr(tgt.function, "__qualname__", "callable")
    )  # fmt: skip
    masks = torch.empty(n * k, 1, h, w, dtype=dtype, device=device)
    history = torch.full((n * k, 2, iters), float("nan"), dtype=dtype, device=device)
    done = torch.zeros(n * k, dtype=torch.long)
    with inference_state(model), torch.enable_grad():
        with torch.no_grad():
            full_scores = _scores(model, x, tgt)
            perturbed_scores = _scores(model, pyramid.pyramid[:, 0], tgt)
        groups = [slice(s, min(s + group, n * k)) for s in range(0, n * k, group)]
        bar = progress_bar(
            range(len(groups) * iters), total=len(groups) * iters, desc="extremal", show=progress
        )
        ticker = iter(bar)
        saved = None
        if resume is not None:
            # the whole state_dict, every image, every setting (a resume cannot mix runs)
            run = run_fingerprint(model, {"input": x}, {**settings, "areas": area_list})
            saved = GroupCheckpoint(resume, run)
        for index, rows in enumerate(groups):
            if saved is not None and saved.has(index):
                arrays = saved.get(index)
                masks[rows] = torch.from_numpy(arrays["masks"]).to(masks)
                history[rows] = torch.from_numpy(arrays["history"]).to(history)
                done[rows] = torch.from_numpy(arrays["iterations"])
                for _ in range(iters):
                    next(ticker, None)
                continue
            masks[rows], history[rows], done[rows] = _optimize(
                model, generator, margin_cells, pyramid, rows_image[rows], rows_area[rows],
                rows_target.subset(rows), reward, variant, jitter, weights_dev,
                lr, momentum, dampening, stopper, ticker,
            )  # fmt: skip
            if saved is not None:
                saved.put(
                    index,
                    {"masks": masks[rows], "history": history[rows], "iterations": done[rows]},
                )
        for _ in ticker:  # finish the bar when rows stopped early
            pass
        with torch.no_grad():
            scores = torch.empty(n * k, dtype=dtype, device=device)
            deletion = torch.empty_like(scores)
            for rows in [
                slice(s, min(s + per_forward, n * k)) for s in range(0, n * k, per_forward)
            ]:
                t = rows_target.subset(rows)
                kept = pyramid.apply(masks[rows], rows_image[rows])
                scores[rows] = _scores(model, kept, t)
                removed = pyramid.apply(1.0 - masks[rows], rows_image[rows])
                deletion[rows] = _scores(model, removed, t)

    out_masks = masks.detach()
    resize, smooth = opts.resize, opts.smooth
    if resize is not False and resize is not True:
        size = (int(resize[0]), int(resize[1]))
        align = None if opts.resize_mode in ("nearest", "area") else False
        out_masks = F.interpolate(out_masks, size=size, mode=opts.resize_mode, align_corners=align)
    if smooth > 0:
        sigma_px = smooth * min(out_masks.shape[-2:])
        out_masks = gaussian_blur(out_masks, sigma_px, padding_mode="constant")
    hs = out_masks.shape[-2:]
    return ExtremalResult(
        masks=out_masks.reshape(n, k, 1, *hs).cpu(),
        areas=tuple(area_list),
        scores=scores.reshape(n, k).cpu(),
        deletion_scores=deletion.reshape(n, k).cpu(),
        full_scores=full_scores.cpu(),
        perturbed_scores=perturbed_scores.cpu(),
        history=history.reshape(n, k, 2, iters).cpu(),
        area_weights=weights.float(),
        iterations=done.reshape(n, k),
        settings=settings,
    )


_OPTION_NAMES = frozenset(ExtremalOptions.field_names())


def _optimize(
    model: nn.Module,
    generator: MaskGenerator,
    margin_cells: int,
    pyramid: Perturbation,
    image: list[int],
    area: torch.Tensor,
    target: Target,
    reward: RewardFunction,
    variant: str,
    jitter: bool,
    weights: torch.Tensor,
    lr: float,
    momentum: float,
    dampening: float,
    stopper: EarlyStopping | None,
    ticker: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = len(image)
    iters = weights.shape[0]
    cells = (generator.shape_in[0] - 2 * margin_cells, generator.shape_in[1] - 2 * margin_cells)
    params = torch.ones(rows, 1, *cells, dtype=weights.dtype, device=weights.device)
    params.requires_grad_(True)
    margin = generator.step * margin_cells
    pad = [margin_cells] * 4
    velocity: torch.Tensor | None = None
    history = torch.full((rows, 2, iters), float("nan"), dtype=weights.dtype, device=weights.device)
    last_mask: torch.Tensor | None = None
    last_reward: torch.Tensor | None = None
    run = iters
    h, w = pyramid.pyramid.shape[-2:]
    for t in range(iters):
        next(ticker, None)
        full = generator.generate(F.pad(params, pad))
        mask = full[:, :, margin : margin + h, margin : margin + w]
        reward_t = _reward(
            model, pyramid, mask, image, target, reward, variant, jitter and t % 2 == 0
        )
        penalty = area_loss(full, area)
        energy = reward_t - weights[t] * penalty
        (grad,) = torch.autograd.grad(-energy.sum(), params)
        with torch.no_grad():
            # SGD with momentum and dampening, as torch.optim.SGD (written out: the first
            # torch.optim step imports the compiler stack, seconds of start-up per call).
            if velocity is None:
                velocity = grad.clone()
            else:
                velocity.mul_(momentum).add_(grad, alpha=1.0 - dampening)
            params.sub_(velocity, alpha=lr)
            params.clamp_(0.0, 1.0)
            history[:, 0, t] = reward_t.detach()
            history[:, 1, t] = penalty.detach()
        if stopper is not None and (t + 1) % stopper.check_every == 0:
            current = full.detach()
            if (
                t + 1 >= stopper.min_iter
                and last_mask is not None
                and last_reward is not None
                and _converged(stopper, current, last_mask, reward_t.detach(), last_reward, area)
            ):
                run = t + 1
                break
            last_mask, last_reward = current, reward_t.detach()
    for _ in range(iters - run):
        next(ticker, None)
    with torch.no_grad():
        final = generator.generate(F.pad(params, pad))
    final = final[:, :, margin : margin + h, margin : margin + w]
    return final, history, torch.full((rows,), run, dtype=torch.long)


def _converged(
    stopper: EarlyStopping,
    mask: torch.Tensor,
    previous: torch.Tensor,
    reward: torch.Tensor,
    previous_reward: torch.Tensor,
    area: torch.Tensor,
) -> bool:
    moved = (mask - previous).abs().flatten(1).amax(1)
    change = (reward - previous_reward).abs() / previous_reward.abs().clamp_min(1e-6)
    area_error = (mask.flatten(1).mean(1) - area.to(mask)).abs()
    ok = (moved <= stopper.mask_tol) & (change <= stopper.reward_rtol)
    ok &= area_error <= stopper.area_tol
    return bool(ok.all())


def _reward(
    model: nn.Module,
    pyramid: Perturbation,
    mask: torch.Tensor,
    image: list[int],
    target: Target,
    reward: RewardFunction,
    variant: str,
    flip: bool,
) -> torch.Tensor:
    if variant == PRESERVE_VARIANT:
        batch = pyramid.apply(mask, image)
    elif variant == DELETE_VARIANT:
        batch = pyramid.apply(1.0 - mask, image)
    else:
        batch = torch.cat([pyramid.apply(mask, image), pyramid.apply(1.0 - mask, image)])
    if flip:
        batch = batch.flip(3)
    outputs = _spatial_mean(model(batch))
    if variant == PRESERVE_VARIANT:
        return reward(outputs, target)
    if variant == DELETE_VARIANT:
        return -reward(outputs, target)
    rows = mask.shape[0]
    return reward(outputs[:rows], target) - reward(outputs[rows:], target)


def _scores(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    return resolve_target(target, _spatial_mean(model(x)))


def _spatial_mean(outputs: Any) -> Any:
    # Fully convolutional models give N×C×h×w scores; TorchRay averages the reward over space.
    if isinstance(outputs, torch.Tensor) and outputs.ndim > 2:
        return outputs.flatten(2).mean(2)
    return outputs


def _row_target(target: Target, k: int) -> Target:
    if isinstance(target.index, torch.Tensor):
        return Target(index=target.index.repeat_interleave(k))
    return target


def _check_areas(areas: float | Sequence[float]) -> list[float]:
    values = [float(areas)] if isinstance(areas, (int, float)) else [float(a) for a in areas]
    if not values:
        raise InputError("areas is empty; pass at least one area fraction, e.g. areas=(0.1,).")
    bad = [a for a in values if not (0.0 < a <= 1.0) or math.isnan(a)]
    if bad:
        raise InputError(
            f"Areas are fractions of the image in (0, 1]; got {bad}. For 10% pass 0.1."
        )
    return values
