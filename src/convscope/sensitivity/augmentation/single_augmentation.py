r"""Single augmentations: the inputs of the masking experiment and the Table 1 baseline.

Kharyuk, Matveev & Oseledets measure how a classifier copes with each augmentation of their
sets A1 and A2 **applied alone** (paper Table 1), and feed the same inputs to the
guided-masking experiment (paper Sec. 2.5.2): the original validation images :math:`x_n` and, for
every augmentation :math:`g_a`, the images :math:`g_a(x_n; \theta_{a,n,d})`. A parameterised
augmentation is drawn :math:`D = 3` times per image (:math:`d = 0, \dots, D - 1`), with
independent inner parameters :math:`\theta_{a,n,d} \sim p(\theta_a)` from the marginals of
the paper's Appendix Table 1; a parameter-free one (sharpness, grayscale, flip) has a single
outcome.

Every image then goes through the reference pipeline's per-image, per-channel min-max rescale
(:func:`~convscope.sensitivity.augmentation.augmentations.minmax_rescale`; the paper
is silent on it) — the
original images too, so that all entries see the same pre-processing (``rescale=None`` skips
it). The top-:math:`k` accuracy of an entry is

.. math::

    \mathrm{acc}_k(a) = \frac{1}{D N} \sum_{d=0}^{D-1} \sum_{n=1}^{N}
    \mathbb 1\bigl[y_n \in \operatorname{top}_k f(\tilde x_{a,n,d})\bigr],

where :math:`\tilde x_{a,n,d}` is the rescaled augmented image; for the original and the
parameter-free entries all :math:`D` draws coincide, so this is the mean over the :math:`N`
images, exactly as if each image had been repeated :math:`D` times (the paper's layout).

**Layout of the inputs** (:func:`single_augmentation_inputs`): every entry has
:math:`D N` images, *draw-major*: rows :math:`dN, \dots, dN + N - 1` are draw :math:`d` of
images :math:`0, \dots, N - 1`. The original and parameter-free entries are repeated
:math:`D` times in the same layout, so :func:`labels_for` (the labels tiled :math:`D` times)
lines up with every entry, as :func:`~convscope.sensitivity.augmentation.masking.masked_predictions`
requires.

**Draws** (:func:`single_augmentation_parameters`): the unit-cube coordinates of augmentation
:math:`a` come from a CPU generator seeded with ``seed`` and the CRC-32 of the augmentation's
name, so an augmentation gets the same draws whatever set it is in and whatever device the
model is on; they are mapped to parameter values by
:meth:`~convscope.sensitivity.augmentation.augmentations.Augmentation.sample`.

Reference: V. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity of
convolutional neural networks in the context of simultaneous image augmentations" (Table 1).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from convscope.core.batching import batch_slices, check_batch_size
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.core.seeding import torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import TargetLike, check_target_count
from convscope.core.validation import check_images
from convscope.sensitivity.augmentation.augmentations import (
    Augmentation,
    augmentation_set,
    minmax_rescale,
)

__all__ = [
    "ORIGINAL",
    "SingleAugmentationAccuracy",
    "labels_for",
    "single_augmentation_accuracy",
    "single_augmentation_inputs",
    "single_augmentation_parameters",
]

#: Name of the entry holding the non-augmented images (the paper's A0).
ORIGINAL = "original"
_ORIGINAL_LABEL = "Orig."

Rescale = Literal["minmax"] | None
AugmentationsLike = str | Sequence[Augmentation | str]


def _check_n_draws(n_draws: int) -> int:
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise InputError(f"n_draws must be a positive int (the paper uses 3), got {n_draws!r}.")
    return int(n_draws)


def _check_rescale(rescale: Any) -> None:
    if rescale not in ("minmax", None):
        raise InputError(f"rescale must be 'minmax' or None, got {rescale!r}.")


def _augmentations(augmentations: AugmentationsLike) -> list[Augmentation]:
    augs = augmentation_set(augmentations)
    if any(a.name == ORIGINAL for a in augs):
        raise InputError(
            f"An augmentation may not be called {ORIGINAL!r}: that entry holds the "
            "non-augmented images. Rename it."
        )
    return augs


def _name_seed(seed: int, name: str) -> int:
    # A per-augmentation stream: the draws of one augmentation do not depend on its set.
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _draw(aug: Augmentation, n: int, height: int, width: int, n_draws: int, seed: int) -> Tensor:
    """``(n_draws, n, n_params)`` float64 parameter values of ``aug`` (CPU)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}.")
    gen = torch_generator(_name_seed(int(seed), aug.name))
    u = torch.rand(n_draws * n, aug.n_params, generator=gen, dtype=torch.float64)
    return aug.sample(u, height, width).reshape(n_draws, n, aug.n_params)


