r"""Accuracy of Sobol' index estimators per model evaluation: convscope against SALib 1.6.

Run (the full benchmark, a few minutes on one core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sobol_estimators.py --seeds 100 \
        --out sobol_rmse.json

Quick check: ``--seeds 5 --max-log2 8``.

**Test functions** with analytic indices:

* Ishigami (Ishigami & Homma 1990), :math:`f(x) = \sin x_1 + a \sin^2 x_2 + b\, x_3^4 \sin x_1`,
  :math:`a = 7`, :math:`b = 0.1`, :math:`x \sim U[-\pi, \pi]^3`. With
  :math:`V_1 = \tfrac12 (1 + b\pi^4/5)^2`, :math:`V_2 = a^2/8`,
  :math:`V_{13} = b^2 \pi^8 (1/18 - 1/50)` and :math:`V = V_1 + V_2 + V_{13}`:
  :math:`S = (V_1, V_2, 0)/V`, :math:`S^T = (V_1 + V_{13}, V_2, V_{13})/V`.
* Sobol' G function (Saltelli & Sobol' 1995), :math:`f(x) = \prod_j (|4x_j - 2| + a_j)/(1 + a_j)`,
  :math:`a = (0, 1, 4.5, 9, 99, 99, 99, 99)`, :math:`x \sim U[0, 1]^8`. With
  :math:`V_j = 1 / (3 (1 + a_j)^2)` and :math:`V = \prod_j (1 + V_j) - 1`:
  :math:`S_j = V_j / V`, :math:`S^T_j = V_j \prod_{i \ne j} (1 + V_i) / V`.

**Budgets.** N = 2^6 ... 2^12 base rows, i.e. N (d + 2) model evaluations for first and total
indices (no second order), the same count for every column of a row.

**Estimators.**

* SALib 1.6 defaults: ``SALib.sample.sobol.sample(problem, N, calc_second_order=False,
  seed=s)`` (scrambled Sobol') and ``SALib.analyze.sobol.analyze(problem, Y,
  calc_second_order=False, seed=s)`` (Saltelli 2010 S1, Jansen ST, 100 bootstrap resamples for
  ``S1_conf``/``ST_conf``).
* convscope: the pick-freeze design of :func:`convscope.sensitivity.pick_freeze_design`
  (``method="sobol"``, seed s: the same scrambling as SALib's seed s, which the script checks
  point by point) and the estimators of :class:`convscope.sensitivity.SobolAccumulator`:
  first order ``saltelli2010``/``janon``/``martinez``, total ``jansen``/``homma``/``martinez``.
  All of them are evaluated from one accumulator per design, which is the code path of
  :func:`convscope.sensitivity.sobol_indices`; the script checks, for every budget, that
  ``sobol_indices(f, bounds, N, first_order=..., total_order=..., seed=0)`` returns the same
  numbers. The same estimators on ``method="random"`` (plain Monte Carlo) are the reference
  without quasi-random points.

Because SALib and convscope use the same seeds, their designs are identical and the SALib
column equals our ``saltelli2010``/``jansen`` column to rounding (the script reports the
largest difference); the estimator columns are therefore paired comparisons on the same points.

**Metrics** over ``--seeds`` seeds s = 0, 1, ...: the root mean square error against the
analytic value of each variable, :math:`\mathrm{RMSE}_j = (\frac1R \sum_s (\hat S_{j,s} -
S_j)^2)^{1/2}`, reported as the mean over variables and (in the JSON and in brackets) the
maximum over variables. Coverage (share of seeds × variables whose 95 % interval holds the
analytic value) of SALib's ``S ± S_conf`` (normal bootstrap, 100 resamples) and of
:func:`convscope.sensitivity.bootstrap_intervals` (BCa, ``--n-boot`` resamples) with the
default estimators on the same outputs, and of the same BCa intervals on the random design
(where the bootstrap's assumption of independent rows holds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import numpy as np
import torch
from SALib.analyze import sobol as salib_analyze
from SALib.sample import sobol as salib_sample

from convscope.sensitivity import (
    FIRST_ORDER_ESTIMATORS,
    TOTAL_ORDER_ESTIMATORS,
    SobolAccumulator,
    bootstrap_intervals,
    pick_freeze_design,
    sobol_indices,
)

ISHIGAMI_A, ISHIGAMI_B = 7.0, 0.1
G_A = (0.0, 1.0, 4.5, 9.0, 99.0, 99.0, 99.0, 99.0)
FirstOrder = Literal["saltelli2010", "janon", "martinez"]
TotalOrder = Literal["jansen", "homma", "martinez"]
FIRST: tuple[FirstOrder, ...] = ("saltelli2010", "janon", "martinez")
TOTAL: tuple[TotalOrder, ...] = ("jansen", "homma", "martinez")
# The benchmark must cover every estimator the library offers.
assert FIRST == FIRST_ORDER_ESTIMATORS and TOTAL == TOTAL_ORDER_ESTIMATORS
DEFAULT_FIRST: FirstOrder = "saltelli2010"
DEFAULT_TOTAL: TotalOrder = "jansen"


@dataclass(frozen=True)
class Problem:
    """A test function on a box, with its analytic first-order and total indices."""

    name: str
    func: Callable[[torch.Tensor], torch.Tensor]
    bounds: list[list[float]]
    first_order: np.ndarray
    total_order: np.ndarray

    @property
    def d(self) -> int:
        """Number of inputs."""
        return len(self.bounds)


def ishigami(x: torch.Tensor) -> torch.Tensor:
    """Ishigami function of an (m, 3) tensor."""
    s1 = torch.sin(x[:, 0])
    return s1 + ISHIGAMI_A * torch.sin(x[:, 1]) ** 2 + ISHIGAMI_B * x[:, 2] ** 4 * s1


def ishigami_problem() -> Problem:
    """Ishigami on [-pi, pi]^3 with its analytic indices (Ishigami & Homma 1990)."""
    pi4, pi8 = math.pi**4, math.pi**8
    v1 = 0.5 * (1 + ISHIGAMI_B * pi4 / 5) ** 2
    v2 = ISHIGAMI_A**2 / 8
    v13 = ISHIGAMI_B**2 * pi8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return Problem(
        name=f"Ishigami (a={ISHIGAMI_A:g}, b={ISHIGAMI_B:g}, d=3)",
        func=ishigami,
        bounds=[[-math.pi, math.pi]] * 3,
        first_order=np.array([v1, v2, 0.0]) / v,
        total_order=np.array([v1 + v13, v2, v13]) / v,
    )


def g_problem(a: Sequence[float] = G_A) -> Problem:
    """Sobol' G on [0, 1]^d with its analytic indices (Saltelli & Sobol' 1995)."""
    coef = torch.tensor(a, dtype=torch.float64)

    def g_function(x: torch.Tensor) -> torch.Tensor:
        c = coef.to(x)
        return torch.prod(((4 * x - 2).abs() + c) / (1 + c), dim=1)

    a_np = np.asarray(a, dtype=np.float64)
    vj = 1 / (3 * (1 + a_np) ** 2)
    v = np.prod(1 + vj) - 1
    # prod_{i != j} (1 + V_i) = prod_i (1 + V_i) / (1 + V_j)
    total = vj * np.prod(1 + vj) / (1 + vj) / v
    return Problem(
        name=f"Sobol' G (a=({', '.join(f'{x:g}' for x in a)}), d={len(a)})",
        func=g_function,
        bounds=[[0.0, 1.0]] * len(a),
        first_order=vj / v,
        total_order=total,
    )


# --------------------------------------------------------------------------------------------
# One budget


def column_names() -> list[str]:
    """Estimator columns: SALib, ours on Sobol' points, ours on random points (defaults)."""
    return ["salib"] + [f"sobol/{e}" for e in FIRST] + [f"random/{e}" for e in FIRST]


