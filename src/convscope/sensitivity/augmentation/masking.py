r"""Guided masking: damage activations with sensitivity maps and watch the predictions.

Kharyuk et al. validate the specificity of their sensitivity maps by *editing* the network
during inference. For an SA variable :math:`s` and a checkpoint with activation :math:`a`
(shape :math:`C\times H\times W`, one value per scalar activation) and sensitivity map
:math:`M_s \in [0, 1]` of the same shape, the checkpoint output is replaced by

* **raw**: :math:`a' = a \odot M_s` — keep what is sensitive to :math:`s`;
* **inverted**: :math:`a' = a \odot (1 - M_s)` — remove what is sensitive to :math:`s`;
* **thresholded** :math:`\mathrm{thr}_{\alpha,q}`: with :math:`v_q` the :math:`q`-quantile
  of the :math:`C H W` values of :math:`M_s` (linear interpolation, as ``numpy.quantile``),

  .. math::

      a'_u = \begin{cases} a_u & M_{s,u} < v_q \\ \alpha\, a_u & M_{s,u} \ge v_q \end{cases}

  so the top :math:`(1 - q)` fraction of activations by sensitivity is zeroed
  (:math:`\alpha = 0`), damped (:math:`\alpha = 0.5`) or amplified (:math:`\alpha = 1.5`).
  The *activation* is scaled; the *sensitivity* decides membership (the authors'
  code; the paper's Sec. 2.5.2 is ambiguous).

The masks are broadcast over the batch, and all masked checkpoints are edited at once in one
forward pass (the reference code's behaviour; per-checkpoint masking is unspecified in the
paper). Every mask is a multiplicative factor :math:`W` (:math:`M`, :math:`1 - M` or
:math:`\mathbb 1[M < v_q] + \alpha\,\mathbb 1[M \ge v_q]`), computed once per map and
configuration, so a forward pass only adds one product per checkpoint.

**The masked-prediction experiment** (:func:`masked_predictions`): for every input set (the
clean images and each single augmentation), every SA variable :math:`j` whose maps serve as
masks and every one of the 17 configurations (:data:`MASK_CONFIGS`: raw, inverted, then
:math:`\alpha \in \{0, 0.5, 1.5\}` × :math:`q \in \{0.5, \dots, 0.9\}`, :math:`\alpha` outer),
the top-k predicted classes are stored, with the top-1 accuracy
:math:`F[i, j, k]` when labels are given.

**Fig. 4** (:func:`masking_spearman_matrix`): for augmentation :math:`i` and mask variable
:math:`j`,

.. math::

    \rho_{ij} = \operatorname{Spearman}_k\bigl(F[i, j, k],\; F[\text{original}, j, k]\bigr),

the rank correlation over the configurations. A map that captures the sensitivity to
augmentation :math:`i` should make the augmented input deviate most from the clean one under
the matching mask: a lower :math:`\rho` on the diagonal. **HCA** (Appendix C):
:func:`masking_pair_distances` clusters the (augmentation, mask variable) pairs by
:math:`\tau(\rho) = \sqrt{1 - |\rho|}` between their feature vectors, with average linkage
(:func:`masking_linkage`).

Reference: Y. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity of
convolutional neural networks in the context of simultaneous image augmentations" (masked
activation analysis, Fig. 4 and Appendix C).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from convscope.core.batching import batch_slices, check_batch_size
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.hooks import edit_activations
from convscope.core.layers import resolve_layer
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.state import inference_state
from convscope.core.targets import TargetLike, check_target_count
from convscope.core.validation import check_images

__all__ = [
    "ALPHAS",
    "MASK_CONFIGS",
    "QUANTILES",
    "MaskConfig",
    "MaskedPredictionResult",
    "activation_masking",
    "mask_activations",
    "mask_configs",
    "mask_factor",
    "masked_predictions",
    "masking_clusters",
    "masking_linkage",
    "masking_pair_distances",
    "masking_spearman_matrix",
    "spearman_rows",
]

MaskKind = Literal["raw", "inverted", "threshold"]

#: Scaling factors of the thresholded masks: zero, damp, amplify.
ALPHAS: tuple[float, ...] = (0.0, 0.5, 1.5)
#: Quantile levels of the thresholded masks (the top ``1 - q`` fraction is scaled).
QUANTILES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)

_KINDS = ("raw", "inverted", "threshold")
_THR_LABEL = re.compile(r"^thr\(a=([^,]+),q=([^)]+)\)$")


@dataclass(frozen=True)
class MaskConfig:
    """One mask configuration.

    Attributes
    ----------
    kind : {"raw", "inverted", "threshold"}
        ``a·M``, ``a·(1 − M)`` or the thresholded gain :math:`\\mathrm{thr}_{\\alpha,q}`.
    alpha : float, optional
        Factor applied to the top ``1 − q`` fraction (threshold only).
    q : float, optional
        Quantile level in [0, 1] (threshold only).
    """

    kind: MaskKind
    alpha: float | None = None
    q: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"MaskConfig kind must be one of {_KINDS}, got {self.kind!r}.")
        if self.kind == "threshold":
            if self.alpha is None or self.q is None:
                raise InputError(
                    "A threshold MaskConfig needs alpha and q, e.g. "
                    "MaskConfig('threshold', alpha=0.5, q=0.7)."
                )
            if not math.isfinite(float(self.alpha)):
                raise InputError(f"MaskConfig alpha must be finite, got {self.alpha!r}.")
            if not 0.0 <= float(self.q) <= 1.0:
                raise InputError(f"MaskConfig q must lie in [0, 1], got {self.q!r}.")
            object.__setattr__(self, "alpha", float(self.alpha))
            object.__setattr__(self, "q", float(self.q))
        elif self.alpha is not None or self.q is not None:
            raise InputError(
                f"A {self.kind!r} MaskConfig takes no alpha or q; use kind='threshold' for a "
                "thresholded mask."
            )

    @property
    def label(self) -> str:
        """Short name: ``"raw"``, ``"inverted"`` or ``"thr(a=0.5,q=0.7)"``."""
        if self.kind != "threshold":
            return self.kind
        return f"thr(a={self.alpha:g},q={self.q:g})"

    @classmethod
    def from_label(cls, label: str) -> MaskConfig:
        """Inverse of :attr:`label`."""
        if label in ("raw", "inverted"):
            return cls(label)  # type: ignore[arg-type]
        match = _THR_LABEL.match(label)
        if match is None:
            raise InputError(
                f"{label!r} is not a mask configuration label; expected 'raw', 'inverted' or "
                "'thr(a=<alpha>,q=<q>)'."
            )
        return cls("threshold", alpha=float(match.group(1)), q=float(match.group(2)))


def mask_configs(
    alphas: Sequence[float] = ALPHAS, qs: Sequence[float] = QUANTILES, *, full: bool = True
) -> tuple[MaskConfig, ...]:
    """Mask configurations in the reference code's order.

    Raw and inverted first (with ``full=True``), then one threshold configuration per
    ``(alpha, q)`` with ``alpha`` in the outer loop and ``q`` in the inner one.
    """
    head = (MaskConfig("raw"), MaskConfig("inverted")) if full else ()
    return head + tuple(MaskConfig("threshold", alpha=a, q=q) for a in alphas for q in qs)


#: The paper's 17 configurations: raw, inverted, then α ∈ (0, 0.5, 1.5) × q ∈ (0.5, ..., 0.9).
MASK_CONFIGS: tuple[MaskConfig, ...] = mask_configs()


# --------------------------------------------------------------------------- mask factors


def _check_map(sensitivity: Any, what: str, clip: bool) -> torch.Tensor:
    if not isinstance(sensitivity, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor, got {type(sensitivity).__name__}.")
    if sensitivity.numel() == 0 or not sensitivity.is_floating_point():
        raise InputError(
            f"{what} must be a non-empty floating tensor, got shape "
            f"{tuple(sensitivity.shape)} and dtype {sensitivity.dtype}."
        )
    if not bool(torch.isfinite(sensitivity).all()):
        raise InputError(
            f"{what} has NaN or inf values; replace them (e.g. torch.nan_to_num(map)) before "
            "masking."
        )
    if clip:
        return sensitivity.clamp(0.0, 1.0)
    lo, hi = float(sensitivity.min()), float(sensitivity.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"{what} has values in [{lo:.4g}, {hi:.4g}]; masks must lie in [0, 1]. Clip Sobol' "
            "indices / normalise Shapley effects first, or pass clip=True."
        )
    return sensitivity


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``numpy.quantile(values, q)`` (linear), via ``kthvalue``: no size limit, no host sync."""
    flat = values.reshape(-1)
    pos = q * (flat.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, flat.numel() - 1)
    v_lo = flat.kthvalue(lo + 1).values
    v_hi = flat.kthvalue(hi + 1).values if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