def single_augmentation_parameters(
    augmentations: AugmentationsLike,
    n: int,
    height: int,
    width: int,
    *,
    n_draws: int = 3,
    seed: int = 0,
) -> dict[str, Tensor]:
    r"""The inner parameters drawn for every image and draw.

    :math:`\theta_{a,n,d} = \mathrm{sample}_a(u_{a,n,d})` with :math:`u_{a,n,d} \sim
    U[0, 1)^{k_a}` i.i.d. from a generator seeded by ``seed`` and the augmentation's name
    (module docstring); these are the parameters :func:`single_augmentation_inputs` and
    :func:`single_augmentation_accuracy` use with the same arguments.

    Parameters
    ----------
    augmentations : str or sequence
        ``"A1"``, ``"A2"``, a name, or a list of names / :class:`Augmentation` objects.
    n : int
        Number of images.
    height, width : int
        Image size (relative parameter bounds depend on it).
    n_draws : int, default 3
        Draws per image.
    seed : int, default 0
        Seed of the draws.

    Returns
    -------
    dict of str to Tensor
        ``{name: (n_draws, n, n_params)}`` float64 on the CPU, for the parameterised
        augmentations only (parameter-free ones have a single outcome).
    """
    augs = _augmentations(augmentations)
    n_draws = _check_n_draws(n_draws)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive number of images, got {n!r}.")
    return {
        a.name: _draw(a, int(n), int(height), int(width), n_draws, seed)
        for a in augs
        if a.n_params > 0
    }


def labels_for(labels: TargetLike, n_draws: int = 3) -> Tensor:
    """Labels matching the draw-major layout of :func:`single_augmentation_inputs`.

    Parameters
    ----------
    labels : sequence of int or Tensor
        ``(N,)`` class of each original image.
    n_draws : int, default 3
        Draws per image.

    Returns
    -------
    Tensor
        ``(n_draws · N,)`` int64: the labels repeated ``n_draws`` times end to end
        (``labels.repeat(n_draws)``), so row ``d·N + n`` is the label of image ``n``.
    """
    n_draws = _check_n_draws(n_draws)
    y = torch.as_tensor(labels)
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool or y.numel() == 0:
        raise InputError(
            f"labels must be a non-empty 1-D sequence of class indices, got shape "
            f"{tuple(y.shape)} and dtype {y.dtype}."
        )
    return y.long().repeat(n_draws)


def _finish(x: Tensor, rescale: Rescale) -> Tensor:
    return minmax_rescale(x) if rescale == "minmax" else x


def single_augmentation_inputs(
    images: Tensor,
    augmentations: AugmentationsLike = "A1",
    *,
    n_draws: int = 3,
    seed: int = 0,
    rescale: Rescale = "minmax",
) -> dict[str, Tensor]:
    r"""The original images and each augmentation applied alone, ``n_draws`` draws per image.

    Parameters
    ----------
    images : Tensor
        ``N×3×H×W`` images in [0, 1].
    augmentations : str or sequence, default "A1"
        ``"A1"``, ``"A2"``, a name, or a list of names / :class:`Augmentation` objects.
    n_draws : int, default 3
        Parameter draws per image (the paper's :math:`N_\text{inner} = 3`).
    seed : int, default 0
        Seed of the draws (see :func:`single_augmentation_parameters`).
    rescale : {"minmax", None}, default "minmax"
        Per-image, per-channel min-max rescale of *every* entry, the original included (the
        reference pipeline); None leaves the images as they are.

    Returns
    -------
    dict of str to Tensor
        ``{"original": ..., <augmentation name>: ...}`` in the set's order, each
        ``(n_draws·N)×3×H×W`` on ``images``' device, draw-major (row ``d·N + n`` is draw
        ``d`` of image ``n``; the original and parameter-free entries repeat the same images
        for every draw). Pair them with :func:`labels_for`.

    Notes
    -----
    Holds :math:`(A + 1) D N` images in memory; for large N use
    :func:`single_augmentation_accuracy`, which streams.
    """
    x = check_images(images, name="images")
    augs = _augmentations(augmentations)
    n_draws = _check_n_draws(n_draws)
    _check_rescale(rescale)
    n, _, h, w = x.shape
    out = {ORIGINAL: _finish(x, rescale).repeat(n_draws, 1, 1, 1)}
    for aug in augs:
        if aug.n_params == 0:
            once = aug.apply(x, aug.identity_theta(n, device=x.device))
            out[aug.name] = _finish(once, rescale).repeat(n_draws, 1, 1, 1)
            continue
        theta = _draw(aug, n, h, w, n_draws, seed).reshape(n_draws * n, aug.n_params)
        tiled = x.repeat(n_draws, 1, 1, 1)
        out[aug.name] = _finish(aug.apply(tiled, theta.to(x.device)), rescale)
    return out


