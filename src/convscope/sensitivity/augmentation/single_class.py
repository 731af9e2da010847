r"""Single-class sensitivity: sensitive classes, prediction bias and its null threshold.

Kharyuk, Matveev & Oseledets read the sensitivity map of the *classifying* layer (one value
per class neuron) for an augmentation variable :math:`s` and call its top-:math:`n` classes
the classes sensitive to :math:`s` (:func:`top_sensitive_classes`). To check that these
classes are not an artefact, activations of the convolutional checkpoints are damaged with
the masks of the same variable while the input is augmented by :math:`s`; if the
predictions drift towards the sensitive set :math:`S`, the top-:math:`n` predicted set
:math:`P` of each sample overlaps :math:`S` more than chance. The overlap is the Jaccard
index :math:`J = |S \cap P| / |S \cup P|`, averaged over the inner parameter draws of each
sample and then over samples (:func:`mean_jaccard`).

**Null model** (:func:`jaccard_null`). If :math:`S` and :math:`P` were independent uniformly
random :math:`n`-subsets of :math:`N` classes, the overlap :math:`k = |S \cap P|` is
hypergeometric,

.. math::

    p(k) = \binom{n}{k}\binom{N - n}{n - k}\Big/\binom{N}{n}, \qquad
    J = \frac{k}{2n - k}, \quad k = 0, \dots, n,

and the mean Jaccard over :math:`M = sN` samples (:math:`s` samples per class) has the law of
:math:`\frac1M\sum_{i=1}^M J_i` with i.i.d. :math:`J_i`. A mean Jaccard above the upper
inter-quartile fence :math:`\tau = q_3 + 1.5\,(q_3 - q_1)` of that law is an outlier, i.e.
a prediction bias towards the sensitive classes. With :math:`N = 1000, s = 50, n = 5` (ILSVRC)
:math:`\tau \approx 0.0030`; with :math:`N = 365, s = 100` (Places365) :math:`\tau \approx
0.0081`.

The law of the mean is computed three ways:

* ``"analytic"`` (exact): the values :math:`J` are rationals, so :math:`\sum_i J_i` lives on
  the lattice :math:`\frac1D\mathbb Z` with :math:`D` the common denominator (252 for
  :math:`n = 5`). Its pmf is the :math:`M`-fold convolution of the one-sample pmf, computed
  as the inverse FFT of the characteristic function raised to the power :math:`M` on a
  lattice long enough that the wrapped-around tail has mass below :math:`10^{-20}`
  (Bernstein's inequality). Quantiles are the exact atoms :math:`\min\{x : F(x) \ge q\}`;
  rounding errors of the FFT are ~1e-11 in :math:`F`.
* ``"normal"``: central limit approximation :math:`\mathcal N(\mathbb E J, \operatorname{Var} J
  / M)` (off by about one lattice step of the skewed law).
* ``"monte_carlo"``: the authors' procedure with ``trials`` simulated means; each trial draws
  the counts of :math:`k = 0..n` among the :math:`M` samples from the multinomial law (same
  distribution as drawing every :math:`k_i`, :math:`n + 1` numbers per trial), quantiles with
  linear interpolation.

Reference: K. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity
of convolutional neural networks in the context of simultaneous image augmentations"
(2025), Section 3.4, Tables 2-5 and Appendix D.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from scipy import stats

from convscope.core.errors import InputError
from convscope.core.results import Result

__all__ = [
    "JaccardNull",
    "TopClasses",
    "jaccard_indices",
    "jaccard_null",
    "mean_jaccard",
    "top_sensitive_classes",
]

ArrayLike: TypeAlias = torch.Tensor | np.ndarray[Any, Any]
NullMethod: TypeAlias = Literal["analytic", "normal", "monte_carlo"]

_MAX_LATTICE = 2**26
_ALIAS_LOG_MASS = 46.0  # Bernstein exponent: wrapped-around tail mass below e^-46 ≈ 1e-20


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _value_label(value: float) -> str:
    # The paper's style: ".06", "-.02", "1.00".
    text = f"{value:.2f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


# --------------------------------------------------------------------------- sensitive classes


@dataclass
class TopClasses(Result):
    """The most sensitive classes of the classifying layer, per SA variable.

    Attributes
    ----------
    indices
        ``(V, k)`` int64 class indices, most sensitive first.
    values
        ``(V, k)`` their sensitivity values (descending).
    names
        Variable names.
    class_names
        Names of all classes, or None.
    """

    indices: torch.Tensor
    values: torch.Tensor
    names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def sets(self) -> list[set[int]]:
        """The sensitive set of every variable."""
        return [{int(i) for i in row} for row in self.indices]

    def labels(self) -> list[list[str]]:
        """Cells in the paper's table format ``"class name (index/.06)"`` (Tables 2-4)."""
        out = []
        for idx_row, val_row in zip(self.indices.tolist(), self.values.tolist(), strict=True):
            cells = []
            for i, v in zip(idx_row, val_row, strict=True):
                prefix = f"{self.class_names[i]} " if self.class_names is not None else ""
                cells.append(f"{prefix}({i}/{_value_label(v)})")
            out.append(cells)
        return out


