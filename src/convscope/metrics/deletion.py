r"""Deletion and insertion curves (Petsiuk, Das & Saenko, 2018, "RISE"; thesis ch. 7.1.3).

A saliency map :math:`s` ranks the pixels :math:`u_1, u_2, \dots, u_{HW}` by decreasing
saliency. With :math:`k_t` pixels changed at step :math:`t = 0..T` (:math:`k_0 = 0`), and a
*substrate* :math:`\tilde x` (what a deleted pixel becomes), the curves are

.. math::

    \text{deletion:}\quad D_t = \Phi_c\big(x \odot (1 - M_t) + \tilde x \odot M_t\big), \qquad
    \text{insertion:}\quad I_t = \Phi_c\big(\tilde x \odot (1 - M_t) + x \odot M_t\big),

where :math:`M_t` is 1 on the top :math:`k_t` pixels (all channels of a pixel together). A good
map makes the deletion curve drop fast (low area under the curve) and the insertion curve rise
fast (high area). The area is the trapezoid rule on the uniform step axis :math:`t/T`,

.. math::

    \mathrm{AUC} = \frac{1}{T}\Big(\sum_{t=0}^{T} S_t - \frac{S_0 + S_T}{2}\Big),

RISE's ``auc`` and Xplique's ``mean((s[:-1] + s[1:]) / 2)``; it equals the trapezoid over the
fraction of pixels changed, normalised to [0, 1], whenever every step changes as many pixels.

Numbers depend on the protocol (the thesis warns that the game favours pixelated maps and
creates out-of-distribution images), so two presets reproduce the reference code:

``protocol="rise"`` (``eclique/RISE`` ``evaluation.py::CausalMetric``)
    :math:`W` pixels per step (``step=224`` at 224×224), so :math:`T = \lceil HW/W\rceil`
    steps with :math:`k_t = \min(tW, HW)`; softmax probabilities. Deletion substrate: RISE
    uses ``torch.zeros_like`` on the *normalised* image, i.e. the normalisation mean colour;
    our images are in [0, 1] with the normalisation inside the model, so the substrate is
    ``"mean"``: the mean of the model's :class:`~convscope.data.normalization.Normalize`
    module (:func:`~convscope.data.normalization.normalization_mean`: else the mean its
    ``convscope_info`` declares, else black, since 0 is then the model's own zero). Insertion
    substrate: ``"blur"``, RISE's 11×11 kernel (a unit impulse smoothed by
    ``scipy.ndimage.gaussian_filter`` with :math:`\sigma = 5`) with zero padding in normalised
    space, i.e. padding with the mean colour.
``protocol="xplique"`` (``xplique.metrics.Deletion`` / ``Insertion``)
    ``steps=10`` with :math:`k_t = \lfloor t K / T\rfloor`, :math:`K = \lfloor HW \cdot
    \text{max\_fraction}\rfloor` (``max_percentage_perturbed=1``); constant substrate 0.0
    (black); logits (``activation=None``).

Any setting given explicitly overrides the preset's. Ties in the saliency are broken stably:
among equal values the pixel first in row-major order is changed first (RISE and Xplique
reverse an ``argsort``, an order numpy does not define for ties). A saliency map with several
channels is averaged over them (Xplique), and resized bilinearly to the input size if needed.
Every perturbed image is built from the ranking inside its batch, on the model's device, so
at most ``batch_size`` images exist at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.batching import check_batch_size
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError, TargetError
from convscope.core.results import Result
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images, positive_int
from convscope.data.normalization import normalization_mean

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PROTOCOLS",
    "InsertionDeletionResult",
    "deletion_curve",
    "insertion_curve",
    "normalization_mean",
    "rise_blur",
    "rise_blur_kernel",
]

Protocol = Literal["rise", "xplique"]
Output = Literal["softmax", "logit", "sigmoid"]
Substrate = str | float | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
Mode = Literal["deletion", "insertion"]

#: Settings of each preset; ``"width"`` means the input width in pixels per step.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "rise": {
        "pixels_per_step": "width",
        "substrate": {"deletion": "mean", "insertion": "blur"},
        "output": "softmax",
        "max_fraction": 1.0,
    },
    "xplique": {
        "steps": 10,
        "substrate": {"deletion": 0.0, "insertion": 0.0},
        "output": "logit",
        "max_fraction": 1.0,
    },
}

_OUTPUTS = ("softmax", "logit", "sigmoid")
_NAMED_SUBSTRATES = ("zero", "mean", "blur")


# --------------------------------------------------------------------------- substrates


def rise_blur_kernel(klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's ``gkern(klen, sigma)`` as one 2-D kernel (klen×klen, sums to 1).

    RISE smooths a unit impulse on a klen×klen grid with ``scipy.ndimage.gaussian_filter``
    (reflecting borders, truncation at 4σ), so the tails beyond the grid fold back in. The
    filter is separable and the impulse is an outer product, hence the 1-D version squared.
    """
    from scipy.ndimage import gaussian_filter1d

    impulse = torch.zeros(klen, dtype=torch.float64)
    impulse[klen // 2] = 1.0
    k1 = torch.from_numpy(gaussian_filter1d(impulse.numpy(), sigma))
    return torch.outer(k1, k1)


def rise_blur(x: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """RISE's insertion substrate: ``conv2d`` with :func:`rise_blur_kernel` per channel and
    padding ``klen // 2`` filled with ``fill`` (RISE pads the normalised image with zeros,
    i.e. with the normalisation mean colour)."""
    kernel = rise_blur_kernel().to(device=x.device, dtype=x.dtype)
    pad = kernel.shape[-1] // 2
    weight = kernel.expand(x.shape[1], 1, *kernel.shape)
    fill_t = torch.as_tensor(fill, device=x.device, dtype=x.dtype)
    # Blurring x - fill with zero padding, then adding fill back, pads with fill.
    return F.conv2d(x - fill_t, weight, padding=pad, groups=x.shape[1]) + fill_t


def _describe_substrate(spec: Substrate) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, (int, float)):
        return f"constant {float(spec):g}"
    if isinstance(spec, torch.Tensor):
        return f"tensor {tuple(spec.shape)}"
    return "callable"


def _substrate(spec: Substrate, x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The substrate images (N×3×H×W, on x's device) for the specification ``spec``."""
    if isinstance(spec, str):
        if spec not in _NAMED_SUBSTRATES:
            raise InputError(
                f"Unknown substrate {spec!r}; use 'zero', 'mean', 'blur', a float, a tensor "
                "broadcastable to the input, or a callable images -> substrate."
            )
        if spec == "zero":
            return torch.zeros_like(x)
        mean = normalization_mean(model, declared=False)
        fill = torch.zeros(1, x.shape[1], 1, 1) if mean is None else mean
        if fill.shape[1] != x.shape[1]:
            raise InputError(
                f"The model's normalisation has {fill.shape[1]} channels but the input has "
                f"{x.shape[1]}; pass substrate= explicitly."
            )
        fill = fill.to(device=x.device, dtype=x.dtype)
        if spec == "mean":
            return fill.expand_as(x).clone()
        return rise_blur(x, fill)
    if isinstance(spec, bool):
        raise InputError(f"substrate must not be a boolean, got {spec!r}.")
    if isinstance(spec, (int, float)):
        return torch.full_like(x, float(spec))
    if isinstance(spec, torch.Tensor):
        try:
            return spec.to(device=x.device, dtype=x.dtype).broadcast_to(x.shape).clone()
        except RuntimeError:
            raise InputError(
                f"A substrate tensor must broadcast to the input shape {tuple(x.shape)}, got "
                f"shape {tuple(spec.shape)} (e.g. 1×3×1×1 for one colour)."
            ) from None
    if callable(spec):
        out = spec(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
            shown = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"A substrate callable must return a tensor shaped like its input "
                f"{tuple(x.shape)}, got {shown}."
            )
        return out.to(device=x.device, dtype=x.dtype)
    raise InputError(f"Unsupported substrate of type {type(spec).__name__}.")


# --------------------------------------------------------------------------- settings


def _schedule(
    hw: int,
    width: int,
    protocol: str | None,
    steps: int | None,
    pixels_per_step: int | None,
    max_fraction: float | None,
) -> tuple[torch.Tensor, float]:
    """Pixels changed at each step, ``k_0 = 0 .. k_T``, and the max fraction used."""
    preset = PROTOCOLS.get(protocol, {}) if protocol is not None else {}
    if steps is not None and pixels_per_step is not None:
        raise InputError(
            "Pass steps= (number of steps) or pixels_per_step=, not both; steps gives "
            "k_t = floor(t·K/T), pixels_per_step gives k_t = min(t·p, K)."
        )
    if steps is None and pixels_per_step is None:
        if "steps" in preset:
            steps = int(preset["steps"])
        elif "pixels_per_step" in preset:
            pixels_per_step = width
        else:
            raise InputError(
                "protocol=None needs steps= or pixels_per_step=; or use protocol='rise' or "
                "'xplique'."
            )
    frac = max_fraction if max_fraction is not None else preset.get("max_fraction", 1.0)
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise InputError(f"max_fraction must be in (0, 1], got {frac!r}.")
    total = math.floor(hw * frac)
    if total < 1:
        raise InputError(
            f"max_fraction={frac} changes no pixel of a {hw}-pixel image; increase it."
        )
    if pixels_per_step is not None:
        p = positive_int(pixels_per_step, "pixels_per_step")
        n_steps = -(-total // p)
        counts = [min(t * p, total) for t in range(n_steps + 1)]
    else:
        n_steps = positive_int(steps, "steps")
        counts = [t * total // n_steps for t in range(n_steps + 1)]
    return torch.tensor(counts, dtype=torch.long), float(frac)


def _ranks(
    saliency: torch.Tensor, n: int, size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Rank of every pixel (0 = most salient), N×HW, ties stably in row-major order."""
    if not isinstance(saliency, torch.Tensor):
        raise InputError(
            f"saliency must be a torch.Tensor of shape N×1×H×W, got {type(saliency).__name__}."
        )
    sal = saliency.detach()
    if sal.ndim == 3:
        sal = sal[:, None]
    if sal.ndim != 4 or sal.shape[0] != n or sal.numel() == 0:
        raise InputError(
            f"saliency must be N×C×H×W (or N×H×W) with N = {n} maps, one per input, got "
            f"shape {tuple(saliency.shape)}."
        )
    sal = sal.to(device=device)
    sal = sal.double() if not sal.is_floating_point() else sal
    if not bool(torch.isfinite(sal).all()):
        raise InputError(
            "saliency has NaN or inf values, so the pixel ranking is undefined. Replace them "
            "with torch.nan_to_num(saliency)."
        )
    sal = sal.mean(dim=1, keepdim=True)  # Xplique averages the channels
    if tuple(sal.shape[-2:]) != size:
        sal = F.interpolate(sal, size=size, mode="bilinear", align_corners=False)
    flat = sal.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=device).expand(n, -1)
    ranks.scatter_(1, order, positions)
    return ranks


def _activate(outputs: Any, output: str) -> Any:
    if output == "logit":
        return outputs
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
        raise TargetError(
            f"output={output!r} needs N×C tensor outputs; use output='logit' (and a callable "
            "target) for models with other outputs."
        )
    return outputs.softmax(dim=1) if output == "softmax" else outputs.sigmoid()


# --------------------------------------------------------------------------- result


@dataclass
class InsertionDeletionResult(Result):
    """Deletion or insertion curves of N images.

    Attributes
    ----------
    scores
        N×(T+1) target scores; column t after :math:`k_t` pixels were changed.
    fractions
        ``(T+1,)`` fraction of the pixels changed, :math:`k_t / HW`.
    counts
        ``(T+1,)`` pixels changed, :math:`k_t`.
    auc
        ``(N,)`` trapezoid area on the uniform step axis :math:`t / T` (float64).
    mode
        ``"deletion"`` or ``"insertion"``.
    protocol, steps, substrate, output, max_fraction
        The settings used (``steps`` is T; ``substrate`` is a description).
    """

    scores: torch.Tensor
    fractions: torch.Tensor
    counts: torch.Tensor
    auc: torch.Tensor
    mode: str = "deletion"
    protocol: str | None = None
    steps: int = 0
    substrate: str = ""
    output: str = "softmax"
    max_fraction: float = 1.0

    @property
    def mean_auc(self) -> float:
        """Mean AUC over the images (lower is better for deletion, higher for insertion)."""
        return float(self.auc.double().mean())

    def plot(self, max_curves: int = 20) -> Figure:
        """The mean curve (bold, area shaded) over up to ``max_curves`` individual curves."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        ax = fig.add_subplot()
        frac = self.fractions.double().numpy()
        scores = self.scores.detach().double().cpu()
        for row in scores[:max_curves]:
            ax.plot(frac, row.numpy(), color="0.6", lw=0.6, alpha=0.6)
        mean = scores.mean(0).numpy()
        ax.plot(frac, mean, color="C0" if self.mode == "deletion" else "C1", lw=2)
        ax.fill_between(frac, mean, alpha=0.2, color="C0" if self.mode == "deletion" else "C1")
        ax.set_xlabel(f"fraction of pixels {'deleted' if self.mode == 'deletion' else 'inserted'}")
        ax.set_ylabel(
            {"softmax": "probability", "sigmoid": "probability"}.get(self.output, "score")
        )
        ax.set_title(f"{self.mode.capitalize()} (mean AUC {self.mean_auc:.3f})")
        ax.set_xlim(0, max(1.0, float(frac[-1])))
        ax.spines[["top", "right"]].set_visible(False)
        return fig


# --------------------------------------------------------------------------- curves


def _curve(
    mode: Mode,
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    saliency: torch.Tensor,
    protocol: Protocol | None,
    steps: int | None,
    pixels_per_step: int | None,
    substrate: Substrate | None,
    output: Output | None,
    max_fraction: float | None,
    batch_size: int | None,
) -> InsertionDeletionResult:
    check_images(input)
    if protocol is not None and protocol not in PROTOCOLS:
        raise InputError(f"Unknown protocol {protocol!r}; use 'rise', 'xplique' or None.")
    preset = PROTOCOLS[protocol] if protocol is not None else {}
    if output is None:
        if "output" not in preset:
            raise InputError("protocol=None needs output= ('softmax', 'logit' or 'sigmoid').")
        output = preset["output"]
    if output not in _OUTPUTS:
        raise InputError(f"Unknown output {output!r}; use 'softmax', 'logit' or 'sigmoid'.")
    if substrate is None:
        if "substrate" not in preset:
            raise InputError(
                "protocol=None needs substrate= ('zero', 'mean', 'blur', a float, a tensor or "
                "a callable)."
            )
        substrate = preset["substrate"][mode]
    size = check_batch_size(batch_size)
    n, _, h, w = input.shape
    tgt = check_target_count(target, n)
    counts, frac = _schedule(h * w, w, protocol, steps, pixels_per_step, max_fraction)
    n_steps = counts.numel() - 1
    device, dtype = model_device(model), model_dtype(model)
    with torch.no_grad(), inference_state(model):
        x = input.detach().to(device=device, dtype=dtype)
        ranks = _ranks(saliency, n, (h, w), device)
        sub = _substrate(substrate, x, model)
        start, end = (x, sub) if mode == "deletion" else (sub, x)
        k = counts.to(device)
        index = tgt.index.to(device) if isinstance(tgt.index, torch.Tensor) else None
        scores = torch.empty(n * (n_steps + 1), device=device, dtype=torch.float64)
        for first in range(0, n * (n_steps + 1), size):
            flat = torch.arange(first, min(first + size, scores.numel()), device=device)
            img, step = flat // (n_steps + 1), flat % (n_steps + 1)
            changed = (ranks[img] < k[step, None]).view(-1, 1, h, w)
            batch = torch.where(changed, end[img], start[img])
            out = _activate(model(batch), output)
            if first == 0 or index is None:  # full validation once; callables every time
                batch_target = Target(index=index[img]) if index is not None else tgt
                value = resolve_target(batch_target, out, n=flat.numel())
            else:
                value = out.gather(1, index[img].view(-1, 1)).squeeze(1)  # no host sync
            scores[first : first + flat.numel()] = value.detach().double()
    curves = scores.view(n, n_steps + 1)
    auc = (curves.sum(1) - 0.5 * (curves[:, 0] + curves[:, -1])) / n_steps
    return InsertionDeletionResult(
        scores=curves.cpu(),
        fractions=counts.double() / (h * w),
        counts=counts,
        auc=auc.cpu(),
        mode=mode,
        protocol=protocol,
        steps=n_steps,
        substrate=_describe_substrate(substrate),
        output=output,
        max_fraction=frac,
    )


def deletion_curve(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    saliency: torch.Tensor,
    *,
    protocol: Protocol | None = "rise",
    steps: int | None = None,
    pixels_per_step: int | None = None,
    substrate: Substrate | None = None,
    output: Output | None = None,
    max_fraction: float | None = None,
    batch_size: int | None = None,
) -> InsertionDeletionResult:
    r"""The deletion curve: replace the most salient pixels by the substrate, step by step.

    :math:`D_t = \Phi_c(x \odot (1 - M_t) + \tilde x \odot M_t)` for :math:`t = 0..T` (see the
    module docstring); lower AUC is better.

    Parameters
    ----------
    model, input, target
        Model taking [0, 1] images, N×3×H×W images, and the target (class index, per-sample
        indices, or a callable on the model outputs after ``output`` is applied).
    saliency
        N×C×h×w (or N×h×w) maps; channels are averaged, and the map is resized bilinearly to
        H×W. Higher means more important.
    protocol
        ``"rise"``, ``"xplique"`` or None (then ``steps`` or ``pixels_per_step``,
        ``substrate`` and ``output`` must be given). Explicit arguments override the preset.
    steps
        Number of steps T: :math:`k_t = \lfloor tK/T\rfloor`.
    pixels_per_step
        Pixels changed per step p: :math:`k_t = \min(tp, K)`, :math:`T = \lceil K/p\rceil`.
    substrate
        ``"zero"`` (black), ``"mean"`` (the model's normalisation mean), ``"blur"`` (RISE's
        blur, :func:`rise_blur`), a float, a tensor broadcastable to the input, or a callable
        ``images -> substrate``.
    output
        ``"softmax"``, ``"logit"`` (raw outputs) or ``"sigmoid"``, applied before the target.
    max_fraction
        Fraction of the pixels changed at the last step (:math:`K = \lfloor HW \cdot
        \text{max\_fraction}\rfloor`).
    batch_size
        Perturbed images per forward pass (default 64).

    Returns
    -------
    InsertionDeletionResult
        Scores N×(T+1), fractions, AUC per image and the settings.
    """
    return _curve(
        "deletion",
        model,
        input,
        target,
        saliency,
        protocol,
        steps,
        pixels_per_step,
        substrate,
        output,
        max_fraction,
        batch_size,
    )


def insertion_curve(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    saliency: torch.Tensor,
    *,
    protocol: Protocol | None = "rise",
    steps: int | None = None,
    pixels_per_step: int | None = None,
    substrate: Substrate | None = None,
    output: Output | None = None,
    max_fraction: float | None = None,
    batch_size: int | None = None,
) -> InsertionDeletionResult:
    r"""The insertion curve: start from the substrate and insert the most salient pixels.

    :math:`I_t = \Phi_c(\tilde x \odot (1 - M_t) + x \odot M_t)`; higher AUC is better. The
    arguments are those of :func:`deletion_curve` (the ``"rise"`` preset's insertion substrate
    is ``"blur"``).
    """
    return _curve(
        "insertion",
        model,
        input,
        target,
        saliency,
        protocol,
        steps,
        pixels_per_step,
        substrate,
        output,
        max_fraction,
        batch_size,
    )
