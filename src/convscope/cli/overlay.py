"""``convscope overlay``: an interactive similarity-overlay viewer, and a server for big ones.

Examples::

    convscope overlay cat.png dog.png --model torchvision:resnet50 --layers layer2,layer3 \\
        --out view.html
    convscope overlay imgs/*.png --model shapes-cnn --layers model.features.relu3 \\
        --sweep rotation,scale --folder --out big-view/
    convscope overlay serve big-view/ --port 8000

The first writes one self-contained HTML file (open it in any browser, no server, no
network). ``--folder`` writes ``index.html`` + ``manifest.json`` + raw arrays at full
resolution, which ``convscope overlay serve`` serves on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from convscope.cli.commands import add_model_file_options, load_model_and_images, positive_int
from convscope.core.errors import InputError
from convscope.core.progress import set_progress

__all__ = ["add_parser", "add_serve_parser", "cmd_overlay", "cmd_overlay_serve"]


def add_parser(sub: Any) -> None:
    """Register ``overlay`` (and the hidden ``overlay-serve``) on an argparse subparsers object."""
    p = sub.add_parser(
        "overlay",
        help="interactive similarity overlays: hover a location, see what the layer finds "
        "similar in every image (self-contained HTML); `overlay serve DIR` serves big ones",
        description="Record LAYERS for IMAGE(s) and write a self-contained HTML viewer: "
        "pointing at a location shows, on every image, the cosine similarity of the layer's "
        "activation vector there to the vector at every location (Fong et al., VISxAI 2021). "
        "With NMF components and rotation/scale sweeps. `convscope overlay serve DIR` serves "
        "a viewer written with --folder on 127.0.0.1.",
    )
    p.add_argument("images", nargs="+", type=Path, help="image files (or `serve DIR`)")
    p.add_argument("--model", default="shapes-cnn", help="model name (see `convscope models`)")
    add_model_file_options(p)
    p.add_argument(
        "--layers", default=None,
        help="comma-separated layer names (`convscope layers MODEL` lists them); default: the "
        "model's default layer",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="output .html file (or folder)")
    p.add_argument(
        "--folder", action="store_true",
        help="write a folder (index.html + arrays) at full resolution for `overlay serve`",
    )  # fmt: skip
    p.add_argument("--labels", choices=("predicted", "none"), default="predicted")
    p.add_argument("--nmf", type=int, default=4, help="NMF components (0: none; default 4)")
    p.add_argument("--nmf-layer", default=None, help="layer of the NMF (default: the last)")
    p.add_argument(
        "--sweep", default="", help="transform sweeps of the first image: rotation,scale"
    )
    p.add_argument("--sweep-image", type=int, default=0, help="index of the swept image")
    p.add_argument("--sweep-layer", default=None, help="layer of the sweeps (default: first)")
    p.add_argument("--center", action="store_true", help="centred cosine (signed similarities)")
    p.add_argument("--eps", type=float, default=1e-4, help="ε of the cosine (default 1e-4)")
    p.add_argument("--size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--tile", type=positive_int, default=224, help="tile size in pixels")
    p.add_argument("--opacity", type=float, default=0.7)
    p.add_argument("--colormap", default=None, choices=("gray", "viridis", "magma", "coolwarm"))
    p.add_argument("--normalization", default="fixed", choices=("fixed", "query"))
    p.add_argument("--upscale", default="nearest", choices=("nearest", "bilinear"))
    p.add_argument(
        "--max-mb", type=float, default=50.0,
        help="budget of the embedded file in MB (default 50; 0: no budget)",
    )  # fmt: skip
    p.add_argument(
        "--oversize", default="downsample", choices=("downsample", "warn", "error"),
        help="beyond the budget: pool the heaviest layers 2×2 (default), warn, or fail",
    )  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--title", default=None)
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_overlay)


def add_serve_parser(sub: Any) -> None:
    """``convscope overlay serve DIR`` (dispatched by :func:`convscope.cli.main.main`)."""
    p = sub.add_parser(
        "overlay-serve",
        prog="convscope overlay serve",
        description="Serve a viewer folder (written by `convscope overlay --folder`) on "
        "http://127.0.0.1:PORT/ with Python's standard library. Only files inside the folder "
        "are served; nothing listens beyond the loopback address.",
    )
    p.add_argument("folder", type=Path, help="folder with index.html")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--quiet", action="store_true", help="no request log")
    p.set_defaults(handler=cmd_overlay_serve)


def cmd_overlay_serve(args: argparse.Namespace) -> int:
    from convscope.viewer.serve import serve

    serve(args.folder, args.port, open_browser=args.open, verbose=not args.quiet)
    return 0


def cmd_overlay(args: argparse.Namespace) -> int:
    from convscope.viewer.overlay import OverlayOptions, similarity_overlay

    set_progress(not args.quiet)
    if args.max_mb < 0:
        raise InputError(f"--max-mb must be ≥ 0 (0: no budget), got {args.max_mb}.")
    model, images = load_model_and_images(args, default_size=224)
    layers = [s for s in args.layers.split(",") if s] if args.layers else None
    sweeps = [s for s in args.sweep.replace(" ", "").split(",") if s]
    options = OverlayOptions(
        size=args.tile, opacity=args.opacity, colormap=args.colormap,
        normalization=args.normalization, upscale=args.upscale,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = similarity_overlay(
            model, images, layers, names=[p.name for p in args.images],
            labels="predicted" if args.labels == "predicted" else None, eps=args.eps,
            center=args.center, nmf=args.nmf or None, nmf_layer=args.nmf_layer,
            sweeps=sweeps or None, sweep_image=args.sweep_image, sweep_layer=args.sweep_layer,
            options=options, max_bytes=int(args.max_mb * 1e6) if args.max_mb else None,
            oversize=args.oversize, batch_size=args.batch_size, seed=args.seed, title=args.title,
        )  # fmt: skip
        if args.folder:
            if args.out.exists() and not args.out.is_dir():
                raise InputError(f"--out {args.out} is a file; --folder writes a folder.")
            written = view.save_folder(args.out)
        else:
            if args.out.is_dir():
                raise InputError(f"--out {args.out} is a folder; pass a file such as view.html.")
            written = view.save(args.out)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    size_bytes = (
        sum(f.stat().st_size for f in written.parent.rglob("*") if f.is_file())
        if args.folder
        else written.stat().st_size
    )
    summary = {
        "written": str(written),
        "bytes": size_bytes,
        "images": len(images),
        "layers": {k: list(v.shape[1:]) for k, v in view.activations.items()},
        "nmf": view.nmf is not None,
        "sweeps": [s.kind for s in view.sweeps],
        "warnings": messages,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for m in messages:
            print(f"convscope: warning: {m}")
        print(f"wrote {written} ({size_bytes / 1e6:.2f} MB)")
        if args.folder:
            print(f"open it with: convscope overlay serve {args.out}")
    return 0
