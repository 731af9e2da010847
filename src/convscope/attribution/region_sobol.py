r"""Sobol' indices of image regions: sample-based semantic analysis (Sobol-SBSA).

An image is cut into regions :math:`S_1, \dots, S_l` (grid cells, segments, superpixels, a
foreground/background split). Each region gets a random factor :math:`\alpha_k` and the
perturbed image is

.. math::

    \tilde x = b + \alpha_k\,(x - b) \quad \text{on region } k,

with :math:`b` a *baseline image*. The paper (Eqs. 6-9) samples the pixel sum :math:`r_k` of a
region on :math:`[0, 2 r_k]` and rescales the region by :math:`\tilde r_k / r_k`; that is the
``"scale"`` perturbation with :math:`\alpha_k \sim U[0, 2]` and :math:`b = 0` in the space the
model sees (:math:`\alpha = 0` masks the region, :math:`\alpha = 2` amplifies it, and
:math:`\alpha = 1` gives the image back, the paper's Property 2). ``"blur"`` and ``"inpaint"``
use a blurred or an inpainted image as :math:`b`, so :math:`\alpha = 0` removes the region's
detail instead of its colour.

The factors are independent uniform inputs of the scalar function :math:`\alpha \mapsto
f_c(\tilde x(\alpha))` (the target score), whose Sobol' indices are estimated by pick-freeze
(Saltelli 2010 first order, Jansen total order, as SALib and the paper do) from
:math:`N(l + 2)` model evaluations:

.. math::

    S_k = \frac{\operatorname{Var}(\mathbb E[f \mid \alpha_k])}{\operatorname{Var} f},\qquad
    S^T_k = \frac{\mathbb E[\operatorname{Var}(f \mid \alpha_{\sim k})]}{\operatorname{Var} f},
    \qquad \mathrm{PIR}_k = \frac{S_k}{S^T_k}.

:math:`S_k` is the effect of region :math:`k` alone, :math:`S^T_k` its effect including every
interaction; the *primary index ratio* (PIR, Eq. 13) lies in :math:`[0, 1]` in theory and is
low for regions that matter through interactions. With small :math:`N` the estimates are noisy
(PIR can leave :math:`[0, 1]`); the bootstrap intervals tell noise from effect.

Reference: "A sample-based method for semantic understanding of neural network decisions"
(Sobol-SBSA; anonymous ICLR 2023 submission); A. Saltelli et al., Computer Physics
Communications 181 (2010). Full references: ``docs/references.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convscope.core.batching import check_batch_size
from convscope.core.checkpoint import GroupCheckpoint
from convscope.core.deprecation import renamed_argument
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.fingerprint import run_fingerprint
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, as_target, check_target_count
from convscope.core.validation import check_images
from convscope.data.filters import gaussian_blur
from convscope.data.normalization import normalization_mean
from convscope.data.regions import Regions, grid_regions, n_selected, region_heatmap
from convscope.sensitivity.designs import pick_freeze_design
from convscope.sensitivity.estimators import SobolAccumulator, bootstrap_intervals

__all__ = [
    "PERTURBATIONS",
    "RegionSobolResult",
    "as_regions",
    "inpaint",
    "primary_index_ratio",
    "region_baseline",
    "region_sobol",
    "target_scores",
]

PERTURBATIONS = ("scale", "blur", "inpaint")
Perturbation = Literal["scale", "blur", "inpaint"]
Space = Literal["normalized", "pixel"]
Output = Literal["logit", "probability", "log_probability"]
Index = Literal["first_order", "total_order", "pir"]


# --------------------------------------------------------------------------------------------
# regions, baselines, scores
# --------------------------------------------------------------------------------------------


def as_regions(regions: Regions | int | tuple[int, int], shape: tuple[int, int]) -> Regions:
    """A :class:`Regions` partition from a partition, a grid size ``g`` or ``(rows, cols)``.

    Raises
    ------
    InputError
        Any other type, or regions built for another image size.
    """
    if isinstance(regions, Regions):
        if regions.shape != shape:
            raise InputError(
                f"The regions are {regions.shape[0]}×{regions.shape[1]} but the images are "
                f"{shape[0]}×{shape[1]}; build the regions for the image size."
            )
        return regions
    if isinstance(regions, int) and not isinstance(regions, bool):
        return grid_regions(shape[0], shape[1], regions)
    if isinstance(regions, tuple) and len(regions) == 2:
        return grid_regions(shape[0], shape[1], regions)
    raise InputError(
        f"regions must be a Regions partition (grid_regions, regions_from_masks, "
        f"superpixel_regions, foreground_background), a grid size g or (rows, cols); got "
        f"{type(regions).__name__}."
    )


def inpaint(x: Tensor, hole: Tensor) -> Tensor:
    r"""Fill the ``hole`` pixels of ``x`` from their surroundings (push-pull inpainting).

    The known pixels are averaged down an image pyramid (weights :math:`w = 1 - \text{hole}`,
    2×2 means, :math:`v_{l+1} = \bar v_l`, :math:`w_{l+1} = \bar w_l`) and pulled back up:
    :math:`\hat x_l = v_l + (1 - w_l)\,\mathrm{up}(\hat x_{l+1})`, so known pixels keep their
    values and each hole pixel takes a smooth mean of the nearest known ones (Gortler et al.
    1996, "The Lumigraph", push-pull). Cost O(pixels).

    Parameters
    ----------
    x
        ``M×C×H×W`` images.
    hole
        ``M×1×H×W`` (or ``1×1×H×W``) bool masks of the pixels to fill; each must leave at
        least one pixel known.

    Returns
    -------
    torch.Tensor
        ``M×C×H×W``: ``x`` outside the hole, the fill inside.
    """
    w = (~hole).to(x.dtype).expand(x.shape[0], 1, *x.shape[-2:])
    values = [x * w]
    weights = [w]
    while values[-1].shape[-1] > 1 or values[-1].shape[-2] > 1:
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    # at the top, v/w is the mean of the known pixels
    est = values[-1] / weights[-1].clamp_min(torch.finfo(x.dtype).tiny)
    for v, wl in zip(reversed(values[:-1]), reversed(weights[:-1]), strict=True):
        up = F.interpolate(est, size=v.shape[-2:], mode="bilinear", align_corners=False)
        est = v + (1 - wl) * up
    return est


def region_baseline(
    model: nn.Module,
    input: Tensor,
    regions: Regions | int | tuple[int, int],
    perturbation: Perturbation | Tensor = "scale",
    *,
    space: Space = "normalized",
    blur_sigma: float | None = None,
    region_batch: int = 16,
) -> Tensor:
    r"""The baseline image :math:`b` a region takes at factor 0 (``N×C×H×W``).

    * ``"scale"``: the colour the model maps to 0. ``space="normalized"`` (default, the paper's
      setting: the factor multiplies the tensor the network sees) gives the model's
      normalisation mean (black if the model has no
      :class:`~convscope.data.normalization.Normalize`); ``space="pixel"`` gives black.
    * ``"blur"``: the image blurred by a Gaussian of ``blur_sigma`` pixels (default 5% of the
      longer side).
    * ``"inpaint"``: each region filled from the pixels around it (:func:`inpaint`), so the
      region's content is replaced by a continuation of its neighbourhood.
    * a tensor: used as the baseline (``1×C×H×W`` or ``N×C×H×W``).
    """
    x = check_images(input)
    if isinstance(perturbation, Tensor):
        b = perturbation.to(device=x.device, dtype=x.dtype)
        if b.ndim != 4 or b.shape[1:] != x.shape[1:] or b.shape[0] not in (1, x.shape[0]):
            raise InputError(
                f"A baseline image must be 1×C×H×W or N×C×H×W like the input "
                f"{tuple(x.shape)}; got {tuple(b.shape)}."
            )
        return b.expand_as(x)
    if perturbation not in PERTURBATIONS:
        raise InputError(
            f"Unknown perturbation {perturbation!r}; use one of {', '.join(PERTURBATIONS)} or "
            "a baseline image tensor."
        )
    if space not in ("normalized", "pixel"):
        raise InputError(f"space must be 'normalized' or 'pixel', got {space!r}.")
    if perturbation == "scale":
        mean = normalization_mean(model, declared=False) if space == "normalized" else None
        if mean is None:
            return torch.zeros_like(x)
        return mean.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
    if perturbation == "blur":
        sigma = 0.05 * max(x.shape[-2:]) if blur_sigma is None else float(blur_sigma)
        if not sigma > 0:
            raise InputError(f"blur_sigma must be positive, got {blur_sigma!r}.")
        return gaussian_blur(x, sigma, padding_mode="replicate")
    parts = as_regions(regions, (x.shape[-2], x.shape[-1]))
    labels = parts.labels.to(x.device)
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        lab = labels[i] if labels.ndim == 3 else labels
        ids = torch.unique(lab)
        if ids.numel() == 1:
            raise InputError(
                "inpaint needs at least two regions: with one region there is nothing around "
                "it to fill it from. Use perturbation='blur' or 'scale'."
            )
        fill = torch.zeros_like(x[i])
        for start in range(0, ids.numel(), region_batch):
            chunk = ids[start : start + region_batch]
            holes = (lab.unsqueeze(0) == chunk.view(-1, 1, 1)).unsqueeze(1)  # m×1×H×W
            filled = inpaint(x[i : i + 1].expand(chunk.numel(), -1, -1, -1), holes)
            fill += (filled * holes).sum(0)  # every pixel lies in exactly one region
        out[i] = fill
    return out


def target_scores(outputs: Tensor, target: Target, output: Output) -> Tensor:
    """Per-sample scores: ``output`` transform of the model outputs, then the target."""
    if output == "probability":
        outputs = outputs.softmax(dim=1)
    elif output == "log_probability":
        outputs = outputs.log_softmax(dim=1)
    return target.scores(outputs)


def primary_index_ratio(first_order: Tensor, total_order: Tensor, eps: float = 1e-6) -> Tensor:
    r"""PIR :math:`= S_k / S^T_k` (Sobol-SBSA Eq. 13), NaN where :math:`S^T_k \le` ``eps``.

    A total index at (or, through estimator noise, below) zero makes the ratio meaningless,
    so it is NaN rather than ±inf; NaN inputs (empty regions) stay NaN.
    """
    ok = total_order > eps
    return torch.where(ok, first_order / torch.where(ok, total_order, 1.0), float("nan"))


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass
class RegionSobolResult(Result):
    """Sobol' indices of the regions of each image.

    Attributes
    ----------
    first_order, total_order, pir
        ``N×d`` indices :math:`S_k`, :math:`S^T_k` and PIR (NaN for empty regions, and PIR NaN
        where :math:`S^T_k \\le` ``settings["pir_eps"]``). Negative estimates are kept.
    first_order_interval, total_order_interval
        ``N×d×2`` bootstrap bounds (None with ``n_boot=0``).
    variance, zero_variance
        ``N`` variance of the target score under the perturbations, and the flag of images
        whose score never changes (indices 0 there).
    score
        ``N`` target score of the unperturbed image.
    labels
        The region label map (``H×W`` or ``N×H×W``).
    n, n_evaluations
        Base rows N and model evaluations per image, :math:`N (d + 2)`.
    """

    first_order: Tensor
    total_order: Tensor
    pir: Tensor
    first_order_interval: Tensor | None
    total_order_interval: Tensor | None
    variance: Tensor
    zero_variance: Tensor
    score: Tensor
    labels: Tensor
    n: int
    n_evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def regions(self) -> Regions:
        """The partition the indices refer to."""
        return Regions(
            labels=self.labels, n_regions=self.first_order.shape[1], kind="result", settings={}
        )

    def index(self, name: Index = "total_order") -> Tensor:
        """``N×d`` values of ``"first_order"``, ``"total_order"`` or ``"pir"``."""
        if name not in ("first_order", "total_order", "pir"):
            raise InputError(f"Unknown index {name!r}; use 'first_order', 'total_order' or 'pir'.")
        return getattr(self, name)

    def rank(self, index: Index = "total_order") -> Tensor:
        """``N×d`` region ids from most to least important (NaN regions last)."""
        values = self.index(index).nan_to_num(nan=-float("inf"))
        return values.argsort(dim=1, descending=True, stable=True)

    def top_fraction(self, fraction: float = 0.2, index: Index = "total_order") -> Tensor:
        """``N×d`` bool: the top ``k_i = min(d_i, max(1, ⌊fraction·d_i + ½⌋))`` regions of each
        image (``d_i`` regions with a finite index; ties broken by region index)."""
        if not 0 < fraction <= 1:
            raise InputError(f"fraction must lie in (0, 1], got {fraction!r}.")
        values = self.index(index)
        finite = values.isfinite()
        # the rounding rule of the region metrics (halves up, 20% of 16 regions = 3)
        k = torch.tensor([n_selected(fraction, int(c)) if c else 0 for c in finite.sum(dim=1)])
        ranks = torch.empty_like(values, dtype=torch.long)
        ranks.scatter_(1, self.rank(index), torch.arange(values.shape[1]).expand_as(ranks))
        return (ranks < k.unsqueeze(1)) & finite

    def mean_pir(self, fraction: float = 0.2, rank_by: Index = "total_order") -> Tensor:
        """``N`` mean PIR of each image's top ``fraction`` of regions ranked by ``rank_by``."""
        from convscope.metrics.regions import mean_top_pir

        return mean_top_pir(self.pir, self.index(rank_by), fraction=fraction)

    def fraction_pir_above_one(self) -> Tensor:
        """``N`` fraction of the regions (with a finite PIR) whose PIR exceeds 1."""
        from convscope.metrics.regions import fraction_pir_above_one

        return fraction_pir_above_one(self.pir)

    def importance_difference(
        self,
        foreground: Tensor,
        index: Index = "total_order",
        reduce: Literal["sum", "mean"] = "sum",
    ) -> Tensor:
        """``N`` importance of the foreground regions minus that of the background ones."""
        from convscope.metrics.regions import importance_difference

        return importance_difference(self.index(index), foreground, reduce=reduce)

    def heatmap(self, index: Index = "total_order") -> Tensor:
        """``N×H×W`` map of each region's value (NaN on empty regions)."""
        return region_heatmap(self.index(index), self.regions)

    def plot(self, images: Tensor | None = None, *, image_index: int = 0) -> Any:
        """Rows S_i, S_Ti and PIR over image ``image_index`` (a blank canvas without images)."""
        from convscope.plots.regions import region_index_panel

        i = image_index
        if images is None:
            images = torch.full((1, 3, *self.labels.shape[-2:]), 0.5)
            i_img = 0
        else:
            i_img = i
        regions = self.regions
        if regions.is_batched:
            regions = Regions(
                labels=self.labels[i], n_regions=int(self.labels[i].max()) + 1, kind="result"
            )
            d = regions.n_regions
        else:
            d = self.first_order.shape[1]
        return region_index_panel(
            images[i_img],
            regions,
            self.first_order[i : i + 1, :d],
            self.total_order[i : i + 1, :d],
            self.pir[i : i + 1, :d],
        )


