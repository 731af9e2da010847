r"""Extremal perturbation against TorchRay 1.0.0.2: wall time and preserved score at equal area.

Run (the full benchmark, alone on the machine)::

    .venv/bin/python benchmarks/bench_extremal.py --images 4 --max-iter 800 --json ep.json

Quick check: ``--images 1 --max-iter 10``. Stage profile of TorchRay's loop:
``--profile torchray --max-iter 20``.

Both methods get the same model, the same [0, 1] images, the same target class and the same
areas :math:`a`, with TorchRay's settings (blur pyramid of 8 levels up to
:math:`\sigma_{\max} = 20`, step 7, :math:`\sigma = 21`, flip jitter, preservation game,
simple reward, SGD lr 0.01 with momentum and dampening 0.9, area weight 300 grown by 1.0035 per
iteration). The models normalise internally, so TorchRay's plain ``model(x)`` call sees the
same function as ours.

**Scoring, identical for both.** A soft mask :math:`m \in [0,1]^{H \times W}` of target area
:math:`a` is binarised to its :math:`k = \operatorname{round}(a H W)` largest pixels (a stable
descending sort, so ties go to the lower flat index), giving :math:`b \in \{0,1\}^{H\times W}`.
The preserved image is :math:`b \odot x + (1 - b) \odot \tilde x`, where
:math:`\tilde x = g_{\sigma_{\max}} * x` is one fixed blurred copy (zero ``constant`` padding,
like TorchRay's pyramid) computed once per image by :func:`convscope.data.filters.gaussian_blur`,
and its score is the target logit :math:`\Phi`. Higher is better (preservation game, Fong et al.,
ICCV 2019, eq. 2). The table also gives :math:`\Phi(x)` and :math:`\Phi(\tilde x)` as references
(the green and red lines of the paper's Fig. 3), the mean of each soft mask (how close the
optimisation got to the area) and the IoU of the two methods' binary masks.

**Timing.** Wall-clock seconds per image (one call with all areas) after one warm-up call per
method; ours is also timed on a batch (16 images × 4 areas by default) and reported in
images/s. With ``--extrapolate`` both times are also extrapolated linearly to 800 iterations
from a 1-iteration call and the measured call, and labelled as such; the scores are always those
of the iterations actually run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from convscope.data.filters import gaussian_blur

TORCHRAY_VERSION = "1.0.0.2"
REFERENCE_ITERATIONS = 800
MODELS = ("shapes-cnn", "shapes-cnn-native", "tiny", "resnet18", "cifar-resnet20")
SKIMAGE_IMAGES = ("chelsea", "astronaut", "coffee", "rocket")

# TorchRay's hard-wired settings, passed explicitly to ours so that both solve the same problem.
EP_SETTINGS: dict[str, Any] = {
    "perturbation": "blur",
    "variant": "preserve",
    "num_levels": 8,
    "max_blur": 20.0,
    "step": 7,
    "sigma": 21.0,
    "jitter": True,
    "reward_func": "simple",
    "resize": False,
    "smooth": 0.0,
    "lr": 0.01,
    "momentum": 0.9,
    "dampening": 0.9,
    "area_weight": 300.0,
    "schedule": "torchray",
    "early_stop": False,
    # TorchRay zero-pads whatever it is given; on our [0, 1] inputs that is black.
    "padding": "zeros",
}

#: Extra configurations run with ``--fast``. "canvas" counts the area on the image plus its
#: margin as TorchRay does (our default counts it on the image, as the paper does); "fast"
#: adds the mask evaluated every 3 pixels and early stopping.
VARIANTS: dict[str, dict[str, Any]] = {
    "convscope-canvas": {"area_domain": "canvas"},
    "convscope-canvas-fast": {"area_domain": "canvas", "mask_stride": 3, "early_stop": True},
}
FAST_OPTIONS = VARIANTS["convscope-canvas-fast"]


# --------------------------------------------------------------------------------------------
# Models and images


class InputResize(nn.Module):
    """Resize the input to ``side``×``side`` (antialiased bilinear) before ``model``.

    Lets the 64×64 shapes-cnn classify 224×224 renders of the same scenes: fed directly it is
    at chance level, since its receptive fields were trained on 4× smaller objects.
    """

    def __init__(self, model: nn.Module, side: int) -> None:
        super().__init__()
        self.model = model
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(
            x, size=(self.side, self.side), mode="bilinear", antialias=True, align_corners=False
        )
        return self.model(x)


class TinyNet(nn.Module):
    """Two convolutions, global pooling and a linear layer: a network that costs next to nothing."""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def build_model(name: str, size: int, device: torch.device) -> tuple[nn.Module, str]:
    """The benchmark model (eval mode, on ``device``) and a one-line description."""
    torch.manual_seed(0)  # the untrained models get the same weights in every run
    model: nn.Module
    if name in ("shapes-cnn", "shapes-cnn-native"):
        from convscope.models import load_model

        model = load_model("shapes-cnn")
        if name == "shapes-cnn" and size != 64:
            model = InputResize(model, 64)
            about = f"shapes-cnn behind an antialiased resize {size}->64 (trained weights)"
        else:
            about = f"shapes-cnn fed {size}x{size} directly (trained at 64x64)"
    elif name == "tiny":
        model, about = TinyNet(), "tiny 2-conv net (random weights, seed 0)"
    elif name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(weights=None)
        about = "torchvision resnet18 (random weights, seed 0)"
    elif name == "cifar-resnet20":
        from convscope.models import build_architecture

        model = build_architecture("cifar-resnet20")
        about = f"cifar-resnet20 (random weights, seed 0) fed {size}x{size}"
    else:
        raise SystemExit(f"unknown --model {name!r}; choose one of {', '.join(MODELS)}")
    return model.eval().to(device), about


def _skimage_image(name: str, size: int) -> torch.Tensor:
    import skimage.data

    array = getattr(skimage.data, name)()
    image = torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)
    side = min(image.shape[1:])
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    image = image[None, :, top : top + side, left : left + side]
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)


def load_images(source: str, n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` images in [0, 1], n×3×size×size: shapes-world renders or scikit-image photos."""
    if source == "shapes":
        from convscope.datasets import shapes

        return shapes(n, seed=seed, size=size).images
    if source == "skimage":
        names = [SKIMAGE_IMAGES[i % len(SKIMAGE_IMAGES)] for i in range(n)]
        return torch.cat([_skimage_image(name, size) for name in names])
    raise SystemExit(f"unknown --source {source!r}; choose shapes or skimage")


