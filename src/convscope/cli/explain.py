"""``convscope explain``: attribution maps of images, by any method, as figures and arrays.

Example::

    convscope explain cat.png dog.png --model torchvision:resnet50 --target predicted \\
        --method extremal gradcam rise --areas 0.05 0.1 0.2 --out explain/

writes, per image, an overlay per method and (for extremal perturbations) the area-sweep
strip, plus ``maps.npz``/``maps.json`` (every map, reloadable with
``convscope.attribution.methods.AttributionMaps.load``) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from convscope.cli.commands import add_model_file_options, load_model_and_images, positive_int
from convscope.core.errors import InputError, TargetError, suggestion
from convscope.core.model_info import model_info
from convscope.core.progress import set_progress

__all__ = ["add_parser", "cmd_explain", "parse_target"]


def add_parser(sub: Any) -> None:
    """Register ``explain`` on an argparse subparsers object."""
    from convscope.attribution.methods import METHODS

    p = sub.add_parser(
        "explain",
        help="attribution maps of images (extremal perturbation, Grad-CAM, RISE, ...)",
        description="Explain a model's decision on IMAGE(s) with one or more attribution "
        f"methods: {', '.join(METHODS)} (also 'gradcam'). Writes figures and arrays to --out.",
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
        "--method", nargs="+", default=["extremal"], help="one or more methods (default extremal)"
    )
    p.add_argument(
        "--areas", type=float, nargs="+", default=None, help="extremal areas (default 0.05 0.1 0.2)"
    )
    p.add_argument("--max-iter", type=positive_int, default=None, help="iterations of EP/MP")
    p.add_argument("--variant", default="preserve", choices=("preserve", "delete", "dual"))
    p.add_argument("--fast", action="store_true", help="EP: mask_stride 3 and early stopping")
    p.add_argument("--layer", default=None, help="layer for Grad-CAM and friends")
    p.add_argument("--size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_explain)


def parse_target(text: str, class_names: list[str] | None, n_classes: int) -> int | None:
    """An int index, a class name, or None for 'predicted'."""
    if text.lower() == "predicted":
        return None
    try:
        index = int(text)
    except ValueError:
        names = class_names or []
        if text in names:
            return names.index(text)
        raise TargetError(
            f"Unknown target {text!r}: pass a class index (0 to {n_classes - 1}), 'predicted'"
            + (", or a class name." + suggestion(text, names, "class names") if names else ".")
        ) from None
    if not 0 <= index < n_classes:
        raise TargetError(f"Target {index} is out of range: this model has {n_classes} classes.")
    return index


def _method_options(method: str, args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if method == "extremal":
        opts["areas"] = tuple(args.areas or (0.05, 0.1, 0.2))
        opts["variant"] = args.variant  # deterministic: no seed (the jitter is a flip)
        if args.max_iter:
            opts["max_iter"] = args.max_iter
        if args.fast:
            opts.update(mask_stride=3, early_stop=True)
    elif method == "meaningful":
        opts["seed"] = args.seed
        if args.max_iter:
            opts["max_iter"] = args.max_iter
    elif method in ("rise", "smoothgrad"):
        opts["seed"] = args.seed
    if args.layer and method in (
        "grad_cam", "linear_approx", "excitation_backprop", "contrastive_excitation_backprop",
    ):  # fmt: skip
        opts["layer"] = args.layer
    if args.batch_size and method not in ("gradient", "guided_backprop", "deconvnet"):
        opts["batch_size"] = args.batch_size
    return opts


def cmd_explain(args: argparse.Namespace) -> int:
    from convscope.attribution.extremal import extremal_perturbation
    from convscope.attribution.methods import compare_methods, resolve_method
    from convscope.models.evaluation import outputs
    from convscope.plots.attribution import mask_overlay
    from convscope.plots.images import normalize_heatmap

    set_progress(not args.quiet)
    if args.areas is not None and not all(0 < a <= 1 for a in args.areas):
        raise InputError(f"--areas are fractions in (0, 1], got {args.areas}; 10% is 0.1.")
    methods = [resolve_method(m) for part in args.method for m in part.split(",") if m]
    model, images = load_model_and_images(args)
    info = model_info(model)
    with torch.no_grad():
        probs = outputs(model, images).softmax(1)
    names = list(info.class_names) if info and info.class_names else None
    fixed = parse_target(str(args.target), names, probs.shape[1])
    targets = probs.argmax(1) if fixed is None else torch.full((len(images),), fixed)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; pass a folder (it is created if needed).")
    args.out.mkdir(parents=True, exist_ok=True)

    options = {m: _method_options(m, args) for m in methods}
    others = [m for m in methods if m != "extremal"]
    result = compare_methods(model, images, targets, others, options=options)
    sweep = None
    if "extremal" in methods:
        # Run once: the masks give the figures, their blurred sum the map.
        start = time.perf_counter()
        # Finished groups are kept in --out: an interrupted run resumes where it stopped.
        sweep = extremal_perturbation(
            model, images, targets, resume=args.out / "extremal-checkpoint",
            **options["extremal"],
        )  # fmt: skip
        result.seconds["extremal"] = time.perf_counter() - start
        result.maps["extremal"] = sweep.saliency().float()
        result.options["extremal"] = options["extremal"]
        sweep.save(args.out / "extremal")
    result.maps = {m: result.maps[m] for m in methods}
    result.save(args.out / "maps")

    summary: dict[str, Any] = {"model": args.model, "methods": methods, "images": []}
    for i, path in enumerate(args.images):
        c = int(targets[i])
        entry: dict[str, Any] = {
            "image": str(path),
            "target": c,
            "class": names[c] if names else str(c),
            "probability": round(float(probs[i, c]), 4),
            "figures": {},
            "seconds": {m: round(result.seconds[m] / len(images), 3) for m in methods},
        }
        stem = f"{i:03d}-{path.stem}"
        for m in methods:
            # display scale only; the raw maps are in maps.npz
            unit = torch.from_numpy(normalize_heatmap(result.maps[m][i, 0]))
            fig = mask_overlay(images[i], unit, title=m)
            file = args.out / f"{stem}-{m}.png"
            fig.savefig(file, dpi=110, bbox_inches="tight")
            entry["figures"][m] = file.name
        if sweep is not None:
            fig = sweep.plot(i, image=images[i])
            file = args.out / f"{stem}-extremal-areas.png"
            fig.savefig(file, dpi=110, bbox_inches="tight")
            entry["figures"]["extremal_areas"] = file.name
            entry["extremal"] = {
                "areas": list(sweep.areas),
                "preserved_scores": [round(float(v), 4) for v in sweep.scores[i]],
                "full_score": round(float(sweep.full_scores[i]), 4),
                "blurred_score": round(float(sweep.perturbed_scores[i]), 4),
            }
        summary["images"].append(entry)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for entry in summary["images"]:
            print(
                f"{entry['image']}: {entry['class']} (p={entry['probability']:.3f}) -> "
                + ", ".join(f"{args.out / f}" for f in entry["figures"].values())
            )
    return 0
