"""Demo sections of the foundation: the shapes world, the embedded models, Grad-CAM.

Registered with :func:`convscope.report.register_demo_section` on import (``convscope demo``
imports this module). Each builder takes the demo's context
(:class:`convscope.cli.demo.DemoRun`): ``ctx.world(...)``, ``ctx.model(name)``, ``ctx.seed``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from convscope.attribution.baselines import grad_cam
from convscope.models.evaluation import accuracy, predict
from convscope.plots import bar_chart, heatmap_overlay, image_grid, label_map_grid
from convscope.report.blocks import Figure, Table, Text
from convscope.report.document import Section
from convscope.report.registry import register_demo_section

__all__ = [
    "build_gradcam_section",
    "build_models_section",
    "build_world_section",
    "mask_energy",
]

MODELS = ("shapes-cnn", "shapes-cnn-spurious")
#: Images used to measure accuracy in the demo (fresh, never seen in training).
EVAL_IMAGES = 2000


def build_world_section(ctx: Any) -> Section:
    """Sample images with their target masks and concept maps; generator throughput."""
    from convscope.data.world import CONCEPT_CATEGORIES, CONCEPT_NAMES, SPURIOUS_TEXTURE

    world = ctx.world(16, seed_offset=1)
    titles = [world.class_names[int(c)] for c in world.labels]
    grid = image_grid(world.images, titles=titles, masks=world.masks, ncols=8)
    concepts = label_map_grid(
        world.concepts[:8], world.concept_names, ncols=4, images=world.images[:8], titles=titles[:8]
    )
    start = time.perf_counter()
    n_timed = 2000
    ctx.world(n_timed, seed_offset=2)
    rate = n_timed / (time.perf_counter() - start)
    vocab = [
        [
            cat,
            ", ".join(
                n for n, c in zip(CONCEPT_NAMES, CONCEPT_CATEGORIES, strict=True) if c == cat
            ),
        ]
        for cat in dict.fromkeys(CONCEPT_CATEGORIES)
    ]
    return Section(
        "The shapes world",
        [
            Text(
                "The embedded default is a procedural image world with ground truth: 1 to 3 "
                "coloured shapes on flat, procedural or photographic (scikit-image brick, "
                "grass, gravel) backgrounds. The class is the shape of the largest object, "
                "drawn on top; its exact pixel mask, per-pixel concept labels (shape, colour, "
                "texture) and every generative factor are recorded. "
                "API: `convscope.datasets.shapes(n, seed=0, size=64, spurious=0.0, "
                "label_noise=0.0)`."
            ),
            Figure(
                grid,
                caption="Sample images; the target object's mask is outlined in red.",
                name="samples",
            ),
            Figure(
                concepts,
                caption="Per-pixel concept maps (object shape over background "
                "texture) beside their images.",
                name="concepts",
            ),
            Table(["category", "concepts"], vocab, caption="Concept vocabulary"),
            Table(
                ["class", "correlated background (spurious option)"],
                list(SPURIOUS_TEXTURE.items()),
                caption="With spurious=p, an image gets its class's texture with probability p.",
            ),
        ],
        summary={
            "classes": list(world.class_names),
            "n_concepts": len(world.concept_names),
            "generator_images_per_second_64px": round(rate),
        },
    )


def build_models_section(ctx: Any) -> Section:
    """Accuracy of both embedded models on fresh images, and the spurious model's drop."""
    independent = ctx.world(EVAL_IMAGES, seed_offset=3)
    correlated = ctx.world(EVAL_IMAGES, seed_offset=3, spurious=0.95)
    rows = []
    summary: dict[str, Any] = {}
    bars: dict[str, float] = {}
    for name in MODELS:
        model = ctx.model(name)
        meta = model.convscope_info.metadata
        p = float(meta["train_config"]["spurious"])
        acc_ind = accuracy(model, independent.images, independent.labels, progress=False)
        acc_cor = accuracy(model, correlated.images, correlated.labels, progress=False)
        rows.append([name, p, acc_cor, acc_ind, acc_cor - acc_ind, meta.get("train_seconds")])
        summary[name] = {
            "accuracy_independent": acc_ind,
            "accuracy_correlated_p095": acc_cor,
            "drop": acc_cor - acc_ind,
            "trained_with_spurious": p,
        }
        bars[f"{name}\ncorrelated"] = acc_cor
        bars[f"{name}\nindependent"] = acc_ind
    chart = bar_chart(
        bars,
        title="Accuracy on fresh images",
        ylabel="accuracy",
        ylim=(0, 1.05),
        reference=1 / len(independent.class_names),
        reference_label="chance",
    )
    return Section(
        "Embedded models",
        [
            Text(
                "Two small CNNs (4 conv blocks, 98k parameters) trained on the world by the "
                "deterministic script `convscope train-models`. `shapes-cnn` saw backgrounds "
                "independent of the class; `shapes-cnn-spurious` saw the class's background "
                "texture 95% of the time. Accuracy is measured on "
                f"{EVAL_IMAGES} fresh images where the background follows the class with "
                "probability 0.95 (correlated) or is independent of it."
            ),
            Table(
                [
                    "model",
                    "trained with spurious p",
                    "accuracy, correlated",
                    "accuracy, independent",
                    "drop",
                    "training time (s)",
                ],
                rows,
                float_format=".3f",
            ),
            Figure(
                chart,
                caption="The spurious model's accuracy drops when the background no "
                "longer tells the class.",
                name="accuracy",
            ),
        ],
        summary=summary,
        show_summary=False,  # the table shows the same numbers
    )


