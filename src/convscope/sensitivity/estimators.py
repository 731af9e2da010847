r"""Streaming pick-freeze estimators of Sobol' indices, with confidence intervals.

Theory
------
For independent inputs :math:`X = (X_1, \dots, X_k)` (each :math:`X_j` may be a group of
variables) and an output :math:`Y = f(X)` with variance :math:`V`, the Hoeffding/Sobol'
decomposition gives, for a subset :math:`u` of the inputs,

* the closed index :math:`S^{c}_u = \operatorname{Var}(E[Y \mid X_u]) / V`,
* the first-order index :math:`S_j = S^{c}_{\{j\}}`,
* the total index :math:`S^T_j = E[\operatorname{Var}(Y \mid X_{\sim j})] / V
  = 1 - S^{c}_{\sim j}`,
* the second-order index :math:`S_{jl} = S^c_{\{j,l\}} - S_j - S_l`.

Pick-freeze (Sobol' 1993; Saltelli 2002; Saltelli et al. 2010): draw two independent designs
:math:`A, B` (n rows) and form :math:`A_B^{(j)}` (A with input j taken from B) and
:math:`B_A^{(j)}` (B with input j taken from A). With :math:`f_A = f(A)`, :math:`f_B = f(B)`,
:math:`f_{AB}^{(j)} = f(A_B^{(j)})`, :math:`f_{BA}^{(j)} = f(B_A^{(j)})`: the pair
:math:`(f_B, f_{AB}^{(j)})` shares only :math:`X_j`, so its covariance estimates
:math:`\operatorname{Var}(E[Y|X_j])`; the pair :math:`(f_A, f_{AB}^{(j)})` shares all inputs
but :math:`X_j`, so half its mean squared difference estimates
:math:`E[\operatorname{Var}(Y|X_{\sim j})]`; and :math:`(f_{BA}^{(j)}, f_{AB}^{(l)})` shares
exactly :math:`\{X_j, X_l\}`.

Estimators (means over the n rows, outputs centred by :math:`\mu`, see below;
:math:`V = \operatorname{var}([f_A; f_B])`, population variance):

=================  ====================================================================
first order
``saltelli2010``   :math:`\overline{f_B (f_{AB}^{(j)} - f_A)} / V` (Saltelli et al. 2010,
                   Table 2 (b); SALib's ``S1``)
``janon``          :math:`(\overline{f_B f_{AB}^{(j)}} - m^2) /
                   (\overline{(f_B^2 + f_{AB}^{(j)2})/2} - m^2)`,
                   :math:`m = \overline{(f_B + f_{AB}^{(j)})/2}` (Janon et al. 2014)
``martinez``       :math:`\operatorname{corr}(f_B, f_{AB}^{(j)})` (Martinez 2011)
total order
``jansen``         :math:`\overline{(f_A - f_{AB}^{(j)})^2} / (2V)` (Jansen 1999; SALib's
                   ``ST``)
``homma``          :math:`1 - (\overline{f_A f_{AB}^{(j)}} - \hat f_0^2) / V`,
                   :math:`\hat f_0 = \overline{(f_A + f_B)/2}` (Homma & Saltelli 1996)
``martinez``       :math:`1 - \operatorname{corr}(f_A, f_{AB}^{(j)})` (Martinez 2011)
second order       :math:`(\overline{f_{BA}^{(j)} f_{AB}^{(l)}} - \overline{f_A f_B}) / V
                   - S_j - S_l` (Saltelli 2002; SALib's ``S2``), j < l, mirrored
=================  ====================================================================

Centring (Sobol' & Levitan 1999): the outputs are centred before the non-invariant estimators
(Saltelli 2010, Homma, second order) are applied. ``center="all"`` subtracts the mean of every
evaluation (what SALib does, which makes this module agree with
``SALib.analyze.sobol.analyze`` to rounding), ``center="ab"`` the mean of :math:`[f_A; f_B]`
(what ``scipy.stats.sobol_indices`` does), ``center="none"`` nothing.

Streaming. Every estimator above is a function of first and second moments of the outputs,
so :class:`SobolAccumulator` keeps only sums (:math:`\sum f_A`, :math:`\sum f_A f_{AB}^{(j)}`,
...) over design blocks: memory is O(outputs × k), O(outputs × k²) with second order, never
O(rows). The centring mean is subtracted at the end by exact algebra
(:math:`\sum (x-\mu)(y-\mu) = \sum xy - \mu(\sum x + \sum y) + n\mu^2`), so the result equals
the centred estimator computed on all stored outputs. To keep that algebra well conditioned,
the sums are of outputs minus a provisional per-output shift (the mean of the first block).
Accumulators can be merged (e.g. across processes) and saved as npz + json.

Outputs with zero variance (constant over :math:`[f_A; f_B]`) give index 0 and are flagged in
``zero_variance``; no estimate is ever NaN. Negative estimates (sampling error around a true
zero) are returned as they are; clip them only for display.

Confidence intervals: :func:`replicate_intervals` (Student t over independent randomised-QMC
replicates, Owen 2013) and :func:`bootstrap_intervals` (rows resampled with replacement;
percentile, normal, or BCa of Efron 1987), the latter for outputs that fit in memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from convscope.core import persist
from convscope.core.errors import InputError, ResultFormatError
from convscope.core.results import Result
from convscope.core.seeding import SeedLike, torch_generator

__all__ = [
    "FIRST_ORDER_ESTIMATORS",
    "TOTAL_ORDER_ESTIMATORS",
    "SobolAccumulator",
    "SobolIndices",
    "SobolIntervals",
    "bootstrap_intervals",
    "closed_index",
    "replicate_intervals",
]

FirstOrder = Literal["saltelli2010", "janon", "martinez"]
TotalOrder = Literal["jansen", "homma", "martinez"]
Center = Literal["all", "ab", "none"]
FIRST_ORDER_ESTIMATORS: tuple[str, ...] = ("saltelli2010", "janon", "martinez")
TOTAL_ORDER_ESTIMATORS: tuple[str, ...] = ("jansen", "homma", "martinez")
_CENTERS: tuple[str, ...] = ("all", "ab", "none")

# Sum names and the pair of outputs each one multiplies ("" = a plain sum).
_SINGLE = ("a", "b", "c", "d")
_PAIRS: dict[str, tuple[str, str]] = {
    "aa": ("a", "a"),
    "bb": ("b", "b"),
    "ab": ("a", "b"),
    "cc": ("c", "c"),
    "ac": ("a", "c"),
    "bc": ("b", "c"),
    "dc": ("d", "c"),
}
_FORMAT_VERSION = 1
#: From this many outputs on, :meth:`SobolAccumulator.update` sums row by row in place.
_ROW_LOOP_OUTPUTS = 2048


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SobolIndices(Result):
    """Sobol' indices of every output element.

    Attributes
    ----------
    first_order : torch.Tensor
        ``(k, *out)`` first-order indices :math:`S_j` (negative values kept).
    total_order : torch.Tensor
        ``(k, *out)`` total indices :math:`S^T_j`.
    second_order : torch.Tensor or None
        ``(k, k, *out)`` second-order indices :math:`S_{jl}`, symmetric, zero diagonal.
    variance : torch.Tensor
        ``(*out)`` output variance :math:`\\operatorname{var}([f_A; f_B])`.
    zero_variance : torch.Tensor
        ``(*out)`` bool: outputs constant over :math:`[f_A; f_B]` (their indices are 0).
    n : int
        Base rows (rows of A).
    n_evaluations : int
        Model evaluations: ``n (k + 2)``, or ``n (2k + 2)`` with second order.
    first_order_estimator, total_order_estimator, center : str
        The estimator names and the centring used.
    """

    first_order: torch.Tensor
    total_order: torch.Tensor
    second_order: torch.Tensor | None
    variance: torch.Tensor
    zero_variance: torch.Tensor
    n: int
    n_evaluations: int
    first_order_estimator: str = "saltelli2010"
    total_order_estimator: str = "jansen"
    center: str = "all"

    def clipped(self) -> SobolIndices:
        """A copy with every index clipped to [0, 1], for display only."""
        s2 = None if self.second_order is None else self.second_order.clamp(0.0, 1.0)
        return dataclasses.replace(
            self,
            first_order=self.first_order.clamp(0.0, 1.0),
            total_order=self.total_order.clamp(0.0, 1.0),
            second_order=s2,
        )


@dataclasses.dataclass
class SobolIntervals(Result):
    """Point estimates and confidence intervals of Sobol' indices.

    Attributes
    ----------
    first_order, total_order, second_order : torch.Tensor (or None)
        Point estimates: the full-sample estimate (bootstrap) or the replicate mean
        (replicates).
    first_order_low, first_order_high, total_order_low, total_order_high : torch.Tensor
        Interval bounds, same shapes.
    second_order_low, second_order_high : torch.Tensor or None
        Bounds of the second-order indices.
    level : float
        Confidence level.
    method : str
        ``"replicates"``, ``"bca"``, ``"normal"`` or ``"percentile"``.
    n_resamples : int
        Bootstrap resamples, or the number of replicates.
    """

    first_order: torch.Tensor
    first_order_low: torch.Tensor
    first_order_high: torch.Tensor
    total_order: torch.Tensor
    total_order_low: torch.Tensor
    total_order_high: torch.Tensor
    second_order: torch.Tensor | None
    second_order_low: torch.Tensor | None
    second_order_high: torch.Tensor | None
    level: float
    method: str
    n_resamples: int


# ---------------------------------------------------------------------------------------------
# Moment algebra shared by the accumulator and the bootstrap
# ---------------------------------------------------------------------------------------------


def _shift_sums(
    sums: dict[str, torch.Tensor], n: torch.Tensor | float, delta: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Sums of ``x - delta`` from sums of ``x``; ``delta`` broadcasts against ``(..., P)``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sums.items():
        if key in _SINGLE:
            out[key] = value - n * _expand(delta, value)
        else:
            x, y = _PAIRS[key]
            sx, sy = sums[x], sums[y]
            dlt = _expand(delta, value)
            if key == "dc":
                sx, sy = sx.unsqueeze(-2), sy.unsqueeze(-3)
            elif len(x) == 1 and x in ("a", "b") and y in ("c", "d"):
                sx = sx.unsqueeze(-2)
            out[key] = value - dlt * (sx + sy) + n * dlt * dlt
    return out


def _expand(delta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # delta is (..., P); insert the k (or k, k) axes of ``like`` before P.
    while delta.ndim < like.ndim:
        delta = delta.unsqueeze(-2)
    return delta


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _indices_from_sums(
    sums: dict[str, torch.Tensor],
    n: float,
    k: int,
    first_order: str,
    total_order: str,
    center: str,
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Estimators from (possibly batched) sums of ``output - shift``; ``(..., k, P)``."""
    second = "dc" in sums
    if center == "all":
        total = sums["a"] + sums["b"] + sums["c"].sum(-2)
        count = n * (2 + k)
        if second:
            total = total + sums["d"].sum(-2)
            count += n * k
        mu = total / count
    elif center == "ab":
        mu = (sums["a"] + sums["b"]) / (2 * n)
    else:
        mu = (-shift).expand_as(sums["a"])  # raw zero, in shifted coordinates
    s = _shift_sums(sums, n, mu)
    m = {key: value / n for key, value in s.items()}
    ma, mb, mc = m["a"], m["b"], m["c"]
    f0 = (ma + mb) / 2
    var = (m["aa"] + m["bb"]) / 2 - f0 * f0
    v = var.unsqueeze(-2)
    ma_, mb_ = ma.unsqueeze(-2), mb.unsqueeze(-2)
    var_b = (m["bb"] - mb * mb).unsqueeze(-2)
    var_a = (m["aa"] - ma * ma).unsqueeze(-2)
    var_c = m["cc"] - mc * mc
    if first_order == "saltelli2010":
        s1 = _safe_div(m["bc"] - m["ab"].unsqueeze(-2), v)
    elif first_order == "janon":
        mm = (mb_ + mc) / 2
        s1 = _safe_div(m["bc"] - mm * mm, (m["bb"].unsqueeze(-2) + m["cc"]) / 2 - mm * mm)
    else:
        s1 = _safe_div(m["bc"] - mb_ * mc, (var_b * var_c).clamp_min(0).sqrt())
    if total_order == "jansen":
        st = _safe_div(m["aa"].unsqueeze(-2) - 2 * m["ac"] + m["cc"], 2 * v)
    elif total_order == "homma":
        st = 1 - _safe_div(m["ac"] - (f0 * f0).unsqueeze(-2), v)
    else:
        st = 1 - _safe_div(m["ac"] - ma_ * mc, (var_a * var_c).clamp_min(0).sqrt())
    s2 = None
    if second:
        closed = _safe_div(m["dc"] - m["ab"].unsqueeze(-2).unsqueeze(-2), v.unsqueeze(-2))
        s2 = closed - s1.unsqueeze(-2) - s1.unsqueeze(-3)
        upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=s2.device), diagonal=1)
        upper = upper.unsqueeze(-1)
        s2 = torch.where(upper, s2, s2.transpose(-2, -3))
        eye = torch.eye(k, dtype=torch.bool, device=s2.device).unsqueeze(-1)
        s2 = s2.masked_fill(eye, 0.0)
    return s1, st, s2, var


