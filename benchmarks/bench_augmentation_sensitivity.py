r"""Activation sensitivity to augmentations (seed 000): streaming vs store-everything + SALib.

Run (the full benchmark, alone on the machine, at most about 15 minutes on 2 cores)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_augmentation_sensitivity.py \
        --json augmentation_sensitivity.json

Smoke run (1-2 minutes): ``--fast``.

**Problem.** Kharyuk et al. treat every scalar activation :math:`a_p` of chosen checkpoints as
a function of the SA variables (one group per augmentation, the permutation, the class) and
estimate first-order and total Sobol' indices per group from a Saltelli design of
:math:`M = N (k + 2)` evaluations (k groups, no second order): with
:math:`V = \operatorname{var}[f_A; f_B]`,
:math:`S_j = \overline{f_B (f_{A_B^{(j)}} - f_A)} / V` (Saltelli et al. 2010) and
:math:`S^T_j = \overline{(f_A - f_{A_B^{(j)}})^2} / (2V)` (Jansen 1999), outputs standardised
first (SALib). Both pipelines below compute exactly these estimators on the same rows.

**Variants** (same model, images, design rows; every one in a fresh subprocess):

* ``bare``: :math:`M` forward passes of pre-built batches of ``--batch-size`` images, no
  augmentation, no hooks (the floor).
* ``augment``: the same forward passes on the augmented images of the design rows (built by
  convscope's augmentation code, min-max rescaled), no hooks.
* ``augment+record``: as ``augment`` plus forward hooks on every checkpoint and the flattened
  float64 activations (what convscope feeds its accumulator) — isolates the recording cost.
* ``convscope``: :func:`convscope.sensitivity.augmentation.augmentation_sensitivity` with
  ``method="sobol"``; it streams design blocks into a
  :class:`~convscope.sensitivity.SobolAccumulator` (memory O(activations × k), independent of
  :math:`N`).
* ``store-everything`` (the authors' approach, spec §1.5, §2.7, a plain reimplementation): the
  design rows in SALib's layout (``pick_freeze_design(...).rows("salib")``, checked equal to
  ``SALib.sample.sobol.sample`` on the grouped problem), the model evaluated in batches of
  ``--batch-size`` on the same augmented images, and **every activation of every row stored**
  in one in-memory float32 numpy array :math:`M \times P` (the authors wrote it to HDF5 on
  disk; in memory here, so that its size shows up in the peak RSS). Then two analyses:

  - ``SALib per activation``: ``SALib.analyze.sobol.analyze(problem, Y[:, p],
    calc_second_order=False, num_resamples=R)`` for each column :math:`p`. Over all
    :math:`P` columns this would take too long, so it is timed on ``--salib-columns`` random
    columns (seed 0) and **extrapolated linearly** to :math:`P` (the per-column cost does not
    depend on the column).
  - ``vectorised numpy``: the same standardisation and formulas on all columns at once (in
    chunks of ``--chunk`` columns), as the authors' own vectorised re-implementation — the
    fairer reference.

Wall time is the median over ``--repeats`` interleaved repeats. Peak memory is the resident
set high-water mark of the subprocess (``ru_maxrss``), and its growth over the mark read after
the model, images and one warm-up pass were loaded (the memory the method needs). The stored
array grows as :math:`N`, convscope's sums do not, so one extra point with a larger
:math:`N` (``--big-n``, one repeat, only bare / convscope / store-everything) shows the
scaling; the printed memory model extrapolates the stored array to the authors'
:math:`N = 2^{17}`.

**Equal indices.** Checked in float64 (model and images cast, ``--check-n`` base rows, a
separate process), where the activations of both pipelines agree to rounding whatever the
batch composition: convscope's S1/ST maps against the store-everything reference on the same
rows, both its vectorised analysis (all activations) and SALib (300 random activations).
Compared are the activations whose :math:`[f_A; f_B]` values vary (standard deviation above
``1e-4`` times the activation's largest magnitude); the others have no index, the estimators
divide by :math:`\operatorname{var}[f_A; f_B] \approx 0` (SALib returns NaN, inf or rounding
noise, convscope 0), and their number is printed. The difference is
:math:`|S_{\text{ours}} - S_{\text{ref}}| / \max(1, |S_{\text{ref}}|)` (absolute for indices
in [0, 1]; relative for the huge estimates of nearly constant activations), against
``--tolerance``; convscope returns float32 maps, so about 1e-7 is the floor. The same
difference between the float32 timed runs is printed for information (threshold ``1e-3``).

**Projection.** The seed's AlexNet "si, A2" run: :math:`2^{17} \cdot 22 = 2{,}883{,}584`
evaluations over 205,672 activations (checkpoints ``features.2, .5, .7, .9, avgpool,
classifier.2, .5, .6``, spec §2.3), :math:`k = 10` groups; the authors took 2.9 days sampling
plus 11.1 days computing (spec §2.7) on a GTX 1080 Ti + 2 Tesla K80. Measured on this machine:
torchvision ``alexnet(weights=None)`` forward passes at 224×224 with hooks on those
checkpoints (the activation count is checked), the A2 augmentations of 224×224 images, and
:meth:`SobolAccumulator.update` for 205,672 outputs × 10 groups on blocks as convscope feeds
them (the A2 decoding has k = 9 there, no partition; the difference is one design column).
Their sum per evaluation × 2,883,584 is the projected wall time; convscope's memory for
that run is the accumulator (:math:`(4k + 8) P` float64 values) plus one block of activations,
against the authors' stored :math:`2{,}883{,}584 \times 205{,}672` floats.

**Configurations.** Model: the embedded ``shapes-cnn`` (trained, 64×64). Images:
``convscope.datasets.shapes(24, seed=0)`` (6 classes, one partition: the class variable is
used, the partition variable is not, so k = 7 for A1 and 9 for A2 instead of the authors' 8
and 10; two classes have a single image, so they cannot be split into two partitions).
Checkpoints ``model.features.relu1..relu4`` + ``model.classifier`` (122,886 activations per
evaluation) with A1 and A2, and the lighter ``relu3, relu4, classifier`` (24,582) with A2, all
at :math:`N` = ``--n`` (128); plus the memory-scaling point (relu1-4, A2, :math:`N` =
``--big-n``). Seed 0 everywhere (design, SALib's bootstrap, column subset).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# imported before any timing: a one-off cost of the process, not of either method
import harness
from convscope.core.hooks import record_activations
from convscope.sensitivity.augmentation.augmentation_sensitivity import (
    AugmentationProblem,
    ImageSource,
    _Evaluator,
    augmentation_sensitivity,
)
from convscope.sensitivity.augmentation.augmentations import augmentation_set
from convscope.sensitivity.designs import pick_freeze_design
from convscope.sensitivity.estimators import SobolAccumulator

VARIANTS = ("bare", "augment", "augment+record", "convscope", "store-everything")
# the memory-scaling point needs only the two pipelines (and the floor, for the throughput)
ONCE_VARIANTS = ("bare", "convscope", "store-everything")
LABELS = {
    "bare": "bare forward passes (floor)",
    "augment": "forward passes + augmentations",
    "augment+record": "forward + augmentations + hooks (float64 rows)",
    "convscope": "convscope `augmentation_sensitivity` (streaming)",
    "store-everything": "authors' approach: store every activation + analysis",
}
CHECK_REL = 1e-4  # float64 check: activations with sd[f_A; f_B] > CHECK_REL · max |a|
F32_REL = 1e-3  # float32 timed runs: the same, with float32 rounding in mind
CHECKPOINT_SETS = {
    "relu1-4+classifier": [
        "model.features.relu1",
        "model.features.relu2",
        "model.features.relu3",
        "model.features.relu4",
        "model.classifier",
    ],
    "relu3-4+classifier": ["model.features.relu3", "model.features.relu4", "model.classifier"],
}
ALEXNET_CHECKPOINTS = [
    "features.2",
    "features.5",
    "features.7",
    "features.9",
    "avgpool",
    "classifier.2",
    "classifier.5",
    "classifier.6",
]
ALEXNET_ACTIVATIONS = 205_672
ALEXNET_EVALUATIONS = 2**17 * 22
ALEXNET_GROUPS = 10
AUTHORS_DAYS = {"sampling": 2.9, "computing": 11.1}
SEED = 0
N_IMAGES = 24


@dataclass(frozen=True)
class Config:
    """One setting: checkpoint set, augmentation set, base rows N."""

    checkpoints: str
    augmentations: str
    n: int
    once: bool = False  # memory-scaling point: one repeat (peak memory needs no median)

    @property
    def key(self) -> str:
        return f"{self.checkpoints}, {self.augmentations}, N = {self.n}"


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    if args.fast:
        out = [Config("relu3-4+classifier", a, 16) for a in ("A1", "A2")]
        return [*out, Config("relu1-4+classifier", "A2", 32, once=True)]
    out = [Config("relu1-4+classifier", a, args.n) for a in ("A1", "A2")]
    out.append(Config("relu3-4+classifier", "A2", args.n))
    if args.big_n:
        out.append(Config("relu1-4+classifier", "A2", args.big_n, once=True))
    return out


# --------------------------------------------------------------------------------------------
# Set-up shared by the variants


@dataclass
class Setup:
    """Model, images, problem, design rows (SALib order) and the image builder."""

    model: nn.Module
    names: list[str]
    problem: AugmentationProblem
    rows: torch.Tensor
    evaluator: _Evaluator
    images: torch.Tensor
    labels: torch.Tensor


def build(config: Config, batch_size: int, dtype: torch.dtype = torch.float32) -> Setup:
    from convscope.datasets import shapes
    from convscope.models import load_model

    model = load_model("shapes-cnn").eval().to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    world = shapes(N_IMAGES, seed=SEED)
    images, labels = world.images.to(dtype), world.labels.long()
    names = CHECKPOINT_SETS[config.checkpoints]
    problem = AugmentationProblem(augmentation_set(config.augmentations))
    design = pick_freeze_design(
        problem.n_raw, config.n, groups=problem.groups, seed=SEED, dtype=torch.float64
    )
    evaluator = _Evaluator(
        model, images, ImageSource(labels), problem, names, batch_size=batch_size,
        rescale="minmax", softmax=set(), image_choice="deterministic", seed=SEED,
    )  # fmt: skip
    return Setup(model, names, problem, design.rows("salib"), evaluator, images, labels)


def salib_problem(problem: AugmentationProblem) -> dict[str, Any]:
    """The grouped SALib problem: raw columns on [0, 1], one group name per column."""
    return {
        "num_vars": problem.n_raw,
        "names": [f"x{i}" for i in range(problem.n_raw)],
        "bounds": [[0.0, 1.0]] * problem.n_raw,
        "groups": [problem.names[g] for g, cols in enumerate(problem.groups) for _ in cols],
    }


# --------------------------------------------------------------------------------------------
# The variants


def run_bare(s: Setup, batch_size: int) -> None:
    m = s.rows.shape[0]
    batch = s.images[torch.arange(batch_size) % s.images.shape[0]].contiguous()
    with torch.no_grad():
        for start in range(0, m, batch_size):
            s.model(batch[: min(batch_size, m - start)])


def run_augment(s: Setup, batch_size: int, record: bool) -> None:
    with torch.no_grad():
        for start in range(0, s.rows.shape[0], batch_size):
            x = s.evaluator.images_for(s.rows[start : start + batch_size], 0)
            if not record:
                s.model(x)
                continue
            with record_activations(s.model, s.names) as acts:
                s.model(x)
            torch.cat([acts[k].reshape(x.shape[0], -1) for k in s.names], 1).double()


def run_convscope(s: Setup, config: Config, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    res = augmentation_sensitivity(
        s.model, s.images, s.labels, s.names, augmentations=config.augmentations,
        method="sobol", n=config.n, seed=SEED, batch_size=batch_size, progress=False,
    )  # fmt: skip
    assert res.first_order is not None and res.total_order is not None
    k = len(s.problem.groups)
    s1 = torch.cat([res.first_order[c].reshape(k, -1) for c in s.names], 1)
    st = torch.cat([res.total_order[c].reshape(k, -1) for c in s.names], 1)
    return s1.double().numpy(), st.double().numpy()


def store_everything(s: Setup, batch_size: int) -> np.ndarray:
    """Evaluate every design row and keep every activation: an ``(M, P)`` array in the
    model's dtype (float32 in the timed runs, as the activations the authors stored)."""
    m = s.rows.shape[0]
    store: np.ndarray | None = None
    with torch.no_grad():
        for start in range(0, m, batch_size):
            x = s.evaluator.images_for(s.rows[start : start + batch_size], 0)
            with record_activations(s.model, s.names) as acts:
                s.model(x)
            flat = torch.cat([acts[k].reshape(x.shape[0], -1) for k in s.names], 1).numpy()
            if store is None:
                store = np.empty((m, flat.shape[1]), dtype=flat.dtype)
            store[start : start + x.shape[0]] = flat
    assert store is not None
    return store