def total_column_names() -> list[str]:
    """Total-order columns, in the order of :func:`column_names`."""
    return ["salib"] + [f"sobol/{e}" for e in TOTAL] + [f"random/{e}" for e in TOTAL]


def ours(
    problem: Problem, n: int, seed: int, method: str
) -> tuple[
    torch.Tensor,
    dict[str, np.ndarray],
    dict[str, np.ndarray],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
]:
    """Design rows in SALib's order, every estimator, and the outputs (f_A, f_B, f_AB)."""
    design = pick_freeze_design(problem.d, n, method=method, bounds=problem.bounds, seed=seed)
    rows = design.rows("salib")
    y = problem.func(rows)
    f_a, f_b, f_ab, _ = design.split(y, "salib")
    acc = SobolAccumulator(design.k).update(f_a, f_b, f_ab)
    s1: dict[str, np.ndarray] = {
        e: acc.indices(e, DEFAULT_TOTAL).first_order.numpy() for e in FIRST
    }
    st: dict[str, np.ndarray] = {
        e: acc.indices(DEFAULT_FIRST, e).total_order.numpy() for e in TOTAL
    }
    return rows, s1, st, (f_a, f_b, f_ab)


def check_one_call_api(problem: Problem, n: int) -> float:
    """Largest difference between :func:`sobol_indices` and the accumulator path (seed 0)."""
    _, s1, st, _ = ours(problem, n, 0, "sobol")
    worst = 0.0
    for first, total in zip(FIRST, TOTAL, strict=True):
        res = sobol_indices(
            problem.func, problem.bounds, n, first_order=first, total_order=total, seed=0,
            progress=False,
        )  # fmt: skip
        worst = max(
            worst,
            float(np.abs(res.first_order.numpy() - s1[first]).max()),
            float(np.abs(res.total_order.numpy() - st[total]).max()),
        )
    return worst