def _factor(sensitivity: torch.Tensor, config: MaskConfig) -> torch.Tensor:
    if config.kind == "raw":
        return sensitivity.clone()
    if config.kind == "inverted":
        return 1.0 - sensitivity
    assert config.alpha is not None and config.q is not None
    # Compare in float64 so the set of scaled units matches the exact quantile.
    exact = torch.float64 if sensitivity.device.type != "mps" else sensitivity.dtype
    m = sensitivity.to(exact)
    keep = m < _quantile(m, config.q)
    return torch.where(
        keep,
        torch.ones((), dtype=sensitivity.dtype, device=sensitivity.device),
        torch.full((), config.alpha, dtype=sensitivity.dtype, device=sensitivity.device),
    )


def mask_factor(
    sensitivity: torch.Tensor, config: MaskConfig, *, clip: bool = False
) -> torch.Tensor:
    r"""The multiplicative mask :math:`W` with :math:`a' = a \odot W`.

    Parameters
    ----------
    sensitivity : Tensor
        Sensitivity map :math:`M` of one checkpoint and one SA variable, shaped like one
        sample's activation (``C×H×W``), values in [0, 1].
    config : MaskConfig
        ``raw``: :math:`W = M`; ``inverted``: :math:`W = 1 - M`; ``threshold``:
        :math:`W = 1` where :math:`M < v_q` and :math:`\alpha` elsewhere, :math:`v_q` the
        linear-interpolation :math:`q`-quantile of all values of :math:`M`.
    clip : bool, default False
        Clip :math:`M` to [0, 1] first (otherwise values outside [0, 1] are an error).

    Returns
    -------
    Tensor
        :math:`W`, same shape, dtype and device as ``sensitivity``.
    """
    if not isinstance(config, MaskConfig):
        raise InputError(f"config must be a MaskConfig, got {type(config).__name__}.")
    return _factor(_check_map(sensitivity, "sensitivity", clip), config)


