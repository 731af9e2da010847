"""Small subcommands: ``models``, ``layers``, ``predict``, ``world``, ``train-models``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from convscope.core.errors import InputError
from convscope.core.model_info import model_info
from convscope.core.progress import set_progress

__all__ = [
    "add_model_file_options",
    "add_parsers",
    "input_size",
    "load_cli_model",
    "load_model_and_images",
    "positive_int",
]


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_model_file_options(parser: argparse.ArgumentParser) -> None:
    """``--weights`` and ``--arch``, for subcommands that load a model (see ``load_model``)."""
    parser.add_argument("--weights", default=None, help="local weights file")
    parser.add_argument("--arch", default=None, help="architecture of a weights file")


def add_parsers(sub: Any) -> None:
    """Register the subcommands of this module on ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "models",
        help="list the models convscope can load",
        description="List the embedded models and the other model names.",
    )
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser(
        "layers",
        help="list a model's layer names and output shapes",
        description="Print every layer name of MODEL (usable wherever convscope asks for a "
        "layer) with its output shape for one input image.",
    )
    p.add_argument("model", help="model name, e.g. shapes-cnn or torchvision:resnet18")
    p.add_argument("--size", type=positive_int, default=None, help="input side in pixels")
    add_model_file_options(p)
    p.set_defaults(handler=cmd_layers)

    p = sub.add_parser(
        "predict",
        help="classify image files",
        description="Print the top-k classes of MODEL for each IMAGE.",
    )
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="shapes-cnn", help="model name (default: shapes-cnn)")
    add_model_file_options(p)
    p.add_argument("--size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "world",
        help="generate images of the shapes world",
        description="Generate N images of the ground-truth shapes world and save them "
        "(npz + json), optionally as PNG files.",
    )
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument(
        "--spurious",
        type=float,
        default=0.0,
        help="probability that the background texture follows the class",
    )
    p.add_argument("--label-noise", type=float, default=0.0, help="fraction of flipped labels")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--png", action="store_true", help="also write one PNG per image")
    p.set_defaults(handler=cmd_world)

    p = sub.add_parser(
        "train-models",
        help="retrain the embedded models (deterministic)",
        description="Retrain shapes-cnn and shapes-cnn-spurious from scratch, deterministically, "
        "and write their weights (default: into the installed package).",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the weights")
    p.add_argument("--only", default=None, help="train only this model")
    _add_quiet(p)
    p.set_defaults(handler=cmd_train)


def cmd_models(args: argparse.Namespace) -> int:
    from convscope.models import EMBEDDED_MODELS, model_info

    for name in EMBEDDED_MODELS:
        info = model_info(name)
        acc = info.metadata.get("accuracy", {})
        print(
            f"{name:22s} embedded, {len(info.class_names)} classes "
            f"({', '.join(info.class_names)}), {info.input_size}px, accuracy {acc}"
        )
    print("cifar-resnet<20|32|44|56|110>  CIFAR ResNet architecture, weights=<file> required")
    print("torchvision:<arch>[:<weights>]  any torchvision classifier with pretrained weights")
    print("<file> --arch <arch>            a local state dict")
    return 0


def load_cli_model(args: argparse.Namespace) -> torch.nn.Module:
    """The model named by ``--model`` (with ``--weights``/``--arch``)."""
    from convscope.models import load_model

    return load_model(args.model, weights=args.weights, arch=args.arch)


def input_size(
    args: argparse.Namespace, model: torch.nn.Module, default: int | None = None
) -> int | None:
    """``--size``, else the model's own input size, else ``default`` (None: the files' size)."""
    info = model_info(model)
    return args.size or (info.input_size if info and info.input_size else default)


def load_model_and_images(
    args: argparse.Namespace, *, default_size: int | None = None
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The ``--model`` and the ``images`` files, resized as :func:`input_size` says."""
    from convscope.data.io import load_images

    model = load_cli_model(args)
    return model, load_images(args.images, size=input_size(args, model, default_size))


def cmd_layers(args: argparse.Namespace) -> int:
    from convscope.core.device import to_model
    from convscope.core.hooks import layer_calls

    model = load_cli_model(args)
    size = input_size(args, model) or 224
    try:
        calls = layer_calls(model, to_model(torch.rand(1, 3, size, size), model))
    except RuntimeError as exc:
        raise InputError(
            f"{args.model} cannot run on {size}×{size} images ({str(exc)[:120]}). "
            "Pass a larger --size."
        ) from exc
    for name, _ in model.named_modules():
        if name in ("", "model", "normalize") or name not in calls:
            continue
        call = calls[name]
        shape = "x".join(str(s) for s in call.shape[1:]) if call.shape else "-"
        note = f"  (runs {call.calls}x per forward: cannot be probed)" if call.calls > 1 else ""
        print(f"{name.removeprefix('model.'):40s} {shape}{note}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from convscope.models.evaluation import outputs

    model, images = load_model_and_images(args)
    info = model_info(model)
    probs = outputs(model, images).softmax(1)
    names = (
        list(info.class_names)
        if info and info.class_names
        else [str(i) for i in range(probs.shape[1])]
    )
    k = min(args.top, probs.shape[1])
    top = probs.topk(k, dim=1)
    rows: list[dict[str, Any]] = [
        {
            "image": str(path),
            "top": [
                {"class": names[int(c)], "index": int(c), "probability": round(float(p), 4)}
                for p, c in zip(top.values[i], top.indices[i], strict=True)
            ],
        }
        for i, path in enumerate(args.images)
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
            print(f"{row['image']}: {best}")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    from convscope.data.io import save_image
    from convscope.datasets import shapes

    world = shapes(
        args.n, seed=args.seed, size=args.size, spurious=args.spurious, label_noise=args.label_noise
    )
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; pass a folder (it is created if needed).")
    args.out.mkdir(parents=True, exist_ok=True)
    path = world.save(args.out / "world")
    if args.png:
        for i in range(len(world)):
            save_image(
                world.images[i], args.out / f"{i:05d}-{world.class_names[world.labels[i]]}.png"
            )
    print(f"wrote {len(world)} images to {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from convscope.models import train

    argv: list[str] = []
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if args.only:
        argv += ["--only", args.only]
    if args.quiet:
        set_progress(False)
        argv.append("--quiet")
    return train.main(argv)