def run_budget(problem: Problem, n: int, seeds: int, n_boot: int) -> dict[str, Any]:
    """Estimates for every seed at one budget; returns RMSE, coverage, parity and timing."""
    d = problem.d
    salib_problem = {
        "num_vars": d,
        "names": [f"x{j + 1}" for j in range(d)],
        "bounds": problem.bounds,
    }
    first_cols, total_cols = column_names(), total_column_names()
    s1 = {c: np.empty((seeds, d)) for c in first_cols}
    st = {c: np.empty((seeds, d)) for c in total_cols}
    covered = {
        key: np.empty((seeds, d), dtype=bool)
        for key in ("salib/S1", "salib/ST", "bca/S1", "bca/ST", "bca-random/S1", "bca-random/ST")
    }
    parity = 0.0
    seconds = {"salib": 0.0, "convscope": 0.0, "bootstrap": 0.0}
    for s in range(seeds):
        start = time.perf_counter()
        x_salib = salib_sample.sample(salib_problem, n, calc_second_order=False, seed=s)
        y_salib = problem.func(torch.from_numpy(x_salib)).numpy()
        res = salib_analyze.analyze(salib_problem, y_salib, calc_second_order=False, seed=s)
        seconds["salib"] += time.perf_counter() - start

        start = time.perf_counter()
        rows, ours_s1, ours_st, blocks = ours(problem, n, s, "sobol")
        seconds["convscope"] += time.perf_counter() - start
        if not np.array_equal(rows.numpy(), x_salib):
            raise AssertionError(f"design differs from SALib's at N={n}, seed {s}")
        _, rand_s1, rand_st, rand_blocks = ours(problem, n, s, "random")

        start = time.perf_counter()
        iv = bootstrap_intervals(*blocks, n_boot=n_boot, method="bca", seed=s)
        iv_random = bootstrap_intervals(*rand_blocks, n_boot=n_boot, method="bca", seed=s)
        seconds["bootstrap"] += time.perf_counter() - start

        s1["salib"][s], st["salib"][s] = res["S1"], res["ST"]
        for e in FIRST:
            s1[f"sobol/{e}"][s], s1[f"random/{e}"][s] = ours_s1[e], rand_s1[e]
        for t in TOTAL:
            st[f"sobol/{t}"][s], st[f"random/{t}"][s] = ours_st[t], rand_st[t]
        parity = max(
            parity,
            float(np.abs(res["S1"] - ours_s1[DEFAULT_FIRST]).max()),
            float(np.abs(res["ST"] - ours_st[DEFAULT_TOTAL]).max()),
        )
        true1, true_t = problem.first_order, problem.total_order
        covered["salib/S1"][s] = np.abs(res["S1"] - true1) <= res["S1_conf"]
        covered["salib/ST"][s] = np.abs(res["ST"] - true_t) <= res["ST_conf"]
        lo1, hi1 = iv.first_order_low.numpy(), iv.first_order_high.numpy()
        lot, hit = iv.total_order_low.numpy(), iv.total_order_high.numpy()
        covered["bca/S1"][s] = (lo1 <= true1) & (true1 <= hi1)
        covered["bca/ST"][s] = (lot <= true_t) & (true_t <= hit)
        lo1, hi1 = iv_random.first_order_low.numpy(), iv_random.first_order_high.numpy()
        lot, hit = iv_random.total_order_low.numpy(), iv_random.total_order_high.numpy()
        covered["bca-random/S1"][s] = (lo1 <= true1) & (true1 <= hi1)
        covered["bca-random/ST"][s] = (lot <= true_t) & (true_t <= hit)

    def rmse(est: np.ndarray, truth: np.ndarray) -> list[float]:
        return np.sqrt(((est - truth) ** 2).mean(0)).tolist()

    return {
        "n": n,
        "evaluations": n * (d + 2),
        "rmse_first_order": {c: rmse(v, problem.first_order) for c, v in s1.items()},
        "rmse_total_order": {c: rmse(v, problem.total_order) for c, v in st.items()},
        "bias_first_order": {c: (v.mean(0) - problem.first_order).tolist() for c, v in s1.items()},
        "bias_total_order": {c: (v.mean(0) - problem.total_order).tolist() for c, v in st.items()},
        "coverage": {key: float(v.mean()) for key, v in covered.items()},
        "salib_vs_convscope_max_abs_diff": parity,
        "sobol_indices_vs_accumulator_max_abs_diff": check_one_call_api(problem, n),
        "seconds": seconds,
    }


# --------------------------------------------------------------------------------------------
# Report