def _check_shapes(name: str, activation: torch.Tensor, factor: torch.Tensor) -> None:
    if tuple(activation.shape[1:]) != tuple(factor.shape):
        raise InputError(
            f"The sensitivity map of {name!r} has shape {tuple(factor.shape)}, but the "
            f"activation is {tuple(activation.shape)} (N × map shape expected). Pass the map "
            "computed for this checkpoint at this input size."
        )


def mask_activations(
    activation: torch.Tensor,
    sensitivity: torch.Tensor,
    config: MaskConfig,
    *,
    clip: bool = False,
) -> torch.Tensor:
    r"""Apply one mask to a batch of activations: :math:`a' = a \odot W` (see :func:`mask_factor`).

    Parameters
    ----------
    activation : Tensor
        ``N×C×H×W`` activations (any ``N×shape``).
    sensitivity : Tensor
        ``C×H×W`` sensitivity map (the ``shape``), broadcast over the batch.
    config : MaskConfig
        Raw, inverted or thresholded mask.
    clip : bool, default False
        Clip the map to [0, 1] first.

    Returns
    -------
    Tensor
        The edited activations, same shape as ``activation``.
    """
    factor = mask_factor(sensitivity, config, clip=clip).to(
        device=activation.device, dtype=activation.dtype
    )
    _check_shapes("activation", activation, factor)
    return activation * factor


def _multiply(name: str, factor: torch.Tensor) -> Any:
    def edit(activation: torch.Tensor) -> torch.Tensor:
        _check_shapes(name, activation, factor)
        return activation * factor

    return edit