# --------------------------------------------------------------------------------------------
# region_sobol
# --------------------------------------------------------------------------------------------


def _check_factor_bounds(factor_bounds: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in factor_bounds)
    except (TypeError, ValueError):
        raise InputError(
            f"factor_bounds must be two numbers (low, high), got {factor_bounds!r}."
        ) from None
    if not lo < hi:
        raise InputError(
            f"factor_bounds must satisfy low < high, got ({lo}, {hi}); the Sobol-SBSA default is "
            "(0.0, 2.0): mask at 0, keep at 1, amplify at 2."
        )
    return lo, hi


def region_sobol(
    model: nn.Module,
    input: Tensor,
    target: TargetLike,
    regions: Regions | int | tuple[int, int],
    *,
    n: int = 64,
    perturbation: Perturbation | Tensor = "scale",
    factor_bounds: Sequence[float] = (0.0, 2.0),
    space: Space = "normalized",
    blur_sigma: float | None = None,
    clip: bool = False,
    output: Output = "logit",
    first_order: str = "saltelli2010",
    total_order: str = "jansen",
    method: str = "sobol",
    n_boot: int = 100,
    interval: Literal["normal", "bca", "percentile"] = "normal",
    level: float = 0.95,
    pir_eps: float = 1e-6,
    batch_size: int | None = None,
    seed: int = 0,
    resume: str | Path | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
) -> RegionSobolResult:
    r"""Sobol' indices of image regions for a target score (Sobol-SBSA).

    Each region :math:`k` is perturbed as :math:`\tilde x = b + \alpha_k (x - b)` with
    independent :math:`\alpha_k \sim U[\text{factor\_bounds}]`; the target score's first-order
    and total Sobol' indices over the factors are estimated from a pick-freeze design of
    ``n`` base rows, :math:`N(d + 2)` model evaluations per image (module docstring).

    Parameters
    ----------
    model
        The classifier (takes ``[0, 1]`` images, carries its normalisation).
    input
        ``N×C×H×W`` images in ``[0, 1]``.
    target
        Class index, one index per image, or a callable on the (transformed) outputs.
    regions
        A :class:`~convscope.data.regions.Regions` partition (shared ``H×W`` or per image),
        or a grid size ``g`` / ``(rows, cols)``.
    n
        Base rows N (a power of two for ``method="sobol"``). The paper uses 50 with SALib's
        unscrambled Saltelli sequence; 64 is the nearest power of two, and ``method="random"``
        accepts ``n=50``.
    perturbation
        The baseline :math:`b` (:func:`region_baseline`): ``"scale"`` (the paper's; :math:`b`
        = the colour the model maps to 0), ``"blur"``, ``"inpaint"``, or a baseline image.
    factor_bounds
        Range of the factors; the paper's ``(0, 2)`` masks and amplifies with equal probability
        and keeps the image at 1.
    space
        For ``"scale"``: ``"normalized"`` multiplies the tensor the network sees (the paper's
        setting), ``"pixel"`` multiplies ``[0, 1]`` pixels (factor 0 = black).
    blur_sigma
        Gaussian width of ``"blur"`` in pixels (default 5% of the longer side).
    clip
        Clip perturbed images to ``[0, 1]`` (the paper does not; amplified pixels exceed 1).
    output
        Score: ``"logit"`` (default; the paper does not say which score it used),
        ``"probability"`` or ``"log_probability"``, before ``target`` picks the class.
    first_order, total_order
        Estimators (``convscope.sensitivity``); the defaults are SALib's and the paper's.
    method
        Design: ``"sobol"`` (scrambled Sobol' QMC), ``"random"`` or ``"lhs"``.
    n_boot, interval, level
        Bootstrap of the base rows: ``n_boot`` resamples (0 = no intervals) and the interval
        type; the defaults (100, ``"normal"``, 0.95) are SALib's ``S1_conf``/``ST_conf``.
    pir_eps
        PIR is NaN where :math:`S^T_k \le` ``pir_eps`` (:func:`primary_index_ratio`).
    batch_size
        Perturbed images per forward pass (default 64), across images and design rows.
    seed
        Seed of the design and of the bootstrap; one design serves every image.
    resume
        File prefix: the scores of finished images are saved after each group, and the same
        call resumes after an interruption; a file written by another run (model, images,
        regions, targets or settings) is refused with an error naming the difference.
    checkpoint
        Deprecated name of ``resume``.
    progress
        Progress bar over image groups (None: automatic).

    Returns
    -------
    RegionSobolResult

    Examples
    --------
    >>> result = region_sobol(model, images, labels, grid_regions((224, 224), 8))  # doctest: +SKIP
    >>> result.total_order.shape, result.n_evaluations                             # doctest: +SKIP
    (torch.Size([N, 64]), 4224)
    """
    resume = renamed_argument(
        checkpoint, resume, old="checkpoint", new="resume", function="region_sobol"
    )
    x_in = check_images(input)
    tgt = check_target_count(target, x_in.shape[0])
    tgt = as_target(tgt)
    if output not in ("logit", "probability", "log_probability"):
        raise InputError(
            f"output must be 'logit', 'probability' or 'log_probability', got {output!r}."
        )
    lo, hi = _check_factor_bounds(factor_bounds)
    per_call = check_batch_size(batch_size)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0 or n_boot == 1:
        raise InputError(f"n_boot must be 0 (no intervals) or an int >= 2, got {n_boot!r}.")
    device, dtype = model_device(model), model_dtype(model)
    x = x_in.to(device=device, dtype=dtype)
    n_img = x.shape[0]
    parts = as_regions(regions, (x.shape[-2], x.shape[-1]))
    if parts.is_batched and parts.labels.shape[0] != n_img:
        raise InputError(
            f"The regions have {parts.labels.shape[0]} label maps but there are {n_img} "
            "images; pass one per image or one shared H×W partition."
        )
    d = parts.n_regions
    labels = parts.labels.to(device)
    base = region_baseline(model, x, parts, perturbation, space=space, blur_sigma=blur_sigma).to(
        dtype
    )
    design = pick_freeze_design(
        d, n, method=method, bounds=[(lo, hi)] * d, seed=seed, device=device, dtype=dtype
    )
    rows = design.rows("blocks")  # M×d, one design shared by every image
    m_rows = rows.shape[0]
    delta = x - base

    settings: dict[str, Any] = {
        "n": n, "d": d, "perturbation": perturbation if isinstance(perturbation, str)
        else "custom", "factor_bounds": [lo, hi], "space": space, "blur_sigma": blur_sigma,
        "clip": clip, "output": output, "first_order": first_order,
        "total_order": total_order, "method": method, "n_boot": n_boot,
        "interval": interval, "level": level, "pir_eps": pir_eps, "batch_size": per_call,
        "seed": seed, "regions": {"kind": parts.kind, **parts.settings},
    }  # fmt: skip
    saved = None
    if resume is not None:
        index = tgt.index if isinstance(tgt.index, Tensor) else torch.tensor(tgt.index or 0)
        run = run_fingerprint(
            model,
            {"images": x, "regions": labels, "baseline": base, "target": index},
            {**settings, "target": "index" if tgt.function is None else "callable"},
        )
        saved = GroupCheckpoint(resume, run)

    # images per group: fill a forward pass when one image has fewer rows than batch_size
    per_group = max(1, per_call // m_rows)
    groups = [slice(s, min(s + per_group, n_img)) for s in range(0, n_img, per_group)]
    outputs = torch.empty(m_rows, n_img, dtype=torch.float64, device=device)
    clean = torch.empty(n_img, dtype=torch.float64, device=device)
    with inference_state(model), torch.no_grad():
        for g, sl in progress_bar(list(enumerate(groups)), desc="region_sobol", show=progress):
            if saved is not None and saved.has(g):
                got = saved.get(g)
                outputs[:, sl] = torch.from_numpy(got["y"]).to(device)
                clean[sl] = torch.from_numpy(got["clean"]).to(device)
                continue
            idx = torch.arange(sl.start, sl.stop, device=device)
            sub_tgt = tgt.subset(sl)
            clean[sl] = target_scores(model(x[sl]), sub_tgt, output).to(torch.float64)
            total = idx.numel() * m_rows
            flat_out = torch.empty(total, dtype=torch.float64, device=device)
            for start in range(0, total, per_call):
                pos = torch.arange(start, min(start + per_call, total), device=device)
                img_local = pos // m_rows
                img = idx[img_local]
                factors = rows[pos % m_rows]  # m×d
                lab = labels[img] if labels.ndim == 3 else labels.expand(pos.numel(), -1, -1)
                alpha = factors.gather(1, lab.reshape(pos.numel(), -1)).view_as(lab)
                batch = torch.addcmul(base[img], alpha.unsqueeze(1), delta[img])
                if clip:
                    batch = batch.clamp_(0.0, 1.0)
                if tgt.function is None and isinstance(tgt.index, Tensor):
                    t_batch: Target = Target(index=tgt.index.to(device)[img])
                else:
                    t_batch = tgt
                flat_out[pos] = target_scores(model(batch), t_batch, output).to(torch.float64)
            outputs[:, sl] = flat_out.view(idx.numel(), m_rows).T
            if saved is not None:
                saved.put(g, {"y": outputs[:, sl], "clean": clean[sl]})

    if not bool(torch.isfinite(outputs).all()):
        raise InputError(
            "The model produced NaN or inf scores on perturbed images; check the model, or "
            "pass clip=True / smaller factor_bounds."
        )
    f_a, f_b, f_ab, _ = design.split(outputs, "blocks")
    acc = SobolAccumulator(d, (n_img,), device=device)
    acc.update(f_a, f_b, f_ab)
    est = acc.indices(first_order, total_order)  # type: ignore[arg-type]
    s1 = est.first_order.T.clone()  # N×d
    st = est.total_order.T.clone()
    iv1 = ivt = None
    if n_boot:
        iv = bootstrap_intervals(
            f_a, f_b, f_ab, first_order=first_order, total_order=total_order,  # type: ignore[arg-type]
            n_boot=n_boot, level=level, method=interval, seed=seed,
        )  # fmt: skip
        iv1 = torch.stack([iv.first_order_low.T, iv.first_order_high.T], dim=-1)
        ivt = torch.stack([iv.total_order_low.T, iv.total_order_high.T], dim=-1)
    # regions absent from an image (per-image partitions) have no index
    present = torch.stack(
        [torch.bincount(lab.reshape(-1), minlength=d) > 0 for lab in
         (labels if labels.ndim == 3 else labels.unsqueeze(0))]
    ).expand(n_img, d)  # fmt: skip
    nan = torch.tensor(float("nan"), dtype=s1.dtype, device=device)
    s1, st = torch.where(present, s1, nan), torch.where(present, st, nan)
    if iv1 is not None and ivt is not None:
        iv1 = torch.where(present.unsqueeze(-1), iv1, nan)
        ivt = torch.where(present.unsqueeze(-1), ivt, nan)
    pir = primary_index_ratio(s1, st, pir_eps)
    return RegionSobolResult(
        first_order=s1.cpu(),
        total_order=st.cpu(),
        pir=pir.cpu(),
        first_order_interval=None if iv1 is None else iv1.cpu(),
        total_order_interval=None if ivt is None else ivt.cpu(),
        variance=est.variance.cpu(),
        zero_variance=est.zero_variance.cpu(),
        score=clean.cpu(),
        labels=parts.labels.cpu(),
        n=n,
        n_evaluations=design.n_evaluations,
        settings=settings,
    )