def top_sensitive_classes(
    final_layer_maps: ArrayLike,
    k: int = 5,
    *,
    names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> TopClasses:
    """Top-``k`` classes of the classifying layer's sensitivity map, per SA variable.

    Parameters
    ----------
    final_layer_maps
        ``(V, n_classes)`` sensitivity of each class output to each variable (the paper uses
        first-order Sobol' indices and Shapley values of the softmax outputs); ``(n_classes,)``
        is one variable.
    k
        Size of the sensitive set (the paper's rule of thumb: 5).
    names, class_names
        Variable and class names (optional).

    Returns
    -------
    TopClasses
        Classes sorted by descending sensitivity; ties keep the lower class index first and
        NaN values come last.

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 3.4 and Tables 2-4.
    """
    maps = torch.as_tensor(final_layer_maps)
    if maps.ndim == 1:
        maps = maps[None]
    if maps.ndim != 2 or not maps.is_floating_point():
        raise InputError(
            "final_layer_maps must be a float (V, n_classes) array, got "
            f"{tuple(maps.shape)} {maps.dtype}."
        )
    v, n_classes = maps.shape
    k = _check_int(k, "k", 1)
    if k > n_classes:
        raise InputError(f"k={k} exceeds the number of classes ({n_classes}).")
    if names is not None and len(names) != v:
        raise InputError(f"Got {len(names)} names for {v} variables; pass one per variable.")
    if class_names is not None and len(class_names) != n_classes:
        raise InputError(
            f"Got {len(class_names)} class names for {n_classes} classes; pass one per class."
        )
    maps = maps.detach().cpu().double()
    keyed = torch.where(torch.isnan(maps), torch.tensor(-math.inf, dtype=maps.dtype), maps)
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices[:, :k]
    return TopClasses(
        indices=order.long(),
        values=torch.gather(maps, 1, order),
        names=tuple(names) if names is not None else tuple(f"x{j + 1}" for j in range(v)),
        class_names=tuple(class_names) if class_names is not None else None,
        settings={"k": k},
    )


# --------------------------------------------------------------------------- Jaccard


def _sensitive_set(sensitive: Iterable[int] | ArrayLike) -> torch.Tensor:
    if isinstance(sensitive, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(sensitive)
        if t.is_floating_point() or t.dtype == torch.bool or t.ndim != 1:
            raise InputError("sensitive must be a 1-D set of integer class indices.")
        values = t.tolist()
    else:
        values = list(sensitive)
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in values):
            raise InputError("sensitive must hold integer class indices.")
    unique = sorted({int(i) for i in values})
    if not unique:
        raise InputError("sensitive is empty; pass the sensitive class indices.")
    return torch.tensor(unique, dtype=torch.long)


def jaccard_indices(predicted: ArrayLike, sensitive: Iterable[int] | ArrayLike) -> torch.Tensor:
    r"""Jaccard index :math:`|S \cap P| / |S \cup P|` of every predicted top-k set.

    Parameters
    ----------
    predicted
        ``(..., k)`` integer class indices, one predicted set per row (e.g. ``(N, n_inner,
        k)`` top-k predictions); the entries of a row must be distinct.
    sensitive
        The sensitive set :math:`S` (class indices).

    Returns
    -------
    torch.Tensor
        ``predicted.shape[:-1]`` float64 Jaccard indices.
    """
    pred = torch.as_tensor(predicted)
    if pred.is_floating_point() or pred.dtype == torch.bool or pred.ndim < 1:
        raise InputError(
            f"predicted must hold integer class indices shaped (..., k), got {pred.dtype} "
            f"{tuple(pred.shape)}."
        )
    if pred.shape[-1] == 0:
        raise InputError("predicted has empty sets (last axis of size 0).")
    pred = pred.long()
    srt = torch.sort(pred, dim=-1).values
    if bool((srt[..., 1:] == srt[..., :-1]).any()):
        raise InputError(
            "predicted has a row with a repeated class; each row must be a set of distinct "
            "top-k classes (e.g. logits.topk(k).indices)."
        )
    s = _sensitive_set(sensitive).to(pred.device)
    inter = torch.isin(pred, s).sum(-1).double()
    union = pred.shape[-1] + s.numel() - inter
    return (inter / union).cpu()


def mean_jaccard(predicted: ArrayLike, sensitive: Iterable[int] | ArrayLike) -> float:
    r"""Mean Jaccard index: averaged over the inner draws of each sample, then over samples.

    .. math::

        \bar J = \frac1N \sum_{i=1}^N \frac1m \sum_{j=1}^m
        \frac{|S \cap P_{ij}|}{|S \cup P_{ij}|}.

    Parameters
    ----------
    predicted
        ``(N, m, k)`` top-k predictions for N samples and m inner parameter draws, or
        ``(N, k)`` with one draw.
    sensitive
        The sensitive set :math:`S`.

    Returns
    -------
    float

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 3.4 and Table 5.
    """
    pred = torch.as_tensor(predicted)
    if pred.ndim not in (2, 3):
        raise InputError(
            f"predicted must be (N, n_inner, k) or (N, k), got shape {tuple(pred.shape)}."
        )
    if pred.shape[0] == 0:
        raise InputError("predicted has no samples.")
    j = jaccard_indices(pred, sensitive)
    return float(j.mean(-1).mean()) if j.ndim == 2 else float(j.mean())


# --------------------------------------------------------------------------- null threshold


@dataclass
class JaccardNull(Result):
    r"""Null law of the mean Jaccard index of independent uniformly random top-n sets.

    Attributes
    ----------
    q1, q3
        Quartiles of the mean Jaccard over ``n_samples`` samples.
    tau
        Outlier threshold :math:`q_3 + 1.5 (q_3 - q_1)`; a mean Jaccard ``> tau`` is flagged.
    mean, sd
        Mean and standard deviation of one sample's Jaccard index.
    sd_mean
        Standard deviation of the mean over ``n_samples`` samples (:math:`\sigma/\sqrt M`).
    overlap_pmf
        ``(n + 1,)`` hypergeometric pmf of the overlap :math:`k`.
    n_classes, samples_per_class, n, n_samples
        :math:`N`, :math:`s`, :math:`n` and :math:`M = sN`.
    method
        ``"analytic"``, ``"normal"`` or ``"monte_carlo"``.
    settings
        ``trials`` and ``seed`` (Monte Carlo), lattice size (analytic).
    """

    q1: float
    q3: float
    tau: float
    mean: float
    sd: float
    sd_mean: float
    overlap_pmf: torch.Tensor
    n_classes: int
    samples_per_class: int
    n: int
    n_samples: int
    method: str
    settings: dict[str, Any] = field(default_factory=dict)

    def threshold(self, significant_digits: int | None = None) -> float:
        """``tau``, optionally rounded to ``significant_digits`` (the paper reports 2)."""
        if significant_digits is None:
            return self.tau
        significant_digits = _check_int(significant_digits, "significant_digits", 1)
        return float(f"{self.tau:.{significant_digits}g}")

    def is_outlier(
        self, values: ArrayLike | Sequence[float] | float, significant_digits: int | None = None
    ) -> torch.Tensor:
        """``values > tau`` (strict, as the paper's outlier counts).

        The paper compares printed 4-decimal values with tau rounded to two significant
        digits (0.0030 ILSVRC, 0.0081 Places365): pass ``significant_digits=2`` to reproduce
        its counts (Appendix Table 4); the exact tau is 0.00300 and 0.00806.
        """
        tau = self.threshold(significant_digits)
        return torch.as_tensor(values, dtype=torch.float64) > tau


def _overlap_law(
    n_classes: int, n: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[Fraction]]:
    k = np.arange(n + 1)
    pmf = stats.hypergeom(n_classes, n, n).pmf(k)
    fractions = [Fraction(int(i), 2 * n - int(i)) for i in k]
    return pmf, k / (2 * n - k), fractions


def _lattice(fractions: list[Fraction]) -> tuple[int, list[int]]:
    """Smallest D such that every J·D is an integer, and those integers."""
    den = math.lcm(*(f.denominator for f in fractions))
    nums = [int(f * den) for f in fractions]
    g = math.gcd(*nums) or 1
    # J values share the factor g: coarsen the lattice to D/g.
    return den // g, [x // g for x in nums]


def _analytic_quartiles(
    pmf: np.ndarray[Any, Any], fractions: list[Fraction], m: int
) -> tuple[float, float, int]:
    den, nums = _lattice(fractions)
    b = max(nums)
    mean = float(np.dot(pmf, nums))
    var = max(float(np.dot(pmf, np.square(nums))) - mean**2, 0.0)
    # Bernstein: P(S - E S >= t) <= exp(-t^2 / (2 (M var + b t / 3))) <= e^-46 for this t.
    c = 2 * _ALIAS_LOG_MASS * b / 3
    t = (c + math.sqrt(c * c + 8 * _ALIAS_LOG_MASS * m * var)) / 2
    top = min(m * b, math.ceil(m * mean + t)) + 1
    size = 1 << max(int(top - 1).bit_length(), 4)
    if size > _MAX_LATTICE:
        raise InputError(
            f"The exact null needs a lattice of {size} points (Jaccard values with common "
            f"denominator {den}); use method='normal' or method='monte_carlo'."
        )
    one = np.zeros(size)
    np.add.at(one, nums, pmf)
    law = np.fft.irfft(np.fft.rfft(one) ** m, n=size)
    cdf = np.cumsum(law)
    q1 = int(np.searchsorted(cdf, 0.25)) / (den * m)
    q3 = int(np.searchsorted(cdf, 0.75)) / (den * m)
    return q1, q3, size


def jaccard_null(
    n_classes: int,
    samples_per_class: int,
    n: int = 5,
    *,
    method: NullMethod = "analytic",
    trials: int = 10**6,
    seed: int = 0,
    chunk: int = 10**6,
) -> JaccardNull:
    r"""Quartiles and outlier threshold of the mean Jaccard index under the random-set null.

    Parameters
    ----------
    n_classes
        :math:`N`, number of classes.
    samples_per_class
        :math:`s`; the mean is over :math:`M = sN` samples (the paper ignores the inner
        draws here).
    n
        Size of the sensitive and predicted sets (top-n).
    method
        ``"analytic"`` (exact lattice law, default), ``"normal"`` (CLT) or ``"monte_carlo"``
        (the paper used :math:`10^7` trials); see the module docstring.
    trials, seed, chunk
        Monte Carlo trials, seed and trials drawn at once.

    Returns
    -------
    JaccardNull
        ``tau = q3 + 1.5 (q3 - q1)``.

    Examples
    --------
    >>> round(jaccard_null(1000, 50).tau, 4)
    0.003

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Appendix D, Eq. (12).
    """
    n_classes = _check_int(n_classes, "n_classes", 2)
    samples_per_class = _check_int(samples_per_class, "samples_per_class", 1)
    n = _check_int(n, "n", 1)
    if n > n_classes:
        raise InputError(f"n={n} exceeds the number of classes N={n_classes}.")
    m = samples_per_class * n_classes
    pmf, values, fractions = _overlap_law(n_classes, n)
    mean = float(np.dot(pmf, values))
    sd = math.sqrt(max(float(np.dot(pmf, values**2)) - mean**2, 0.0))
    sd_mean = sd / math.sqrt(m)
    settings: dict[str, Any] = {}
    if method == "analytic":
        q1, q3, size = _analytic_quartiles(pmf, fractions, m)
        settings["lattice_size"] = size
    elif method == "normal":
        z = float(stats.norm.ppf(0.75))
        q1, q3 = mean - z * sd_mean, mean + z * sd_mean
    elif method == "monte_carlo":
        trials = _check_int(trials, "trials", 1)
        chunk = _check_int(chunk, "chunk", 1)
        rng = np.random.default_rng(seed)
        p = pmf / pmf.sum()
        means = np.empty(trials)
        for start in range(0, trials, chunk):
            stop = min(start + chunk, trials)
            counts = rng.multinomial(m, p, size=stop - start)
            means[start:stop] = counts @ values / m
        q1, q3 = (float(q) for q in np.quantile(means, [0.25, 0.75]))
        settings.update(trials=trials, seed=seed)
    else:
        raise InputError(f"Unknown method {method!r}; use 'analytic', 'normal' or 'monte_carlo'.")
    return JaccardNull(
        q1=float(q1),
        q3=float(q3),
        tau=float(q3 + 1.5 * (q3 - q1)),
        mean=mean,
        sd=sd,
        sd_mean=sd_mean,
        overlap_pmf=torch.from_numpy(pmf),
        n_classes=n_classes,
        samples_per_class=samples_per_class,
        n=n,
        n_samples=m,
        method=method,
        settings=settings,
    )