def _check_estimators(first_order: str, total_order: str, center: str) -> None:
    for name, value, options in (
        ("first_order", first_order, FIRST_ORDER_ESTIMATORS),
        ("total_order", total_order, TOTAL_ORDER_ESTIMATORS),
        ("center", center, _CENTERS),
    ):
        if value not in options:
            raise InputError(
                f"{name}={value!r} is not a known choice. Use one of "
                + ", ".join(repr(o) for o in options)
                + "."
            )


def _check_block(
    f_a: torch.Tensor,
    f_b: torch.Tensor,
    f_ab: torch.Tensor,
    f_ba: torch.Tensor | None,
    k: int | None,
    output_shape: tuple[int, ...] | None,
    second_order: bool | None,
) -> tuple[int, int, tuple[int, ...]]:
    for name, t in (("f_a", f_a), ("f_b", f_b), ("f_ab", f_ab), ("f_ba", f_ba)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}.")
    if f_a.ndim < 1:
        raise InputError("f_a must have shape (n, *out): one row per base sample.")
    n = f_a.shape[0]
    out = tuple(f_a.shape[1:])
    if output_shape is not None and out != output_shape:
        raise InputError(
            f"f_a has output shape {out}, but this accumulator was built for {output_shape}. "
            "Pass outputs of the same shape to every update."
        )
    if f_b.shape != f_a.shape:
        raise InputError(f"f_b has shape {tuple(f_b.shape)}; it must match f_a {tuple(f_a.shape)}.")
    if f_ab.ndim != f_a.ndim + 1 or tuple(f_ab.shape[1:]) != tuple(f_a.shape):
        raise InputError(
            f"f_ab has shape {tuple(f_ab.shape)}; it must be (k, n, *out) = "
            f"(k, {', '.join(str(s) for s in f_a.shape)}): f_ab[j] = f(A with input j from B)."
        )
    kk = f_ab.shape[0]
    if k is not None and kk != k:
        raise InputError(f"f_ab holds {kk} inputs, but the accumulator was built for k={k}.")
    if second_order is not None:
        if second_order and f_ba is None:
            raise InputError(
                "second_order=True needs f_ba (k, n, *out), f_ba[j] = f(B with input j from A)."
            )
        if not second_order and f_ba is not None:
            raise InputError("f_ba was given but second_order=False; build with second_order=True.")
    if f_ba is not None and f_ba.shape != f_ab.shape:
        raise InputError(f"f_ba has shape {tuple(f_ba.shape)}; it must match f_ab's.")
    if n < 1:
        raise InputError("The block has no rows; pass at least one base sample.")
    return n, kk, out