def markdown_table(
    budgets: list[dict[str, Any]], key: str, columns: list[str], header: list[str]
) -> str:
    """Mean RMSE over variables, with the worst variable in brackets, one row per budget."""
    lines = [
        "| N | evaluations | " + " | ".join(header) + " |",
        "|---:|---:|" + "---:|" * len(columns),
    ]
    for row in budgets:
        cells = []
        per_column = {c: np.asarray(row[key][c]) for c in columns}
        # Bold the best Sobol'-point columns as printed, so equal-looking cells are all bold
        # (SALib's column and our default one are the same numbers up to rounding).
        shown = {c: f"{v.mean():.4f}" for c, v in per_column.items()}
        best = min(float(t) for c, t in shown.items() if not c.startswith("random"))
        for c in columns:
            v = per_column[c]
            cell = f"{v.mean():.4f} ({v.max():.3f})"
            bold = not c.startswith("random") and float(shown[c]) == best
            cells.append(f"**{cell}**" if bold else cell)
        lines.append(f"| {row['n']} | {row['evaluations']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def coverage_table(budgets: list[dict[str, Any]]) -> str:
    lines = [
        "| N | SALib S1 ± S1_conf | SALib ST ± ST_conf | BCa S1, Sobol' points "
        "| BCa ST, Sobol' points | BCa S1, random points | BCa ST, random points |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in budgets:
        cov = row["coverage"]
        lines.append(
            f"| {row['n']} | {cov['salib/S1']:.3f} | {cov['salib/ST']:.3f} | "
            f"{cov['bca/S1']:.3f} | {cov['bca/ST']:.3f} | "
            f"{cov['bca-random/S1']:.3f} | {cov['bca-random/ST']:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=100, help="independent designs per budget")
    parser.add_argument("--min-log2", type=int, default=6, help="smallest budget N = 2^min-log2")
    parser.add_argument("--max-log2", type=int, default=12, help="largest budget N = 2^max-log2")
    parser.add_argument(
        "--n-boot", type=int, default=1000, help="resamples of convscope's BCa intervals"
    )
    parser.add_argument("--out", default=None, help="write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.seeds < 2 or not 1 <= args.min_log2 <= args.max_log2:
        parser.error("need --seeds >= 2 and 1 <= --min-log2 <= --max-log2")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = "python benchmarks/bench_sobol_estimators.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    machine = (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"torch threads: {torch.get_num_threads()}, python {platform.python_version()}, "
        f"torch {torch.__version__}, SALib {version('SALib')}, "
        f"numpy {np.__version__}"
    )
    print(f"- command: `{command.strip()}`")
    print(f"- machine: {machine}")
    report: dict[str, Any] = {"command": command.strip(), "machine": machine, "seeds": args.seeds}
    start = time.perf_counter()
    for problem in (ishigami_problem(), g_problem()):
        budgets = []
        for m in range(args.min_log2, args.max_log2 + 1):
            row = run_budget(problem, 2**m, args.seeds, args.n_boot)
            budgets.append(row)
            print(
                f"  {problem.name}: N={2**m} done ({sum(row['seconds'].values()):.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        report[problem.name] = {
            "first_order": problem.first_order.tolist(),
            "total_order": problem.total_order.tolist(),
            "budgets": budgets,
        }
        first_header = ["SALib 1.6"] + [
            f"{e} ({'sobol' if i < 3 else 'random'})" for i, e in enumerate(FIRST * 2)
        ]
        total_header = ["SALib 1.6"] + [
            f"{e} ({'sobol' if i < 3 else 'random'})" for i, e in enumerate(TOTAL * 2)
        ]
        d = problem.d
        print(f"\n### {problem.name}: first-order RMSE, {args.seeds} seeds, N (d+2) = {d + 2}N")
        print()
        print(markdown_table(budgets, "rmse_first_order", column_names(), first_header))
        print(f"\n### {problem.name}: total-order RMSE, {args.seeds} seeds")
        print()
        print(markdown_table(budgets, "rmse_total_order", total_column_names(), total_header))
        print(f"\n### {problem.name}: coverage of 95 % intervals (default estimators)")
        print()
        print(coverage_table(budgets))
        parity = max(row["salib_vs_convscope_max_abs_diff"] for row in budgets)
        api = max(row["sobol_indices_vs_accumulator_max_abs_diff"] for row in budgets)
        print(
            f"\nmax |SALib - convscope (saltelli2010/jansen)| over all seeds and budgets: "
            f"{parity:.1e}; max |sobol_indices - accumulator|: {api:.1e}"
        )
        seconds = {
            key: sum(row["seconds"][key] for row in budgets) for key in budgets[0]["seconds"]
        }
        print(
            "time over all seeds and budgets: "
            + ", ".join(f"{key} {value:.1f} s" for key, value in seconds.items())
        )
    report["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {report['total_seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