@contextmanager
def _masking(model: nn.Module, factors: Mapping[str, torch.Tensor]) -> Iterator[None]:
    with edit_activations(model, {name: _multiply(name, f) for name, f in factors.items()}):
        yield


@contextmanager
def activation_masking(
    model: nn.Module,
    maps: Mapping[str, torch.Tensor],
    config: MaskConfig,
    *,
    clip: bool = False,
) -> Iterator[None]:
    """Mask every checkpoint in ``maps`` at once in the forward passes run inside the block.

    Parameters
    ----------
    model : nn.Module
        The network; the hooks are removed on exit (also after an exception).
    maps : dict of str to Tensor
        ``{checkpoint name: sensitivity map}``, each map shaped like one sample's activation of
        that checkpoint (``C×H×W``) with values in [0, 1].
    config : MaskConfig
        The mask applied at every checkpoint (see :func:`mask_factor`).
    clip : bool, default False
        Clip the maps to [0, 1] first.

    Examples
    --------
    >>> with activation_masking(model, {"features.relu2": m2, "features.relu3": m3},
    ...                         MaskConfig("threshold", alpha=0.0, q=0.9)):
    ...     logits = model(images)
    """
    if not isinstance(maps, Mapping) or not maps:
        raise InputError("maps must be a non-empty dict {checkpoint name: sensitivity map}.")
    if not isinstance(config, MaskConfig):
        raise InputError(f"config must be a MaskConfig, got {type(config).__name__}.")
    device, dtype = model_device(model), model_dtype(model)
    factors = {
        name: _factor(_check_map(m, f"maps[{name!r}]", clip).to(device), config).to(dtype=dtype)
        for name, m in maps.items()
    }
    with _masking(model, factors):
        yield


# --------------------------------------------------------------------------- experiment


@dataclass
class MaskedPredictionResult(Result):
    """Top-k predictions under guided masking (see :func:`masked_predictions`).

    Attributes
    ----------
    topk : Tensor
        ``(I, V, K, N, k)`` int64 predicted classes, best first, for input set ``i``, mask
        variable ``j`` and configuration ``k``.
    accuracy : Tensor or None
        ``(I, V, K)`` top-1 accuracy (None without labels).
    unmasked_topk : Tensor
        ``(I, N, k)`` predictions of the intact network.
    unmasked_accuracy : Tensor or None
        ``(I,)`` top-1 accuracy of the intact network.
    labels : Tensor or None
        ``(N,)`` true classes.
    input_names, variables, configs, checkpoints : tuple of str
        Names of the input sets, of the mask variables, the configuration labels
        (:attr:`MaskConfig.label`) and the masked checkpoints.
    settings : dict
        ``top_k``, ``clip``.
    """

    topk: torch.Tensor
    accuracy: torch.Tensor | None
    unmasked_topk: torch.Tensor
    unmasked_accuracy: torch.Tensor | None
    labels: torch.Tensor | None
    input_names: tuple[str, ...]
    variables: tuple[str, ...]
    configs: tuple[str, ...]
    checkpoints: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mask_configs(self) -> tuple[MaskConfig, ...]:
        """The configurations as :class:`MaskConfig` objects."""
        return tuple(MaskConfig.from_label(label) for label in self.configs)

    def input_index(self, name: str | None = None) -> int:
        """Index of input set ``name``; None means ``"original"`` if present, else 0."""
        if name is None:
            return self.input_names.index("original") if "original" in self.input_names else 0
        if name not in self.input_names:
            raise InputError(f"No input set {name!r}; the input sets are {self.input_names}.")
        return self.input_names.index(name)


def _check_inputs(inputs: Any) -> dict[str, torch.Tensor]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError(
            "inputs must be a non-empty dict {name: N×3×H×W images}, e.g. "
            "{'original': x, 'grayscale': grayscale(x)}."
        )
    checked = {str(k): check_images(v, name=f"inputs[{k!r}]") for k, v in inputs.items()}
    sizes = {k: v.shape[0] for k, v in checked.items()}
    if len(set(sizes.values())) != 1:
        raise InputError(
            f"Every input set must hold the same N images (one per label), got {sizes}. Repeat "
            "the clean images to match several augmentation draws per image."
        )
    return checked


