"""Demo section of activation sensitivity to augmentations (Kharyuk et al.) on ``shapes-cnn``.

Every activation of the four ReLU checkpoints and the classifier's probabilities is decomposed
over the augmentations of set A2 (brightness, contrast, saturation, hue, horizontal flip,
rotation, elliptic local blur), the augmentation order and the class, by Sobol' indices from
one streaming pass. Each channel is then called *colour* or *geometric* by which of the two
groups of augmentations carries more of its total index.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from convscope.plots.masking import masking_matrix_plot
from convscope.plots.single_augmentation import accuracy_table
from convscope.report.blocks import Figure, Table, Text
from convscope.report.document import Section
from convscope.report.registry import register_demo_section
from convscope.sensitivity.augmentation.augmentation_sensitivity import augmentation_sensitivity
from convscope.sensitivity.augmentation.experiments import guided_masking
from convscope.sensitivity.augmentation.masking import masking_spearman_matrix
from convscope.sensitivity.augmentation.single_augmentation import single_augmentation_accuracy

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
    "masking_images": 16,
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
    ctx.log("sensitivity: single augmentations and guided masking")
    table1 = single_augmentation_accuracy(
        model, world.images, world.labels, "A2", n_draws=3, top=(1, 5), seed=ctx.seed,
        batch_size=cfg["batch_size"],
    )  # fmt: skip
    summary["single_augmentation_top1"] = dict(zip(table1.names, table1.top1.tolist(), strict=True))
    k = cfg["masking_images"]
    masked = guided_masking(
        model, world.images[:k], world.labels[:k], res, measure="first_order", n_draws=1,
        checkpoints=cfg["checkpoints"][:-1], batch_size=cfg["batch_size"], seed=ctx.seed,
        progress=False,
    )  # fmt: skip
    fig4 = masking_spearman_matrix(masked)  # augmentations × variables
    n_aug = len(COLOUR) + len(GEOMETRIC) + 1
    diag = torch.stack([fig4[i, i] for i in range(n_aug)])
    off = fig4[:, :n_aug][~torch.eye(n_aug, dtype=torch.bool)]
    summary["masking"] = {
        "diagonal_mean": float(diag.nanmean()), "off_diagonal_mean": float(off.nanmean()),
        "matrix": fig4.tolist(), "rows": list(masked.input_names[1:]),
        "columns": list(masked.variables),
    }  # fmt: skip
    blocks = [
        Text(
            "**Sensitivity of every activation to simultaneous augmentations** (Kharyuk, "
            "Matveev and Oseledets). Each design row picks the parameters of the seven "
            "augmentations of set A2, their order (one of 7! = 5040) and an image (its class "
            "and position within the class); the augmented image is min-max rescaled per "
            "channel, as the authors do, and every activation of the four ReLU layers and the "
            "classifier's probabilities is recorded. Sobol' first-order and total indices of "
            f"each of the {len(res.variables)} variables are streamed over N(G+2) = "
            f"{res.n_evaluations} model evaluations (N = {cfg['n']}) in {seconds:.0f} s, "
            "without storing any activation. A channel is *colour* when brightness, contrast, "
            "saturation and hue together carry more of its mean total index than flip and "
            "rotation."
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
    blocks += [
        Text(
            "**Single augmentations** (the paper's Table 1): top-1 and top-5 accuracy of "
            f"shapes-cnn on the {len(world)} images, original and under each augmentation "
            "alone (three parameter draws each). Every entry, the original included, is "
            "min-max rescaled per channel as in the authors' pipeline; shapes-cnn was trained "
            f"without it, so the original accuracy is {table1.top1[0]:.2f} here against 0.99 "
            "on raw images — the rescaling is itself a strong perturbation "
            "(`rescale=None` turns it off)."
        ),
        Figure(
            accuracy_table(table1),
            caption="Accuracy under single augmentations.",
            name="sensitivity-table1",
        ),
        Text(
            "**Guided masking** (the paper's Fig. 4): the four ReLU layers are masked by the "
            "first-order maps of each variable under the 17 configurations (raw, inverted, "
            "and the top (1 − q) scaled by α), on the original images and on each single "
            f"augmentation ({k} images, one draw). Each cell is the Spearman correlation over "
            "the 17 configurations between the accuracy on the augmented images and on the "
            "original ones; the paper expects lower values on the diagonal (maps specific to "
            f"their augmentation). Here the diagonal mean is "
            f"{summary['masking']['diagonal_mean']:.2f} against "
            f"{summary['masking']['off_diagonal_mean']:.2f} off the diagonal."
        ),
        Figure(
            masking_matrix_plot(fig4, list(masked.input_names[1:]), list(masked.variables)),
            caption="Rows: augmentation of the input; columns: variable whose map masks.",
            name="sensitivity-masking",
        ),
    ]
    return Section("Sensitivity to augmentations", blocks, summary=summary, show_summary=False)


register_demo_section("sensitivity", build_sensitivity_section, order=5)