@dataclass
class SingleAugmentationAccuracy(Result):
    """Top-k accuracy with each augmentation applied alone (paper Table 1).

    Attributes
    ----------
    names : tuple of str
        ``("original", <augmentation names>...)`` (A + 1 entries).
    labels : tuple of str
        Display labels (``"Orig."``, ``"Erasing"``, ``"Gaus.blur"``, ...).
    top : tuple of int
        The k of every accuracy row.
    accuracy : Tensor
        ``(len(top), A + 1)`` float64 top-k accuracy over all draws and images.
    per_draw : Tensor
        ``(len(top), A + 1, n_draws)`` float64 accuracy of each draw (equal across draws for
        the original and parameter-free entries).
    n_images : int
        Number of original images N (each counted ``n_draws`` times).
    n_draws : int
        Draws per image.
    settings : dict
        ``seed``, ``rescale``, ``batch_size``.
    """

    names: tuple[str, ...]
    labels: tuple[str, ...]
    top: tuple[int, ...]
    accuracy: Tensor
    per_draw: Tensor
    n_images: int
    n_draws: int
    settings: dict[str, Any] = field(default_factory=dict)

    def top_k(self, k: int) -> Tensor:
        """``(A + 1,)`` top-``k`` accuracy (``k`` must be one of :attr:`top`)."""
        if k not in self.top:
            raise InputError(
                f"top-{k} accuracy was not measured; this result has top={self.top}. Run "
                f"single_augmentation_accuracy(..., top=({', '.join(map(str, self.top))}, {k}))."
            )
        return self.accuracy[self.top.index(k)]

    @property
    def top1(self) -> Tensor:
        """``(A + 1,)`` top-1 accuracy."""
        return self.top_k(1)

    @property
    def top5(self) -> Tensor:
        """``(A + 1,)`` top-5 accuracy."""
        return self.top_k(5)

    def table(self) -> list[dict[str, Any]]:
        """One row per entry: ``{"augmentation": label, "top-1": acc, "top-5": acc, ...}``.

        The rows are the columns of the paper's Table 1 (original first, then the set's
        order); ``pandas.DataFrame(result.table())`` gives a data frame.
        """
        rows = []
        for j, label in enumerate(self.labels):
            row: dict[str, Any] = {"augmentation": label}
            for i, k in enumerate(self.top):
                row[f"top-{k}"] = float(self.accuracy[i, j])
            rows.append(row)
        return rows

    def to_markdown(self, fmt: str = ".4f") -> str:
        """The Table 1 layout as markdown: a column per entry, a row per top-k."""
        head = "| metric | " + " | ".join(self.labels) + " |"
        rule = "|---" * (len(self.labels) + 1) + "|"
        body = [
            f"| top-{k} | " + " | ".join(format(float(v), fmt) for v in self.accuracy[i]) + " |"
            for i, k in enumerate(self.top)
        ]
        return "\n".join([head, rule, *body])

    def plot(self, **kwargs: Any) -> Any:
        """The Table 1 figure (:func:`convscope.plots.single_augmentation.accuracy_table`)."""
        from convscope.plots.single_augmentation import accuracy_table

        return accuracy_table(self, **kwargs)


def _check_top(top: int | Sequence[int]) -> tuple[int, ...]:
    ks = (top,) if isinstance(top, (int, np.integer)) else tuple(top)
    if (
        not ks
        or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks)
        or len(set(ks)) != len(ks)
    ):
        raise InputError(f"top must be distinct positive ints such as (1, 5), got {top!r}.")
    return tuple(int(k) for k in ks)