# --------------------------------------------------------------------------------------------
# The two implementations


def load_torchray() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """TorchRay's ``extremal_perturbation``, or exit with the install command."""
    try:
        with warnings.catch_warnings():
            # importlib.resources.open_text in torchray/__init__ is deprecated, not broken.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module("torchray.attribution.extremal_perturbation")
    except ImportError as error:
        raise SystemExit(
            f"TorchRay is not installed ({error}). It is a benchmark-only dependency: "
            f".venv/bin/pip install --no-deps torchray=={TORCHRAY_VERSION} (or --skip-torchray)."
        ) from error
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] = module.extremal_perturbation
    return fn


def load_ours() -> Callable[..., Any] | None:
    """``convscope.attribution.extremal_perturbation``, or None while it does not exist yet."""
    try:
        module = importlib.import_module("convscope.attribution.extremal")
    except ImportError:
        return None
    fn = getattr(module, "extremal_perturbation", None)
    return fn if callable(fn) else None


def torchray_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torchray")
    except Exception:  # not installed
        return None


@contextlib.contextmanager
def quiet_torchray() -> Iterator[None]:
    # TorchRay's MaskGenerator calls torch.meshgrid without indexing= (81 warnings per call).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
        yield


def run_torchray(
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    areas: Sequence[float],
    max_iter: int,
) -> torch.Tensor:
    """TorchRay's K×1×H×W masks for one 1×3×H×W image (its defaults are the paper's settings)."""
    torch.manual_seed(0)
    with quiet_torchray():
        masks, _ = fn(
            model,
            x,
            int(target),
            areas=list(areas),
            max_iter=max_iter,
            num_levels=EP_SETTINGS["num_levels"],
            step=EP_SETTINGS["step"],
            sigma=EP_SETTINGS["sigma"],
            jitter=EP_SETTINGS["jitter"],
            variant=EP_SETTINGS["variant"],
            perturbation=EP_SETTINGS["perturbation"],
        )
    return masks.detach()


