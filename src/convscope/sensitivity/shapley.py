r"""Shapley effects: a variance decomposition that also shares interactions fairly.

For a model :math:`Y = f(X)` with independent inputs :math:`X = (X_1, \dots, X_d)`, Owen
(2014) defines the Shapley effect of input :math:`j` as the Shapley value of the cooperative
game whose value of a coalition :math:`u \subseteq D = \{1, \dots, d\}` is a variance:

.. math::

    \mathrm{Sh}_j = \sum_{u \subseteq D \setminus \{j\}}
        \frac{|u|!\,(d - |u| - 1)!}{d!}\,\bigl[c(u \cup \{j\}) - c(u)\bigr]
      = \frac{1}{d!} \sum_{\pi \in \Pi(D)} \bigl[c(P_j(\pi) \cup \{j\}) - c(P_j(\pi))\bigr],

:math:`P_j(\pi)` the inputs before :math:`j` in the permutation :math:`\pi`. Two cost
functions give the same values (Song, Nelson & Staum 2016, Theorem 1): the closed variance
:math:`c_1(u) = \mathrm{Var}(E[Y \mid X_u])` and the total variance
:math:`c_T(u) = E[\mathrm{Var}(Y \mid X_{-u})]`. Shapley effects are non-negative, sum to
:math:`\mathrm{Var}(Y)` (efficiency), and split every interaction variance equally among
the inputs it involves, so :math:`S_j \le \mathrm{Sh}_j / \mathrm{Var}(Y) \le S^T_j`. With
``normalize=True`` they are returned as fractions of the variance, which sum to one.

Three estimators:

* ``"exact"`` (k ≤ 10 players): estimate the closed index :math:`S^c_u` of every proper
  subset u from one pick-freeze base pair (A, B): :math:`f_u = f(A` with the columns of
  u taken from :math:`B)` shares exactly :math:`X_u` with :math:`f(B)`, so
  :math:`S^c_u` is the first-order estimator of the pair (Saltelli et al. 2010), see
  :func:`~convscope.sensitivity.estimators.closed_index`. The grand coalition is estimated
  the same way (:math:`f_D = f(B)`), :math:`S^c_\emptyset = 0`, and the subset formula
  above is evaluated exactly on this estimated game; the effects then sum to
  :math:`\hat S^c_D \hat V`, the variance estimate used to normalise, so the fractions sum
  to one to rounding and an input ``func`` ignores gets exactly zero. Cost
  :math:`N (2^k - 2) + 2N = N 2^k` evaluations.
* ``"random_permutation"``: Song, Nelson & Staum (2016), Algorithm 1 (independent inputs).
  :math:`\mathrm{Var}(Y)` from :math:`N_V` independent draws; for m random permutations
  and each position :math:`j < d`, :math:`c_T(J_j)`, :math:`J_j = \{\pi(1..j)\}`, by a
  double loop: :math:`N_O` outer draws of :math:`X_{-J_j}`, each with :math:`N_I` inner
  draws of :math:`X_{J_j}`, :math:`\hat c = \frac1{N_O} \sum_o \widehat{\mathrm{Var}}_h
  (Y_{oh})` (unbiased sample variance); :math:`\hat c(J_d) = \widehat{\mathrm{Var}}(Y)`.
  The increments :math:`\hat c(J_j) - \hat c(J_{j-1})` are credited to :math:`\pi(j)` and
  averaged over permutations. Cost :math:`N_V + m (d - 1) N_O N_I`; the authors recommend
  :math:`N_O = 1`, :math:`N_I = 3` and as many permutations as the budget allows.
* ``"goda"``: Goda (2021), "A simple algorithm for global sensitivity analysis with
  Shapley effects" (arXiv:2009.00874). For each of N independent pairs
  :math:`(x, x')` and its own random permutation :math:`\pi`, walk from :math:`z_0 = x` to
  :math:`z_d = x'` switching one coordinate :math:`\pi(j)` at a time and credit

  .. math::

      \Delta_{\pi(j)} = \bigl(f(z_j) - f(z_{j-1})\bigr)
          \Bigl(\tfrac12 \bigl(f(z_j) + f(z_{j-1})\bigr) - f(x)\Bigr),

  whose expectation is :math:`c_T(J_j) - c_T(J_{j-1})` (since :math:`c_T(u) = E[Y^2] -
  E[Y(x) Y(x_{-u}, x'_u)]`); the sum over j telescopes to :math:`\tfrac12 (f(x') - f(x))^2`,
  an unbiased variance estimate. No double loop; cost :math:`N (d + 1)`.

Groups: the permutation methods always play the game over the d variables and report, for
each group, the sum of its members' effects (the convention of Kharyuk et al.'s code, which
keeps the double-loop cost per variable). ``"exact"`` plays the game over the groups directly, each
group one player (Owen's group Shapley effect, at a 2^k instead of 2^d cost). With
independent inputs, the Shapley effect splits every ANOVA term :math:`V_w` equally among
the players it involves (Owen 2014), so the member sum gives a group G the share
:math:`|w \cap G| / |w|` and the group game :math:`1 / \#\{\text{groups touched by } w\}`.
They agree for additive models and whenever each interaction touches its groups with equal
numbers of variables; e.g. a three-way interaction of :math:`X_1, X_2, X_3` with groups
:math:`\{1, 3\}, \{2\}` gives :math:`\{1, 3\}` 2/3 of its variance by member sums and 1/2
in the group game.

References
----------
Owen, A. B. (2014). Sobol' indices and Shapley value. SIAM/ASA J. Uncertain. Quantif. 2.
Song, E., Nelson, B. L., Staum, J. (2016). Shapley effects for global sensitivity analysis:
theory and computation. SIAM/ASA J. Uncertain. Quantif. 4, 1060-1083.
Goda, T. (2021). A simple algorithm for global sensitivity analysis with Shapley effects.
Reliability Engineering & System Safety; arXiv:2009.00874.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from convscope.core.batching import check_batch_size
from convscope.core.errors import InputError
from convscope.core.progress import progress_bar
from convscope.core.results import Result
from convscope.core.seeding import SeedLike, torch_generator
from convscope.sensitivity.designs import _resolve_bounds, _resolve_groups, pick_freeze_design
from convscope.sensitivity.estimators import closed_index
from convscope.sensitivity.evaluation import BatchedEvaluator

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_EXACT_PLAYERS", "SHAPLEY_METHODS", "ShapleyResult", "shapley_effects"]

#: Estimators accepted by :func:`shapley_effects`.
SHAPLEY_METHODS = ("exact", "random_permutation", "goda")
#: Largest number of players (groups) the ``"exact"`` method accepts (2^k subsets).
MAX_EXACT_PLAYERS = 10

# Random draws are made in blocks of a fixed size, independent of batch_size, so that the
# result does not depend on how the evaluations are batched.
_GODA_BLOCK = 1024
_PERM_BLOCK = 64
_ENUMERATE_LIMIT = 40320  # 8!: below, permutations are drawn without replacement


@dataclass
class ShapleyResult(Result):
    """Shapley effects of every output element.

    Attributes
    ----------
    values : torch.Tensor
        ``(k, *out)`` Shapley effects of the k groups (or variables); fractions of the
        variance when ``normalize`` is True, else variance units.
    variance : torch.Tensor
        ``(*out)`` the estimate of :math:`\\mathrm{Var}(Y)` used for the normalisation.
    intervals : torch.Tensor or None
        ``(k, 2, *out)`` normal confidence intervals (lower, upper) at ``level`` from the
        standard errors across permutations (``"random_permutation"``) or sample rows
        (``"goda"``), in the units of ``values``; None for ``"exact"``.
    n_evaluations : int
        Calls of ``func`` on single rows.
    method : str
        ``"exact"``, ``"random_permutation"`` or ``"goda"``.
    groups : list of list of int
        The variables of each group.
    normalize : bool
        Whether ``values`` are fractions of the variance.
    n, n_perm, n_outer, n_inner : int or None
        The budget settings (``n_perm`` etc. are None when the method does not use them).
    level : float
        Confidence level of ``intervals``.
    seed : int or None
        The random seed (None when a generator object was passed).
    """

    values: torch.Tensor
    variance: torch.Tensor
    intervals: torch.Tensor | None
    n_evaluations: int
    method: str
    groups: list[list[int]]
    normalize: bool
    n: int
    n_perm: int | None = None
    n_outer: int | None = None
    n_inner: int | None = None
    level: float = 0.95
    seed: int | None = None
    replicates: int = 1

    def plot(
        self,
        output: int | Sequence[int] | None = None,
        *,
        names: Sequence[str] | None = None,
        title: str | None = None,
    ) -> Figure:
        """Bar chart of the Shapley effects of one output element.

        Parameters
        ----------
        output : int or tuple of int, optional
            Index of the output element (needed unless the output is scalar).
        names : list of str, optional
            Group names (default ``"X0"``, ... or ``"G0"``, ... for groups).
        title : str, optional
            Axes title.
        """
        from convscope.plots.images import bar_chart

        vals = self.values
        if vals.ndim > 1:
            if output is None:
                raise InputError(
                    f"The outputs have shape {tuple(vals.shape[1:])}; pass output=<index> to "
                    "choose the element to plot."
                )
            idx = (output,) if isinstance(output, int) else tuple(int(i) for i in output)
            key: tuple[slice | int, ...] = (slice(None), *idx)
            vals = vals[key]
            if vals.ndim != 1:
                raise InputError(f"output={output!r} does not select a single output element.")
        k = vals.shape[0]
        if names is None:
            single = all(len(g) == 1 for g in self.groups)
            names = [f"X{g[0]}" if single else f"G{i}" for i, g in enumerate(self.groups)]
        if len(names) != k:
            raise InputError(f"names must hold {k} names, one per group, got {len(names)}.")
        ylabel = "Shapley effect (fraction of Var)" if self.normalize else "Shapley effect"
        return bar_chart(
            (list(names), vals.detach().cpu().numpy()),
            title=title or f"Shapley effects ({self.method})",
            ylabel=ylabel,
        )


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _scale(u: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    return bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])


def _decode_permutations(codes: torch.Tensor, d: int) -> torch.Tensor:
    """Permutations of range(d) from their ranks in lexicographic order (Lehmer code)."""
    perms = torch.empty(codes.shape[0], d, dtype=torch.long)
    for r, code in enumerate(codes.tolist()):
        items = list(range(d))
        for pos in range(d):
            f = math.factorial(d - 1 - pos)
            q, code = divmod(code, f)
            perms[r, pos] = items.pop(q)
    return perms


def _draw_permutations(n_perm: int, d: int, gen: torch.Generator) -> torch.Tensor:
    total = math.factorial(d)
    if total <= _ENUMERATE_LIMIT and n_perm <= total:
        # Without replacement (as Kharyuk et al.'s code does): with n_perm = d! every permutation is
        # used once and the permutation average is the exact Shapley sum of the estimated costs.
        codes = torch.randperm(total, generator=gen)[:n_perm]
        return _decode_permutations(codes, d)
    return torch.rand(n_perm, d, generator=gen).argsort(dim=1)


def _group_matrix(groups: tuple[tuple[int, ...], ...], d: int) -> torch.Tensor:
    m = torch.zeros(len(groups), d, dtype=torch.float64)
    for g, members in enumerate(groups):
        m[g, list(members)] = 1.0
    return m


def _z_quantile(level: float) -> float:
    return float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)))


# ---------------------------------------------------------------------------------------------
# Estimators (all return variance-unit values (k, P), variance (P,), intervals or None)
# ---------------------------------------------------------------------------------------------


def _exact(
    ev: BatchedEvaluator,
    d: int,
    n: int,
    groups: tuple[tuple[int, ...], ...],
    bounds: np.ndarray,
    design: str,
    seed: SeedLike,
    dtype: torch.dtype,
    device: torch.device,
    progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    k = len(groups)
    pf = pick_freeze_design(
        d, n, groups=[list(g) for g in groups], method=design, bounds=bounds, seed=seed
    )
    a = pf.a.to(device=device, dtype=dtype)
    b = pf.b.to(device=device, dtype=dtype)
    f_a, f_b = ev(a), ev(b)
    shared = torch.cat([f_a, f_b]).var(0, correction=1)
    closed: dict[int, torch.Tensor] = {0: torch.zeros_like(shared)}
    full = (1 << k) - 1
    # The grand coalition goes through the same estimator (f_D = f_B), so that every cost of
    # the game carries the same estimation error; an input that f ignores then gets exactly 0.
    closed[full] = closed_index(f_a, f_b, f_b)
    subsets = range(1, full)
    for mask in progress_bar(subsets, total=full - 1, desc="shapley exact", show=progress):
        cols = [v for g in range(k) if mask >> g & 1 for v in groups[g]]
        x_u = a.clone()
        x_u[:, cols] = b[:, cols]
        closed[mask] = closed_index(f_a, f_b, ev(x_u))
    weights = [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
    sh = torch.zeros(k, *shared.shape, dtype=torch.float64, device=shared.device)
    for j in range(k):
        bit = 1 << j
        for mask in range(full + 1):
            if mask & bit:
                continue
            sh[j] += weights[bin(mask).count("1")] * (closed[mask | bit] - closed[mask])
    return sh * shared, closed[full] * shared


def _random_permutation(
    ev: BatchedEvaluator,
    d: int,
    n: int,
    n_perm: int,
    n_outer: int,
    n_inner: int,
    bounds: torch.Tensor,
    gen: torch.Generator,
    gmat: torch.Tensor,
    progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dtype, device = bounds.dtype, bounds.device
    perms = _draw_permutations(n_perm, d, gen)
    var = ev(_scale(torch.rand(n, d, generator=gen, dtype=dtype).to(device), bounds))
    variance = var.var(0, correction=1) if n > 1 else torch.zeros_like(var[0])
    gmat = gmat.to(device)
    total = torch.zeros(gmat.shape[0], variance.shape[0], dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    starts = range(0, n_perm, _PERM_BLOCK)
    for start in progress_bar(starts, total=len(starts), desc="shapley SNS", show=progress):
        block = perms[start : start + _PERM_BLOCK]
        m = block.shape[0]
        # Outer draws fix X_{-J}, inner draws redraw X_J: x[p, j, o, h] takes the outer point
        # on the positions after j and the inner point on the first j+1 positions of pi.
        outer = torch.rand(m, d - 1, n_outer, 1, d, generator=gen, dtype=dtype)
        inner = torch.rand(m, d - 1, n_outer, n_inner, d, generator=gen, dtype=dtype)
        rank = block.argsort(dim=1)  # rank[p, v] = position of variable v in pi
        in_j = rank[:, None, :] <= torch.arange(d - 1)[None, :, None]  # (m, d-1, d)
        x = torch.where(in_j[:, :, None, None, :], inner, outer)
        y = ev(_scale(x.to(device).reshape(-1, d), bounds))
        y = y.reshape(m, d - 1, n_outer, n_inner, -1)
        cost = y.var(3, correction=1).mean(2)  # (m, d-1, P): c_T(J_j)
        cost = torch.cat([cost, variance.expand(m, 1, -1)], dim=1)
        incr = torch.diff(cost, dim=1, prepend=torch.zeros_like(cost[:, :1]))
        contrib = torch.zeros_like(incr).scatter_(
            1, block.to(device)[:, :, None].expand_as(incr), incr
        )
        grouped = torch.einsum("gv,mvp->mgp", gmat, contrib)
        total += grouped.sum(0)
        total_sq += (grouped * grouped).sum(0)
    mean = total / n_perm
    sd = ((total_sq - n_perm * mean * mean) / max(n_perm - 1, 1)).clamp_min(0).sqrt()
    return mean, variance, sd / math.sqrt(n_perm)


def _goda(
    ev: BatchedEvaluator,
    d: int,
    n: int,
    bounds: torch.Tensor,
    gen: torch.Generator,
    gmat: torch.Tensor,
    progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dtype, device = bounds.dtype, bounds.device
    gmat = gmat.to(device)
    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None
    starts = range(0, n, _GODA_BLOCK)
    for start in progress_bar(starts, total=len(starts), desc="shapley Goda", show=progress):
        m = min(_GODA_BLOCK, n - start)
        x = torch.rand(m, d, generator=gen, dtype=dtype)
        x2 = torch.rand(m, d, generator=gen, dtype=dtype)
        perm = torch.rand(m, d, generator=gen).argsort(dim=1)
        rank = perm.argsort(dim=1)
        # z[i, j] takes x' on the first j positions of pi_i, x elsewhere (z_0 = x, z_d = x').
        switched = rank[:, None, :] < torch.arange(d + 1)[None, :, None]  # (m, d+1, d)
        z = torch.where(switched, x2[:, None, :], x[:, None, :])
        y = ev(_scale(z.to(device).reshape(-1, d), bounds)).reshape(m, d + 1, -1)
        lo, hi = y[:, :-1], y[:, 1:]
        incr = (hi - lo) * (0.5 * (hi + lo) - y[:, :1])  # (m, d, P), position-indexed
        idx = perm.to(device)[:, :, None].expand_as(incr)
        contrib = torch.zeros_like(incr).scatter_(1, idx, incr)
        grouped = torch.einsum("gv,mvp->mgp", gmat, contrib)
        s, s2 = grouped.sum(0), (grouped * grouped).sum(0)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
    assert total is not None and total_sq is not None
    mean = total / n
    sd = ((total_sq - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt()
    return mean, mean.sum(0), sd / math.sqrt(n)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def shapley_effects(
    func: Callable[[torch.Tensor], torch.Tensor],
    bounds: Any,
    n: int,
    *,
    method: str = "exact",
    groups: Sequence[Sequence[int]] | None = None,
    n_perm: int | None = None,
    n_outer: int = 1,
    n_inner: int = 3,
    normalize: bool = True,
    design: str = "sobol",
    replicates: int = 1,
    level: float = 0.95,
    batch_size: int | None = None,
    seed: SeedLike = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool | None = None,
) -> ShapleyResult:
    r"""Shapley effects of independent uniform inputs on the outputs of ``func``.

    :math:`\mathrm{Sh}_j = \sum_{u \not\ni j} \frac{|u|!(k-|u|-1)!}{k!}
    [c(u \cup \{j\}) - c(u)]`, with :math:`c` the closed (``"exact"``) or total
    (permutation methods) variance of a coalition (Owen 2014; Song, Nelson & Staum 2016;
    Goda 2021). See the module docstring for the three estimators.

    Parameters
    ----------
    func : callable
        Maps an (m, d) tensor of inputs to an (m, ...) tensor of outputs (scalar, vector or
        any shape per row). Called under ``torch.no_grad`` on at most ``batch_size`` rows.
    bounds : array-like
        (d, 2) lower and upper bounds; input j is uniform on ``bounds[j]``.
    n : int
        Budget: base rows N of the pick-freeze design (``"exact"``; a power of two for
        ``design="sobol"``), variance draws :math:`N_V` (``"random_permutation"``) or pairs
        :math:`(x, x')` with their own permutation (``"goda"``).
    method : {"exact", "random_permutation", "goda"}
        Estimator; ``"exact"`` needs at most 10 groups.
    groups : list of list of int, optional
        Groups of variables, every variable in exactly one group. ``"exact"`` plays the game
        over the groups; the permutation methods sum the effects of the members.
    n_perm : int, optional
        Permutations m of ``"random_permutation"`` (default ``n``); drawn without
        replacement when :math:`m \le d! \le 8!`. Not used by the other methods.
    n_outer, n_inner : int
        :math:`N_O`, :math:`N_I` of ``"random_permutation"`` (defaults 1 and 3, Song et al.).
    normalize : bool, default True
        Divide by the variance estimate (values sum to one), else variance units.
    design : {"sobol", "random", "lhs"}
        Base design of ``"exact"`` (:func:`~convscope.sensitivity.designs.pick_freeze_design`).
    replicates : int, default 1
        ``"exact"`` only: repeat the game on R independent designs (seeds ``seed … seed+R−1``);
        the values are the mean over replicates and, for R ≥ 2, the intervals are Student-t
        intervals across them (randomised QMC). Costs R times the evaluations. The permutation
        methods have their own standard errors and take R = 1.
    level : float, default 0.95
        Confidence level of the intervals.
    batch_size : int, optional
        Rows per call of ``func`` (default 64).
    seed : int, optional
        Seed of the design, the permutations and the draws.
    device, dtype : optional
        Where and in which dtype the inputs are built (default CPU, float64).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    ShapleyResult
        ``values`` (k, *out), ``variance`` (*out), ``intervals`` (k, 2, *out) or None.
    """
    if method not in SHAPLEY_METHODS:
        raise InputError(
            f"Unknown method {method!r}. Use one of {', '.join(map(repr, SHAPLEY_METHODS))}."
        )
    if not callable(func):
        raise InputError(f"func must be callable (an (m, d) tensor -> (m, ...)), got {func!r}.")
    if isinstance(bounds, torch.Tensor):
        bounds = bounds.detach().cpu().numpy()
    arr = np.asarray(bounds, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise InputError(
            f"bounds must have shape (d, 2), one [lower, upper] pair per input; got "
            f"shape {arr.shape}."
        )
    d = int(arr.shape[0])
    bounds_np = _resolve_bounds(bounds, d)
    assert bounds_np is not None
    n = _check_positive(n, "n")
    n_outer = _check_positive(n_outer, "n_outer")
    n_inner = _check_positive(n_inner, "n_inner")
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level!r}.")
    if not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating dtype, got {dtype}.")
    size = check_batch_size(batch_size)
    resolved = _resolve_groups(groups, d, None)
    k = len(resolved)
    if method != "random_permutation" and n_perm is not None:
        raise InputError(
            f"n_perm is used only by method='random_permutation'; method={method!r} sets its "
            "budget with n. Remove n_perm."
        )
    replicates = _check_positive(replicates, "replicates")
    if method != "exact" and replicates != 1:
        raise InputError(
            f"replicates is used only by method='exact'; method={method!r} reports its own "
            "standard errors. Remove replicates."
        )
    if replicates > 1 and not isinstance(seed, int):
        raise InputError("replicates >= 2 need an int seed (replicate r uses seed + r).")
    if method == "exact" and k > MAX_EXACT_PLAYERS:
        raise InputError(
            f"method='exact' estimates all 2^k closed indices and accepts at most "
            f"{MAX_EXACT_PLAYERS} groups, got k={k}. Use method='random_permutation' or "
            "'goda', or merge variables into fewer groups."
        )
    if method == "random_permutation":
        if n_inner < 2:
            raise InputError("n_inner must be >= 2: c_T is a sample variance over inner draws.")
        if n < 2:
            raise InputError("n must be >= 2 for the variance estimate of 'random_permutation'.")
        n_perm = n if n_perm is None else _check_positive(n_perm, "n_perm")
    if method == "goda" and n < 2:
        raise InputError("n must be >= 2 for the standard errors of method='goda'.")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    ev = BatchedEvaluator(func, size)
    seed_value = seed if isinstance(seed, int) else None
    intervals: torch.Tensor | None = None
    if method == "exact":
        runs = [
            _exact(
                ev, d, n, resolved, bounds_np, design,
                seed + r if replicates > 1 else seed,  # type: ignore[operator]
                dtype, dev, progress,
            )
            for r in range(replicates)
        ]  # fmt: skip
        if normalize:
            # normalise each replicate, then average: the interval is about the fractions
            runs = [
                (v * torch.where(var > 0, 1.0 / var.clamp_min(1e-300), 0.0), var) for v, var in runs
            ]
        stacked = torch.stack([v for v, _ in runs])
        values = stacked.mean(0)
        variance = torch.stack([var for _, var in runs]).mean(0)
        se = None
        if replicates > 1:
            from convscope.sensitivity.estimators import _t_quantile

            half = _t_quantile(0.5 + level / 2, replicates - 1) * stacked.std(0) / replicates**0.5
            intervals = torch.stack([values - half, values + half], dim=1)
    else:
        gen = torch_generator(seed, "cpu")
        b_t = torch.as_tensor(bounds_np, dtype=dtype, device=dev)
        gmat = _group_matrix(resolved, d)
        if method == "random_permutation":
            assert n_perm is not None
            if d == 1:
                raise InputError("method='random_permutation' needs d >= 2; use 'exact'.")
            values, variance, se = _random_permutation(
                ev, d, n, n_perm, n_outer, n_inner, b_t, gen, gmat, progress
            )
        else:
            values, variance, se = _goda(ev, d, n, b_t, gen, gmat, progress)
    if normalize and method != "exact":
        # Outputs with zero variance have no effects to share; report zeros, not NaN.
        scale = torch.where(variance > 0, 1.0 / variance.clamp_min(1e-300), 0.0)
        values = values * scale
        se = None if se is None else se * scale
    if se is not None:
        z = _z_quantile(level)
        intervals = torch.stack([values - z * se, values + z * se], dim=1)
    out_shape = ev.out_shape or ()
    values = values.reshape(k, *out_shape)
    variance = variance.reshape(out_shape)
    if intervals is not None:
        intervals = intervals.reshape(k, 2, *out_shape)
    uses_perm = method == "random_permutation"
    return ShapleyResult(
        values=values,
        variance=variance,
        intervals=intervals,
        n_evaluations=ev.count,
        method=method,
        groups=[list(g) for g in resolved],
        normalize=bool(normalize),
        n=n,
        n_perm=n_perm if uses_perm else None,
        n_outer=n_outer if uses_perm else None,
        n_inner=n_inner if uses_perm else None,
        level=float(level),
        seed=seed_value,
        replicates=replicates,
    )