def single_augmentation_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: TargetLike,
    augmentations: AugmentationsLike = "A1",
    *,
    n_draws: int = 3,
    top: int | Sequence[int] = (1, 5),
    seed: int = 0,
    batch_size: int | None = 64,
    rescale: Rescale = "minmax",
) -> SingleAugmentationAccuracy:
    r"""Top-k accuracy on the original images and with each augmentation alone (Table 1).

    :math:`\mathrm{acc}_k(a) = \frac{1}{DN}\sum_{d,n} \mathbb 1[y_n \in \operatorname{top}_k
    f(\tilde x_{a,n,d})]` (module docstring), with the same draws as
    :func:`single_augmentation_inputs`; the images are augmented batch by batch, so memory
    does not grow with N.

    Parameters
    ----------
    model : nn.Module
        The classifier (N×classes scores; carries its normalisation), run in eval mode.
    images : Tensor
        ``N×3×H×W`` validation images in [0, 1].
    labels : int or sequence of int
        True classes (N).
    augmentations : str or sequence, default "A1"
        ``"A1"``, ``"A2"`` or a list of names / :class:`Augmentation` objects.
    n_draws : int, default 3
        Parameter draws per image for the parameterised augmentations.
    top : int or sequence of int, default (1, 5)
        The k of the top-k accuracies.
    seed : int, default 0
        Seed of the draws.
    batch_size : int, default 64
        Images per forward pass.
    rescale : {"minmax", None}, default "minmax"
        Min-max rescale every image per channel before the model (reference pipeline).

    Returns
    -------
    SingleAugmentationAccuracy
        Accuracies on the CPU; ``.table()``, ``.to_markdown()`` and ``.plot()`` give the
        Table 1 layout.
    """
    x = check_images(images, name="images")
    augs = _augmentations(augmentations)
    n_draws = _check_n_draws(n_draws)
    ks = _check_top(top)
    _check_rescale(rescale)
    check_batch_size(batch_size)
    n, _, h, w = x.shape
    device, dtype = model_device(model), model_dtype(model)
    y = check_target_count(labels, n).indices(n).to(device)
    thetas = {a.name: _draw(a, n, h, w, n_draws, seed).to(device) for a in augs if a.n_params}
    entries: list[Augmentation | None] = [None, *augs]
    # correct[i, j, d]: images whose label is in the top-k_i for entry j, draw d.
    correct = torch.zeros(len(ks), len(entries), n_draws, dtype=torch.long, device=device)
    k_max = max(ks)

    def hits(batch: Tensor, target: Tensor) -> Tensor:
        scores = model(_finish(batch, rescale))
        if not isinstance(scores, Tensor) or scores.ndim != 2:
            raise InputError("The model must return N×classes scores.")
        if k_max > scores.shape[1]:
            raise InputError(
                f"top-{k_max} needs at least {k_max} classes, but the model has "
                f"{scores.shape[1]}; pass e.g. top=(1,)."
            )
        if int(target.max()) >= scores.shape[1]:
            raise InputError(
                f"labels go up to {int(target.max())}, but the model has {scores.shape[1]} "
                f"classes; labels are class indices 0..{scores.shape[1] - 1}."
            )
        pred = scores.topk(k_max, dim=1).indices
        found = pred == target[:, None]
        return torch.stack([found[:, :k].any(dim=1).sum() for k in ks])

    with inference_state(model), torch.no_grad():
        for sl in batch_slices(n, batch_size):
            xb = x[sl].to(device=device, dtype=dtype)
            yb = y[sl]
            for j, aug in enumerate(entries):
                if aug is None or aug.n_params == 0:
                    out = (
                        xb
                        if aug is None
                        else aug.apply(xb, aug.identity_theta(xb.shape[0], device=device))
                    )
                    correct[:, j, :] += hits(out, yb)[:, None]
                    continue
                for d in range(n_draws):
                    correct[:, j, d] += hits(aug.apply(xb, thetas[aug.name][d, sl]), yb)
    per_draw = (correct.double() / n).cpu()
    return SingleAugmentationAccuracy(
        names=(ORIGINAL, *(a.name for a in augs)),
        labels=(_ORIGINAL_LABEL, *(getattr(a, "label", "") or a.name for a in augs)),
        top=ks,
        accuracy=per_draw.mean(dim=-1),
        per_draw=per_draw,
        n_images=int(n),
        n_draws=n_draws,
        settings={
            "augmentations": [a.name for a in augs],
            "seed": int(seed),
            "rescale": rescale,
            "batch_size": check_batch_size(batch_size),
        },
    )
