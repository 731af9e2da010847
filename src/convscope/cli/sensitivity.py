"""``convscope sensitivity``: sensitivity maps of activations to augmentations (Kharyuk et al.).

Example::

    convscope sensitivity --model shapes-cnn --world 64 --layers model.features.relu1,\\
        model.classifier --set A2 --method sobol -n 256 --out sens/

    convscope sensitivity --model torchvision:resnet18 --images data/val/ --layers \\
        layer1,layer2,fc --set A1 --method shapley -n 64 --out sens/

``--images`` takes image files (labels from ``--labels`` or the model's predictions) or
folders with one sub-folder per class (the sub-folder names are the labels, sorted). Writes
``sensitivity.npz/json`` (reload with ``AugmentationSensitivityResult.load``), one figure of
per-channel maps per layer and ``summary.json`` (``--checkpoints`` is a deprecated alias of
``--layers``). ``--resume`` keeps a state file in
``--out``: rerunning the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from convscope.cli.commands import add_model_file_options, input_size, load_cli_model, positive_int
from convscope.core.errors import InputError
from convscope.core.progress import set_progress

__all__ = ["add_parser", "cmd_sensitivity"]

_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def add_parser(sub: Any) -> None:
    """Register ``sensitivity`` on an argparse subparsers object."""
    p = sub.add_parser(
        "sensitivity",
        help="Sobol/Shapley sensitivity of every activation to simultaneous augmentations",
        description="Decompose the variance of every activation of the chosen layers "
        "over the augmentations of set A1 or A2, the class, the partition and the order of "
        "the augmentations (Kharyuk et al.), streaming over the design.",
    )
    p.add_argument("--model", default="shapes-cnn", help="model name (see `convscope models`)")
    add_model_file_options(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", type=Path, help="image files or class folders")
    src.add_argument("--world", type=positive_int, help="use N shapes-world images instead")
    p.add_argument("--labels", default=None, help="comma-separated labels of the image files")
    layers = p.add_mutually_exclusive_group(required=True)
    layers.add_argument("--layers", help="comma-separated module names (the layers to analyse)")
    layers.add_argument(
        "--checkpoints", dest="deprecated_checkpoints", help="deprecated alias of --layers"
    )
    p.add_argument("--set", dest="augset", default="A1", help="A1, A2 or comma-separated names")
    p.add_argument("--method", default="sobol", choices=("sobol", "shapley"))
    p.add_argument("-n", type=positive_int, default=256, help="Sobol N (power of two) or "
                   "Shapley permutations")  # fmt: skip
    p.add_argument("--n-outer", type=positive_int, default=4)
    p.add_argument("--n-inner", type=positive_int, default=3)
    p.add_argument("--softmax", default="", help="layers to pass through a softmax")
    p.add_argument("--size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_sensitivity)


def _collect(paths: list[Path]) -> tuple[list[Path], list[str] | None]:
    files: list[Path] = []
    classes: list[str] = []
    folders = [p for p in paths if p.is_dir()]
    if folders and len(folders) != len(paths):
        raise InputError("--images mixes folders and files; pass class folders or image files.")
    if not folders:
        return paths, None
    for folder in folders:
        subs = sorted(d for d in folder.iterdir() if d.is_dir())
        if not subs:
            raise InputError(
                f"{folder} has no class sub-folders; pass image files, or a folder with one "
                "sub-folder of images per class."
            )
        for sub in subs:
            for f in sorted(sub.iterdir()):
                if f.suffix.lower() in _SUFFIXES:
                    files.append(f)
                    classes.append(sub.name)
    if not files:
        raise InputError(f"No images ({', '.join(sorted(_SUFFIXES))}) in {folders}.")
    return files, classes


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from convscope.data.io import load_images
    from convscope.models.evaluation import outputs
    from convscope.sensitivity.augmentation.augmentation_sensitivity import augmentation_sensitivity
    from convscope.sensitivity.augmentation.augmentations import augmentation_set

    set_progress(not args.quiet)
    model = load_cli_model(args)
    size = input_size(args, model)
    if args.world:
        from convscope.datasets import shapes

        world = shapes(args.world, seed=args.seed)
        images, labels = world.images, world.labels
    else:
        files, classes = _collect(list(args.images))
        images = load_images(files, size=size)
        if classes is not None:
            names = sorted(set(classes))
            labels = torch.tensor([names.index(c) for c in classes])
        elif args.labels:
            try:
                labels = torch.tensor([int(v) for v in args.labels.split(",")])
            except ValueError:
                raise InputError(
                    f"--labels must be comma-separated ints, got {args.labels!r}."
                ) from None
        else:
            with torch.no_grad():
                labels = outputs(model, images).argmax(1)
    if args.deprecated_checkpoints is not None:
        print(
            "convscope sensitivity: --checkpoints is deprecated; use --layers (same meaning).",
            file=sys.stderr,
        )
    layer_names = args.layers if args.layers is not None else args.deprecated_checkpoints
    names_ck = [c for c in layer_names.split(",") if c]
    augs = augmentation_set(args.augset if args.augset in ("A1", "A2") else args.augset.split(","))
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; pass a folder (it is created if needed).")
    args.out.mkdir(parents=True, exist_ok=True)
    result = augmentation_sensitivity(
        model, images, labels, layers=names_ck, augmentations=augs, method=args.method, n=args.n,
        n_outer=args.n_outer, n_inner=args.n_inner,
        softmax=[c for c in args.softmax.split(",") if c], seed=args.seed,
        batch_size=args.batch_size, resume=args.out / "state",
    )  # fmt: skip
    result.save(args.out / "sensitivity")
    measure = "shapley" if args.method == "shapley" else "first_order"
    maps = result.maps(measure)
    summary: dict[str, Any] = {
        "model": args.model, "method": args.method, "set": [a.name for a in augs],
        "variables": result.variables, "n_evaluations": result.n_evaluations,
        "images": int(images.shape[0]), "checkpoints": {},
    }  # fmt: skip
    for name in result.checkpoints:
        m = maps[name].reshape(len(result.variables), -1)
        entry: dict[str, Any] = {
            "shape": list(maps[name].shape[1:]),
            "mean_" + measure: dict(zip(result.variables, m.mean(1).tolist(), strict=True)),
        }
        if result.total_order is not None:
            t = result.total_order[name].clamp(0, 1).reshape(len(result.variables), -1)
            entry["mean_total_order"] = dict(zip(result.variables, t.mean(1).tolist(), strict=True))
        fig = result.plot(name, measure)
        file = args.out / f"{name.replace('.', '_')}-{measure}.png"
        fig.savefig(file, dpi=100, bbox_inches="tight")
        entry["figure"] = file.name
        summary["checkpoints"][name] = entry
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for name, entry in summary["checkpoints"].items():
            ranking = sorted(entry["mean_" + measure].items(), key=lambda kv: -kv[1])[:3]
            top = ", ".join(f"{k} {v:.3f}" for k, v in ranking)
            print(f"{name}: {top}; {args.out / entry['figure']}")
    return 0