def column_stats(y: np.ndarray, step: int, chunk: int) -> tuple[np.ndarray, ...]:
    """Per column: sd over all rows, max |value|, sd over the f_A and f_B rows (float64)."""
    p = y.shape[1]
    std, scale, ab_std = np.empty(p), np.empty(p), np.empty(p)
    for lo in range(0, p, chunk):
        z = y[:, lo : lo + chunk].astype(np.float64)
        std[lo : lo + chunk] = z.std(0)
        scale[lo : lo + chunk] = np.abs(z).max(0)
        ab_std[lo : lo + chunk] = np.concatenate([z[0::step], z[step - 1 :: step]]).std(0)
    return std, scale, ab_std


def vectorised_indices(y: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    r"""SALib's S1 and ST of every column of ``y`` (rows in SALib's layout), vectorised.

    Per column: standardise (:math:`(y - \bar y) / \operatorname{sd}(y)`), split the rows
    into :math:`f_A, f_{A_B^{(j)}}, f_B` (interleaved, stride :math:`k + 2`), then
    :math:`S_j = \overline{f_B (f_{A_B^{(j)}} - f_A)} / V` and
    :math:`S^T_j = \overline{(f_A - f_{A_B^{(j)}})^2} / (2V)`,
    :math:`V = \operatorname{var}[f_A; f_B]`. Constant columns get NaN, as SALib.
    """
    p = y.shape[1]
    step = k + 2
    s1 = np.empty((k, p))
    st = np.empty((k, p))
    for lo in range(0, p, chunk):
        z = y[:, lo : lo + chunk].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (z - z.mean(0)) / z.std(0)
            a, b = z[0::step], z[step - 1 :: step]
            v = np.concatenate([a, b]).var(0)
            for j in range(k):
                ab = z[1 + j :: step]
                s1[j, lo : lo + chunk] = (b * (ab - a)).mean(0) / v
                st[j, lo : lo + chunk] = 0.5 * ((a - ab) ** 2).mean(0) / v
    return s1, st


def salib_columns(
    y: np.ndarray, problem: dict[str, Any], columns: np.ndarray, resamples: int
) -> tuple[np.ndarray, np.ndarray]:
    """``SALib.analyze.sobol.analyze`` on each listed column; ``(k, len(columns))`` S1, ST."""
    from SALib.analyze import sobol as salib_analyze  # only the reference pays for SALib

    s1, st = [], []
    for col in columns.tolist():
        res = salib_analyze.analyze(
            problem, y[:, col].astype(np.float64), calc_second_order=False,
            num_resamples=resamples, seed=SEED,
        )  # fmt: skip
        s1.append(np.asarray(res["S1"], dtype=np.float64))
        st.append(np.asarray(res["ST"], dtype=np.float64))
    return np.stack(s1, 1), np.stack(st, 1)


# --------------------------------------------------------------------------------------------
# Worker: one variant in a fresh process


def maxrss_mb() -> float:
    """High-water mark of this process's resident set, MB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one variant once in this process; memory high-water marks around it."""
    torch.set_num_threads(int(spec["threads"]))
    config = Config(**spec["config"])
    batch_size = int(spec["batch_size"])
    s = build(config, batch_size)
    with torch.no_grad():  # warm-up: allocator and kernels for a full batch
        s.model(s.evaluator.images_for(s.rows[:batch_size], 0))
    variant = spec["variant"]
    if variant == "store-everything":  # SALib's import is a one-off cost, not timed
        import SALib.analyze.sobol
        import SALib.sample.sobol  # noqa: F401
    rss_before = maxrss_mb()
    out: dict[str, Any] = {"evaluations": int(s.rows.shape[0])}
    start = time.perf_counter()
    if variant == "bare":
        run_bare(s, batch_size)
    elif variant in ("augment", "augment+record"):
        run_augment(s, batch_size, record=variant == "augment+record")
    elif variant == "convscope":
        s1, st = run_convscope(s, config, batch_size)
        if spec["save"]:
            np.savez(spec["save"], s1=s1, st=st)
    elif variant == "store-everything":
        from SALib.sample import sobol as salib_sample

        salib_rows = salib_sample.sample(
            salib_problem(s.problem), config.n, calc_second_order=False, seed=SEED
        )
        out["design_max_diff"] = float(np.abs(salib_rows - s.rows.numpy()).max())
        y = store_everything(s, batch_size)
        out["sample_seconds"] = time.perf_counter() - start
        out["store_mb"] = y.nbytes / 2**20
        k = len(s.problem.groups)
        t0 = time.perf_counter()
        v1, vt = vectorised_indices(y, k, int(spec["chunk"]))
        out["vectorised_seconds"] = time.perf_counter() - t0
        # for the comparison only, untimed, in column chunks (no full-size temporaries)
        std, scale, ab_std = column_stats(y, k + 2, int(spec["chunk"]))
        rng = np.random.default_rng(SEED)
        varying = np.flatnonzero(std > 0)  # SALib divides by the std
        cols = np.sort(rng.choice(varying, min(int(spec["salib_columns"]), len(varying)), False))
        t0 = time.perf_counter()
        c1, ct = salib_columns(y, salib_problem(s.problem), cols, int(spec["resamples"]))
        out["salib_subset_seconds"] = time.perf_counter() - t0
        out["salib_columns"] = len(cols)
        out["activations"] = int(y.shape[1])
        out["k"], out["n"] = k, config.n
        out["salib_seconds"] = out["salib_subset_seconds"] * y.shape[1] / max(len(cols), 1)
        if spec["save"]:
            np.savez(
                spec["save"], s1=v1, st=vt, salib_s1=c1, salib_st=ct, salib_cols=cols,
                std=std, scale=scale, ab_std=ab_std,
            )  # fmt: skip
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    out["seconds"] = time.perf_counter() - start
    rss_after = maxrss_mb()
    out["rss_peak_mb"] = rss_after
    out["rss_growth_mb"] = rss_after - rss_before
    if variant == "store-everything":
        # the authors' total with SALib per activation: sampling + extrapolated SALib
        out["seconds_salib"] = out["sample_seconds"] + out["salib_seconds"]
        out["seconds_vectorised"] = out["sample_seconds"] + out["vectorised_seconds"]
    return out


def index_diff(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``|ours − ref| / max(1, |ref|)``: absolute for indices in [0, 1], relative for the
    huge values of nearly constant activations (whose float32 rounding is relative)."""
    with np.errstate(invalid="ignore"):  # NaN of undefined activations, masked by the callers
        return np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))


def check(spec: dict[str, Any]) -> dict[str, Any]:
    """Float64 model and images: both pipelines on the same rows; the index differences.

    In float64 the two pipelines' activations agree to ~1e-16 relative, whatever the batch
    composition, so any difference beyond rounding would be a difference of method.
    """
    torch.set_num_threads(int(spec["threads"]))
    config = Config(**spec["config"])
    batch_size = int(spec["batch_size"])
    s = build(config, batch_size, torch.float64)
    k = len(s.problem.groups)
    ours = dict(zip(("s1", "st"), run_convscope(s, config, batch_size), strict=True))
    y = store_everything(s, batch_size)
    v1, vt = vectorised_indices(y, k, int(spec["chunk"]))
    std, scale, ab_std = column_stats(y, k + 2, int(spec["chunk"]))
    defined = ab_std > float(spec["rel"]) * np.maximum(scale, 1e-12)
    cols = np.sort(
        np.random.default_rng(SEED).choice(
            np.flatnonzero(defined), min(int(spec["salib_columns"]), int(defined.sum())), False
        )
    )
    c1, ct = salib_columns(y, salib_problem(s.problem), cols, 2)
    out: dict[str, Any] = {
        "n": config.n,
        "compared": int(defined.sum()),
        "salib_compared": len(cols),
    }
    out["undefined"] = int(((std > 0) & ~defined).sum())
    for key, ref, sal in (("s1", v1, c1), ("st", vt, ct)):
        out[f"{key}_vectorised"] = float(index_diff(ours[key], ref)[:, defined].max())
        out[f"{key}_salib"] = float(index_diff(ours[key][:, cols], sal).max())
    out["max"] = max(out[f"{a}_{b}"] for a in ("s1", "st") for b in ("vectorised", "salib"))
    return out


# --------------------------------------------------------------------------------------------
# AlexNet projection (runs in its own process)


def projection(spec: dict[str, Any]) -> dict[str, Any]:
    """Measured per-evaluation costs at 224×224 and the projected seed run."""
    import torchvision

    from convscope.data.normalization import with_normalization
    from convscope.datasets import shapes

    torch.set_num_threads(int(spec["threads"]))
    batch, passes = int(spec["batch_size"]), int(spec["passes"])
    torch.manual_seed(SEED)
    model = with_normalization(torchvision.models.alexnet(weights=None)).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    names = [f"model.{c}" for c in ALEXNET_CHECKPOINTS]
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(SEED))

    def timed(fn: Any) -> float:
        fn()  # warm-up
        start = time.perf_counter()
        for _ in range(passes):
            fn()
        return (time.perf_counter() - start) / (passes * batch)

    with torch.no_grad():
        bare = timed(lambda: model(x))
        acts_holder: dict[str, int] = {}

        def hooked() -> torch.Tensor:
            with record_activations(model, names) as acts:
                model(x)
            flat = torch.cat([acts[n].reshape(batch, -1) for n in names], 1).double()
            acts_holder["p"] = flat.shape[1]
            return flat

        recorded = timed(hooked)
        # A2 augmentations of 224×224 images, as convscope builds them (one partition here)
        world = shapes(12, seed=SEED, size=224)
        problem = AugmentationProblem(augmentation_set("A2"))
        ev = _Evaluator(
            model, world.images.float(), ImageSource(world.labels.long()), problem, names,
            batch_size=batch, rescale="minmax", softmax=set(), image_choice="deterministic",
            seed=SEED,
        )  # fmt: skip
        design = pick_freeze_design(
            problem.n_raw, 64, groups=problem.groups, seed=SEED, dtype=torch.float64
        )
        rows = design.rows("salib").double()[:batch]
        augment = timed(lambda: ev.images_for(rows, 0))
        # accumulator update on blocks of the size convscope uses for k = 10 groups
        k, p = ALEXNET_GROUPS, acts_holder["p"]
        base = max(1, int(spec["sens_batch"]) // (k + 2))
        gen = torch.Generator().manual_seed(SEED)
        f_a = torch.rand(base, p, generator=gen, dtype=torch.float64)
        f_b = torch.rand(base, p, generator=gen, dtype=torch.float64)
        f_ab = torch.rand(k, base, p, generator=gen, dtype=torch.float64)
        acc = SobolAccumulator(k, (p,))
        acc.update(f_a, f_b, f_ab)
        reps = int(spec["acc_reps"])
        start = time.perf_counter()
        for _ in range(reps):
            acc.update(f_a, f_b, f_ab)
        accumulate = (time.perf_counter() - start) / (reps * base * (k + 2))
    acc_mb = float(sum(v.numel() * v.element_size() for v in acc.sums.values())) / 2**20
    acc_mb += 3 * p * 8 / 2**20  # shift, ymin, ymax
    block_mb = base * (k + 2) * p * 8 / 2**20  # one block of float64 activations
    per_eval = recorded + augment + accumulate
    return {
        "activations": p,
        "batch_size": batch,
        "seconds_per_eval": {
            "forward": bare,
            "forward+hooks": recorded,
            "augment_A2": augment,
            "accumulate": accumulate,
            "total": per_eval,
        },
        "evaluations_per_second": 1 / per_eval,
        "projected_days": ALEXNET_EVALUATIONS * per_eval / 86_400,
        "projected_forward_only_days": ALEXNET_EVALUATIONS * bare / 86_400,
        "accumulator_mb": acc_mb,
        "block_mb": block_mb,
        "authors_store_tb_float32": ALEXNET_EVALUATIONS * ALEXNET_ACTIVATIONS * 4 / 1e12,
        "needed_eval_per_s": {
            "authors_14_days": ALEXNET_EVALUATIONS / (sum(AUTHORS_DAYS.values()) * 86_400),
            "1_day": ALEXNET_EVALUATIONS / 86_400,
            "1_hour": ALEXNET_EVALUATIONS / 3_600,
        },
    }


# --------------------------------------------------------------------------------------------
# Orchestration


def spawn(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``mode`` of this script on ``spec`` in a fresh interpreter; its JSON answer."""
    return harness.spawn(__file__, mode, spec)


def compare(ours_path: str, ref_path: str, rel: float) -> dict[str, Any]:
    """Max |convscope − reference| of S1 and ST of the timed (float32) runs."""
    ours, ref = np.load(ours_path), np.load(ref_path)
    varying = ref["std"] > rel * np.maximum(ref["scale"], 1e-12)
    # an activation that (almost) varies only on the hybrid rows has var[f_A; f_B] ~ 0: the
    # estimators divide by it (SALib: NaN, inf or rounding noise; convscope: 0), no index
    defined = ref["ab_std"] > rel * np.maximum(ref["scale"], 1e-12)
    out: dict[str, Any] = {
        "compared": int((varying & defined).sum()),
        "undefined": int((varying & ~defined).sum()),
        "activations": int(varying.size),
    }
    varying = varying & defined
    for key in ("s1", "st"):
        out[f"{key}_vectorised"] = float(index_diff(ours[key], ref[key])[:, varying].max())
    cols = ref["salib_cols"]
    keep = varying[cols]
    for key in ("s1", "st"):
        diff = index_diff(ours[key][:, cols], ref[f"salib_{key}"])[:, keep]
        out[f"{key}_salib"] = float(diff.max()) if diff.size else float("nan")
    out["salib_compared"] = int(keep.sum())
    out["max"] = max(out[f"{a}_{b}"] for a in ("s1", "st") for b in ("vectorised", "salib"))
    return out


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians, peaks and the ratios the issue asks for."""
    ran = [v for v in VARIANTS if runs[v]]
    t = {v: median(runs[v], "seconds") if runs[v] else math.nan for v in VARIANTS}
    ref = runs["store-everything"]
    t_salib, t_vec = median(ref, "seconds_salib"), median(ref, "seconds_vectorised")
    growth = {v: max(r["rss_growth_mb"] for r in runs[v]) for v in ran}
    peak = {v: max(r["rss_peak_mb"] for r in runs[v]) for v in ran}
    return {
        "seconds": t,
        "reference_seconds_salib": t_salib,
        "reference_seconds_vectorised": t_vec,
        "reference_phases": {
            k: median(ref, k)
            for k in ("sample_seconds", "vectorised_seconds", "salib_subset_seconds")
        },
        "salib_columns": ref[0]["salib_columns"],
        "activations": ref[0]["activations"],
        "store_mb": ref[0]["store_mb"],
        "store_at_2_17_gb": ref[0]["store_mb"] / ref[0]["n"] * 2**17 / 1024,
        "accumulator_mb": (4 * ref[0]["k"] + 8) * ref[0]["activations"] * 8 / 2**20,
        "design_max_diff": ref[0]["design_max_diff"],
        "evaluations": runs["bare"][0]["evaluations"],
        "rss_peak_mb": peak,
        "rss_growth_mb": growth,
        "time_ratio_salib": t_salib / t["convscope"],
        "time_ratio_vectorised": t_vec / t["convscope"],
        "peak_ratio": peak["store-everything"] / peak["convscope"],
        "growth_ratio": growth["store-everything"] / max(growth["convscope"], 1e-9),
        "throughput_vs_bare": t["bare"] / t["convscope"],
        "convscope_overhead_pct": 100 * (t["convscope"] - t["bare"]) / t["bare"],
        "convscope_over_augment_record_pct": 100
        * (t["convscope"] - t["augment+record"])
        / t["augment+record"],
    }


def markdown(config: Config, s: dict[str, Any], repeats: int) -> str:
    m = s["evaluations"]
    lines = [
        f"**{config.key}**: {s['activations']:,} activations, {m:,} evaluations "
        f"(N(k+2)), median of {repeats}:",
        "",
        "| variant | wall (s) | evaluations/s | vs bare | peak RSS (MB) | RSS above warm-up (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        secs = s["seconds"][v]
        if math.isnan(secs):  # not run at the memory-scaling point
            continue
        if v == "store-everything":
            for label, total in (
                ("SALib per activation, extrapolated", s["reference_seconds_salib"]),
                ("vectorised numpy", s["reference_seconds_vectorised"]),
            ):
                lines.append(
                    f"| {LABELS[v]} ({label}) | {total:.2f} | {m / total:,.0f} "
                    f"| {total / s['seconds']['bare']:.2f}× | {s['rss_peak_mb'][v]:,.0f} "
                    f"| {s['rss_growth_mb'][v]:,.0f} |"
                )
            continue
        lines.append(
            f"| {LABELS[v]} | {secs:.2f} | {m / secs:,.0f} | {secs / s['seconds']['bare']:.2f}× "
            f"| {s['rss_peak_mb'][v]:,.0f} | {s['rss_growth_mb'][v]:,.0f} |"
        )
    ph = s["reference_phases"]
    lines += [
        "",
        f"store-everything phases: sampling + storing {ph['sample_seconds']:.2f} s "
        f"({s['store_mb']:,.0f} MB float32 array), vectorised analysis "
        f"{ph['vectorised_seconds']:.2f} s, SALib on {s['salib_columns']:,} columns "
        f"{ph['salib_subset_seconds']:.2f} s, i.e. "
        f"{1e3 * ph['salib_subset_seconds'] / s['salib_columns']:.2f} ms per call "
        f"(× {s['activations'] / s['salib_columns']:,.1f} extrapolated to all columns).",
        f"memory model: stored activations M·P·4 B = {s['store_mb']:,.0f} MB (grows with N; "
        f"at the authors' N = 2^17: {s['store_at_2_17_gb']:,.0f} GB), convscope's sums "
        f"(4k + 8)·P·8 B = {s['accumulator_mb']:,.0f} MB (independent of N).",
        f"ratios: time (SALib) {s['time_ratio_salib']:.1f}×, time (vectorised) "
        f"{s['time_ratio_vectorised']:.2f}×, peak RSS {s['peak_ratio']:.1f}×, RSS growth "
        f"{s['growth_ratio']:.1f}×; convscope throughput = {s['throughput_vs_bare']:.2f} of bare "
        f"({s['convscope_overhead_pct']:+.0f}%)"
        + (
            ""
            if math.isnan(s["convscope_over_augment_record_pct"])
            else f", {s['convscope_over_augment_record_pct']:+.0f}% over forward + "
            "augmentations + hooks"
        )
        + ".",
    ]
    return "\n".join(lines)


def summary_table(report: dict[str, Any], tolerance: float) -> str:
    lines = [
        "| configuration | activations | evaluations | convscope (s) | ref. SALib (s) "
        "| ref. vectorised (s) | time ratio SALib / vect. | peak RSS convscope / ref. (MB) "
        "| peak ratio (growth ratio) | convscope / bare throughput | max index diff (float64) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["configs"]:
        s, c = entry["summary"], entry["check"]
        diff = "–" if c is None else f"{c['max']:.1e} {'PASS' if c['max'] <= tolerance else 'FAIL'}"
        lines.append(
            f"| {Config(**entry['config']).key} | {s['activations']:,} | {s['evaluations']:,} "
            f"| {s['seconds']['convscope']:.2f} | {s['reference_seconds_salib']:.1f} "
            f"| {s['reference_seconds_vectorised']:.2f} "
            f"| {s['time_ratio_salib']:.1f}× / {s['time_ratio_vectorised']:.2f}× "
            f"| {s['rss_peak_mb']['convscope']:,.0f} / {s['rss_peak_mb']['store-everything']:,.0f} "
            f"| {s['peak_ratio']:.1f}× ({s['growth_ratio']:.1f}×) "
            f"| {s['throughput_vs_bare']:.2f} | {diff} |"
        )
    return "\n".join(lines)


def projection_text(p: dict[str, Any]) -> str:
    t = p["seconds_per_eval"]
    need = p["needed_eval_per_s"]
    return "\n".join(
        [
            f"AlexNet 224×224, {p['activations']:,} activations recorded "
            f"(expected {ALEXNET_ACTIVATIONS:,}), batch {p['batch_size']}:",
            "",
            "| per evaluation | ms |",
            "|---|---|",
            f"| forward pass alone | {1e3 * t['forward']:.2f} |",
            f"| forward + hooks + float64 rows | {1e3 * t['forward+hooks']:.2f} |",
            f"| A2 augmentations + min-max | {1e3 * t['augment_A2']:.2f} |",
            f"| accumulator update (k = {ALEXNET_GROUPS}) | {1e3 * t['accumulate']:.2f} |",
            f"| **total** | **{1e3 * t['total']:.2f}** |",
            "",
            f"forward pass (with hooks) = {t['forward+hooks'] / t['total']:.0%} of the total.",
            "",
            f"projected seed run (si, A2, {ALEXNET_EVALUATIONS:,} evaluations) on this machine: "
            f"{p['projected_days']:.1f} days ({p['evaluations_per_second']:.1f} evaluations/s; "
            f"forward passes alone {p['projected_forward_only_days']:.1f} days); authors: "
            f"{sum(AUTHORS_DAYS.values()):.0f} days (2.9 sampling + 11.1 computing).",
            f"throughput needed: {need['authors_14_days']:.1f}/s for 14 days, "
            f"{need['1_day']:.0f}/s for one day, {need['1_hour']:,.0f}/s for one hour.",
            f"memory: accumulator {p['accumulator_mb']:.0f} MB + one block of activations "
            f"{p['block_mb']:.0f} MB, against {p['authors_store_tb_float32']:.2f} TB of stored "
            "float32 activations.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--fast", action="store_true", help="1-2 minute smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--n", type=int, default=128, help="Sobol base rows N (power of 2)")
    parser.add_argument(
        "--big-n", type=int, default=1024, help="N of the one-repeat memory-scaling point (0: none)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--salib-columns", type=int, default=1000, help="columns SALib is timed on")
    parser.add_argument(
        "--resamples", type=int, default=100, help="SALib num_resamples (its default)"
    )
    parser.add_argument("--chunk", type=int, default=2048, help="columns per vectorised chunk")
    parser.add_argument(
        "--tolerance", type=float, default=1e-6, help="max index difference (float64 check)"
    )
    parser.add_argument("--check-n", type=int, default=32, help="N of the float64 check")
    parser.add_argument(
        "--alexnet-batch", type=int, default=32, help="AlexNet batch for the projection"
    )
    parser.add_argument("--alexnet-passes", type=int, default=8, help="timed AlexNet batches")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (unset: torch's default, OMP_NUM_THREADS)",
    )
    parser.add_argument("--json", default=None, help="write all measurements to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--projection", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--check", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for mode, run in (("worker", worker), ("projection", projection), ("check", check)):
        if getattr(args, mode) is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                answer = run(json.loads(getattr(args, mode)))
            print(json.dumps(answer))
            return
    if args.n < 2 or args.n & (args.n - 1):
        raise SystemExit(f"--n must be a power of two, got {args.n}")

    threads = args.threads or torch.get_num_threads()
    repeats = 1 if args.fast else args.repeats
    salib_cols = 100 if args.fast else args.salib_columns
    print("command: python " + " ".join(sys.argv))
    env = harness.environment(threads)
    print(
        f"torch {env['torch']}, torchvision {env['torchvision']}, SALib {env['SALib']}, "
        f"numpy {env['numpy']}, {threads} threads, {env['cpus']} CPUs, {env['machine']}"
    )
    report: dict[str, Any] = {"environment": env, "argv": sys.argv, "configs": []}
    started = time.perf_counter()
    tolerance = args.tolerance
    with tempfile.TemporaryDirectory() as tmp:
        for ci, config in enumerate(configs_from_args(args)):
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            saved = {v: os.path.join(tmp, f"{ci}-{v}.npz") for v in VARIANTS}
            for r in range(1 if config.once else repeats):
                for v in ONCE_VARIANTS if config.once else VARIANTS:
                    spec = {
                        "config": asdict(config), "variant": v, "threads": threads,
                        "batch_size": args.batch_size, "salib_columns": salib_cols,
                        "resamples": args.resamples, "chunk": args.chunk,
                        "save": saved[v] if r == 0 else "",
                    }  # fmt: skip
                    runs[v].append(spawn("worker", spec))
            summary = summarise(runs)
            f32 = compare(saved["convscope"], saved["store-everything"], F32_REL)
            print()
            print(markdown(config, summary, 1 if config.once else repeats))
            checked: dict[str, Any] | None = None
            if not config.once:  # the same estimators as the N = --n point of this setting
                check_config = Config(**{**asdict(config), "n": min(args.check_n, config.n)})
                checked = spawn(
                    "check",
                    {"config": asdict(check_config), "threads": threads, "rel": CHECK_REL,
                     "batch_size": args.batch_size, "chunk": args.chunk,
                     "salib_columns": 100 if args.fast else 300},
                )  # fmt: skip
                verdict = "PASS" if checked["max"] <= tolerance else "FAIL"
                print(
                    f"equal indices, float64 (N = {checked['n']}, same rows; design vs SALib "
                    f"sample max |diff| {summary['design_max_diff']:.1e}): over "
                    f"{checked['compared']:,} activations, max |diff| / max(1, |ref|) S1 "
                    f"{checked['s1_vectorised']:.1e}, ST {checked['st_vectorised']:.1e} vs "
                    f"vectorised; S1 {checked['s1_salib']:.1e}, ST {checked['st_salib']:.1e} vs "
                    f"SALib on {checked['salib_compared']:,} columns (tolerance "
                    f"{tolerance:.0e}) {verdict}; {checked['undefined']:,} activations vary "
                    "(almost) only on hybrid rows: var[f_A; f_B] ~ 0, no index."
                )
            print(
                "float32 timed runs (same rows): max |diff| / max(1, |ref|) S1 "
                f"{f32['s1_vectorised']:.1e}, "
                f"ST {f32['st_vectorised']:.1e} vs vectorised, S1 {f32['s1_salib']:.1e}, ST "
                f"{f32['st_salib']:.1e} vs SALib, over the {f32['compared']:,} activations with "
                f"sd[f_A; f_B] > {F32_REL:.0e}·max|a| (float32 rounding of the activations, "
                "amplified by 1/var for nearly constant ones)."
            )
            report["configs"].append(
                {"config": asdict(config), "runs": runs, "summary": summary, "check": checked,
                 "float32": f32,
                 "check_passed": checked is None or checked["max"] <= tolerance}
            )  # fmt: skip
    print("\nsummary:\n")
    print(summary_table(report, tolerance))
    proj = spawn(
        "projection",
        {
            "threads": threads,
            "batch_size": 4 if args.fast else args.alexnet_batch,
            "passes": 1 if args.fast else args.alexnet_passes,
            "sens_batch": args.batch_size,
            "acc_reps": 2 if args.fast else 5,
        },
    )
    report["projection"] = proj
    print("\nprojection of Kharyuk et al.'s AlexNet 'si, A2' run:\n")
    print(projection_text(proj))
    report["wall_seconds"] = time.perf_counter() - started
    print(f"\nwhole benchmark: {report['wall_seconds']:.0f} s wall clock")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nwrote {args.json}")
    if not all(e["check_passed"] for e in report["configs"]):
        raise SystemExit("index check FAILED")
    if math.isnan(proj["projected_days"]):
        raise SystemExit("projection failed")


if __name__ == "__main__":
    main()
