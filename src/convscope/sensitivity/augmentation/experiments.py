r"""Kharyuk et al.'s series-2 experiments from a sensitivity result: masking, prediction bias.

* :func:`guided_masking` — the masked-prediction experiment (paper Sec. 2.5.2): the original
  images and each single augmentation (``n_draws`` parameter draws for parameterised ones)
  are classified with every convolutional checkpoint masked at once by the sensitivity maps of
  each SA variable, under the 17 mask configurations. ``masking_spearman_matrix`` of the
  returned predictions is the Fig. 4 matrix.
* :func:`prediction_bias` — single-class sensitivity (paper Sec. 3.2.2): for each augmentation
  :math:`s`, the top-k classes of the classifier's sensitivity map of :math:`s`; the mean
  Jaccard index between them and the top-k predictions of inputs augmented by :math:`s` and
  masked by the maps of :math:`s`, per configuration; flagged above the IQR threshold
  :math:`\tau` of the hypergeometric null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.sensitivity.augmentation.augmentation_sensitivity import (
    AugmentationSensitivityResult,
)
from convscope.sensitivity.augmentation.masking import (
    MASK_CONFIGS,
    MaskConfig,
    MaskedPredictionResult,
    masked_predictions,
)
from convscope.sensitivity.augmentation.single_augmentation import (
    labels_for,
    single_augmentation_inputs,
)
from convscope.sensitivity.augmentation.single_class import (
    jaccard_null,
    mean_jaccard,
    top_sensitive_classes,
)

__all__ = ["PredictionBiasResult", "guided_masking", "prediction_bias"]


def guided_masking(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | Sequence[int],
    result: AugmentationSensitivityResult,
    *,
    measure: str = "auto",
    checkpoints: Sequence[str] | None = None,
    n_draws: int = 3,
    configs: Sequence[MaskConfig] = MASK_CONFIGS,
    top_k: int = 5,
    batch_size: int | None = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> MaskedPredictionResult:
    """Masked predictions of the original and singly augmented images (Kharyuk et al., Sec. 2.5.2).

    Parameters
    ----------
    result
        The sensitivity maps; ``measure`` picks ``"first_order"``, ``"total_order"`` or
        ``"shapley"`` (``"auto"``: Shapley or first order), clipped to [0, 1].
    checkpoints
        Checkpoints to mask (default: every convolutional one of ``result``, i.e. with
        C×H×W maps; the authors exclude fully connected layers).
    n_draws
        Parameter draws per image for parameterised augmentations (the authors' 3).

    Returns
    -------
    MaskedPredictionResult
        Inputs ``"original"`` and one per augmentation of ``result``; mask variables: every
        variable of ``result``.
    """
    maps_all = result.maps(measure)
    names = list(checkpoints) if checkpoints is not None else [
        c for c in result.checkpoints if maps_all[c].ndim == 4
    ]  # fmt: skip
    if not names:
        raise InputError(
            "No convolutional checkpoint (C×H×W maps) to mask in this result; pass "
            "checkpoints=[...] explicitly."
        )
    unknown = [c for c in names if c not in maps_all]
    if unknown:
        raise InputError(f"Checkpoints {unknown} are not in the result {result.checkpoints}.")
    inputs = single_augmentation_inputs(
        images, result.settings["augmentations"], n_draws=n_draws, seed=seed,
        rescale=result.settings.get("rescale", "minmax"),
    )  # fmt: skip
    return masked_predictions(
        model, inputs, {c: maps_all[c] for c in names}, result.variables,
        labels=labels_for(torch.as_tensor(labels), n_draws), configs=configs, top_k=top_k,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip


@dataclass
class PredictionBiasResult(Result):
    """Mean Jaccard between masked top-k predictions and the sensitive classes.

    Attributes
    ----------
    jaccard
        ``(A, K)``: augmentation × mask configuration.
    sensitive
        ``(A, k)`` the sensitive classes of each augmentation (descending sensitivity).
    tau, q1, q3
        The null threshold and quartiles (:func:`~convscope.sensitivity.jaccard_null`).
    outliers
        ``(A, K)`` bool, ``jaccard > tau``.
    """

    jaccard: Tensor
    sensitive: Tensor
    outliers: Tensor
    tau: float
    q1: float
    q3: float
    augmentations: list[str]
    configs: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def plot(self) -> Any:
        """The Jaccard table with the values above τ marked (Table 5)."""
        from convscope.plots.sensitivity_analysis import jaccard_table

        return jaccard_table(self.jaccard, self.augmentations, self.configs, self.tau)


def prediction_bias(
    result: AugmentationSensitivityResult,
    masked: MaskedPredictionResult,
    classifier: str,
    *,
    k: int = 5,
    measure: str = "first_order",
    significant_digits: int | None = None,
) -> PredictionBiasResult:
    """Prediction bias towards the sensitive classes under guided masking (paper Sec. 3.2.2).

    Parameters
    ----------
    result
        Sensitivity maps with the classifier among its checkpoints (first order or Shapley;
        the authors exclude total indices for their weak specificity).
    masked
        :func:`guided_masking` output on the same variables.
    classifier
        The classifier checkpoint (one value per class).
    k
        Size of the sensitive set and of the predicted set (the authors' 5).
    significant_digits
        Round τ as the paper's tables do (2 reproduces the paper's outlier counts).
    """
    maps = result.maps(measure)
    if classifier not in maps:
        raise InputError(f"{classifier!r} is not a checkpoint of the result {result.checkpoints}.")
    clf = maps[classifier]
    if clf.ndim != 2:
        raise InputError(
            f"{classifier!r} must have one value per class, got maps {tuple(clf.shape)}."
        )
    top = top_sensitive_classes(clf, k=k, names=result.variables)
    augs = [a for a in result.settings["augmentations"] if a in masked.input_names]
    rows, sens = [], []
    for a in augs:
        v = result.variables.index(a)
        i = masked.input_index(a)
        j = list(masked.variables).index(a)
        sensitive = top.indices[v]
        per_config = [
            mean_jaccard(masked.topk[i, j, c, :, :k].cpu(), sensitive.tolist())
            for c in range(masked.topk.shape[2])
        ]
        rows.append(per_config)
        sens.append(sensitive)
    n_classes = int(clf.shape[1])
    n_samples = int(masked.topk.shape[3])
    null = jaccard_null(n_classes, max(1, n_samples // n_classes), n=k)
    tau = null.threshold(significant_digits)
    jac = torch.tensor(rows, dtype=torch.float64)
    return PredictionBiasResult(
        jaccard=jac,
        sensitive=torch.stack(sens) if sens else torch.zeros(0, k, dtype=torch.long),
        outliers=jac > tau,
        tau=float(tau),
        q1=float(null.q1),
        q3=float(null.q3),
        augmentations=augs,
        configs=list(masked.configs),
        settings={
            "k": k,
            "measure": measure,
            "classifier": classifier,
            "significant_digits": significant_digits,
        },
    )