def _check_maps(
    maps: Any, variables: Sequence[str], clip: bool
) -> tuple[list[str], dict[str, torch.Tensor]]:
    if isinstance(variables, str) or not isinstance(variables, Sequence) or not variables:
        raise InputError("variables must be a non-empty sequence of SA variable names.")
    names = [str(v) for v in variables]
    if len(set(names)) != len(names):
        raise InputError(f"variables must be distinct, got {names}.")
    if not isinstance(maps, Mapping) or not maps:
        raise InputError(
            "maps must be a non-empty dict {checkpoint name: (V, C, H, W) sensitivity maps}."
        )
    checked: dict[str, torch.Tensor] = {}
    for name, m in maps.items():
        if not isinstance(m, torch.Tensor) or m.ndim < 2 or m.shape[0] != len(names):
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise InputError(
                f"maps[{name!r}] must be a (V, *activation shape) tensor with V = "
                f"{len(names)} (one map per variable {names}), got {shape}."
            )
        checked[str(name)] = _check_map(m, f"maps[{name!r}]", clip)
    return names, checked


def _topk(outputs: Any, k: int) -> torch.Tensor:
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
        raise InputError(f"The model must return N×classes scores, got {shape}.")
    if k > outputs.shape[1]:
        raise InputError(f"top_k = {k} exceeds the {outputs.shape[1]} classes; lower top_k.")
    return outputs.topk(k, dim=1).indices


def masked_predictions(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    maps: Mapping[str, torch.Tensor],
    variables: Sequence[str],
    *,
    labels: TargetLike | None = None,
    configs: Sequence[MaskConfig] = MASK_CONFIGS,
    top_k: int = 5,
    batch_size: int | None = 64,
    clip: bool = False,
    progress: bool | None = None,
) -> MaskedPredictionResult:
    r"""Predictions of ``model`` with its checkpoints masked by each variable's maps.

    For every input set :math:`i`, mask variable :math:`j` and configuration :math:`k`, all
    checkpoints of ``maps`` are masked at once with :math:`W = W_k(M_j)` (:func:`mask_factor`)
    and the top-k classes of every image are recorded; the top-1 accuracy is

    .. math:: F[i, j, k] = \frac1N \sum_n \mathbb 1[\hat y_{ijkn} = y_n].

    Parameters
    ----------
    model : nn.Module
        The classifier (N×classes outputs); evaluated in eval mode without gradients.
    inputs : dict of str to Tensor
        ``{name: N×3×H×W images in [0, 1]}``: the clean images (conventionally
        ``"original"``) and one entry per single augmentation (all with the same N; stack
        several augmentation draws and repeat the clean images and labels to match).
    maps : dict of str to Tensor
        ``{checkpoint: (V, C, H, W) sensitivity maps}`` in [0, 1] (convolutional checkpoints
        in the paper).
    variables : sequence of str
        Names of the V SA variables (rows of every map).
    labels : int or sequence of int, optional
        True classes (N); without them ``accuracy`` is None.
    configs : sequence of MaskConfig, default MASK_CONFIGS
        The mask configurations (the paper's 17).
    top_k : int, default 5
        Classes stored per prediction.
    batch_size : int, default 64
        Images per forward pass.
    clip : bool, default False
        Clip the maps to [0, 1] first.
    progress : bool, optional
        Show a progress bar over the ``V·K + 1`` passes through the inputs.

    Returns
    -------
    MaskedPredictionResult
        On the model's device.
    """
    xs = _check_inputs(inputs)
    names, checked = _check_maps(maps, variables, clip)
    for name in checked:
        resolve_layer(model, name)  # a misspelt checkpoint fails before any forward pass
    configs = tuple(configs)
    if not configs or not all(isinstance(c, MaskConfig) for c in configs):
        raise InputError("configs must be a non-empty sequence of MaskConfig.")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a positive int, got {top_k!r}.")
    top_k = int(top_k)
    check_batch_size(batch_size)
    n = next(iter(xs.values())).shape[0]
    device, dtype = model_device(model), model_dtype(model)
    y = None if labels is None else check_target_count(labels, n).indices(n).to(device)
    slices = batch_slices(n, batch_size)
    n_inputs, n_vars, n_cfg = len(xs), len(names), len(configs)
    topk = torch.empty((n_inputs, n_vars, n_cfg, n, top_k), dtype=torch.long, device=device)
    unmasked = torch.empty((n_inputs, n, top_k), dtype=torch.long, device=device)
    maps_dev = {name: m.to(device) for name, m in checked.items()}

    def run(out: torch.Tensor) -> int:
        classes = 0
        for i, x in enumerate(xs.values()):
            for sl in slices:
                scores = model(x[sl].to(device=device, dtype=dtype))
                out[i, sl] = _topk(scores, top_k)
                classes = scores.shape[1]
        return classes

    steps = [(-1, -1)] + [(j, k) for j in range(n_vars) for k in range(n_cfg)]
    with inference_state(model), torch.no_grad():
        for j, k in progress_bar(steps, total=len(steps), desc="masking", show=progress):
            if j < 0:
                classes = run(unmasked)
                if y is not None and int(y.max()) >= classes:
                    raise InputError(
                        f"labels go up to {int(y.max())}, but the model has {classes} classes; "
                        f"labels are class indices 0..{classes - 1}."
                    )
                continue
            factors = {
                name: _factor(m[j], configs[k]).to(dtype=dtype) for name, m in maps_dev.items()
            }
            with _masking(model, factors):
                run(topk[:, j, k])
    accuracy = unmasked_acc = None
    if y is not None:
        accuracy = (topk[..., 0] == y).double().mean(-1)
        unmasked_acc = (unmasked[..., 0] == y).double().mean(-1)
    return MaskedPredictionResult(
        topk=topk,
        accuracy=accuracy,
        unmasked_topk=unmasked,
        unmasked_accuracy=unmasked_acc,
        labels=y,
        input_names=tuple(xs),
        variables=tuple(names),
        configs=tuple(c.label for c in configs),
        checkpoints=tuple(checked),
        settings={"top_k": top_k, "clip": clip},
    )


