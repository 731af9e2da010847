r"""Region Sobol' indices (Sobol-SBSA): overhead over the model, and the seed's SALib pipeline.

Run (the full benchmark, alone on the machine, about 10 minutes on 2 cores)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_region_sobol.py --json region_sobol.json

Smoke run (about a minute): ``--fast``.

**What is timed.** For every configuration (model, image size, grid of :math:`d` regions,
:math:`N` base rows) each image costs :math:`M = N (d + 2)` model evaluations (first and total
order, no second order), run in forward passes of ``--batch-size`` images (64, convscope's
default). Four variants see the same model, images, targets and budget:

* ``bare``: the floor. The model's forward passes alone on :math:`M` images per image, in the
  same batch sizes (``ceil(M / B)`` passes per image, the last one partial), on one pre-built
  batch per image, under ``torch.no_grad`` in eval mode. Nothing is perturbed or scored.
* ``convscope``: :func:`convscope.attribution.region_sobol` with its defaults
  (``perturbation="scale"``, factors :math:`\alpha_k \sim U[0, 2]` in the normalised space,
  scrambled Sobol' design, Saltelli 2010 / Jansen estimators, ``n_boot=100`` normal bootstrap
  intervals). ``convscope, n_boot=0`` skips the bootstrap. Their *overhead* is
  :math:`(t - t_{\text{bare}}) / t_{\text{bare}}`: everything beyond the forward passes
  (design, image construction on the model's device, scoring, estimators, bootstrap, and one
  extra forward pass of the clean image per image group for ``result.score``).
* ``seed pipeline``: what the seed's authors did with SALib, written as a plain, reasonable
  reimplementation: ``SALib.sample.sobol.sample(problem, N, calc_second_order=False)``
  (SALib 1.6; the seed used ``SALib.sample.saltelli.sample`` from SALib <= 1.4.5, deprecated
  since 1.4.6 and unscrambled, with the same number of rows), then a Python loop that builds
  each perturbed image with numpy, :math:`\tilde z = \alpha_{\ell(p)} z_p` on the normalised
  image :math:`z` (the seed's :math:`G^{-1}` stitching of the rescaled regions, as one
  per-row lookup of the factor map through the label image), batches the rows into the
  network (the same batch size, ``torch.no_grad``) and collects the target logits :math:`Y`,
  then ``SALib.analyze.sobol.analyze(problem, Y, calc_second_order=False)`` (its defaults:
  100 bootstrap resamples). It calls the network behind the wrapper's normalisation, on
  tensors it normalised once, as the seed fed torchvision models.

Wall time per image is the median over ``--repeats`` interleaved repeats (variant order
bare, convscope, convscope n_boot=0, seed, repeated), each run in a **fresh subprocess** so
that each variant's peak memory is its own. In each subprocess: model and images are loaded,
one warm-up forward pass of a full batch is run, the resident-set high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is read, the variant is timed, and the mark
is read again. The table gives the peak RSS of the process and its growth over the warm-up
mark (memory the variant needs beyond the model and one forward pass). On the first repeat a
second, untimed call runs under ``tracemalloc``, whose peak counts the Python and numpy
allocations (torch's own CPU allocator is invisible to it, hence the RSS columns).

**Correctness.** Both pipelines compute the same estimators on the same kind of design, so
with the same rows they must give the same indices. Each configuration is checked in float64
(model and images cast, so that rounding is far below the tolerance): the rows of
``pick_freeze_design(d, N, method="sobol", bounds=[(0, 2)] * d, seed=0)`` in SALib's row
order are compared with ``SALib.sample.sobol.sample(..., seed=0)`` and fed through the seed
pipeline; its ``S1``/``ST`` must match ``region_sobol(..., n_boot=0, seed=0)`` to 1e-6. The
float32 timed runs use the same seed, hence the same rows, and their largest difference is
reported too (float32 rounding of the images and logits only).

**Configurations.** ``shapes-cnn`` (the embedded model, trained, 64×64 shapes-world images,
target = ground-truth label) with 4×4 and 8×8 grids, :math:`N = 64`; torchvision
``resnet18`` with random weights (``weights=None``, seed 0, nothing downloaded) behind
convscope's ImageNet normalisation, 224×224 shapes-world renders, target = its predicted
class, 4×4 grid, :math:`N = 32` (``--resnet-n``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from SALib.analyze import sobol as salib_analyze
from SALib.sample import sobol as salib_sample
from torch import nn

# imported before any timing: a one-off cost of the process, not of either method
import harness
from convscope.attribution.region_sobol import region_sobol
from convscope.data.regions import grid_regions
from convscope.sensitivity.designs import pick_freeze_design

VARIANTS = ("bare", "convscope", "convscope-noboot", "seed")
LABELS = {
    "bare": "bare forward passes (floor)",
    "convscope": "convscope `region_sobol` (n_boot=100)",
    "convscope-noboot": "convscope `region_sobol` (n_boot=0)",
    "seed": "authors' pipeline (SALib sample + numpy + SALib analyze)",
}
FACTOR_BOUNDS = (0.0, 2.0)
CHECK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Config:
    """One benchmark setting: model, image side, grid, base rows N and number of images."""

    key: str
    model: str
    size: int
    grid: int
    n: int
    images: int

    @property
    def d(self) -> int:
        return self.grid * self.grid

    @property
    def evaluations(self) -> int:
        """Model evaluations per image, N (d + 2)."""
        return self.n * (self.d + 2)


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    if args.fast:
        return [
            Config("shapes-cnn 64px 4x4", "shapes-cnn", 64, 4, 16, 1),
            Config("resnet18 224px 4x4", "resnet18", 224, 4, 2, 1),
        ]
    return [
        Config("shapes-cnn 64px 4x4", "shapes-cnn", 64, 4, args.shapes_n, args.shapes_images),
        Config("shapes-cnn 64px 8x8", "shapes-cnn", 64, 8, args.shapes_n, args.shapes_images8),
        Config("resnet18 224px 4x4", "resnet18", 224, 4, args.resnet_n, args.resnet_images),
    ]


# --------------------------------------------------------------------------------------------
# Models, images, targets


def build_model(name: str) -> tuple[nn.Module, str]:
    """The [0, 1]-input model (eval mode, CPU) and a one-line description."""
    if name == "shapes-cnn":
        from convscope.models import load_model

        return load_model("shapes-cnn"), "shapes-cnn (embedded, trained)"
    if name == "resnet18":
        import torchvision

        from convscope.data.normalization import with_normalization

        torch.manual_seed(0)  # the same random weights in every subprocess
        net = torchvision.models.resnet18(weights=None).eval()
        return with_normalization(net), "torchvision resnet18 (random weights, seed 0)"
    raise SystemExit(f"unknown model {name!r}")


def split_wrapper(model: nn.Module) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """The network behind the wrapper's normalisation, and the mean and std (3×1×1)."""
    from convscope.data.normalization import NormalizedModel

    if not isinstance(model, NormalizedModel):
        raise SystemExit("the benchmark models must carry their normalisation (NormalizedModel)")
    norm: Any = model.normalize
    mean = norm.mean.detach().reshape(3, 1, 1).double().numpy()
    std = norm.std.detach().reshape(3, 1, 1).double().numpy()
    return model.model, mean, std