def run_ours(
    fn: Callable[..., Any],
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    areas: Sequence[float],
    max_iter: int,
    options: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Our N×K×1×H×W masks for an N×3×H×W batch, with TorchRay's settings (plus ``options``)."""
    result = fn(
        model,
        x,
        target,
        areas=tuple(areas),
        max_iter=max_iter,
        seed=0,
        progress=False,
        **{**EP_SETTINGS, **(options or {})},
    )
    masks: torch.Tensor = result.masks
    return masks.detach()


# --------------------------------------------------------------------------------------------
# Scoring protocol, shared by both methods


def binarize_top_area(masks: torch.Tensor, areas: Sequence[float]) -> torch.Tensor:
    """Keep the ``round(a·H·W)`` largest pixels of each mask; ties go to the lower flat index.

    Parameters
    ----------
    masks
        K×1×H×W soft masks, one per area.
    areas
        K area fractions in [0, 1].

    Returns
    -------
    torch.Tensor
        K×1×H×W float masks of zeros and ones, with exactly ``round(a_k·H·W)`` ones in row k.
    """
    if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != len(areas):
        raise ValueError(f"expected K×1×H×W masks for {len(areas)} areas, got {list(masks.shape)}")
    flat = masks.reshape(masks.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    binary = torch.zeros_like(flat)
    for k, area in enumerate(areas):
        count = round(area * flat.shape[1])
        binary[k, order[k, :count]] = 1.0
    return binary.reshape(masks.shape)


@torch.no_grad()
def target_scores(model: nn.Module, images: torch.Tensor, target: int) -> torch.Tensor:
    """The target logit of each image (averaged over space if the model is fully convolutional)."""
    output = model(images)[:, target]
    return output.reshape(output.shape[0], -1).mean(dim=1)


def preserved_scores(
    model: nn.Module,
    x: torch.Tensor,
    blurred: torch.Tensor,
    binary: torch.Tensor,
    target: int,
) -> torch.Tensor:
    """:math:`\\Phi(b \\odot x + (1-b) \\odot \\tilde x)` for each of the K binary masks ``b``."""
    return target_scores(model, binary * x + (1.0 - binary) * blurred, target)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of two stacks of K binary masks, one value per mask."""
    a, b = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    return (a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float()


# --------------------------------------------------------------------------------------------
# Timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def extrapolate(seconds: float, seconds_one: float, max_iter: int, to: int) -> float:
    """Linear in the iteration count through the 1-iteration call and the measured call."""
    if max_iter <= 1:
        return seconds * to
    per_iter = max(seconds - seconds_one, 0.0) / (max_iter - 1)
    return seconds_one + per_iter * (to - 1)


# --------------------------------------------------------------------------------------------
# Profile of TorchRay's loop, stage by stage


def _mean_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def profile_torchray(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    areas: Sequence[float],
    iters: int,
    device: torch.device,
) -> list[tuple[str, float]]:
    """Seconds per iteration of each stage of TorchRay's loop, timed in isolation.

    Each stage is its forward plus its share of the backward pass, rebuilt from TorchRay's own
    ``MaskGenerator`` and ``Perturbation`` classes at the sizes of the real call; the last row is
    the real call's time per iteration, so the remainder is what the isolation misses.
    """
    fn = load_torchray()
    ep: Any = importlib.import_module("torchray.attribution.extremal_perturbation")
    K = len(areas)
    _, total = timed(lambda: run_torchray(fn, model, x, target, areas, iters), device)
    _, one = timed(lambda: run_torchray(fn, model, x, target, areas, 1), device)
    per_iter = (total - one) / max(iters - 1, 1)

    with quiet_torchray():

        def setup() -> None:
            pert = ep.Perturbation(x, num_levels=EP_SETTINGS["num_levels"], type="blur")
            ep.MaskGenerator(pert.pyramid.shape[2:], EP_SETTINGS["step"], EP_SETTINGS["sigma"])

        setup_seconds = _mean_seconds(setup, 2, device)
        pert = ep.Perturbation(x, num_levels=EP_SETTINGS["num_levels"], type="blur")
        gen = ep.MaskGenerator(pert.pyramid.shape[2:], EP_SETTINGS["step"], EP_SETTINGS["sigma"])
    gen.to(device)
    h, w = gen.shape_in
    pmask = torch.ones(K, 1, h, w, device=device, requires_grad=True)
    with torch.no_grad():
        cropped0, full0 = gen.generate(pmask)
    grad_c, grad_f = torch.rand_like(cropped0), torch.rand_like(full0)
    reference = torch.ones(K, full0[0].numel(), device=device)
    for i, a in enumerate(areas):
        reference[i, : int(reference.shape[1] * (1 - a))] = 0
    perturbed0 = pert.apply(cropped0)
    grad_x = torch.rand_like(perturbed0)

    def mask_generator() -> None:
        cropped, full = gen.generate(pmask)
        torch.autograd.backward([cropped, full], [grad_c, grad_f])

    def pyramid_apply() -> None:
        m = cropped0.clone().requires_grad_(True)
        pert.apply(m).backward(grad_x)

    def area_loss() -> None:
        m = full0.clone().requires_grad_(True)
        sorted_m = m.reshape(K, -1).sort(dim=1)[0]
        (((sorted_m - reference) ** 2).mean(dim=1) * 300.0).sum().backward()

    def model_pass() -> None:
        z = perturbed0.clone().requires_grad_(True)
        y = model(torch.flip(z, dims=(3,)))
        y[:, target].sum().backward()

    state = {"hist": torch.zeros(K, 2, 0)}
    opt = torch.optim.SGD([pmask], lr=0.01, momentum=0.9, dampening=0.9)
    pmask.grad = torch.zeros_like(pmask)
    reward, regul = torch.zeros(K, device=device), torch.zeros(K, device=device)

    def bookkeeping() -> None:
        opt.step()
        pmask.data = pmask.data.clamp(0, 1)
        pair = torch.cat((reward.cpu().view(-1, 1, 1), regul.cpu().view(-1, 1, 1)), dim=1)
        state["hist"] = torch.cat((state["hist"], pair), dim=2)

    reps = max(3, min(iters, 10))
    rows = [
        ("setup (pyramid + mask-generator weights), per call", setup_seconds),
        ("mask generator (unfold, upsample, weights, smooth-max), fwd+bwd", 0.0),
        ("pyramid apply (gather, lerp), fwd+bwd", 0.0),
        ("area loss (sort of the full 260x260 mask), fwd+bwd", 0.0),
        ("model forward+backward (with flip)", 0.0),
        ("SGD step, clamp, history cat + .cpu() (host sync on GPU)", 0.0),
    ]
    stages = [mask_generator, pyramid_apply, area_loss, model_pass, bookkeeping]
    for i, stage in enumerate(stages, start=1):
        rows[i] = (rows[i][0], _mean_seconds(stage, reps, device))
    rows.append(("measured iteration of the real call", per_iter))
    rows.append(("  of which not accounted for above", per_iter - sum(s for _, s in rows[1:6])))
    return rows


def profile_ops(run: Callable[[], object], rows: int = 15) -> str:
    """torch.profiler's table of the ops with the most self CPU time during ``run``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# --------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images timed one by one")
    parser.add_argument("--areas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--max-iter", type=int, default=REFERENCE_ITERATIONS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", choices=MODELS, default="shapes-cnn")
    parser.add_argument("--source", choices=("shapes", "skimage"), default="shapes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes-world images")
    parser.add_argument(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="class to explain: the model's prediction on the full image, or the world's label",
    )
    parser.add_argument("--skip-torchray", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"also run the convscope configurations {VARIANTS}",
    )
    parser.add_argument("--throughput-images", type=int, default=16, help="0 skips it")
    parser.add_argument("--throughput-areas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument(
        "--throughput-iter",
        type=int,
        default=None,
        help="iterations of the throughput runs without early stopping (default --max-iter); "
        "their time is extrapolated linearly to --max-iter and labelled so",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--extrapolate",
        action="store_true",
        help=f"also extrapolate times linearly to {REFERENCE_ITERATIONS} iterations (labelled)",
    )
    parser.add_argument(
        "--profile",
        choices=("torchray", "ours"),
        default=None,
        help="profile one image instead of benchmarking (use a small --max-iter, e.g. 20)",
    )
    parser.add_argument("--json", default=None, help="write every number to this file")
    args = parser.parse_args(argv)
    if args.images < 1 or args.max_iter < 1 or args.throughput_images < 0:
        parser.error("--images and --max-iter must be at least 1, --throughput-images at least 0")
    if not all(0.0 < a <= 1.0 for a in [*args.areas, *args.throughput_areas]):
        parser.error("areas must lie in (0, 1]")
    return args


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    command = "python benchmarks/bench_extremal.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, "
        f"torchray {torchray_version()}, python {platform.python_version()}"
    )
    model, about = build_model(args.model, args.size, device)
    n_load = max(args.images, args.throughput_images)
    images = load_images(args.source, n_load, args.size, args.seed).to(device)
    if args.target == "label":
        if args.source != "shapes":
            raise SystemExit("--target label needs --source shapes (photos have no label)")
        from convscope.datasets import shapes

        targets = shapes(n_load, seed=args.seed, size=args.size).labels.to(device)
    else:
        with torch.no_grad():
            targets = model(images).argmax(dim=1)
    print(f"model: {about}; images: {args.source}, {args.size}x{args.size}")
    areas = list(args.areas)
    report: dict[str, Any] = {
        "command": command,
        "torch": torch.__version__,
        "torchray": torchray_version(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "model": args.model,
        "model_about": about,
        "source": args.source,
        "size": args.size,
        "areas": areas,
        "max_iter": args.max_iter,
        "settings": EP_SETTINGS,
    }

    torchray_fn = None if args.skip_torchray else load_torchray()
    ours_fn = None if args.skip_ours else load_ours()
    if not args.skip_ours and ours_fn is None:
        print("ours: convscope.attribution.extremal.extremal_perturbation not found, skipped")

    if args.profile is not None:
        x0, t0 = images[:1], int(targets[0])
        if args.profile == "torchray":
            if torchray_fn is None:
                raise SystemExit("--profile torchray needs TorchRay")
            rows = profile_torchray(model, x0, t0, areas, args.max_iter, device)
            print(f"\nTorchRay stage breakdown, K={len(areas)} areas, {args.max_iter} iterations")
            print("| stage | ms per iteration | share of the iteration |")
            print("|---|---|---|")
            per_iter = rows[-2][1]
            for label, seconds in rows:
                share = "" if label.startswith("setup") else f"{100 * seconds / per_iter:.0f}%"
                print(f"| {label} | {1000 * seconds:.1f} | {share} |")
            report["profile"] = rows
            fn_t = torchray_fn

            def run() -> object:
                return run_torchray(fn_t, model, x0, t0, areas, min(args.max_iter, 5))

        else:
            if ours_fn is None:
                raise SystemExit("--profile ours needs convscope.attribution.extremal")
            fn_o = ours_fn

            def run() -> object:
                return run_ours(fn_o, model, x0, targets[:1], areas, args.max_iter)

            run()  # warm-up
        print("\nTop ops by self CPU time (torch.profiler):")
        print(profile_ops(run))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(report, handle, indent=2)
        return report

    blur_sigma = float(EP_SETTINGS["max_blur"])
    methods: dict[str, Callable[[torch.Tensor, int, list[float], int], torch.Tensor]] = {}
    if torchray_fn is not None:
        fn_tr = torchray_fn
        methods["TorchRay"] = lambda x, t, a, it: run_torchray(fn_tr, model, x, t, a, it)
    if ours_fn is not None:
        fn_ours = ours_fn

        def ours_one(x: torch.Tensor, t: int, a: list[float], it: int) -> torch.Tensor:
            target = torch.tensor([t], device=x.device)
            return run_ours(fn_ours, model, x, target, a, it)[0]

        methods["convscope"] = ours_one
        if args.fast:
            for label, opts in VARIANTS.items():

                def ours_variant(
                    x: torch.Tensor, t: int, a: list[float], it: int, o: dict[str, Any] = opts
                ) -> torch.Tensor:
                    target = torch.tensor([t], device=x.device)
                    return run_ours(fn_ours, model, x, target, a, it, o)[0]

                methods[label] = ours_variant

    per_image: list[dict[str, Any]] = []
    one_iter: dict[str, float] = {}
    for name, method in methods.items():
        # Warm-up (allocator, kernels); with --extrapolate it is also the 1-iteration point.
        first = functools.partial(method, images[:1], int(targets[0]), areas, 1)
        timed(first, device)
        one_iter[name] = timed(first, device)[1]

    binaries: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
    softs: dict[str, list[torch.Tensor]] = {name: [] for name in methods}
    for i in range(args.images):
        x, t = images[i : i + 1], int(targets[i])
        blurred = gaussian_blur(x, blur_sigma, padding_mode="constant")
        row: dict[str, Any] = {
            "image": i,
            "target": t,
            "full": float(target_scores(model, x, t)[0]),
            "blurred": float(target_scores(model, blurred, t)[0]),
        }
        for name, method in methods.items():
            masks, seconds = timed(functools.partial(method, x, t, areas, args.max_iter), device)
            binary = binarize_top_area(masks, areas)
            binaries[name].append(binary)
            softs[name].append(masks)
            row[name] = {
                "seconds": seconds,
                "preserved": preserved_scores(model, x, blurred, binary, t).tolist(),
                "mask_mean": masks.flatten(1).mean(1).tolist(),
            }
            if args.extrapolate:
                row[name]["seconds_extrapolated"] = extrapolate(
                    seconds, one_iter[name], args.max_iter, REFERENCE_ITERATIONS
                )
            print(
                f"image {i} ({name}): {seconds:.2f} s, preserved "
                + ", ".join(f"{s:.3f}" for s in row[name]["preserved"])
                + f" (full {row['full']:.3f}, blurred {row['blurred']:.3f})",
                flush=True,
            )
        if "TorchRay" in methods and "convscope" in methods:
            row["iou"] = iou(binaries["TorchRay"][-1], binaries["convscope"][-1]).tolist()
            gap = (softs["TorchRay"][-1] - softs["convscope"][-1]).abs().flatten(1).amax(1)
            row["max_abs_mask_difference"] = gap.tolist()
        per_image.append(row)
    report["per_image"] = per_image

    summary: dict[str, Any] = {}
    if methods:
        print(f"\n### Wall time per image ({len(areas)} areas, {args.max_iter} iterations)\n")
        header = "| method | s/image (mean) | s/image (median) | ms/iteration | speed-up |"
        extra = f" s/image extrapolated to {REFERENCE_ITERATIONS} it. |" if args.extrapolate else ""
        print(header + extra)
        print("|---" * (5 + bool(args.extrapolate)) + "|")
        means = {n: _mean([r[n]["seconds"] for r in per_image]) for n in methods}
        for name in methods:
            secs = [r[name]["seconds"] for r in per_image]
            speed = means["TorchRay"] / means[name] if "TorchRay" in means else float("nan")
            line = (
                f"| {name} | {_fmt(means[name], 2)} | {_fmt(statistics.median(secs), 2)} | "
                f"{_fmt(1000 * means[name] / args.max_iter, 1)} | {_fmt(speed, 1)}x |"
            )
            if args.extrapolate:
                ext = _mean([r[name]["seconds_extrapolated"] for r in per_image])
                line += f" {_fmt(ext, 1)} (extrapolated) |"
            print(line)
            summary[name] = {"seconds_per_image": means[name], "speedup_vs_torchray": speed}

        print(f"\n### Preserved score at equal area (mean over {args.images} images)\n")
        full = _mean([r["full"] for r in per_image])
        blur = _mean([r["blurred"] for r in per_image])
        names = list(methods)
        cols = " | ".join(f"{n} preserved" for n in names) + " | "
        cols += " | ".join(f"{n} mask mean" for n in names)
        both = "TorchRay" in names and "convscope" in names
        print(
            f"| area | full image | fully blurred | {cols} |"
            + (" IoU of binary masks | max abs mask difference |" if both else "")
        )
        print("|---" * (3 + 2 * len(names) + 2 * both) + "|")
        for k, area in enumerate(areas):
            scores = [_mean([r[n]["preserved"][k] for r in per_image]) for n in names]
            fill = [_mean([r[n]["mask_mean"][k] for r in per_image]) for n in names]
            cells = [_fmt(v) for v in scores] + [_fmt(v) for v in fill]
            line = f"| {area:g} | {_fmt(full)} | {_fmt(blur)} | " + " | ".join(cells) + " |"
            if both:
                line += f" {_fmt(_mean([r['iou'][k] for r in per_image]))} |"
                gaps = [r["max_abs_mask_difference"][k] for r in per_image]
                line += f" {_fmt(max(gaps), 4)} |"
            print(line)
            for name, score in zip(names, scores, strict=True):
                summary[name].setdefault("preserved_mean", []).append(score)
        summary["full_mean"], summary["blurred_mean"] = full, blur
        for ours in [n for n in names if n.startswith("convscope") and "TorchRay" in names]:
            wins = sum(
                r[ours]["preserved"][k] >= r["TorchRay"]["preserved"][k]
                for r in per_image
                for k in range(len(areas))
            )
            print(
                f"\n{ours} >= TorchRay on {wins} of {len(per_image) * len(areas)} "
                "(image, area) pairs."
            )
            summary[f"{ours}_at_least_torchray_pairs"] = wins

    if ours_fn is not None and args.throughput_images > 0:
        n, t_areas = args.throughput_images, list(args.throughput_areas)
        batch, batch_targets = images[:n], targets[:n]
        fn_b = ours_fn
        configs: list[tuple[str, dict[str, Any] | None]] = [("convscope", None)]
        if args.fast:
            configs.append(("convscope-canvas-fast", FAST_OPTIONS))
        print(f"\n### Batched throughput ({n} images x {len(t_areas)} areas in one call)\n")
        print("| method | images | areas | iterations | seconds | images/s |")
        print("|---|---|---|---|---|---|")
        for label, options in configs:
            run_ours(fn_b, model, batch[:1], batch_targets[:1], t_areas, 1, options)  # warm-up
            early = bool(options and options.get("early_stop"))
            iters = args.max_iter if early or not args.throughput_iter else args.throughput_iter
            _, seconds = timed(
                lambda o=options, it=iters: run_ours(  # type: ignore[misc]
                    fn_b, model, batch, batch_targets, t_areas, it, o
                ),
                device,
            )
            note = ""
            if iters != args.max_iter:
                # Without early stopping every iteration costs the same: scale linearly.
                seconds *= args.max_iter / iters
                note = f" (measured over {iters} iterations, scaled to {args.max_iter})"
            rate = n / seconds
            print(
                f"| {label} | {n} | {len(t_areas)} | {args.max_iter} | {seconds:.2f}{note} | "
                f"{rate:.3f} |"
            )
            summary[f"throughput_{label}"] = {
                "images": n,
                "areas": t_areas,
                "seconds": seconds,
                "measured_iterations": iters,
                "images_per_second": rate,
            }

    report["summary"] = summary
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
