r"""Pick-freeze sampling designs for variance-based sensitivity analysis.

Sobol' indices (Sobol' 1993, 2001) split the variance of a model output :math:`Y = f(X)`
with independent inputs :math:`X = (X_1, \dots, X_d)` over the inputs and their groups:
the first-order index of a group :math:`u` is :math:`S_u = \mathrm{Var}(E[Y \mid X_u]) /
\mathrm{Var}(Y)` and its total index is :math:`S^T_u = E[\mathrm{Var}(Y \mid X_{-u})] /
\mathrm{Var}(Y)`. Both are covariances between :math:`f` at two points that share some
coordinates and redraw the others ("pick and freeze"). Saltelli (2002) and Saltelli et al.
(2010) estimate every one of them from two independent :math:`N \times d` matrices
:math:`A` and :math:`B` and the hybrids

.. math::

    (A_B^{(j)})_{i\ell} = \begin{cases} B_{i\ell} & \ell \in u_j \\ A_{i\ell} & \text{else}
    \end{cases}, \qquad
    (B_A^{(j)})_{i\ell} = \begin{cases} A_{i\ell} & \ell \in u_j \\ B_{i\ell} & \text{else}
    \end{cases},

one per group :math:`u_j`, :math:`j = 0, \dots, k-1` (Jacques et al. 2006 for groups: a
group is swapped as a whole). First and total indices need :math:`f(A), f(B), f(A_B^{(j)})`,
i.e. :math:`N(k + 2)` evaluations; second-order indices also need :math:`f(B_A^{(j)})`,
:math:`N(2k + 2)` evaluations (Saltelli 2002, Theorem 1).

The rows of :math:`[A \; B]` are the points of one :math:`2d`-dimensional design:

* ``"sobol"``: a scrambled Sobol' sequence (``scipy.stats.qmc.Sobol``, Joe & Kuo 2008
  direction numbers, Owen/Matoušek linear matrix scrambling plus digital shift), as SALib
  1.6's ``SALib.sample.sobol.sample`` builds it: :math:`A` is the first :math:`d` columns,
  :math:`B` the last :math:`d`, no point skipped. Its balance properties hold only for
  :math:`N = 2^m` points taken from the start of the sequence (Owen 2020, "On dropping the
  first Sobol' point"), so :math:`N` must be a power of two.
* ``"random"``: independent uniform points (plain Monte Carlo).
* ``"lhs"``: :math:`A` and :math:`B` are independent Latin hypercubes (McKay et al. 1979;
  ``scipy.stats.qmc.LatinHypercube``): each column has exactly one point in each of the
  :math:`N` strata :math:`[i/N, (i+1)/N)`.

Points lie in the unit cube :math:`[0, 1)^d`, or are mapped affinely onto ``bounds``
(:math:`x \mapsto \ell + x (u - \ell)`, the map SALib uses).

:meth:`PickFreezeDesign.rows` stacks the evaluation points in one of two orders:
``"blocks"`` (:math:`A; B; A_B^{(0)}; \dots; B_A^{(0)}; \dots`) or ``"salib"``, SALib's
interleaved order (for every base row :math:`i`: :math:`A_i, A_{B,i}^{(0..k-1)},
[B_{A,i}^{(0..k-1)}], B_i`), so outputs computed for one tool can be analysed by the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import qmc

from convscope.core.errors import InputError
from convscope.core.seeding import SeedLike, numpy_generator

__all__ = ["DESIGN_METHODS", "ROW_LAYOUTS", "PickFreezeDesign", "pick_freeze_design"]

#: Base designs accepted by :func:`pick_freeze_design`.
DESIGN_METHODS = ("sobol", "random", "lhs")
#: Row orders accepted by :meth:`PickFreezeDesign.rows` and :meth:`PickFreezeDesign.split`.
ROW_LAYOUTS = ("blocks", "salib")

Layout = Literal["blocks", "salib"]


def _check_layout(layout: str) -> None:
    if layout not in ROW_LAYOUTS:
        raise InputError(
            f"Unknown row layout {layout!r}. Use one of {', '.join(map(repr, ROW_LAYOUTS))}."
        )


@dataclass(frozen=True)
class PickFreezeDesign:
    r"""The matrices :math:`A, B, A_B^{(j)}, B_A^{(j)}` of a pick-freeze (Saltelli) design.

    Build one with :func:`pick_freeze_design`.

    Attributes
    ----------
    a, b : torch.Tensor
        (N, d) independent base designs, in :math:`[0, 1)^d` or scaled to ``bounds``.
    ab : torch.Tensor
        (k, N, d); ``ab[j]`` is ``a`` with the columns of ``groups[j]`` taken from ``b``.
    ba : torch.Tensor or None
        (k, N, d); ``ba[j]`` is ``b`` with the columns of ``groups[j]`` taken from ``a``
        (second-order designs only).
    groups : tuple of tuple of int
        The k groups of variable indices; every variable is in exactly one group.
    bounds : torch.Tensor or None
        (d, 2) lower and upper bounds the points were scaled to, or None for the unit cube.
    method : str
        ``"sobol"``, ``"random"`` or ``"lhs"``.
    seed : int or None
        Seed of the base design (None when a generator object was passed).
    n : int
        Number of base rows N.
    """

    a: torch.Tensor
    b: torch.Tensor
    ab: torch.Tensor
    ba: torch.Tensor | None
    groups: tuple[tuple[int, ...], ...]
    bounds: torch.Tensor | None
    method: str
    seed: int | None
    n: int

    @property
    def k(self) -> int:
        """Number of groups k."""
        return len(self.groups)

    @property
    def d(self) -> int:
        """Number of variables d."""
        return int(self.a.shape[1])

    @property
    def second_order(self) -> bool:
        """Whether the design holds the :math:`B_A^{(j)}` matrices."""
        return self.ba is not None

    @property
    def evaluations_per_row(self) -> int:
        """Model evaluations per base row: k + 2, or 2k + 2 with second order."""
        return (2 * self.k + 2) if self.second_order else (self.k + 2)

    @property
    def n_evaluations(self) -> int:
        """Total model evaluations: N (k + 2), or N (2k + 2) with second order."""
        return self.n * self.evaluations_per_row

    def rows(self, layout: Layout = "blocks") -> torch.Tensor:
        r"""All evaluation points stacked into one (n_evaluations, d) matrix.

        Parameters
        ----------
        layout : {"blocks", "salib"}
            ``"blocks"``: :math:`[A; B; A_B^{(0)}; \dots; A_B^{(k-1)}; B_A^{(0)}; \dots]`.
            ``"salib"``: the order of SALib 1.6 ``sobol.sample``: for every base row
            :math:`i`, :math:`A_i, A_{B,i}^{(0)}, \dots, A_{B,i}^{(k-1)}`, then (second order)
            :math:`B_{A,i}^{(0)}, \dots, B_{A,i}^{(k-1)}`, then :math:`B_i`.

        Returns
        -------
        torch.Tensor
            (n_evaluations, d), on the design's device and dtype.
        """
        _check_layout(layout)
        hybrids = [self.ab] if self.ba is None else [self.ab, self.ba]
        if layout == "blocks":
            parts = [self.a, self.b] + [h.reshape(-1, self.d) for h in hybrids]
            return torch.cat(parts)
        per_row = [self.a[:, None]] + [h.transpose(0, 1) for h in hybrids] + [self.b[:, None]]
        return torch.cat(per_row, dim=1).reshape(self.n_evaluations, self.d)

    def split(
        self, outputs: torch.Tensor | np.ndarray, layout: Layout = "blocks"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Split model outputs on :meth:`rows` back into the pick-freeze blocks.

        Parameters
        ----------
        outputs : torch.Tensor or numpy.ndarray
            (n_evaluations, ...) outputs, row r computed on ``rows(layout)[r]``.
        layout : {"blocks", "salib"}
            The layout the rows were produced in.

        Returns
        -------
        f_a, f_b : torch.Tensor
            (N, ...) outputs on A and on B.
        f_ab : torch.Tensor
            (k, N, ...) outputs on :math:`A_B^{(j)}`.
        f_ba : torch.Tensor or None
            (k, N, ...) outputs on :math:`B_A^{(j)}` (None unless second order).
        """
        _check_layout(layout)
        out = torch.as_tensor(outputs)
        if out.ndim == 0 or out.shape[0] != self.n_evaluations:
            got = "a scalar" if out.ndim == 0 else f"{out.shape[0]} rows"
            raise InputError(
                f"outputs must have one row per design row ({self.n_evaluations} = "
                f"{self.n} x {self.evaluations_per_row}), got {got}. Evaluate the model on "
                f"design.rows({layout!r})."
            )
        n, k, tail = self.n, self.k, tuple(out.shape[1:])
        f_ba: torch.Tensor | None = None
        if layout == "blocks":
            f_a, f_b = out[:n], out[n : 2 * n]
            f_ab = out[2 * n : (k + 2) * n].reshape(k, n, *tail)
            if self.second_order:
                f_ba = out[(k + 2) * n :].reshape(k, n, *tail)
            return f_a, f_b, f_ab, f_ba
        per_row = out.reshape(n, self.evaluations_per_row, *tail)
        f_a, f_b = per_row[:, 0], per_row[:, -1]
        f_ab = per_row[:, 1 : k + 1].transpose(0, 1).contiguous()
        if self.second_order:
            f_ba = per_row[:, k + 1 : 2 * k + 1].transpose(0, 1).contiguous()
        return f_a, f_b, f_ab, f_ba

    def subset(self, rows: slice) -> PickFreezeDesign:
        """The design restricted to the base rows ``rows`` (a slice of ``range(N)``)."""
        start, stop, step = rows.indices(self.n)
        if step != 1:
            raise InputError(f"rows must be a contiguous slice (step 1), got step {step}.")
        sl = slice(start, stop)
        return PickFreezeDesign(
            a=self.a[sl],
            b=self.b[sl],
            ab=self.ab[:, sl],
            ba=None if self.ba is None else self.ba[:, sl],
            groups=self.groups,
            bounds=self.bounds,
            method=self.method,
            seed=self.seed,
            n=max(stop - start, 0),
        )

    def blocks(self, batch_size: int) -> Iterator[tuple[slice, PickFreezeDesign]]:
        """Iterate over consecutive blocks of base rows, for streaming estimators.

        Parameters
        ----------
        batch_size : int
            Base rows per block. A block holds ``batch_size * evaluations_per_row``
            evaluation points; bound the forward passes with a separate batch size.

        Yields
        ------
        rows : slice
            The base rows of the block, a slice of ``range(N)``.
        design : PickFreezeDesign
            The design restricted to those rows (:meth:`subset`).
        """
        if (
            isinstance(batch_size, (bool, np.bool_))
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
        for start in range(0, self.n, int(batch_size)):
            sl = slice(start, min(start + int(batch_size), self.n))
            yield sl, self.subset(sl)


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _check_power_of_two(n: int) -> None:
    if n & (n - 1) == 0:
        return
    lower = 1 << (n.bit_length() - 1)
    raise InputError(
        f"n must be a power of two for a Sobol' design (its balance properties hold only for "
        f"2^m points), got n={n}. Use n={lower} or n={2 * lower}, or method='random' or "
        f"'lhs'."
    )


def _resolve_groups(
    groups: Sequence[Sequence[int | str]] | None, d: int, names: Sequence[str] | None
) -> tuple[tuple[int, ...], ...]:
    index: dict[str, int] = {}
    if names is not None:
        names = list(names)
        if len(names) != d or len(set(names)) != d:
            raise InputError(
                f"names must hold d={d} distinct variable names, got {len(names)} names "
                f"({len(set(names))} distinct)."
            )
        index = {str(name): i for i, name in enumerate(names)}
    if groups is None:
        return tuple((i,) for i in range(d))
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise InputError(
            "groups must be a list of lists of variable indices, e.g. [[0, 1], [2]]; "
            f"got {type(groups).__name__}."
        )
    resolved: list[tuple[int, ...]] = []
    owner: dict[int, int] = {}
    for g, group in enumerate(groups):
        if isinstance(group, np.ndarray):
            group = group.tolist()
        if isinstance(group, (str, bytes, int, np.integer)) or not isinstance(group, Sequence):
            raise InputError(
                f"groups[{g}] must be a list of variable indices, got {group!r}. "
                "Write a single variable as a one-element list, e.g. [[0, 1], [2]]."
            )
        if len(group) == 0:
            raise InputError(f"groups[{g}] is empty. Every group needs at least one variable.")
        members: list[int] = []
        for item in group:
            if isinstance(item, str):
                if item not in index:
                    hint = " Pass names=[...] to refer to variables by name." if not index else ""
                    raise InputError(f"groups[{g}] names an unknown variable {item!r}.{hint}")
                var = index[item]
            elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
                var = int(item)
                if not 0 <= var < d:
                    raise InputError(
                        f"groups[{g}] holds variable {var}, outside range(d) with d={d}."
                    )
            else:
                raise InputError(
                    f"groups[{g}] holds {item!r}; use variable indices (or names with names=)."
                )
            if var in owner:
                raise InputError(
                    f"Variable {var} is in groups[{owner[var]}] and groups[{g}]. Every "
                    "variable must be in exactly one group."
                )
            owner[var] = g
            members.append(var)
        resolved.append(tuple(members))
    missing = sorted(set(range(d)) - owner.keys())
    if missing:
        raise InputError(
            f"Variables {missing} are in no group. Every variable must be in exactly one group."
        )
    return tuple(resolved)


def _resolve_bounds(bounds: Any, d: int) -> np.ndarray | None:
    if bounds is None:
        return None
    if isinstance(bounds, torch.Tensor):
        bounds = bounds.detach().cpu().numpy()
    try:
        arr = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"bounds must be a (d, 2) array of numbers: {err}.") from None
    if arr.shape != (d, 2):
        raise InputError(
            f"bounds must have shape (d, 2) = ({d}, 2), one [lower, upper] pair per variable; "
            f"got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InputError("bounds must be finite.")
    bad = np.flatnonzero(arr[:, 0] >= arr[:, 1])
    if bad.size:
        raise InputError(
            f"bounds need lower < upper; variables {bad.tolist()} have lower >= upper."
        )
    return arr


def _base_design(
    method: str, d: int, n: int, scramble: bool, seed: int | np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    # scipy's legacy ``seed=`` keyword seeds the scrambling with ``default_rng(seed)`` itself;
    # its ``rng=`` keyword would spawn a child generator first and give other points. SALib
    # passes ``seed=``, so we do too.
    if method == "sobol":
        _check_power_of_two(n)
        if 2 * d > qmc.Sobol.MAXDIM:
            raise InputError(
                f"A Sobol' design of d={d} variables needs 2d={2 * d} dimensions, more than "
                f"scipy's {qmc.Sobol.MAXDIM}. Group the variables or use method='random'."
            )
        base = qmc.Sobol(d=2 * d, scramble=scramble, seed=seed).random(n)
        return base[:, :d], base[:, d:]
    if method == "lhs":
        sampler = qmc.LatinHypercube(d=d, scramble=scramble, seed=seed)
        return sampler.random(n), sampler.random(n)
    if method == "random":
        base = np.random.default_rng(seed).random((n, 2 * d))
        return base[:, :d], base[:, d:]
    raise InputError(
        f"Unknown design method {method!r}. Use one of {', '.join(map(repr, DESIGN_METHODS))}."
    )


def pick_freeze_design(
    d: int,
    n: int,
    *,
    groups: Sequence[Sequence[int | str]] | None = None,
    names: Sequence[str] | None = None,
    second_order: bool = False,
    method: str = "sobol",
    scramble: bool = True,
    bounds: Any = None,
    seed: SeedLike = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> PickFreezeDesign:
    r"""Build the pick-freeze matrices :math:`A, B, A_B^{(j)}` (and :math:`B_A^{(j)}`).

    :math:`(A_B^{(j)})_{i\ell} = B_{i\ell}` if :math:`\ell \in u_j`, else :math:`A_{i\ell}`;
    :math:`B_A^{(j)}` swaps the roles of A and B (Saltelli 2002; Saltelli et al. 2010).
    With ``method="sobol"`` and the same ``seed``, ``rows("salib")`` equals SALib 1.6
    ``SALib.sample.sobol.sample(problem, n, calc_second_order=second_order,
    scramble=scramble, seed=seed)`` (default ``skip_values=0``), groups included.

    Parameters
    ----------
    d : int
        Number of input variables.
    n : int
        Number of base rows N (a power of two for ``"sobol"``).
    groups : list of list of int (or str), optional
        The groups :math:`u_0, \dots, u_{k-1}`, each swapped as a whole; every variable in
        exactly one group. Default: one group per variable (k = d).
    names : list of str, optional
        Variable names, so that ``groups`` may name variables instead of indexing them.
    second_order : bool
        Also build :math:`B_A^{(j)}`, needed for second-order indices.
    method : {"sobol", "random", "lhs"}
        Scrambled Sobol' sequence of dimension 2d (A = first d columns, B = last d),
        independent uniform points, or two independent Latin hypercubes.
    scramble : bool
        Scramble the Sobol' sequence (LMS + digital shift), or jitter the Latin hypercube
        points inside their strata (False: stratum centres). Ignored by ``"random"``.
    bounds : array-like, optional
        (d, 2) lower and upper bounds; points are mapped by :math:`\ell + x(u - \ell)`.
        Default: the unit cube.
    seed : int, numpy or torch Generator, or None
        Seed of the base design (None: fresh entropy, recorded in the result).
    device, dtype
        Where the matrices live (default CPU, float64). The design is drawn in float64
        on the CPU first, so it does not depend on the device.

    Returns
    -------
    PickFreezeDesign

    References
    ----------
    Saltelli, A. (2002). Making best use of model evaluations to compute sensitivity indices.
    Computer Physics Communications 145(2), 280-297.

    Saltelli, A., Annoni, P., Azzini, I., Campolongo, F., Ratto, M., Tarantola, S. (2010).
    Variance based sensitivity analysis of model output. Design and estimator for the total
    sensitivity index. Computer Physics Communications 181(2), 259-270.

    Jacques, J., Lavergne, C., Devictor, N. (2006). Sensitivity analysis in presence of model
    uncertainty and correlated inputs. Reliability Engineering & System Safety 91, 1126-1134.
    """
    d = _check_count(d, "d")
    n = _check_count(n, "n")
    if method not in DESIGN_METHODS:
        raise InputError(
            f"Unknown design method {method!r}. Use one of {', '.join(map(repr, DESIGN_METHODS))}."
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating torch dtype, got {dtype!r}.")
    group_tuple = _resolve_groups(groups, d, names)
    lim = _resolve_bounds(bounds, d)
    recorded: int | None
    if seed is None:
        recorded = int(np.random.SeedSequence().entropy % (2**63))  # type: ignore[operator]
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        numpy_generator(seed)  # validates (non-negative)
        recorded = int(seed)
    else:
        recorded = None
    source = recorded if recorded is not None else numpy_generator(seed)

    a, b = _base_design(method, d, n, bool(scramble), source)
    if lim is not None:
        # Same operation order as SALib (x * (u - l) + l) so the scaled points agree bitwise.
        a = a * (lim[:, 1] - lim[:, 0]) + lim[:, 0]
        b = b * (lim[:, 1] - lim[:, 0]) + lim[:, 0]
    member = np.zeros((len(group_tuple), d), dtype=bool)
    for j, group in enumerate(group_tuple):
        member[j, list(group)] = True
    ab = np.where(member[:, None, :], b[None], a[None])
    ba = np.where(member[:, None, :], a[None], b[None]) if second_order else None

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)

    return PickFreezeDesign(
        a=tensor(a),
        b=tensor(b),
        ab=tensor(ab),
        ba=None if ba is None else tensor(ba),
        groups=group_tuple,
        bounds=None if lim is None else tensor(lim),
        method=method,
        seed=recorded,
        n=n,
    )