def load_inputs(config: Config, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes-world images (seed 0) and targets: the labels, or resnet18's predicted class."""
    from convscope.datasets import shapes

    world = shapes(config.images, seed=0, size=config.size)
    images = world.images.float()
    if config.model == "shapes-cnn":
        return images, world.labels.long()
    with torch.no_grad():
        return images, model(images).argmax(dim=1)


# --------------------------------------------------------------------------------------------
# The variants


def run_bare(model: nn.Module, images: torch.Tensor, m_rows: int, batch_size: int) -> None:
    """Forward passes alone: ``m_rows`` images per image in batches of ``batch_size``."""
    batches = [x.expand(batch_size, -1, -1, -1).contiguous() for x in images.split(1)]
    with torch.no_grad():
        for batch in batches:
            for start in range(0, m_rows, batch_size):
                model(batch[: min(batch_size, m_rows - start)])


def run_convscope(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    grid: int,
    n: int,
    n_boot: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``region_sobol`` with its defaults; returns the N×d first and total indices."""
    result = region_sobol(
        model, images, targets, grid, n=n, factor_bounds=FACTOR_BOUNDS, n_boot=n_boot,
        batch_size=batch_size, seed=0, progress=False,
    )  # fmt: skip
    return result.first_order.double().numpy(), result.total_order.double().numpy()


def salib_problem(d: int) -> dict[str, Any]:
    return {
        "num_vars": d,
        "names": [f"region_{k}" for k in range(d)],
        "bounds": [list(FACTOR_BOUNDS)] * d,
    }


def seed_pipeline_image(
    net: nn.Module,
    z: np.ndarray,
    labels: np.ndarray,
    target: int,
    rows: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    r"""Target logits of the perturbed images :math:`\tilde z = \alpha_{\ell(p)} z_p`, one per row.

    Parameters
    ----------
    net
        The network that takes normalised tensors.
    z
        The normalised image, 3×H×W, in the dtype the network runs in.
    labels
        H×W region ids 0..d-1.
    target
        Class whose logit is collected.
    rows
        M×d factors, one perturbed image per row.
    batch_size
        Images per forward pass.

    Returns
    -------
    numpy.ndarray
        M float64 scores.
    """
    y = np.empty(rows.shape[0])
    buffer = np.empty((batch_size, *z.shape), dtype=z.dtype)
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch_size):
            chunk = rows[start : start + batch_size]
            for j, row in enumerate(chunk):
                # G^-1: every region rescaled by its factor, stitched back into one image
                np.multiply(z, row.astype(z.dtype)[labels], out=buffer[j])
            out = net(torch.from_numpy(buffer[: chunk.shape[0]]))
            y[start : start + chunk.shape[0]] = out[:, target].double().numpy()
    return y


def run_seed(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    grid: int,
    n: int,
    batch_size: int,
    rows: np.ndarray | None = None,
    num_resamples: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed's pipeline, image by image: SALib sample, evaluate, SALib analyze."""
    net, mean, std = split_wrapper(model)
    dtype = np.float64 if images.dtype == torch.float64 else np.float32
    size = images.shape[-1]
    labels = grid_regions(size, size, grid).labels.numpy()
    problem = salib_problem(grid * grid)
    s1, st = [], []
    for image, target in zip(images.double().numpy(), targets.tolist(), strict=True):
        x_rows = (
            salib_sample.sample(problem, n, calc_second_order=False, seed=0)
            if rows is None
            else rows
        )
        z = ((image - mean) / std).astype(dtype)
        y = seed_pipeline_image(net, z, labels, int(target), x_rows, batch_size)
        result = salib_analyze.analyze(
            problem, y, calc_second_order=False, num_resamples=num_resamples, seed=0
        )
        s1.append(np.asarray(result["S1"]))
        st.append(np.asarray(result["ST"]))
    return np.stack(s1), np.stack(st)


# --------------------------------------------------------------------------------------------
# Worker: one variant in a fresh process


def maxrss_mb() -> float:
    """High-water mark of this process's resident set, MB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def variant_call(
    variant: str, config: Config, model: nn.Module, batch_size: int
) -> Callable[[], tuple[np.ndarray, np.ndarray] | None]:
    images, targets = load_inputs(config, model)
    if variant == "bare":
        return lambda: run_bare(model, images, config.evaluations, batch_size)
    if variant in ("convscope", "convscope-noboot"):
        n_boot = 100 if variant == "convscope" else 0
        return lambda: run_convscope(
            model, images, targets, config.grid, config.n, n_boot, batch_size
        )
    if variant == "seed":
        return lambda: run_seed(model, images, targets, config.grid, config.n, batch_size)
    raise SystemExit(f"unknown variant {variant!r}")


def warm_up(model: nn.Module, config: Config, batch_size: int) -> None:
    """One forward pass of each batch size the variants use, so that set-up is not timed.

    Full batches, the partial last batch of an image and the single clean image convscope
    scores; the first pass of a new shape pays for the allocator and kernel set-up.
    """
    sizes = {batch_size, config.evaluations % batch_size or batch_size, 1}
    with torch.no_grad():
        for size in sorted(sizes):
            model(torch.rand(size, 3, config.size, config.size))


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one variant once in this process; memory high-water marks around it."""
    torch.set_num_threads(int(spec["threads"]))
    config = Config(**spec["config"])
    batch_size = int(spec["batch_size"])
    model, _ = build_model(config.model)
    call = variant_call(spec["variant"], config, model, batch_size)
    warm_up(model, config, batch_size)
    rss_before = maxrss_mb()
    start = time.perf_counter()
    indices = call()
    seconds = time.perf_counter() - start
    rss_after = maxrss_mb()
    heap = None
    if spec["heap"]:
        tracemalloc.start()
        call()
        heap = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    out: dict[str, Any] = {
        "seconds": seconds,
        "rss_peak_mb": rss_after,
        "rss_growth_mb": rss_after - rss_before,
        "heap_peak_mb": heap,
    }
    if indices is not None and spec["heap"]:
        out["first_order"], out["total_order"] = indices[0].tolist(), indices[1].tolist()
    return out


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Float64: our design rows against SALib's, and both pipelines on the same rows."""
    torch.set_num_threads(int(spec["threads"]))
    config = Config(**spec["config"])
    batch_size = int(spec["batch_size"])
    model, _ = build_model(config.model)
    images, targets = load_inputs(config, model)
    model, images = model.double(), images[:1].double()
    targets = targets[:1]
    design = pick_freeze_design(
        config.d, config.n, method="sobol", bounds=[FACTOR_BOUNDS] * config.d, seed=0,
        dtype=torch.float64,
    )  # fmt: skip
    rows = design.rows("salib").numpy()
    salib_rows = salib_sample.sample(
        salib_problem(config.d), config.n, calc_second_order=False, seed=0
    )
    ours = run_convscope(model, images, targets, config.grid, config.n, 0, batch_size)
    seed = run_seed(model, images, targets, config.grid, config.n, batch_size, rows=rows)
    return {
        "n": config.n,
        "design_max_diff": float(np.abs(rows - salib_rows).max()),
        "first_order_max_diff": float(np.abs(ours[0] - seed[0]).max()),
        "total_order_max_diff": float(np.abs(ours[1] - seed[1]).max()),
    }


# --------------------------------------------------------------------------------------------
# Orchestration


def spawn(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``mode`` of this script on ``spec`` in a fresh interpreter; its JSON answer."""
    return harness.spawn(__file__, mode, spec)


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def summarise(config: Config, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per variant: median s/image, overhead over bare, memory."""
    per_image = {
        v: statistics.median(r["seconds"] for r in runs[v]) / config.images for v in VARIANTS
    }
    rows = []
    for v in VARIANTS:
        first = runs[v][0]
        rows.append(
            {
                "variant": v,
                "seconds_per_image": per_image[v],
                "all_seconds": [r["seconds"] for r in runs[v]],
                "overhead_pct": 100 * (per_image[v] - per_image["bare"]) / per_image["bare"],
                "vs_seed": per_image["seed"] / per_image[v],
                "rss_peak_mb": max(r["rss_peak_mb"] for r in runs[v]),
                "rss_growth_mb": max(r["rss_growth_mb"] for r in runs[v]),
                "heap_peak_mb": first["heap_peak_mb"],
            }
        )
    return rows


def markdown(config: Config, rows: list[dict[str, Any]], repeats: int) -> str:
    lines = [
        f"**{config.key}**, N = {config.n}, d = {config.d}, {config.evaluations:,} evaluations "
        f"per image, {config.images} image(s), median of {repeats}:",
        "",
        "| variant | s/image | overhead over bare | seed time / this | peak RSS (MB) "
        "| RSS above warm-up (MB) | Python heap peak (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        overhead = "–" if row["variant"] == "bare" else f"{row['overhead_pct']:+.1f}%"
        lines.append(
            f"| {LABELS[row['variant']]} | {row['seconds_per_image']:.3f} | {overhead} "
            f"| {row['vs_seed']:.2f}× | {fmt(row['rss_peak_mb'], 0)} "
            f"| {fmt(row['rss_growth_mb'], 0)} | {fmt(row['heap_peak_mb'], 1)} |"
        )
    return "\n".join(lines)


def summary_table(report: dict[str, Any]) -> str:
    """One line per configuration: s/image of each variant, overheads, speed-up, check."""
    lines = [
        "| configuration | evaluations/image | bare (floor) | convscope, n_boot=100 "
        "| convscope, n_boot=0 | authors' pipeline | authors' / convscope | check (float64) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["configs"]:
        config = Config(**entry["config"])
        rows = {row["variant"]: row for row in entry["rows"]}

        def cell(v: str, rows: dict[str, dict[str, Any]] = rows) -> str:
            return f"{rows[v]['seconds_per_image']:.3f} s ({rows[v]['overhead_pct']:+.1f}%)"

        check = entry["check"]
        worst = max(check["first_order_max_diff"], check["total_order_max_diff"])
        lines.append(
            f"| {config.key}, N = {config.n} | {config.evaluations:,} "
            f"| {rows['bare']['seconds_per_image']:.3f} s | {cell('convscope')} "
            f"| {cell('convscope-noboot')} | {cell('seed')} "
            f"| {rows['convscope']['vs_seed']:.2f}× | {worst:.0e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--fast", action="store_true", help="1-minute smoke run (tiny budgets)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--shapes-n", type=int, default=64, help="base rows N for shapes-cnn")
    parser.add_argument("--shapes-images", type=int, default=4, help="images, shapes 4x4")
    parser.add_argument("--shapes-images8", type=int, default=2, help="images, shapes 8x8")
    parser.add_argument("--resnet-n", type=int, default=32, help="base rows N for resnet18")
    parser.add_argument("--resnet-images", type=int, default=1, help="images, resnet18")
    parser.add_argument("--check-n", type=int, default=16, help="N of the float64 check")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (unset: torch's default, OMP_NUM_THREADS)",
    )
    parser.add_argument("--json", default=None, help="write all measurements to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--check", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None or args.check is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = (
                worker(json.loads(args.worker)) if args.worker else check(json.loads(args.check))
            )
        print(json.dumps(answer))
        return

    threads = args.threads or torch.get_num_threads()
    repeats = 1 if args.fast else args.repeats
    print("command: python " + " ".join(sys.argv))
    env = harness.environment(threads)
    print(
        f"torch {env['torch']}, torchvision {env['torchvision']}, SALib {env['SALib']}, "
        f"numpy {env['numpy']}, {threads} threads, {env['cpus']} CPUs, {env['machine']}"
    )
    report: dict[str, Any] = {"environment": env, "argv": sys.argv, "configs": []}
    started = time.perf_counter()
    for config in configs_from_args(args):
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for r in range(repeats):
            for v in VARIANTS:
                spec = {"config": asdict(config), "variant": v, "threads": threads,
                        "batch_size": args.batch_size, "heap": r == 0}  # fmt: skip
                runs[v].append(spawn("worker", spec))
        rows = summarise(config, runs)
        ours, seed = runs["convscope-noboot"][0], runs["seed"][0]
        f32 = max(
            float(np.abs(np.subtract(ours[k], seed[k])).max())
            for k in ("first_order", "total_order")
        )
        check_config = Config(**{**asdict(config), "n": min(args.check_n, config.n)})
        checked = spawn(
            "check", {"config": asdict(check_config), "threads": threads,
                      "batch_size": args.batch_size}
        )  # fmt: skip
        worst = max(checked["first_order_max_diff"], checked["total_order_max_diff"])
        verdict = "PASS" if worst <= CHECK_TOLERANCE else "FAIL"
        print()
        print(markdown(config, rows, repeats))
        print()
        print(
            f"check (float64, N = {checked['n']}, same rows): design vs SALib sample max "
            f"|diff| {checked['design_max_diff']:.1e}; indices max |diff| {worst:.1e} "
            f"(tolerance {CHECK_TOLERANCE:.0e}) {verdict}; float32 timed runs (same seed, "
            f"same rows): max |diff| {f32:.1e}"
        )
        report["configs"].append(
            {"config": asdict(config), "rows": rows, "check": checked,
             "float32_max_index_diff": f32, "check_passed": verdict == "PASS"}
        )  # fmt: skip
    print("\nsummary (s/image, median; overhead over bare in brackets):\n")
    print(summary_table(report))
    report["wall_seconds"] = time.perf_counter() - started
    print(f"\nwhole benchmark: {report['wall_seconds']:.0f} s wall clock")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
