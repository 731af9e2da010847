r"""Meaningful perturbations (Fong & Vedaldi, ICCV 2017; Fong's thesis ch. 3).

An explanation is a *meta-predictor*: the mask :math:`m` answers "which region, once
perturbed, changes the model's decision?", and the answer can be verified by editing the image.

**Perturbation operator.** A mask :math:`m: \Lambda \to [0, 1]` blends the image :math:`x_0`
with a reference :math:`r` ("null image"),

.. math::

    \Phi(x_0; m)(u) = m(u)\, x_0(u) + (1 - m(u))\, r(u),

with :math:`r = g_{\sigma_0} * x_0` (blur, :math:`\sigma_0 = 10`), :math:`r = \mu_0` (the
dataset mean colour) or :math:`r = \eta` (noise). **Convention: m = 1 keeps a pixel, m = 0
perturbs it** (as in the paper's constant/noise formulas, its L1 term, the original code and
extremal perturbations). The paper's blur formula :math:`g_{\sigma_0 m(u)}` and the thesis
footnotes use the opposite convention; we do not. Saliency is shown as :math:`1 - m` for the
deletion game (high = deleted = important), as in the paper's figures.

The paper writes blur as a spatially varying Gaussian :math:`g_{\sigma_0 m(u)}`; the
original code (``ruthcfong/perturb_explanations``) instead blends linearly with one fully
blurred copy, which is what we implement. Noise is uniform in :math:`[0, 1)` and redrawn at
every iteration, as in the original code; the paper says i.i.d. Gaussian (no std given).

**Games.** Deletion: the smallest deletion that destroys the score,

.. math::

    m^* = \arg\min_{m \in [0,1]^\Lambda} \lambda_1 \lVert 1 - m\rVert_1
        + \lambda_2 \operatorname{TV}_\beta(m)
        + \mathbb{E}_\tau\left[ f_c(\Phi(x_0(\cdot - \tau); M)) \right];

preservation: the smallest region that keeps it,
:math:`\lambda_1 \lVert m\rVert_1 + \lambda_2 \operatorname{TV}_\beta(m) - f_c(\Phi(x_0; M))`.
:math:`f_c` is the softmax probability of class :math:`c` (or, for the "min top-5"
localisation variant, the summed probabilities of the 5 classes predicted on the clean image).

**Artifact control** (paper §4.3). The optimised mask :math:`m` lives on a low-resolution
lattice (28×28 for 224×224 inputs, i.e. side / 8); it is upsampled by nearest neighbour (the
original code) and blurred with a Gaussian of :math:`\sigma_m = 5` full-resolution pixels
to give :math:`M`. The L1 and TV terms act on the low-resolution :math:`m` and are **sums**
(the original code; the λ values only make sense that way). TV is isotropic with forward
differences (zero past the last row/column),

.. math::

    \operatorname{TV}_\beta(m) = \sum_{i,j}
        \left((m_{i+1,j} - m_{i,j})^2 + (m_{i,j+1} - m_{i,j})^2\right)^{\beta/2}.

Jitter :math:`\tau`: the image (and the reference) is resized to :math:`(H+\tau, W+\tau)` and
cropped at integer offsets drawn uniformly from :math:`\{0..\tau-1\}` per axis, per image and
per iteration; the mask is not moved.

**Optimisation** (thesis defaults). Adam, lr 0.1, betas (0.9, 0.999), eps 1e-8, 300
iterations; the mask is clamped to [0, 1] after every step. Initialisation: the smallest
centred circle whose deletion suppresses the score by 99% relative to the fully perturbed
image (radii 0:5:170 px at 224 px, scaled with the image side).

All N images are optimised together: the per-image objectives are summed, so each image's
mask receives exactly its own gradient (Adam acts element-wise), and ``batch_size`` only
bounds the images per forward pass.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from convscope.attribution.perturbation import model_mean_colour
from convscope.core.batching import batch_slices, check_batch_size
from convscope.core.device import model_device, model_dtype, to_model
from convscope.core.errors import InputError, TargetError
from convscope.core.options import Options, merge_options
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.seeding import torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import (
    check_images,
    choice,
    integer,
    non_negative_number,
    positive_int,
    positive_number,
)
from convscope.data.filters import gaussian_blur

__all__ = [
    "MeaningfulOptions",
    "MeaningfulResult",
    "mask_total_variation",
    "meaningful_perturbation",
    "meaningful_perturbation_preset",
]

Game = Literal["delete", "preserve"]
Perturbation = Literal["blur", "constant", "noise"]
Init = Literal["circle", "ones", "random"]

GAMES: tuple[str, ...] = ("delete", "preserve")
PERTURBATIONS: tuple[str, ...] = ("blur", "constant", "noise")
INITS: tuple[str, ...] = ("circle", "ones", "random")

#: Circle initialisation: normalised score below which a deletion counts as "suppressed by 99%".
CIRCLE_THRESHOLD = 0.01
#: The original code's circle radii 0:5:170 and circle blur σ = 10, for a 224-pixel side.
_CIRCLE_REFERENCE_SIDE = 224.0
_CIRCLE_STEP = 5.0
_CIRCLE_COUNT = 35
_CIRCLE_SIGMA = 10.0
#: Grey used as the constant reference when the model carries no dataset mean.
DEFAULT_GREY = 0.5

_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "game": "delete",
        "perturbation": "blur",
        "lr": 0.1,
        "max_iter": 300,
        "l1_coeff": 1e-4,
        "tv_coeff": 1e-2,
        "tv_beta": 3.0,
        "mask_blur_sigma": 5.0,
        "jitter": 4,
        "blur_sigma": 10.0,
        "init": "circle",
        "use_softmax": True,
        "top_k": None,
    },
}
_PRESETS["localization"] = {**_PRESETS["paper"], "top_k": 5, "l1_coeff": 1e-3, "tv_beta": 2.0}


def meaningful_perturbation_preset(name: str) -> dict[str, Any]:
    """Keyword arguments of a named hyper-parameter set of the paper.

    Parameters
    ----------
    name : {"paper", "localization"}
        ``"paper"``: the defaults of the paper's visualisations (blur, deletion game,
        λ1 = 1e-4, λ2 = 1e-2, β = 3, 300 Adam steps at lr 0.1). ``"localization"``: the "min
        top-5" variant used for weak localisation and the pointing game (paper §5.6): minimise
        the summed softmax probabilities of the top-5 classes predicted on the clean image, with
        λ1 = 1e-3 and β = 2, other settings unchanged.

    Returns
    -------
    dict
        A fresh dict to unpack, e.g.
        ``meaningful_perturbation(model, x, None, **meaningful_perturbation_preset(
        "localization"))`` (``top_k`` presets explain the predicted classes, so the target is
        ``None``).
    """
    if name not in _PRESETS:
        raise InputError(
            f"Unknown meaningful-perturbation preset {name!r}; valid presets: "
            + ", ".join(repr(k) for k in _PRESETS)
            + "."
        )
    return dict(_PRESETS[name])


def mask_total_variation(mask: torch.Tensor, beta: float) -> torch.Tensor:
    r"""Isotropic total variation of each mask in a batch (Mahendran & Vedaldi's TV).

    .. math::

        \operatorname{TV}_\beta(m) = \sum_{i,j}
            \left((m_{i+1,j} - m_{i,j})^2 + (m_{i,j+1} - m_{i,j})^2\right)^{\beta/2},

    with forward differences set to 0 past the last row and column (Fong & Vedaldi 2017,
    eq. 4; the original code's form).

    Parameters
    ----------
    mask : torch.Tensor
        N×C×h×w masks (C is usually 1); channels are summed.
    beta : float
        Exponent β > 0 (3 in the paper, 2 in the localisation preset).

    Returns
    -------
    torch.Tensor
        Shape ``(N,)``; differentiable, with zero gradient where both differences vanish
        (also for β < 2, where the pointwise derivative is unbounded).
    """
    if mask.ndim != 4:
        raise InputError(f"mask_total_variation expects N×C×h×w masks, got {tuple(mask.shape)}.")
    positive_number(beta, "tv_beta")
    dy = F.pad(mask[:, :, 1:, :] - mask[:, :, :-1, :], (0, 0, 0, 1))
    dx = F.pad(mask[:, :, :, 1:] - mask[:, :, :, :-1], (0, 1, 0, 0))
    sq = dy**2 + dx**2
    nonzero = sq > 0
    # Double `where` so the backward pass never evaluates 0 ** (β/2 - 1).
    safe = torch.where(nonzero, sq, torch.ones_like(sq))
    tv = torch.where(nonzero, safe ** (beta / 2.0), torch.zeros_like(sq))
    return tv.flatten(1).sum(1)


@dataclasses.dataclass
class MeaningfulResult(Result):
    """Masks learned by :func:`meaningful_perturbation` and the settings that produced them.

    Attributes
    ----------
    masks : torch.Tensor
        N×1×H×W full-resolution smoothed masks :math:`M` in [0, 1]; **1 = keep, 0 = perturbed**.
    low_res_masks : torch.Tensor
        N×1×h×w optimised low-resolution masks :math:`m`.
    saliency : torch.Tensor
        N×1×H×W maps to display: :math:`1 - M` for the deletion game, :math:`M` for the
        preservation game (high = important in both).
    history : torch.Tensor
        N×max_iter×4, columns :attr:`HISTORY_COLUMNS`: the objective, the weighted L1 term
        :math:`\\lambda_1 L_1`, the weighted TV term :math:`\\lambda_2 TV` and the score
        :math:`f_c` of the (jittered) perturbed image at each iteration, before its step.
        ``objective = l1 + tv + score`` (delete) or ``l1 + tv - score`` (preserve).
    scores_original, scores_perturbed, scores_fully_perturbed : torch.Tensor
        :math:`f_c` of the clean image, of the image perturbed by the final mask (no jitter)
        and of the fully perturbed image (m = 0), shape ``(N,)``.
    init_radii : torch.Tensor or None
        Radius (pixels) of each image's initial circle for ``init="circle"``.
    top_classes : torch.Tensor or None
        N×k classes whose summed score is the objective when ``top_k`` is set.
    """

    HISTORY_COLUMNS: ClassVar[tuple[str, ...]] = ("objective", "l1", "tv", "score")

    masks: torch.Tensor
    low_res_masks: torch.Tensor
    saliency: torch.Tensor
    history: torch.Tensor
    scores_original: torch.Tensor
    scores_perturbed: torch.Tensor
    scores_fully_perturbed: torch.Tensor
    init_radii: torch.Tensor | None
    top_classes: torch.Tensor | None
    game: str
    perturbation: str
    lr: float
    max_iter: int
    l1_coeff: float
    tv_coeff: float
    tv_beta: float
    mask_size: tuple[int, int]
    mask_blur_sigma: float
    jitter: int
    blur_sigma: float
    init: str
    use_softmax: bool
    top_k: int | None
    seed: int | None
    reference_color: tuple[float, ...]

    def plot(self, index: int = 0, image: torch.Tensor | None = None) -> Figure:
        """Figure of one image's explanation.

        With ``image`` (3×H×W or 1×3×H×W in [0, 1]): the image with its score, the image
        perturbed by the learned mask (what the model saw, without jitter) with its score, and
        the saliency overlaid on the image. Without it: the mask and the saliency as heatmaps.
        """
        from convscope.plots.images import heatmap_overlay

        n = self.masks.shape[0]
        if not -n <= index < n:
            raise InputError(f"index {index} is out of range for a result of {n} images.")
        mask = self.masks[index].detach().cpu().float()
        saliency = self.saliency[index].detach().cpu().float()
        what = "1 − m" if self.game == "delete" else "m"
        if image is None:
            grey = torch.full((2, 3, *mask.shape[-2:]), 0.5)
            return heatmap_overlay(
                grey,
                torch.stack([mask, saliency]),
                titles=["mask m (1 = keep)", f"saliency ({what})"],
                alpha=1.0,
                normalize=None,
                cmap="viridis",
            )
        img = image.detach().cpu().float()
        img = img[0] if img.ndim == 4 else img
        if tuple(img.shape[-2:]) != tuple(mask.shape[-2:]) or img.ndim != 3:
            raise InputError(
                f"image must be 3×{mask.shape[-2]}×{mask.shape[-1]} (the explained image), got "
                f"shape {tuple(image.shape)}."
            )
        ref = _display_reference(img, self)
        perturbed = img * mask + ref * (1 - mask)
        fig = heatmap_overlay(
            torch.stack([img, perturbed, img]),
            torch.stack([saliency] * 3),
            titles=[
                f"image, f = {float(self.scores_original[index]):.3f}",
                f"perturbed, f = {float(self.scores_perturbed[index]):.3f}",
                f"saliency ({what})",
            ],
            ncols=3,
        )
        # The first two panels show plain images; heatmap_overlay keeps the house style.
        for ax, rgb in zip(fig.axes[:2], (img, perturbed), strict=True):
            ax.images[0].set_data(rgb.clamp(0, 1).permute(1, 2, 0).numpy())
        return fig


def _display_reference(img: torch.Tensor, res: MeaningfulResult) -> torch.Tensor:
    if res.perturbation == "blur":
        return gaussian_blur(img[None], res.blur_sigma, padding_mode="replicate")[0]
    if res.perturbation == "constant":
        return torch.tensor(res.reference_color).view(3, 1, 1).expand_as(img)
    return torch.rand(img.shape, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- validation


_OFF = "0 turns the term off."


def _check_mask_size(mask_size: int | tuple[int, int] | None, H: int, W: int) -> tuple[int, int]:
    if mask_size is None:
        # The paper's 28×28 mask for 224×224 inputs: an upsampling factor of 8.
        return max(1, H // 8), max(1, W // 8)
    if isinstance(mask_size, (int, np.integer)) and not isinstance(mask_size, (bool, np.bool_)):
        size = (int(mask_size), int(mask_size))
    elif (
        isinstance(mask_size, (tuple, list))
        and len(mask_size) == 2
        and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
            for s in mask_size
        )
    ):
        size = (int(mask_size[0]), int(mask_size[1]))
    else:
        raise InputError(
            f"mask_size must be an int or an (h, w) pair of ints, got {mask_size!r}. "
            "None gives side / 8 (28×28 for 224×224 inputs)."
        )
    if not (1 <= size[0] <= H and 1 <= size[1] <= W):
        raise InputError(f"mask_size {size} must lie between (1, 1) and the image size ({H}, {W}).")
    return size


def _reference_color(model: nn.Module, perturbation: str) -> tuple[float, ...]:
    color = model_mean_colour(model)
    if color is None:
        return (DEFAULT_GREY,) * 3
    if len(color) != 3 and perturbation == "constant":
        raise InputError(
            f"The model's normalization mean has {len(color)} values; the constant perturbation "
            "needs one mean per RGB channel."
        )
    return color if len(color) == 3 else (DEFAULT_GREY,) * 3


# --------------------------------------------------------------------------- the objective


class _Scorer:
    """f_c of a batch of images: a (softmax) target score, or the summed top-k scores."""

    def __init__(
        self,
        model: nn.Module,
        target: Target | None,
        use_softmax: bool,
        classes: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.target = target
        self.use_softmax = use_softmax
        self.classes = classes

    def outputs(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        needs_matrix = self.use_softmax or self.target is None
        if needs_matrix and (not isinstance(out, torch.Tensor) or out.ndim != 2):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"use_softmax and top_k need model outputs of shape (N, classes), got "
                f"{shape}. Pass use_softmax=False and a callable target."
            )
        return out.softmax(1) if self.use_softmax else out

    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Scores ``(n,)`` of images ``x`` that are the images ``rows`` of the input."""
        out = self.outputs(x)
        if self.classes is not None:
            return out.gather(1, self.classes[rows]).sum(1)
        assert self.target is not None
        return resolve_target(self.target.subset(rows), out, n=x.shape[0])


def _prepare_target(
    target: TargetLike | None, top_k: int | None, n: int
) -> tuple[Target | None, int | None]:
    if top_k is not None:
        k = positive_int(top_k, "top_k")
        if target is not None:
            raise TargetError(
                "top_k explains the top-k classes predicted on each clean image, so a target "
                "would be ignored. Pass target=None with top_k, or top_k=None with a target."
            )
        return None, k
    if target is None:
        raise TargetError(
            "target is None. Pass a class index (or one per image), or top_k=5 to explain the "
            "top-5 predicted classes (meaningful_perturbation_preset('localization'))."
        )
    return check_target_count(target, n), None


# --------------------------------------------------------------------------- perturbation parts


def _upsample(mask: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Nearest-neighbour upsampling (the original code) followed by a Gaussian σ_m blur."""
    up = F.interpolate(mask, size=size, mode="nearest")
    return gaussian_blur(up, sigma, padding_mode="replicate") if sigma > 0 else up


class _Adam:
    r"""Adam (Kingma & Ba) on one tensor, updated in place: the thesis' optimiser.

    :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`, :math:`v_t = \beta_2 v_{t-1} +
    (1-\beta_2) g_t^2`, :math:`p \leftarrow p - \gamma\, \hat m_t / (\sqrt{\hat v_t} +
    \epsilon)` with bias corrections :math:`\hat m_t = m_t / (1-\beta_1^t)`,
    :math:`\hat v_t = v_t / (1-\beta_2^t)`. Same update as ``torch.optim.Adam`` (whose first
    step imports ``torch._dynamo``, seconds of start-up for a few lines of arithmetic).
    """

    def __init__(
        self,
        param: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.param.data.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def _draw_offsets(gen: torch.Generator, n: int, jitter: int, device: torch.device) -> torch.Tensor:
    """Integer crop offsets (dy, dx), each uniform on {0..jitter-1}, shape n×2."""
    return torch.randint(0, jitter, (n, 2), generator=gen, device=device)


def _crop(big: torch.Tensor, offsets: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Crop each image ``big[i]`` to H×W at its own offset ``offsets[i] = (dy, dx)``."""
    n = big.shape[0]
    rows = offsets[:, :1] + torch.arange(H, device=big.device)  # n×H
    cols = offsets[:, 1:] + torch.arange(W, device=big.device)  # n×W
    batch = torch.arange(n, device=big.device).view(n, 1, 1)
    # Advanced indices around a slice put the indexed dims first: n×H×W×C.
    return big[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _circle_masks(
    H: int, W: int, game: str, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radii (R,) and keep-masks R×1×H×W of blurred centred disks, as in the original code."""
    scale = min(H, W) / _CIRCLE_REFERENCE_SIDE
    radii = torch.arange(_CIRCLE_COUNT, device=device, dtype=dtype) * (_CIRCLE_STEP * scale)
    yy = torch.arange(H, device=device, dtype=dtype) - (H - 1) / 2
    xx = torch.arange(W, device=device, dtype=dtype) - (W - 1) / 2
    dist2 = yy.view(1, H, 1) ** 2 + xx.view(1, 1, W) ** 2
    disks = (dist2 <= radii.view(-1, 1, 1) ** 2).to(dtype).unsqueeze(1)
    disks = gaussian_blur(disks, _CIRCLE_SIGMA * scale, padding_mode="replicate")
    return radii, (1 - disks if game == "delete" else disks)


# --------------------------------------------------------------------------- main function


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclasses.dataclass(frozen=True)
class MeaningfulOptions(Options):
    """Every setting of :func:`meaningful_perturbation` (its keywords, same defaults).

    Pass ``options=MeaningfulOptions(...)`` instead of the keywords (e.g.
    ``MeaningfulOptions(**meaningful_perturbation_preset("min_top5"))``); values are
    validated by the call. Giving ``options=`` and a keyword changed from its default raises
    :class:`~convscope.core.errors.InputError`.
    """

    game: Game = dataclasses.field(
        default="delete",
        metadata=_help(
            "'delete': smallest deletion that destroys the score; 'preserve': smallest region "
            "that keeps it."
        ),
    )
    perturbation: Perturbation = dataclasses.field(
        default="blur",
        metadata=_help(
            "'blur' (σ = blur_sigma), 'constant' (the dataset mean colour) or 'noise' (uniform, "
            "redrawn every iteration)."
        ),
    )
    lr: float = dataclasses.field(default=0.1, metadata=_help("Adam learning rate."))
    max_iter: int = dataclasses.field(
        default=300, metadata=_help("Adam steps (0 returns the initial mask).")
    )
    l1_coeff: float = dataclasses.field(
        default=1e-4, metadata=_help("λ1 on the summed L1 term over the low-resolution mask.")
    )
    tv_coeff: float = dataclasses.field(
        default=1e-2,
        metadata=_help("λ2 on the summed total variation over the low-resolution mask."),
    )
    tv_beta: float = dataclasses.field(default=3.0, metadata=_help("TV exponent β."))
    mask_size: int | tuple[int, int] | None = dataclasses.field(
        default=None, metadata=_help("Low-resolution mask size (None: side / 8).")
    )
    mask_blur_sigma: float = dataclasses.field(
        default=5.0,
        metadata=_help("σ_m of the smoothing of the upsampled mask, in pixels (0: none)."),
    )
    jitter: int = dataclasses.field(
        default=4, metadata=_help("τ: random crop offsets in {0..τ-1} per axis (0: no jitter).")
    )
    blur_sigma: float = dataclasses.field(
        default=10.0, metadata=_help("σ_0 of the blur perturbation, in pixels.")
    )
    init: Init = dataclasses.field(
        default="circle",
        metadata=_help(
            "'circle' (smallest centred circle reaching the 99% criterion), 'ones' or 'random'."
        ),
    )
    use_softmax: bool = dataclasses.field(
        default=True, metadata=_help("Optimise softmax probabilities rather than raw outputs.")
    )
    top_k: int | None = dataclasses.field(
        default=None,
        metadata=_help(
            "Objective = summed scores of the top_k classes of the clean image (target=None)."
        ),
    )
    batch_size: int | None = dataclasses.field(
        default=None, metadata=_help("Images per forward pass (None: the default batch size).")
    )
    seed: int | None = dataclasses.field(
        default=0, metadata=_help("Seed of the jitter offsets, the noise and the random init.")
    )


_MP_OPTION_NAMES = frozenset(MeaningfulOptions.field_names())


def meaningful_perturbation(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike | None,
    *,
    game: Game = "delete",
    perturbation: Perturbation = "blur",
    lr: float = 0.1,
    max_iter: int = 300,
    l1_coeff: float = 1e-4,
    tv_coeff: float = 1e-2,
    tv_beta: float = 3.0,
    mask_size: int | tuple[int, int] | None = None,
    mask_blur_sigma: float = 5.0,
    jitter: int = 4,
    blur_sigma: float = 10.0,
    init: Init = "circle",
    use_softmax: bool = True,
    top_k: int | None = None,
    batch_size: int | None = None,
    seed: int | None = 0,
    options: MeaningfulOptions | None = None,
    progress: bool | None = None,
) -> MeaningfulResult:
    r"""Learn meaningful-perturbation masks (Fong & Vedaldi, ICCV 2017).

    Deletion game: :math:`\min_m \lambda_1\lVert 1-m\rVert_1 + \lambda_2 TV_\beta(m) +
    \mathbb{E}_\tau f_c(\Phi(x_0(\cdot-\tau); M))`; preservation game:
    :math:`\min_m \lambda_1\lVert m\rVert_1 + \lambda_2 TV_\beta(m) - \mathbb{E}_\tau
    f_c(\Phi(x_0(\cdot-\tau); M))`, where :math:`\Phi(x_0; M) = M x_0 + (1 - M) r` and
    :math:`M` is the low-resolution mask :math:`m` upsampled (nearest) and blurred by
    :math:`g_{\sigma_m}`. See the module docstring for the theory and the choices made.

    Parameters
    ----------
    model : nn.Module
        Classifier taking N×3×H×W images in [0, 1] (it carries its own normalisation).
    input : torch.Tensor
        N×3×H×W images in [0, 1]; all N masks are optimised together.
    target : int, sequence of int, tensor, callable or None
        The class to explain (one for all, or one per image), or a callable on the outputs
        (it receives softmax probabilities when ``use_softmax``). ``None`` with ``top_k``.
    game : {"delete", "preserve"}, default "delete"
        Smallest deletion that destroys the score, or smallest region that keeps it.
    perturbation : {"blur", "constant", "noise"}, default "blur"
        Reference blended in where m < 1: a Gaussian blur of σ = ``blur_sigma`` pixels
        (replicate padding), the dataset mean colour (the model's normalization mean,
        :func:`~convscope.data.normalization.normalization_mean`, else 0.5 grey), or uniform
        noise on [0, 1) redrawn at every iteration.
    lr : float, default 0.1
        Adam learning rate (betas 0.9, 0.999; eps 1e-8).
    max_iter : int, default 300
        Adam steps (0 returns the initial mask).
    l1_coeff, tv_coeff : float, default 1e-4, 1e-2
        λ1 on the summed L1 term and λ2 on the summed TV, both over the low-resolution mask.
    tv_beta : float, default 3
        TV exponent β.
    mask_size : int or (int, int), optional
        Low-resolution mask size; default side / 8 (28×28 for 224×224, 8×8 for 64×64).
    mask_blur_sigma : float, default 5
        σ_m of the Gaussian smoothing of the upsampled mask, in full-resolution pixels (not
        scaled with the image: with the default side / 8 mask the cell is 8 px at any size, so
        σ_m = 5 keeps the paper's ratio to the cell). 0 disables it.
    jitter : int, default 4
        τ: crop offsets in {0..τ-1} per axis from the image resized to (H+τ, W+τ); 0 disables.
    blur_sigma : float, default 10
        σ_0 of the blur perturbation, in pixels (not scaled with the image).
    init : {"circle", "ones", "random"}, default "circle"
        Smallest centred circle reaching the 99% criterion (see Notes), all ones (keep all),
        or uniform random values.
    use_softmax : bool, default True
        Optimise softmax probabilities (the paper) rather than raw outputs.
    top_k : int, optional
        Objective = summed scores of the ``top_k`` classes predicted on the clean image (the
        paper's "min top-5" localisation variant, with ``target=None``); with fewer classes
        than ``top_k`` and ``use_softmax=False`` all classes are used, with a warning.
    batch_size : int, optional
        Images per forward pass (default 64).
    seed : int or None, default 0
        Seed of the jitter offsets, noise and random init (a ``torch.Generator`` on the model's
        device).
    options : MeaningfulOptions, optional
        Every keyword above (``game`` to ``seed``) in one object instead of the keywords;
        together with a keyword changed from its default it raises ``InputError`` (use
        ``options.replace(name=value)``).
    progress : bool, optional
        Show a progress bar over the iterations (default: when bars are enabled).

    Returns
    -------
    MeaningfulResult
        Masks (1 = keep), low-resolution masks, saliency, per-iteration history and scores.

    Raises
    ------
    InputError
        Bad images, unknown game/perturbation/init, negative coefficients, bad sizes.
    TargetError
        Bad target, or a target given together with ``top_k``.

    Notes
    -----
    Circle initialisation (paper §4, "Implementation details"): for radii
    :math:`r_k = 5k \cdot S/224`, k = 0..34 (S = min(H, W); 0:5:170 at 224 px), the keep-mask
    is :math:`1 - g_{\sigma} * \mathbb{1}[\lVert u - c\rVert \le r_k]` with σ = 10·S/224 and
    c the image centre, and the normalised score is
    :math:`p_k = (s_k - s_{pert}) / (s_{orig} - s_{pert})` with :math:`s_{pert}` the score of
    the fully perturbed image (the thesis' wording; the original code used its largest circle).
    The first radius with :math:`p_k < 0.01` is taken (the largest if none qualifies); it is
    area-downsampled to the mask size. For the preservation game (not in the paper) the disk
    is kept instead and the first radius with :math:`p_k \ge 0.99` is taken.

    Reference: R. Fong and A. Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
    Perturbation", ICCV 2017; R. Fong, "Understanding Convolutional Neural Networks", DPhil
    thesis, Oxford, 2020, ch. 3.
    """
    keywords = {name: value for name, value in locals().items() if name in _MP_OPTION_NAMES}
    opts = merge_options(MeaningfulOptions, options, keywords, function="meaningful_perturbation")
    game, perturbation, lr, max_iter = opts.game, opts.perturbation, opts.lr, opts.max_iter
    l1_coeff, tv_coeff, tv_beta = opts.l1_coeff, opts.tv_coeff, opts.tv_beta
    mask_size, mask_blur_sigma, jitter = opts.mask_size, opts.mask_blur_sigma, opts.jitter
    blur_sigma, init, use_softmax, top_k = opts.blur_sigma, opts.init, opts.use_softmax, opts.top_k
    batch_size, seed = opts.batch_size, opts.seed
    check_images(input)
    game_ = choice(game, "game", GAMES)
    pert_ = choice(perturbation, "perturbation", PERTURBATIONS)
    init_ = choice(init, "init", INITS)
    lr_ = positive_number(lr, "lr")
    iters = int(non_negative_number(integer(max_iter, "max_iter"), "max_iter"))
    l1_ = non_negative_number(l1_coeff, "l1_coeff", hint=_OFF)
    tv_ = non_negative_number(tv_coeff, "tv_coeff", hint=_OFF)
    beta = positive_number(tv_beta, "tv_beta")
    mblur = non_negative_number(mask_blur_sigma, "mask_blur_sigma", hint=_OFF)
    jit = int(non_negative_number(integer(jitter, "jitter"), "jitter"))
    bsigma = positive_number(blur_sigma, "blur_sigma")
    if not isinstance(use_softmax, (bool, np.bool_)):
        raise InputError(f"use_softmax must be True or False, got {use_softmax!r}.")
    check_batch_size(batch_size)
    N, _, H, W = input.shape
    h, w = _check_mask_size(mask_size, H, W)
    tgt, k = _prepare_target(target, top_k, N)
    color = _reference_color(model, pert_)
    slices = batch_slices(N, batch_size)
    device, dtype = model_device(model), model_dtype(model)
    gen = torch_generator(seed, device)

    with inference_state(model):
        x = to_model(input, model)
        color_t = torch.tensor(color, device=device, dtype=dtype).view(1, 3, 1, 1)

        def reference(images: torch.Tensor) -> torch.Tensor:
            if pert_ == "blur":
                return gaussian_blur(images, bsigma, padding_mode="replicate")
            if pert_ == "constant":
                return color_t.expand_as(images)
            return torch.rand(images.shape, generator=gen, device=device, dtype=dtype)

        scorer = _Scorer(model, tgt, bool(use_softmax))
        classes, s_orig, s_ref, ref_full = _clean_pass(scorer, x, slices, k, reference)
        scorer.classes = classes

        radii: torch.Tensor | None = None
        if init_ == "circle":
            radii, keep = _circle_search(scorer, x, ref_full, s_orig, s_ref, game_, batch_size)
            low = F.interpolate(keep, size=(h, w), mode="area")
        elif init_ == "ones":
            low = torch.ones(N, 1, h, w, device=device, dtype=dtype)
        else:
            low = torch.rand(N, 1, h, w, generator=gen, device=device, dtype=dtype)
        mask = low.clamp(0, 1).requires_grad_(True)

        # Jitter crops come from the image (and blurred reference) resized to (H+τ, W+τ).
        size = (H + jit, W + jit)
        x_big = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if jit else x
        ref_big = ref_full
        if jit and pert_ == "blur":
            ref_big = F.interpolate(ref_full, size=size, mode="bilinear", align_corners=False)

        adam = _Adam(mask, lr_)
        history = torch.zeros(N, iters, 4, device=device, dtype=dtype)
        sign = 1.0 if game_ == "delete" else -1.0
        with torch.enable_grad():
            for t in progress_bar(
                range(iters), total=iters, desc="meaningful perturbation", show=progress
            ):
                offsets = _draw_offsets(gen, N, jit, device) if jit > 0 else None
                mask.grad = None
                for sl in slices:
                    m = mask[sl]
                    M = _upsample(m, (H, W), mblur)
                    img = x_big[sl] if offsets is None else _crop(x_big[sl], offsets[sl], H, W)
                    if pert_ != "blur":
                        ref = reference(img)  # the constant colour, or fresh noise
                    elif offsets is None:
                        ref = ref_big[sl]
                    else:
                        ref = _crop(ref_big[sl], offsets[sl], H, W)
                    score = scorer(img * M + ref * (1 - M), torch.arange(sl.start, sl.stop))
                    l1 = l1_ * ((1 - m) if game_ == "delete" else m).abs().flatten(1).sum(1)
                    tv = tv_ * mask_total_variation(m, beta)
                    objective = l1 + tv + sign * score
                    objective.sum().backward()
                    history[sl, t] = torch.stack([objective, l1, tv, score], 1).detach()
                with torch.no_grad():
                    assert mask.grad is not None
                    adam.step(mask.grad)
                    mask.clamp_(0, 1)  # projection onto [0, 1] after every step

        with torch.no_grad():
            low_res = mask.detach()
            masks = torch.cat([_upsample(low_res[sl], (H, W), mblur) for sl in slices])
            s_pert = torch.cat(
                [
                    scorer(
                        x[sl] * masks[sl] + reference(x[sl]) * (1 - masks[sl]),
                        torch.arange(sl.start, sl.stop),
                    )
                    for sl in slices
                ]
            )

    return MeaningfulResult(
        masks=masks,
        low_res_masks=low_res,
        saliency=1 - masks if game_ == "delete" else masks.clone(),
        history=history.cpu(),
        scores_original=s_orig,
        scores_perturbed=s_pert,
        scores_fully_perturbed=s_ref,
        init_radii=radii,
        top_classes=classes,
        game=game_,
        perturbation=pert_,
        lr=lr_,
        max_iter=iters,
        l1_coeff=l1_,
        tv_coeff=tv_,
        tv_beta=beta,
        mask_size=(h, w),
        mask_blur_sigma=mblur,
        jitter=jit,
        blur_sigma=bsigma,
        init=init_,
        use_softmax=bool(use_softmax),
        top_k=k,
        seed=seed,
        reference_color=color,
    )


def _clean_pass(
    scorer: _Scorer,
    x: torch.Tensor,
    slices: list[slice],
    k: int | None,
    reference: Any,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k classes, scores of the clean and of the fully perturbed images, the reference."""
    classes: list[torch.Tensor] = []
    s_orig: list[torch.Tensor] = []
    s_ref: list[torch.Tensor] = []
    refs: list[torch.Tensor] = []
    with torch.no_grad():
        for sl in slices:
            rows = torch.arange(sl.start, sl.stop)
            if k is not None:
                out = scorer.outputs(x[sl])
                n_classes = out.shape[1]
                if k >= n_classes and scorer.use_softmax:
                    raise InputError(
                        f"top_k={k} covers all {n_classes} classes, whose softmax probabilities "
                        "sum to 1: there is nothing to optimise. Use top_k < "
                        f"{n_classes} or use_softmax=False."
                    )
                if k > n_classes and sl.start == 0:
                    warnings.warn(
                        f"top_k={k} but the model has only {n_classes} classes; the "
                        "objective sums all of them.",
                        UserWarning,
                        stacklevel=3,
                    )
                classes.append(out.topk(min(k, n_classes), dim=1).indices)
                s_orig.append(out.gather(1, classes[-1]).sum(1))
                scorer.classes = torch.cat(classes)  # rows of this slice are now defined
            else:
                s_orig.append(scorer(x[sl], rows))
            ref = reference(x[sl])
            refs.append(ref)
            s_ref.append(scorer(ref, rows))
    top = torch.cat(classes) if classes else None
    return top, torch.cat(s_orig), torch.cat(s_ref), torch.cat(refs)


def _circle_search(
    scorer: _Scorer,
    x: torch.Tensor,
    ref: torch.Tensor,
    s_orig: torch.Tensor,
    s_ref: torch.Tensor,
    game: str,
    batch_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the smallest centred circle meeting the 99% criterion (batched over pairs)."""
    N, _, H, W = x.shape
    radii, keeps = _circle_masks(H, W, game, x.device, x.dtype)
    R = radii.numel()
    scores = torch.empty(N * R, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        for sl in batch_slices(N * R, batch_size):
            pair = torch.arange(sl.start, sl.stop)
            img, rad = pair // R, pair % R
            img_d, rad_d = img.to(x.device), rad.to(x.device)
            keep = keeps[rad_d]
            perturbed = x[img_d] * keep + ref[img_d] * (1 - keep)
            scores[sl] = scorer(perturbed, img)
    normalised = (scores.view(N, R) - s_ref[:, None]) / (s_orig - s_ref)[:, None]
    ok = normalised < CIRCLE_THRESHOLD if game == "delete" else normalised >= 1 - CIRCLE_THRESHOLD
    # First qualifying radius; the largest if none qualifies (NaN never qualifies).
    largest = torch.full((N,), R - 1, dtype=torch.long, device=x.device)
    first = torch.where(ok.any(1), ok.long().argmax(1), largest)
    return radii[first], keeps[first]