# --------------------------------------------------------------------------- analyses


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last axis (1..K), ties sharing their mean rank (``scipy.stats.rankdata``)."""
    less = (x.unsqueeze(-2) < x.unsqueeze(-1)).sum(-1)
    equal = (x.unsqueeze(-2) == x.unsqueeze(-1)).sum(-1)
    return less.double() + (equal.double() + 1.0) / 2.0


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Spearman correlation of matching rows: Pearson correlation of the average ranks.

    ``a`` and ``b`` broadcast to ``(..., K)``; the result is ``(...)`` float64, NaN where a
    row is constant (its ranks have no variance) or holds NaN.
    """
    a, b = torch.broadcast_tensors(a.double(), b.double())
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    den = torch.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    rho = (ra * rb).sum(-1) / den
    bad = (den == 0) | torch.isnan(a).any(-1) | torch.isnan(b).any(-1)
    return torch.where(bad, torch.full_like(rho, math.nan), rho)


def _accuracy(result: MaskedPredictionResult | torch.Tensor) -> torch.Tensor:
    acc = result.accuracy if isinstance(result, MaskedPredictionResult) else result
    if acc is None:
        raise InputError(
            "The result has no accuracy: run masked_predictions with labels=... to measure it."
        )
    if not isinstance(acc, torch.Tensor) or acc.ndim != 3:
        raise InputError(
            "Pass a MaskedPredictionResult or an (inputs, variables, configurations) accuracy "
            "tensor."
        )
    return acc


def _reference(result: MaskedPredictionResult | torch.Tensor, reference: str | int | None) -> int:
    acc = _accuracy(result)
    if isinstance(reference, str) or reference is None:
        if not isinstance(result, MaskedPredictionResult):
            if reference is not None:
                raise InputError("Name the reference by its index for an accuracy tensor.")
            return 0
        return result.input_index(reference)
    if not 0 <= int(reference) < acc.shape[0]:
        raise InputError(f"reference index {reference} is out of range 0..{acc.shape[0] - 1}.")
    return int(reference)


