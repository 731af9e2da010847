"""``convscope regions``: Sobol' indices of image regions (Sobol-SBSA) as figures and arrays.

Example::

    convscope regions cat.png --model torchvision:resnet50 --grid 4,8 --n 64 --out regions/

writes, per grid size, ``grid<G>.npz``/``grid<G>.json`` (a
:class:`~convscope.attribution.region_sobol.RegionSobolResult`, reloadable with
``RegionSobolResult.load``), one figure per image with the S_i, S_Ti and PIR maps of every
grid, and ``summary.json``. Finished images are checkpointed in ``--out``: an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from convscope.cli.commands import add_model_file_options, load_model_and_images, positive_int
from convscope.core.errors import InputError
from convscope.core.model_info import model_info
from convscope.core.progress import set_progress

__all__ = ["add_parser", "cmd_regions", "parse_grids"]


def parse_grids(text: str) -> list[tuple[int, int]]:
    """``"4,8"`` → ``[(4, 4), (8, 8)]``; ``"4x6"`` gives 4 rows and 6 columns."""
    grids: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            rows, _, cols = part.partition("x")
            g = (int(rows), int(cols or rows))
        except ValueError:
            g = (0, 0)
        if min(g) < 1:
            raise InputError(
                f"--grid takes grid sizes such as 4,8 (4×4 and 8×8 cells) or 4x6 (rows x "
                f"columns); got {text!r}."
            )
        grids.append(g)
    if not grids:
        raise InputError("--grid is empty; pass grid sizes such as 4,8.")
    return grids


def add_parser(sub: Any) -> None:
    """Register ``regions`` on an argparse subparsers object."""
    p = sub.add_parser(
        "regions",
        help="Sobol' indices of image regions (Sobol-SBSA): S_i, S_Ti and PIR per grid cell",
        description="Perturb the grid cells of IMAGE(s) with random factors in [0, 2] and "
        "estimate each cell's first-order (S_i) and total (S_Ti) Sobol' index of the target "
        "score and their ratio PIR = S_i/S_Ti, from N(d+2) model evaluations per image.",
    )
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--model", default="shapes-cnn", help="model name (see `convscope models`)")
    add_model_file_options(p)
    p.add_argument(
        "--target",
        default="predicted",
        help="class index, class name, or 'predicted' (the top class of each image)",
    )
    p.add_argument(
        "--grid", default="4,8", help="grid sizes, e.g. 4,8 (default) or 4x6 for rows x cols"
    )
    p.add_argument(
        "--n", type=positive_int, default=64, help="base rows N, a power of two (default 64)"
    )
    p.add_argument(
        "--design", default="sobol", choices=("sobol", "random", "lhs"),
        help="sample design: scrambled Sobol' (N a power of two), random or Latin hypercube",
    )  # fmt: skip
    p.add_argument(
        "--perturbation", default="scale", choices=("scale", "blur", "inpaint"),
        help="what a factor of 0 does to a cell: scale (Sobol-SBSA's), blur or inpaint",
    )  # fmt: skip
    p.add_argument(
        "--space", default="normalized", choices=("normalized", "pixel"),
        help="scale the normalised input (Sobol-SBSA's) or the [0, 1] pixels",
    )  # fmt: skip
    p.add_argument(
        "--output", default="logit", choices=("logit", "probability", "log_probability"),
        help="score explained (default logit)",
    )  # fmt: skip
    p.add_argument("--n-boot", type=int, default=100, help="bootstrap resamples (0: none)")
    p.add_argument("--size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_regions)


def _rounded(values: torch.Tensor) -> list[float | None]:
    return [None if not bool(torch.isfinite(v)) else round(float(v), 4) for v in values]


def cmd_regions(args: argparse.Namespace) -> int:
    from convscope.attribution.region_sobol import region_sobol
    from convscope.cli.explain import parse_target
    from convscope.data.regions import grid_regions
    from convscope.models.evaluation import outputs
    from convscope.plots.regions import region_index_panel

    set_progress(not args.quiet)
    grids = parse_grids(args.grid)
    if args.n_boot < 0 or args.n_boot == 1:
        raise InputError(f"--n-boot must be 0 (no intervals) or at least 2, got {args.n_boot}.")
    model, images = load_model_and_images(args)
    info = model_info(model)
    height, width = images.shape[-2:]
    for rows, cols in grids:
        if rows > height or cols > width:
            raise InputError(
                f"--grid {rows}x{cols} has more cells than the {height}×{width} image has pixels."
            )
    with torch.no_grad():
        probs = outputs(model, images).softmax(1)
    names = list(info.class_names) if info and info.class_names else None
    fixed = parse_target(str(args.target), names, probs.shape[1])
    targets = probs.argmax(1) if fixed is None else torch.full((len(images),), fixed)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; pass a folder (it is created if needed).")
    args.out.mkdir(parents=True, exist_ok=True)

    results = {}
    for rows, cols in grids:
        tag = f"{rows}" if rows == cols else f"{rows}x{cols}"
        result = region_sobol(
            model, images, targets, grid_regions(height, width, (rows, cols)), n=args.n,
            method=args.design, perturbation=args.perturbation, space=args.space,
            output=args.output,
            n_boot=args.n_boot, batch_size=args.batch_size, seed=args.seed,
            resume=args.out / f"grid{tag}-checkpoint",
        )  # fmt: skip
        result.save(args.out / f"grid{tag}")
        results[tag] = result

    summary: dict[str, Any] = {
        "model": args.model,
        "n": args.n,
        "design": args.design,
        "perturbation": args.perturbation,
        "output": args.output,
        "grids": list(results),
        "evaluations_per_image": {tag: r.n_evaluations for tag, r in results.items()},
        "images": [],
    }
    for i, path in enumerate(args.images):
        c = int(targets[i])
        entry: dict[str, Any] = {
            "image": str(path),
            "target": c,
            "class": names[c] if names else str(c),
            "probability": round(float(probs[i, c]), 4),
            "grids": {},
        }
        tags = list(results)
        fig = region_index_panel(
            images[i],
            [results[t].regions for t in tags],
            [results[t].first_order[i] for t in tags],
            [results[t].total_order[i] for t in tags],
            [results[t].pir[i] for t in tags],
            titles=[f"{t}×{t}" if "x" not in t else t for t in tags],
        )
        file = args.out / f"{i:03d}-{path.stem}-regions.png"
        fig.savefig(file, dpi=110, bbox_inches="tight")
        entry["figure"] = file.name
        for tag, r in results.items():
            entry["grids"][tag] = {
                "first_order": _rounded(r.first_order[i]),
                "total_order": _rounded(r.total_order[i]),
                "pir": _rounded(r.pir[i]),
                "ranking": r.rank()[i].tolist(),
                "mean_pir_top20": _rounded(r.mean_pir()[i : i + 1])[0],
                "fraction_pir_above_one": _rounded(r.fraction_pir_above_one()[i : i + 1])[0],
                "zero_variance": bool(r.zero_variance[i]),
            }
        summary["images"].append(entry)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for entry in summary["images"]:
            tops = ", ".join(
                f"{tag}: cell {g['ranking'][0]} (S_T={g['total_order'][g['ranking'][0]]})"
                for tag, g in entry["grids"].items()
            )
            print(f"{entry['image']}: {entry['class']} -> {tops}; {args.out / entry['figure']}")
    return 0
