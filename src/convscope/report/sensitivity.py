"""Demo section of activation sensitivity to augmentations (seed 000) on ``shapes-cnn``.

Every activation of the four ReLU checkpoints and the classifier's probabilities is decomposed
over the augmentations of set A2 (brightness, contrast, saturation, hue, horizontal flip,
rotation, elliptic local blur), the augmentation order and the class, by Sobol' indices from
one streaming pass. Each channel is then called *colour* or *geometric* by which of the two
groups of augmentations carries more of its total index.
"""

from __future__ import annotations

import time
from typing import Any

from convscope.report.blocks import Figure, Table, Text
from convscope.report.document import Section
from convscope.report.registry import register_demo_section
from convscope.sensitivity.augmentation_sensitivity import augmentation_sensitivity

__all__ = ["COLOUR", "DEMO_SENSITIVITY", "GEOMETRIC", "build_sensitivity_section"]

COLOUR = ("brightness", "contrast", "saturation", "hue")
GEOMETRIC = ("hflip", "rotation")
#: Images (4 per class), Sobol' base rows, checkpoints of shapes-cnn.
DEMO_SENSITIVITY: dict[str, Any] = {
    "images": 24,
    "n": 128,
    "checkpoints": [
        "model.features.relu1",
        "model.features.relu2",
        "model.features.relu3",
        "model.features.relu4",
        "model.classifier",
    ],
    "batch_size": 128,
}


def build_sensitivity_section(ctx: Any) -> Section:
    """Sobol' maps of every activation under set A2; colour against geometric channels."""
    cfg = DEMO_SENSITIVITY
    model = ctx.model("shapes-cnn")
    world = ctx.world(cfg["images"], seed_offset=13)
    ctx.log("sensitivity: Sobol maps of every activation under set A2")
    start = time.perf_counter()
    res = augmentation_sensitivity(
        model, world.images, world.labels, cfg["checkpoints"], augmentations="A2",
        method="sobol", n=cfg["n"], softmax=["model.classifier"], seed=ctx.seed,
        batch_size=cfg["batch_size"], progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    total = res.maps("total_order")
    first = res.maps("first_order")
    idx = {v: i for i, v in enumerate(res.variables)}
    colour = [idx[v] for v in COLOUR]
    geometric = [idx[v] for v in GEOMETRIC]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {
        "seconds": seconds, "n_evaluations": res.n_evaluations, "variables": res.variables,
        "checkpoints": {},
    }  # fmt: skip
    for name in cfg["checkpoints"][:-1]:
        st = total[name]  # V×C×H×W
        per_channel = st.flatten(2).mean(2)  # V×C
        col = per_channel[colour].sum(0)
        geo = per_channel[geometric].sum(0)
        n_col = int((col > geo).sum())
        mean_var = per_channel.mean(1)
        rows.append([name.removeprefix("model.features."), st.shape[1], n_col,
                     st.shape[1] - n_col, float(col.mean()), float(geo.mean()),
                     res.variables[int(mean_var.argmax())]])  # fmt: skip
        summary["checkpoints"][name] = {
            "channels": int(st.shape[1]), "colour_channels": n_col,
            "geometric_channels": int(st.shape[1] - n_col),
            "mean_total_order": dict(zip(res.variables, mean_var.tolist(), strict=True)),
        }  # fmt: skip
    clf = first["model.classifier"]  # V×classes
    summary["classifier_first_order"] = {v: clf[i].tolist() for i, v in enumerate(res.variables)}
    summary["classifier_mean_first_order"] = dict(
        zip(res.variables, clf.mean(1).tolist(), strict=True)
    )
    class_share = float(clf[idx["class"]].mean())
    summary["classifier_class_share"] = class_share
    blocks = [
        Text(
            "**Sensitivity of every activation to simultaneous augmentations** (Kharyuk et "
            "al., seed 000). Each design row picks the parameters of the seven augmentations "
            "of set A2, their order (one of 7! = 5040) and an image (its class and position "
            "within the class); the augmented image is min-max rescaled per channel, as the "
            "authors do, and every activation of the four ReLU layers and the classifier's "
            "probabilities is recorded. Sobol' first-order and total indices of each of the "
            f"{len(res.variables)} variables are streamed over N(G+2) = {res.n_evaluations} "
            f"model evaluations (N = {cfg['n']}) in {seconds:.0f} s, without storing any "
            "activation. A channel is *colour* when brightness, contrast, saturation and hue "
            "together carry more of its mean total index than flip and rotation."
        ),
        Table(
            [
                "checkpoint",
                "channels",
                "colour channels",
                "geometric channels",
                "mean S_T colour",
                "mean S_T geometric",
                "strongest variable",
            ],
            rows,
            float_format=".3f",
        ),
        Figure(
            res.plot("model.features.relu1", "total_order", channels=8),
            caption="Total Sobol' index maps of the first eight channels of relu1 (rows: "
            "variables; white 0, red 1).",
            name="sensitivity-relu1",
        ),
        Figure(
            res.plot("model.classifier", "first_order"),
            caption="First-order indices of the six class probabilities; the class variable "
            f"explains {100 * class_share:.0f}% of their variance on average.",
            name="sensitivity-classifier",
        ),
    ]
    return Section("Sensitivity to augmentations", blocks, summary=summary, show_summary=False)


register_demo_section("sensitivity", build_sensitivity_section, order=5)