def masking_spearman_matrix(
    result: MaskedPredictionResult | torch.Tensor, *, reference: str | int | None = None
) -> torch.Tensor:
    r"""The Fig. 4 matrix :math:`\rho_{ij}` between augmented and clean inputs.

    .. math::

        \rho_{ij} = \operatorname{Spearman}_k\bigl(F[i, j, k],\, F[\text{ref}, j, k]\bigr)

    over the mask configurations :math:`k` (Kharyuk et al., Fig. 4).

    Parameters
    ----------
    result : MaskedPredictionResult or Tensor
        A result with labels, or its ``(I, V, K)`` accuracy tensor.
    reference : str or int, optional
        The clean input set: its name or index. Default ``"original"`` when present, else
        the first input set.

    Returns
    -------
    Tensor
        ``(I - 1, V)`` float64; rows are the other input sets in order, columns the mask
        variables; NaN where either accuracy vector is constant over the configurations.
    """
    acc = _accuracy(result)
    ref = _reference(result, reference)
    others = [i for i in range(acc.shape[0]) if i != ref]
    return spearman_rows(acc[others], acc[ref].unsqueeze(0))


def masking_pair_distances(
    result: MaskedPredictionResult | torch.Tensor, *, reference: str | int | None = None
) -> tuple[torch.Tensor, list[str]]:
    r"""Distances between (augmentation, mask variable) pairs, for the HCA of Appendix C.

    Each pair :math:`(i, j)` of an augmented input set and a mask variable has the feature
    vector :math:`F[i, j, :]` (accuracy over the configurations). The distance between two
    pairs is :math:`\tau(\rho) = \sqrt{1 - |\rho|}` with :math:`\rho` their Spearman
    correlation; an undefined :math:`\rho` (a constant vector) counts as 0 (distance 1).

    Returns
    -------
    distances : Tensor
        ``(P, P)`` float64, ``P = (I - 1)·V``, pairs ordered input-major, zero diagonal.
    labels : list of str
        ``"<input>--<variable>"`` per pair (``"<i>--<j>"`` for an accuracy tensor).
    """
    acc = _accuracy(result)
    ref = _reference(result, reference)
    others = [i for i in range(acc.shape[0]) if i != ref]
    feats = acc[others].reshape(-1, acc.shape[-1])
    rho = spearman_rows(feats.unsqueeze(1), feats.unsqueeze(0))
    dist = torch.sqrt((1.0 - rho.abs()).clamp_min(0.0))
    dist = torch.nan_to_num(dist, nan=1.0)
    dist.fill_diagonal_(0.0)
    if isinstance(result, MaskedPredictionResult):
        rows, cols = [result.input_names[i] for i in others], list(result.variables)
    else:
        rows, cols = [str(i) for i in others], [str(j) for j in range(acc.shape[1])]
    return dist, [f"{r}--{c}" for r in rows for c in cols]


def masking_linkage(
    distances: torch.Tensor | np.ndarray[Any, Any], *, method: str = "average"
) -> np.ndarray[Any, Any]:
    """Agglomerative clustering of a distance matrix (scipy linkage matrix, average by default).

    Parameters
    ----------
    distances : Tensor
        ``(P, P)`` symmetric distances, e.g. from :func:`masking_pair_distances`.
    method : str, default "average"
        Any ``scipy.cluster.hierarchy.linkage`` method for precomputed distances.

    Returns
    -------
    ndarray
        ``(P - 1, 4)`` linkage matrix, for ``scipy.cluster.hierarchy.dendrogram``.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    raw = (
        distances.detach().cpu().double().numpy()
        if isinstance(distances, torch.Tensor)
        else distances
    )
    d = np.array(raw, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2 or not np.isfinite(d).all():
        raise InputError(
            f"distances must be a finite square (P, P) matrix with P >= 2, got {d.shape}."
        )
    d = (d + d.T) / 2.0
    np.fill_diagonal(d, 0.0)
    return np.asarray(linkage(squareform(d, checks=False), method=method))


def masking_clusters(linkage_matrix: np.ndarray[Any, Any], max_distance: float = 0.025) -> Any:
    """Flat cluster labels (1..) cutting the tree at ``max_distance`` (the code's 0.025)."""
    from scipy.cluster.hierarchy import fcluster

    return np.asarray(fcluster(linkage_matrix, max_distance, criterion="distance"))