def mask_energy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fraction of each non-negative map's mass inside its mask (N×1×H×W maps, N×H×W masks).

    A uniform map scores the mask's area fraction; a map that looks only at the object
    scores 1. Maps with no mass score 0.
    """
    m = maps.clamp_min(0).flatten(1)
    inside = (m * masks.flatten(1).to(m.dtype)).sum(1)
    total = m.sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def build_gradcam_section(ctx: Any) -> Section:
    """One Grad-CAM per class for both models, and the mass of Grad-CAM on the object."""
    world = ctx.world(300, seed_offset=4)
    names = world.class_names
    picks = [int(torch.nonzero(world.labels == c)[0]) for c in range(len(names))]
    images = world.images[picks]
    maps, titles, rows = [], [], []
    summary: dict[str, Any] = {}
    area = float(world.masks.float().mean())
    for name in MODELS:
        model = ctx.model(name)
        cams = grad_cam(model, world.images, world.labels, batch_size=100)
        energy = float(mask_energy(cams, world.masks).mean())
        preds = predict(model, images)
        maps.append(cams[picks])
        short = "clean" if name == "shapes-cnn" else "spurious"
        titles += [
            f"{short}: {names[c]}→{names[int(p)]}"
            for c, p in zip(range(len(names)), preds, strict=True)
        ]
        rows.append([name, model.convscope_info.default_layer, energy, area])
        summary[name] = {"gradcam_mass_on_object": energy}
    summary["object_area_fraction"] = area
    fig = heatmap_overlay(
        torch.cat([images, images]), torch.cat(maps), titles=titles, ncols=len(names)
    )
    return Section(
        "Grad-CAM per class",
        [
            Text(
                "Grad-CAM (through Captum's LayerGradCam) for the true class of one image per "
                "class: top row `shapes-cnn` (clean), bottom row `shapes-cnn-spurious` "
                "(titles: true→predicted class). The table gives the mean fraction of "
                "Grad-CAM mass inside the ground-truth object mask over 300 images; a map "
                "blind to the object would score the object's area fraction."
            ),
            Figure(fig, caption="Grad-CAM overlays (red = high).", name="gradcam"),
            Table(
                ["model", "layer", "Grad-CAM mass on object", "object area fraction"],
                rows,
                float_format=".3f",
            ),
        ],
        summary=summary,
    )


register_demo_section("world", build_world_section, order=0)
register_demo_section("models", build_models_section, order=1)
register_demo_section("gradcam", build_gradcam_section, order=2)
