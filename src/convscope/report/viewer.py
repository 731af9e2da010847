"""Demo section of interactive similarity overlays (Fong 2020, ch. 6) on ``shapes-cnn``.

One image of each class of the shapes world at three depths of ``shapes-cnn`` (32×32, 16×16
and 8×8 grids), with NMF components (k = 4, the article's default) at the deepest layer and
rotation and scale sweeps of the first image. The report links the self-contained viewer
(``overlay.html``, next to the report) and shows one query as a static figure, with the mean
similarity of corresponding locations across each sweep: the article's observation that
similarity falls as the transform grows, as a number.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from convscope.report.blocks import Figure, Link, Table, Text
from convscope.report.document import Section
from convscope.report.registry import register_demo_section
from convscope.viewer.overlay import similarity_overlay

__all__ = ["DEMO_VIEWER", "build_viewer_section"]

#: Layers (32×32, 16×16, 8×8 at 64 px), NMF components, sweeps, world images drawn.
DEMO_VIEWER: dict[str, Any] = {
    "layers": ["model.features.relu2", "model.features.relu3", "model.features.relu4"],
    "nmf": 4,
    "sweeps": ["rotation", "scale"],
    "sweep_layer": "model.features.relu3",
    "world_images": 24,
    "file": "overlay.html",
}


def _one_per_class(labels: torch.Tensor) -> list[int]:
    chosen: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        chosen.setdefault(int(y), i)
    return [chosen[k] for k in sorted(chosen)]


def build_viewer_section(ctx: Any) -> Section:
    """The viewer file, a static query and the sweep curves."""
    cfg = DEMO_VIEWER
    model = ctx.model("shapes-cnn")
    world = ctx.world(cfg["world_images"], seed_offset=14)
    idx = _one_per_class(world.labels)
    images = world.images[idx]
    names = [f"{world.class_names[int(world.labels[i])]} #{i}" for i in idx]
    ctx.log("viewer: similarity overlays, NMF and sweeps")
    start = time.perf_counter()
    view = similarity_overlay(
        model, images, cfg["layers"], names=names, nmf=cfg["nmf"], sweeps=cfg["sweeps"],
        sweep_layer=cfg["sweep_layer"], seed=ctx.seed,
        title="convscope demo: similarity overlays on shapes-cnn",
    )  # fmt: skip
    path = view.save(ctx.out_dir / cfg["file"])
    seconds = time.perf_counter() - start
    size = path.stat().st_size

    layer = cfg["layers"][1]
    h, w = view.activations[layer].shape[-2:]
    fig = view.plot(layer, 0, h // 2, w // 2)

    sweep_rows: list[list[Any]] = []
    others: list[float] = []
    sweep_summary: dict[str, Any] = {}
    for sweep in view.sweeps:
        curves = np.asarray(sweep.curves, dtype=np.float64)
        means = np.nanmean(curves.reshape(curves.shape[0], -1), axis=1)
        inside = np.isfinite(curves.reshape(curves.shape[0], -1)).mean(axis=1)
        values = [float(v) for v in np.asarray(sweep.values)]
        sweep_summary[sweep.kind] = {
            "values": values,
            "mean_similarity": [float(m) for m in means],
            "fraction_inside": [float(f) for f in inside],
        }
        identity = 0.0 if sweep.kind == "rotation" else 1.0
        others += [float(m) for v, m in zip(values, means, strict=True) if v != identity]
        for v, m, f in zip(values, means, inside, strict=True):
            sweep_rows.append([sweep.kind, f"{v:.3g}", float(m), float(f)])

    summary = {
        "file": cfg["file"],
        "bytes": size,
        "seconds": seconds,
        "images": len(idx),
        "layers": {k: list(v.shape[1:]) for k, v in view.activations.items()},
        "nmf_relative_error": None if view.nmf is None else view.nmf.reconstruction_error,
        "sweeps": sweep_summary,
    }
    blocks = [
        Text(
            "Point at a location of any image: every image darkens where the layer's activation "
            "vector is unlike the one under the cursor (cosine similarity, ε = 1e-4, grayscale at "
            "opacity 0.7, nearest-neighbour cells: the article's defaults). The viewer holds "
            f"{len(idx)} images (one per class) at three depths of shapes-cnn, NMF components "
            "of the deepest layer, and rotation and scale sweeps of the first image with the "
            "similarity curve of the hovered location. Click pins a location; arrows move it; "
            "n/p change the image, l the layer, m the NMF view."
        ),
        Link(
            cfg["file"],
            "Open the interactive viewer",
            f"one self-contained file, {size / 1e6:.2f} MB, no network; written in {seconds:.1f} s",
        ),
        Figure(
            fig,
            caption=f"Static rendering of one query: the centre cell of image 0 at {layer}.",
            name="viewer-query",
        ),
        Text(
            "Mean similarity between each location of the first image and the location it "
            f"moves to under each transform ({cfg['sweep_layer']}), over the locations that "
            "stay inside the grid. It is 1 at the identity and between "
            f"{min(others, default=float('nan')):.2f} and {max(others, default=float('nan')):.2f}"
            " elsewhere: the layer's vectors change under rotation and scale (the article's "
            "observation), least for small transforms."
        ),
        Table(
            ["sweep", "value", "mean similarity", "fraction inside"],
            sweep_rows,
            float_format=".3f",
        ),
    ]
    return Section("Similarity overlays", blocks, summary=summary, show_summary=False)


register_demo_section("viewer", build_viewer_section, order=6)