# ---------------------------------------------------------------------------------------------
# Accumulator
# ---------------------------------------------------------------------------------------------


class SobolAccumulator:
    r"""Running sums of pick-freeze outputs, from which all Sobol' estimators are evaluated.

    Parameters
    ----------
    k : int
        Number of inputs (or groups of inputs).
    output_shape : tuple of int
        Shape of one output (``()`` for a scalar, ``(C,)`` for class scores, ``(C, H, W)`` for
        the activations of a layer).
    second_order : bool, default False
        Also accumulate :math:`\sum f_{BA}^{(j)} f_{AB}^{(l)}` for second-order indices
        (memory O(outputs × k²)).
    device : torch.device or str, optional
        Where the sums live; by default the device of the first block.
    dtype : torch.dtype, default torch.float64
        Accumulation dtype (float64 keeps the moment algebra exact to rounding).

    Notes
    -----
    ``update(f_a, f_b, f_ab, f_ba)`` takes one block of base rows: ``f_a, f_b`` of shape
    ``(n, *out)`` and ``f_ab[j] = f(A with input j from B)`` (``f_ba[j] = f(B with input j
    from A)``) of shape ``(k, n, *out)``. Blocks may have different sizes; the result depends
    only on the set of rows.
    """

    def __init__(
        self,
        k: int,
        output_shape: Sequence[int] | int | None = (),
        *,
        second_order: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive int (number of inputs), got {k!r}.")
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        shape = None if output_shape is None else tuple(int(s) for s in output_shape)
        if shape is not None and any(s < 1 for s in shape):
            raise InputError(f"output_shape must have positive sizes, got {shape}.")
        if not dtype.is_floating_point:
            raise InputError(f"dtype must be a floating dtype, got {dtype}. Use torch.float64.")
        self.k = k
        self.output_shape: tuple[int, ...] | None = shape
        self.second_order = bool(second_order)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.shift: torch.Tensor | None = None
        self.ymin: torch.Tensor | None = None
        self.ymax: torch.Tensor | None = None

    @property
    def n_outputs(self) -> int:
        """Number of output elements."""
        if self.output_shape is None:
            raise InputError("The output shape is not known before the first update.")
        return math.prod(self.output_shape)

    @property
    def mean(self) -> torch.Tensor:
        r"""``(*out)`` mean of the outputs over :math:`[f_A; f_B]`."""
        self._require_rows()
        assert self.shift is not None and self.output_shape is not None
        mean = self.shift + (self.sums["a"] + self.sums["b"]) / (2 * self.n)
        return mean.reshape(self.output_shape)

    @property
    def variance(self) -> torch.Tensor:
        r"""``(*out)`` unbiased sample variance (ddof 1) of the outputs over :math:`[f_A; f_B]`.

        (:meth:`indices` normalises by the population variance, as SALib does.)
        """
        self._require_rows()
        assert self.output_shape is not None
        count = 2 * self.n
        s1 = self.sums["a"] + self.sums["b"]
        var = (self.sums["aa"] + self.sums["bb"] - s1 * s1 / count) / max(count - 1, 1)
        return var.reshape(self.output_shape)

    def _require_rows(self) -> None:
        if self.n == 0:
            raise InputError("No rows accumulated yet; call update(f_a, f_b, f_ab) first.")

    @property
    def n_evaluations(self) -> int:
        """Model evaluations seen: ``n (k + 2)`` or ``n (2k + 2)``."""
        return self.n * ((2 * self.k if self.second_order else self.k) + 2)

    def _zeros(self) -> dict[str, torch.Tensor]:
        p, k = self.n_outputs, self.k
        kw: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        shapes: dict[str, tuple[int, ...]] = {key: (p,) for key in ("a", "b", "aa", "bb", "ab")}
        shapes.update({key: (k, p) for key in ("c", "cc", "ac", "bc")})
        if self.second_order:
            shapes.update({"d": (k, p), "dc": (k, k, p)})
        return {key: torch.zeros(s, **kw) for key, s in shapes.items()}

    def update(
        self,
        f_a: torch.Tensor,
        f_b: torch.Tensor,
        f_ab: torch.Tensor,
        f_ba: torch.Tensor | None = None,
    ) -> SobolAccumulator:
        """Add one block of rows; returns ``self``.

        Parameters
        ----------
        f_a, f_b : torch.Tensor
            ``(n, *out)`` outputs on the base designs A and B.
        f_ab : torch.Tensor
            ``(k, n, *out)``, ``f_ab[j] = f(A with input j taken from B)``.
        f_ba : torch.Tensor, optional
            ``(k, n, *out)``, ``f_ba[j] = f(B with input j taken from A)``; required with
            ``second_order=True``.
        """
        n, _, out = _check_block(f_a, f_b, f_ab, f_ba, self.k, self.output_shape, self.second_order)
        if self.output_shape is None:
            self.output_shape = out
        if self.device is None:
            self.device = f_a.device
        p = self.n_outputs

        def prep(t: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
            return t.detach().to(device=self.device, dtype=self.dtype).reshape(*lead, p)

        a, b = prep(f_a, (n,)), prep(f_b, (n,))
        c = prep(f_ab, (self.k, n))
        d = prep(f_ba, (self.k, n)) if f_ba is not None else None
        if self.shift is None:
            self.shift = (a.mean(0) + b.mean(0)) / 2
            self.sums = self._zeros()
            self.ymin = torch.minimum(a.min(0).values, b.min(0).values)
            self.ymax = torch.maximum(a.max(0).values, b.max(0).values)
        else:
            assert self.ymin is not None and self.ymax is not None
            self.ymin = torch.minimum(self.ymin, torch.minimum(a.min(0).values, b.min(0).values))
            self.ymax = torch.maximum(self.ymax, torch.maximum(a.max(0).values, b.max(0).values))
        s = self.sums
        if p >= _ROW_LOOP_OUTPUTS:
            # Many outputs (activation maps): fused in-place updates row by row keep the
            # working set in cache and allocate no (k, n, P) temporaries — about 4x faster.
            for i in range(n):
                ai, bi = a[i] - self.shift, b[i] - self.shift
                ci = c[:, i] - self.shift
                s["a"] += ai
                s["b"] += bi
                s["aa"].addcmul_(ai, ai)
                s["bb"].addcmul_(bi, bi)
                s["ab"].addcmul_(ai, bi)
                s["c"] += ci
                s["cc"].addcmul_(ci, ci)
                s["ac"].addcmul_(ci, ai)
                s["bc"].addcmul_(ci, bi)
            c = c - self.shift if d is not None else c
        else:
            a, b, c = a - self.shift, b - self.shift, c - self.shift
            s["a"] += a.sum(0)
            s["b"] += b.sum(0)
            s["aa"] += (a * a).sum(0)
            s["bb"] += (b * b).sum(0)
            s["ab"] += (a * b).sum(0)
            s["c"] += c.sum(1)
            s["cc"] += (c * c).sum(1)
            s["ac"] += (c * a).sum(1)
            s["bc"] += (c * b).sum(1)
        if d is not None:
            d = d - self.shift
            s["d"] += d.sum(1)
            s["dc"] += torch.einsum("jnp,lnp->jlp", d, c)
        self.n += n
        return self

    def merge(self, other: SobolAccumulator) -> SobolAccumulator:
        """Add the rows of another accumulator (same k, output shape, second order)."""
        if not isinstance(other, SobolAccumulator):
            raise InputError(f"merge needs a SobolAccumulator, got {type(other).__name__}.")
        if self.output_shape is None and self.n == 0:
            self.output_shape = other.output_shape
        if other.output_shape is None and other.n == 0:
            return self
        if (other.k, other.output_shape, other.second_order) != (
            self.k,
            self.output_shape,
            self.second_order,
        ):
            raise InputError(
                "Cannot merge accumulators built differently: "
                f"(k, output_shape, second_order) = "
                f"{(self.k, self.output_shape, self.second_order)} vs "
                f"{(other.k, other.output_shape, other.second_order)}."
            )
        if other.n == 0:
            return self
        assert other.shift is not None and other.ymin is not None and other.ymax is not None
        if self.n == 0:
            if self.device is None:
                self.device = other.shift.device
            self.shift = other.shift.to(self.device, self.dtype).clone()
            self.sums = {
                key: v.to(self.device, self.dtype).clone() for key, v in other.sums.items()
            }
            self.ymin = other.ymin.to(self.device, self.dtype).clone()
            self.ymax = other.ymax.to(self.device, self.dtype).clone()
            self.n = other.n
            return self
        assert self.shift is not None and self.ymin is not None and self.ymax is not None
        theirs = {key: v.to(self.device, self.dtype) for key, v in other.sums.items()}
        delta = self.shift - other.shift.to(self.device, self.dtype)
        theirs = _shift_sums(theirs, float(other.n), delta)
        for key, value in theirs.items():
            self.sums[key] += value
        self.ymin = torch.minimum(self.ymin, other.ymin.to(self.device, self.dtype))
        self.ymax = torch.maximum(self.ymax, other.ymax.to(self.device, self.dtype))
        self.n += other.n
        return self

    def indices(
        self,
        first_order: FirstOrder = "saltelli2010",
        total_order: TotalOrder = "jansen",
        *,
        center: Center = "all",
    ) -> SobolIndices:
        """Evaluate the estimators on the accumulated sums.

        Parameters
        ----------
        first_order : {"saltelli2010", "janon", "martinez"}
            First-order estimator (see the module docstring for the formulas).
        total_order : {"jansen", "homma", "martinez"}
            Total-order estimator.
        center : {"all", "ab", "none"}
            Which mean is subtracted from the outputs first: of every evaluation (SALib), of
            :math:`[f_A; f_B]` (scipy) or none.

        Returns
        -------
        SobolIndices
            Indices of shape ``(k, *out)`` (``(k, k, *out)`` second order); outputs with zero
            variance get 0 and ``zero_variance=True``.
        """
        _check_estimators(first_order, total_order, center)
        self._require_rows()
        assert self.shift is not None and self.output_shape is not None
        finite = torch.stack([torch.isfinite(v).all() for v in self.sums.values()]).all()
        if not bool(finite):
            raise InputError(
                "The outputs contain NaN or inf. Check the model outputs passed to update()."
            )
        s1, st, s2, var = _indices_from_sums(
            self.sums, float(self.n), self.k, first_order, total_order, center, self.shift
        )
        assert self.ymin is not None and self.ymax is not None
        scale = torch.maximum(self.ymin.abs(), self.ymax.abs())
        flat_zero = ((self.ymax - self.ymin) <= torch.finfo(self.dtype).eps * scale) | (var <= 0)
        s1 = s1.masked_fill(flat_zero, 0.0)
        st = st.masked_fill(flat_zero, 0.0)
        if s2 is not None:
            s2 = s2.masked_fill(flat_zero, 0.0)
        var = var.masked_fill(flat_zero, 0.0)
        out = self.output_shape
        return SobolIndices(
            first_order=s1.reshape(self.k, *out),
            total_order=st.reshape(self.k, *out),
            second_order=None if s2 is None else s2.reshape(self.k, self.k, *out),
            variance=var.reshape(out),
            zero_variance=flat_zero.reshape(out),
            n=self.n,
            n_evaluations=self.n_evaluations,
            first_order_estimator=first_order,
            total_order_estimator=total_order,
            center=center,
        )

    def compute(self) -> SobolIndices:
        """:meth:`indices` with the default estimators (the :class:`Accumulator` protocol)."""
        return self.indices()

    # -- persistence ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state as tensors (``sums/<name>``, ``shift``, ``ymin``, ``ymax``) and settings."""
        state: dict[str, Any] = {
            "format_version": _FORMAT_VERSION,
            "k": self.k,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "second_order": self.second_order,
            "dtype": str(self.dtype).removeprefix("torch."),
            "n": self.n,
        }
        if self.n > 0:
            assert self.shift is not None and self.ymin is not None and self.ymax is not None
            state["shift"] = self.shift
            state["ymin"] = self.ymin
            state["ymax"] = self.ymax
            state["sums"] = dict(self.sums)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> SobolAccumulator:
        """Restore a state written by :meth:`state_dict` (settings must match)."""
        saved_shape = state.get("output_shape", [])
        if self.output_shape is None and saved_shape is not None:
            self.output_shape = tuple(int(v) for v in saved_shape)
        shape = None if self.output_shape is None else list(self.output_shape)
        mine = (self.k, shape, self.second_order)
        theirs = (
            state.get("k"),
            None if saved_shape is None else list(saved_shape),
            state.get("second_order"),
        )
        if mine != theirs:
            raise InputError(
                f"State was saved for (k, output_shape, second_order) = {theirs}, this "
                f"accumulator is {mine}. Build it with the saved settings or use "
                "SobolAccumulator.load."
            )
        n = int(state["n"])
        if n == 0:
            self.n, self.sums, self.shift, self.ymin, self.ymax = 0, {}, None, None, None
            return self
        dev = self.device if self.device is not None else state["shift"].device
        self.device = dev
        ref = self._zeros()
        sums = state["sums"]
        for key, z in ref.items():
            if key not in sums or tuple(sums[key].shape) != tuple(z.shape):
                raise ResultFormatError(
                    f"State entry sums/{key} is missing or has the wrong shape; the state is "
                    "corrupted or from another accumulator."
                )
        self.sums = {key: sums[key].to(dev, self.dtype).clone() for key in ref}
        self.shift = state["shift"].to(dev, self.dtype).clone()
        self.ymin = state["ymin"].to(dev, self.dtype).clone()
        self.ymax = state["ymax"].to(dev, self.dtype).clone()
        self.n = n
        return self

    def save(self, path: str | Path) -> Path:
        """Write ``path.npz`` (sums) and ``path.json`` (settings) atomically; no pickle.

        Returns the npz path (:mod:`convscope.core.persist`).
        """
        arrays, tree = persist.flatten_state(self.state_dict())
        return persist.write(path, arrays, {"type": "SobolAccumulator", "state": tree})

    @classmethod
    def load(
        cls, path: str | Path, *, device: torch.device | str | None = None
    ) -> SobolAccumulator:
        """Read an accumulator written by :meth:`save`."""
        arrays, header = persist.read(path, what="a SobolAccumulator")
        if header.get("type") != "SobolAccumulator" or "state" not in header:
            raise ResultFormatError(f"{path} does not hold a SobolAccumulator.")
        state = persist.unflatten_state(arrays, header["state"])
        acc = cls(
            int(state["k"]),
            None if state["output_shape"] is None else tuple(state["output_shape"]),
            second_order=bool(state["second_order"]),
            device=device,
            dtype=_dtype_from_name(state["dtype"]),
        )
        return acc.load_state_dict(state)


def _dtype_from_name(name: Any) -> torch.dtype:
    dtypes = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
              "bfloat16": torch.bfloat16}  # fmt: skip
    if name not in dtypes:
        raise ResultFormatError(f"Saved accumulator has an unknown dtype {name!r}.")
    return dtypes[name]


# ---------------------------------------------------------------------------------------------
# Closed indices
# ---------------------------------------------------------------------------------------------


def closed_index(
    f_a: torch.Tensor,
    f_b: torch.Tensor,
    f_u: torch.Tensor,
    *,
    estimator: FirstOrder = "saltelli2010",
    center: Center = "all",
) -> torch.Tensor:
    r"""Closed Sobol' index :math:`S^c_u = \operatorname{Var}(E[Y|X_u]) / \operatorname{Var}(Y)`.

    Parameters
    ----------
    f_a, f_b : torch.Tensor
        ``(n, *out)`` outputs on the independent base designs A and B.
    f_u : torch.Tensor
        ``(n, *out)`` outputs on A with *all* inputs of the subset u taken from B, so that
        :math:`(f_B, f_u)` share exactly :math:`X_u`. (With a design module, treat u as one
        group; for several subsets, stack them as ``f_ab`` of a :class:`SobolAccumulator`,
        whose first-order indices are then the closed indices, streamed.)
    estimator : {"saltelli2010", "janon", "martinez"}
        The first-order estimator applied to the pair.
    center : {"all", "ab", "none"}
        Centring, as in :meth:`SobolAccumulator.indices`.

    Returns
    -------
    torch.Tensor
        ``(*out)`` closed index (0 where the output is constant). The total index of u is
        ``1 - closed index of the complement``; :math:`S^c_{\{j,l\}} = S_{jl} + S_j + S_l`.
    """
    if not isinstance(f_u, torch.Tensor):
        raise InputError(f"f_u must be a torch.Tensor, got {type(f_u).__name__}.")
    acc = SobolAccumulator(1, tuple(f_a.shape[1:]) if f_a.ndim else (), device=f_a.device)
    acc.update(f_a, f_b, f_u.unsqueeze(0))
    return acc.indices(estimator, "jansen", center=center).first_order[0]


# ---------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------


def _make_intervals(
    values: Sequence[torch.Tensor | None], level: float, method: str, n_resamples: int
) -> SobolIntervals:
    """Build a :class:`SobolIntervals` from (estimate, low, high) × (S1, ST, S2)."""
    s1, s1l, s1h, st, stl, sth, s2, s2l, s2h = values
    assert s1 is not None and s1l is not None and s1h is not None
    assert st is not None and stl is not None and sth is not None
    return SobolIntervals(
        first_order=s1,
        first_order_low=s1l,
        first_order_high=s1h,
        total_order=st,
        total_order_low=stl,
        total_order_high=sth,
        second_order=s2,
        second_order_low=s2l,
        second_order_high=s2h,
        level=level,
        method=method,
        n_resamples=n_resamples,
    )


def _t_quantile(q: float, df: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(q, df))


def _check_level(level: float) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise InputError(f"level must be in (0, 1), got {level!r}. Use e.g. level=0.95.")


def replicate_intervals(results: Sequence[SobolIndices], level: float = 0.95) -> SobolIntervals:
    r"""Student-t intervals over independent randomised-QMC replicates.

    With R independently scrambled designs giving estimates :math:`\hat S^{(r)}`, the
    interval is :math:`\bar S \pm t_{R-1,(1+\text{level})/2}\, s / \sqrt{R}` with :math:`s` the
    sample standard deviation (ddof 1) of the replicates (Owen 2013, *Monte Carlo theory*,
    ch. 17; L'Ecuyer & Lemieux 2002).

    Parameters
    ----------
    results : sequence of SobolIndices
        At least two replicates with the same shapes and estimators.
    level : float, default 0.95
        Confidence level.

    Returns
    -------
    SobolIntervals
        Replicate means and intervals (``method="replicates"``, ``n_resamples=R``).
    """
    _check_level(level)
    reps = list(results)
    if len(reps) < 2 or not all(isinstance(r, SobolIndices) for r in reps):
        raise InputError("replicate_intervals needs at least two SobolIndices replicates.")
    ref = reps[0]
    for r in reps[1:]:
        if (
            r.first_order.shape != ref.first_order.shape
            or (r.second_order is None) != (ref.second_order is None)
            or (r.first_order_estimator, r.total_order_estimator)
            != (ref.first_order_estimator, ref.total_order_estimator)
        ):
            raise InputError(
                "Replicates differ in shape, second order or estimators; compute them all "
                "with the same settings."
            )
    tq = _t_quantile((1 + level) / 2, len(reps) - 1)

    def summary(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stack = torch.stack([x.to(xs[0].device) for x in xs])
        mean = stack.mean(0)
        half = tq * stack.std(0, correction=1) / math.sqrt(len(xs))
        return mean, mean - half, mean + half

    s1 = summary([r.first_order for r in reps])
    st = summary([r.total_order for r in reps])
    s2: tuple[torch.Tensor | None, ...] = (None, None, None)
    if ref.second_order is not None:
        s2 = summary([r.second_order for r in reps if r.second_order is not None])
    return _make_intervals([*s1, *st, *s2], float(level), "replicates", len(reps))


def _row_terms(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Per-row products with the row axis first: a (n,P), c (n,k,P)."""
    terms = {
        "a": a,
        "b": b,
        "aa": a * a,
        "bb": b * b,
        "ab": a * b,
        "c": c,
        "cc": c * c,
        "ac": c * a.unsqueeze(1),
        "bc": c * b.unsqueeze(1),
    }
    if d is not None:
        terms["d"] = d
        terms["dc"] = d.unsqueeze(2) * c.unsqueeze(1)
    return terms


def _interp_quantile(sorted_x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-element quantile (linear interpolation) of ``sorted_x`` along dim 0."""
    m = sorted_x.shape[0]
    pos = q.clamp(0, 1) * (m - 1)
    lo = pos.floor().long().clamp(0, m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    w = pos - lo.to(pos.dtype)
    x_lo = sorted_x.gather(0, lo.unsqueeze(0)).squeeze(0)
    x_hi = sorted_x.gather(0, hi.unsqueeze(0)).squeeze(0)
    return x_lo + w * (x_hi - x_lo)


def _interval(
    theta: torch.Tensor,
    boot: torch.Tensor,
    jack: torch.Tensor | None,
    level: float,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    alpha = (1 - level) / 2
    nboot = boot.shape[0]
    if method == "normal":
        z = float(torch.special.ndtri(torch.tensor(1 - alpha, dtype=torch.float64)))
        half = z * boot.std(0, correction=1)
        return theta - half, theta + half
    srt = boot.sort(0).values
    if method == "percentile":
        q = torch.full_like(theta, alpha)
        return _interp_quantile(srt, q), _interp_quantile(srt, 1 - q)
    assert jack is not None
    # BCa (Efron 1987): bias from the share of resamples below the estimate, acceleration
    # from the jackknife skewness; the share is kept off 0 and 1 so z0 stays finite.
    frac = (boot < theta.unsqueeze(0)).to(theta.dtype).mean(0)
    frac = frac.clamp(1 / (nboot + 1), nboot / (nboot + 1))
    z0 = torch.special.ndtri(frac)
    dev = jack.mean(0, keepdim=True) - jack
    num = (dev**3).sum(0)
    den = 6 * (dev**2).sum(0).pow(1.5)
    acc = _safe_div(num, den)
    bounds = []
    for p in (alpha, 1 - alpha):
        zp = float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))
        shifted = z0 + zp
        q = torch.special.ndtr(z0 + shifted / (1 - acc * shifted))
        bounds.append(_interp_quantile(srt, q))
    return bounds[0], bounds[1]


def bootstrap_intervals(
    f_a: torch.Tensor,
    f_b: torch.Tensor,
    f_ab: torch.Tensor,
    f_ba: torch.Tensor | None = None,
    *,
    first_order: FirstOrder = "saltelli2010",
    total_order: TotalOrder = "jansen",
    center: Center = "all",
    n_boot: int = 1000,
    level: float = 0.95,
    method: Literal["bca", "normal", "percentile"] = "bca",
    seed: SeedLike = None,
    dtype: torch.dtype = torch.float64,
) -> SobolIntervals:
    r"""Bootstrap confidence intervals of Sobol' indices, resampling base rows.

    A resample draws n rows with replacement, i.e. multiplicity weights :math:`w \in
    \mathbb{N}^n`; every sum :math:`\sum_i x_i` becomes :math:`\sum_i w_i x_i`, so all
    resamples are evaluated at once as one matrix product (the estimators are functions of
    these sums, see :class:`SobolAccumulator`). Intervals:

    * ``"percentile"``: the :math:`\alpha/2` and :math:`1-\alpha/2` quantiles of the resamples;
    * ``"normal"``: :math:`\hat S \pm z_{1-\alpha/2}\,\mathrm{sd}^*` (SALib's ``S1_conf``);
    * ``"bca"`` (Efron 1987): quantiles :math:`\Phi(z_0 + (z_0 + z_p)/(1 - a(z_0 + z_p)))`,
      with bias :math:`z_0 = \Phi^{-1}(\#\{\hat S^* < \hat S\}/B)` and acceleration
      :math:`a = \sum_i d_i^3 / (6 (\sum_i d_i^2)^{3/2})`, :math:`d_i` the deviations of
      the leave-one-row-out jackknife estimates from their mean.

    Parameters
    ----------
    f_a, f_b : torch.Tensor
        ``(n, *out)`` outputs on A and B.
    f_ab : torch.Tensor
        ``(k, n, *out)``, ``f_ab[j] = f(A with input j from B)``.
    f_ba : torch.Tensor, optional
        ``(k, n, *out)``, ``f_ba[j] = f(B with input j from A)``, for second-order intervals.
    first_order, total_order, center : str
        As in :meth:`SobolAccumulator.indices`.
    n_boot : int, default 1000
        Number of resamples.
    level : float, default 0.95
        Confidence level.
    method : {"bca", "normal", "percentile"}
        Interval type.
    seed : int, optional
        Seed of the resampling.
    dtype : torch.dtype, default torch.float64
        Computation dtype.

    Returns
    -------
    SobolIntervals
        Full-sample estimates and interval bounds; memory is O(n_boot × k × outputs)
        (× k with second order), so use it for scalar or vector outputs.
    """
    _check_estimators(first_order, total_order, center)
    _check_level(level)
    if method not in ("bca", "normal", "percentile"):
        raise InputError(f"method={method!r} is unknown; use 'bca', 'normal' or 'percentile'.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise InputError(f"n_boot must be an int >= 2, got {n_boot!r}.")
    n, k, out = _check_block(f_a, f_b, f_ab, f_ba, None, None, None)
    if n < 2:
        raise InputError("Bootstrap needs at least two base rows.")
    device = f_a.device
    p = math.prod(out)

    def prep(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=device, dtype=dtype)

    a = prep(f_a).reshape(n, p)
    b = prep(f_b).reshape(n, p)
    c = prep(f_ab).reshape(k, n, p).transpose(0, 1)
    d = None if f_ba is None else prep(f_ba).reshape(k, n, p).transpose(0, 1)
    # The shift only conditions the sums; the estimators subtract their own mean.
    shift = (a.mean(0) + b.mean(0)) / 2
    a, b, c = a - shift, b - shift, c - shift
    if d is not None:
        d = d - shift
    if not bool(torch.isfinite(c).all() & torch.isfinite(a).all() & torch.isfinite(b).all()):
        raise InputError("The outputs contain NaN or inf. Check the model outputs.")
    terms = _row_terms(a, b, c, d)
    totals = {key: t.sum(0) for key, t in terms.items()}

    def estimate(sums: dict[str, torch.Tensor], rows: float) -> list[torch.Tensor]:
        s1, st, s2, _ = _indices_from_sums(sums, rows, k, first_order, total_order, center, shift)
        return [s1, st] if s2 is None else [s1, st, s2]

    theta = estimate(totals, float(n))
    gen = torch_generator(seed, device)
    idx = torch.randint(n, (n_boot, n), generator=gen, device=device)
    weights = torch.zeros(n_boot, n, dtype=dtype, device=device)
    weights.scatter_add_(1, idx, torch.ones_like(weights))
    boot_sums = {
        key: (weights @ t.reshape(n, -1)).reshape(n_boot, *t.shape[1:]) for key, t in terms.items()
    }
    boot = estimate(boot_sums, float(n))
    jack = None
    if method == "bca":
        jack = estimate({key: totals[key] - t for key, t in terms.items()}, float(n - 1))
    ymin = torch.minimum(a.min(0).values, b.min(0).values)
    ymax = torch.maximum(a.max(0).values, b.max(0).values)
    flat = (ymax - ymin) <= torch.finfo(dtype).eps * torch.maximum(
        (ymin + shift).abs(), (ymax + shift).abs()
    )
    results: list[torch.Tensor | None] = []
    for i, th in enumerate(theta):
        lo, hi = _interval(th, boot[i], None if jack is None else jack[i], level, method)
        shape = (k, *out) if i < 2 else (k, k, *out)
        for x in (th, lo, hi):
            results.append(x.masked_fill(flat, 0.0).reshape(shape))
    if len(theta) == 2:
        results += [None, None, None]
    return _make_intervals(results, float(level), method, n_boot)
