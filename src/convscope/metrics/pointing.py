r"""The pointing game (Zhang et al., 2016, "Top-down neural attention by excitation backprop").

For every (image, class) pair with the class present in the image, a saliency map for that
class is reduced to its maximum point :math:`p = \arg\max_u s(u)`. The pair is a *hit* when
the point falls within a tolerance :math:`\tau` of the class's ground-truth region
:math:`G \subset \Lambda` (boxes or segmentation masks),

.. math::

    \text{hit}(p) \iff \min_{q \in G} \lVert p - q \rVert_2 < \tau ,

and a *miss* otherwise. The thesis (Fong, ch. 4 and App. C.2) reports the accuracy
hits / (hits + misses) on PASCAL VOC07 and COCO14, also on a "difficult" subset. The
semantics here follow TorchRay's benchmark (``torchray.benchmark.pointing_game``), which
produced the published tables; the thesis text leaves them implicit:

* :math:`\tau = 15` pixels, with a **strict** inequality (a ground-truth pixel exactly 15 px
  away misses). ``tolerance=0`` is the tolerance-free variant (Quantus): a hit iff the point
  itself is a ground-truth pixel.
* The reported **accuracy is the mean of the per-class accuracies**
  :math:`\frac1C\sum_c h_c / \max(1, h_c + m_c)`, averaged over *all* classes, so a class
  without evaluated pairs counts as 0 (``classes="all"``, TorchRay's choice).
  ``classes="evaluated"`` averages over the classes with at least one evaluated pair. The
  global ratio :math:`\sum_c h_c / \sum_c (h_c + m_c)` is reported as well.
* Pairs can be *skipped* (neither hit nor miss): TorchRay skips VOC classes whose boxes are all
  flagged "difficult", and the "difficult subset" evaluates only the pairs flagged by the
  Excitation-Backprop flag files. Both are per-pair hooks here (``skip=`` and ``difficult=``).
* The saliency map is resized (bilinearly) to the ground-truth size before the argmax, and ties
  go to the first maximum in row-major order. Points are ``(y, x)`` here (TorchRay writes
  ``(x, y)``).
* The **centre baseline** points at :math:`(H/2, W/2)` (TorchRay's ``(w / 2, h / 2)``, a true
  division, so odd sizes give a point between pixels).

Extremal perturbations give K masks per pair (one per area); the thesis turns them into a
saliency map by **summing** them and smoothing with a Gaussian of
:math:`\sigma = 0.09 \min(H, W)` (:func:`masks_to_saliency`), as TorchRay's benchmark does
(resize, then blur with zero "constant" padding).

Distances are computed exactly on the masks' device: :math:`\min_{q\in G}\lVert p-q\rVert^2`
over the ground-truth pixels, so the test is an integer comparison for integer points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.core.validation import positive_int
from convscope.data.filters import gaussian_blur

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PointingGame",
    "PointingGameResult",
    "center_baseline",
    "center_points",
    "masks_to_saliency",
    "pointing_game",
    "pointing_game_from_points",
    "pointing_hits",
    "saliency_to_point",
]

#: Masks per distance computation: bounds the N×H×W float intermediate.
_CHUNK = 64

ClassAveraging = Literal["all", "evaluated"]
PairFlags = torch.Tensor | Sequence[bool] | Callable[[int, int], bool] | None


# --------------------------------------------------------------------------- validation


def _check_tolerance(tolerance: float) -> float:
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise InputError(
            f"tolerance must be a distance in pixels, 0 or more, got {tolerance!r}. TorchRay's "
            "benchmark uses 15; 0 asks for an exact pixel hit."
        )
    return float(tolerance)


def _check_size(size: int | Sequence[int], what: str = "size") -> tuple[int, int]:
    pair: Any = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        h, w = (int(s) for s in pair)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be (H, W) or one int, got {size!r}.") from None
    if h < 1 or w < 1:
        raise InputError(f"{what} must be positive, got {(h, w)}.")
    return h, w


def _as_masks(masks: torch.Tensor) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise InputError(
            f"masks must be a torch.Tensor of shape N×H×W, got {type(masks).__name__}. Convert "
            "with torch.as_tensor(masks)."
        )
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise InputError(
            f"masks must be N×H×W (one ground-truth region per pair), got shape "
            f"{tuple(masks.shape)}. Add the batch dimension with masks[None] for one pair."
        )
    if masks.dtype != torch.bool:
        if masks.is_floating_point() or masks.dtype.is_complex:
            raise InputError(
                f"masks must be boolean occupancy maps, got dtype {masks.dtype}. Threshold "
                "them, e.g. masks > 0.5."
            )
        masks = masks != 0
    return masks


def _as_maps(saliency: torch.Tensor, what: str = "saliency") -> torch.Tensor:
    """One-channel maps as N×1×H×W."""
    if not isinstance(saliency, torch.Tensor):
        raise InputError(
            f"{what} must be a torch.Tensor of shape N×1×H×W, got {type(saliency).__name__}."
        )
    if saliency.ndim == 3:
        saliency = saliency[:, None]
    if saliency.ndim != 4 or saliency.shape[1] != 1:
        raise InputError(
            f"{what} must be N×1×H×W (or N×H×W) one-channel maps, got shape "
            f"{tuple(saliency.shape)}. Reduce channels first, e.g. s.abs().amax(1, keepdim=True)."
        )
    if saliency.numel() == 0:
        raise InputError(f"{what} is empty (shape {tuple(saliency.shape)}).")
    if not saliency.is_floating_point():
        saliency = saliency.float()
    if not bool(torch.isfinite(saliency).all()):
        raise InputError(
            f"{what} has NaN or inf values; the argmax would be meaningless. Replace them with "
            f"torch.nan_to_num({what})."
        )
    return saliency


def _as_points(points: torch.Tensor, n: int | None = None) -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        points = torch.as_tensor(points)
    if points.ndim == 1 and points.shape[0] == 2:
        points = points[None]
    if points.ndim != 2 or points.shape[1] != 2:
        raise InputError(
            f"points must be N×2 (y, x) coordinates, got shape {tuple(points.shape)}. "
            "saliency_to_point(maps) returns them."
        )
    if n is not None and points.shape[0] != n:
        raise InputError(f"Got {points.shape[0]} points for {n} masks; pass one point per pair.")
    return points


# --------------------------------------------------------------------------- points and hits


def saliency_to_point(
    saliency: torch.Tensor, *, size: int | Sequence[int] | None = None
) -> torch.Tensor:
    r"""The maximum point of each saliency map, :math:`p = \arg\max_u s(u)`.

    Parameters
    ----------
    saliency
        N×1×h×w (or N×h×w) maps.
    size
        ``(H, W)`` of the ground truth: the maps are first resized bilinearly to it (TorchRay
        resizes to the original image size), so the point is in ground-truth pixels.

    Returns
    -------
    torch.Tensor
        N×2 ``long`` tensor of ``(y, x)``. Ties go to the first maximum in row-major order,
        i.e. ``y = idx // W``, ``x = idx % W`` for the first flat index ``idx`` of the maximum.
    """
    maps = _as_maps(saliency)
    if size is not None:
        h, w = _check_size(size)
        if (h, w) != tuple(maps.shape[-2:]):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
    width = maps.shape[-1]
    idx = maps.flatten(1).argmax(dim=1)  # first maximal index (documented by PyTorch)
    return torch.stack((idx // width, idx % width), dim=1)


def _min_sq_distance(points: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Squared distance from each point to its mask's nearest True pixel (inf if empty)."""
    n, h, w = masks.shape
    dtype = torch.float64
    pts = points.to(device=masks.device, dtype=dtype)
    out = torch.empty(n, dtype=dtype, device=masks.device)
    ys = torch.arange(h, device=masks.device, dtype=dtype)
    xs = torch.arange(w, device=masks.device, dtype=dtype)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        dy2 = (ys[None, :] - pts[sl, 0:1]) ** 2  # B×H
        dx2 = (xs[None, :] - pts[sl, 1:2]) ** 2  # B×W
        d2 = dy2[:, :, None] + dx2[:, None, :]
        d2 = d2.masked_fill(~masks[sl], math.inf)
        out[sl] = d2.flatten(1).amin(dim=1)
    return out


def pointing_hits(points: torch.Tensor, masks: torch.Tensor, tolerance: float = 15) -> torch.Tensor:
    r"""Whether each point hits its ground-truth region.

    A hit is a ground-truth pixel :math:`q` with :math:`\lVert p - q\rVert^2 < \tau^2`
    (strict, TorchRay); with ``tolerance=0`` a hit is the point being a ground-truth pixel.

    Parameters
    ----------
    points
        N×2 ``(y, x)`` points (integer or float coordinates, e.g. the centre baseline).
    masks
        N×H×W (or N×1×H×W) boolean ground-truth regions; an empty mask is always a miss.
    tolerance
        :math:`\tau` in pixels.

    Returns
    -------
    torch.Tensor
        ``(N,)`` booleans on the masks' device.
    """
    tol = _check_tolerance(tolerance)
    masks = _as_masks(masks)
    pts = _as_points(points, masks.shape[0])
    d2 = _min_sq_distance(pts, masks)
    if tol == 0:
        return d2 == 0
    return d2 < tol * tol


def center_points(n: int, size: int | Sequence[int]) -> torch.Tensor:
    """The centre-baseline point ``(H / 2, W / 2)`` repeated ``n`` times, as N×2 floats.

    TorchRay's baseline is ``(w / 2, h / 2)`` in ``(x, y)`` with a true division; for odd sizes
    the point lies between two pixels, which :func:`pointing_hits` handles exactly.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"n must be a non-negative int, got {n!r}.")
    h, w = _check_size(size)
    return torch.tensor([[h / 2, w / 2]], dtype=torch.float64).expand(n, 2).clone()


def masks_to_saliency(
    masks: torch.Tensor,
    *,
    sigma_fraction: float = 0.09,
    size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    r"""Turn the K extremal-perturbation masks of each pair into one saliency map.

    :math:`s = g_\sigma * \sum_k m_k` with :math:`\sigma = \text{sigma\_fraction}\cdot\min(H,W)`
    (0.09 in the thesis' pointing-game protocol), zero "constant" padding as in TorchRay. When
    ``size`` is given the masks are first resized bilinearly (TorchRay resizes, then smooths).
    The blur is linear, so summing before or after smoothing is the same.

    Parameters
    ----------
    masks
        K×1×H×W (the masks of one pair, e.g. the output of extremal perturbation for several
        areas) or N×K×1×H×W (N pairs).
    sigma_fraction
        :math:`\sigma` as a fraction of the shorter side; 0 gives the plain sum.
    size
        Optional ``(H, W)`` to resize to first.

    Returns
    -------
    torch.Tensor
        1×1×H×W for K×1×H×W input, else N×1×H×W.
    """
    if not isinstance(masks, torch.Tensor):
        raise InputError(f"masks must be a torch.Tensor, got {type(masks).__name__}.")
    if masks.ndim == 4 and masks.shape[1] == 1:
        stacked = masks[None, :, 0]
    elif masks.ndim == 5 and masks.shape[2] == 1:
        stacked = masks[:, :, 0]
    else:
        raise InputError(
            f"masks must be K×1×H×W (one pair) or N×K×1×H×W (N pairs), got shape "
            f"{tuple(masks.shape)}."
        )
    if stacked.numel() == 0:
        raise InputError(f"masks is empty (shape {tuple(masks.shape)}).")
    if (
        isinstance(sigma_fraction, bool)
        or not isinstance(sigma_fraction, (int, float))
        or not sigma_fraction >= 0
    ):
        raise InputError(f"sigma_fraction must be 0 or more, got {sigma_fraction!r}.")
    maps = stacked.float() if not stacked.is_floating_point() else stacked
    if size is not None:
        h, w = _check_size(size)
        if (h, w) != tuple(maps.shape[-2:]):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
    total = maps.sum(dim=1, keepdim=True)
    if sigma_fraction > 0:
        sigma = sigma_fraction * min(total.shape[-2:])
        total = gaussian_blur(total, sigma, padding_mode="constant", padding_value=0.0)
    return total


# --------------------------------------------------------------------------- accumulator


class PointingGame:
    """Accumulates pointing-game hits and misses per class (TorchRay's ``PointingGame``).

    Parameters
    ----------
    num_classes
        Number of classes C.
    tolerance
        Hit tolerance in pixels (strict ``<``; 0 = exact pixel).
    classes
        ``"all"``: :attr:`accuracy` averages the per-class accuracies over every class, a class
        without evaluated pairs counting as 0 (TorchRay). ``"evaluated"``: over the classes
        with at least one evaluated pair.

    Attributes
    ----------
    hits, misses, skipped
        Per-class ``int64`` counts, shape ``(C,)``.
    """

    def __init__(
        self, num_classes: int, tolerance: float = 15, classes: ClassAveraging = "all"
    ) -> None:
        positive_int(num_classes, "num_classes")
        if classes not in ("all", "evaluated"):
            raise InputError(
                f"classes must be 'all' (TorchRay: every class counts, empty ones as 0) or "
                f"'evaluated', got {classes!r}."
            )
        self.num_classes = num_classes
        self.tolerance = _check_tolerance(tolerance)
        self.classes: ClassAveraging = classes
        self.reset()

    def reset(self) -> None:
        """Clear every counter."""
        self.hits = torch.zeros(self.num_classes, dtype=torch.int64)
        self.misses = torch.zeros(self.num_classes, dtype=torch.int64)
        self.skipped = torch.zeros(self.num_classes, dtype=torch.int64)

    def evaluate(self, mask: torch.Tensor, point: torch.Tensor | Sequence[float]) -> bool:
        """Whether ``point`` ``(y, x)`` hits the H×W boolean region ``mask``."""
        masks = _as_masks(mask[None] if isinstance(mask, torch.Tensor) else mask)
        return bool(pointing_hits(_as_points(torch.as_tensor(point)), masks, self.tolerance)[0])

    def _check_class(self, class_id: int) -> int:
        if isinstance(class_id, torch.Tensor) and class_id.numel() == 1:
            class_id = int(class_id.item())
        if isinstance(class_id, bool) or not isinstance(class_id, int):
            raise InputError(f"class_id must be an int, got {class_id!r}.")
        if not 0 <= class_id < self.num_classes:
            raise InputError(
                f"class_id {class_id} is out of range for {self.num_classes} classes "
                f"(0 to {self.num_classes - 1})."
            )
        return class_id

    def aggregate(self, hit: bool | None, class_id: int) -> None:
        """Add one pair: ``True`` (hit), ``False`` (miss) or ``None`` (skipped).

        TorchRay's integer codes are not accepted, because its 0 (skip) would read as a
        miss: map them with ``{1: True, -1: False, 0: None}``.
        """
        c = self._check_class(class_id)
        if isinstance(hit, torch.Tensor) and hit.numel() == 1 and hit.dtype == torch.bool:
            hit = bool(hit.item())
        if hit is None:
            self.skipped[c] += 1
        elif isinstance(hit, (bool, np.bool_)):
            if hit:
                self.hits[c] += 1
            else:
                self.misses[c] += 1
        else:
            raise InputError(
                f"hit must be True, False or None (skipped), got {hit!r}. TorchRay's codes map "
                "as {1: True, -1: False, 0: None}."
            )

    @property
    def class_accuracies(self) -> torch.Tensor:
        """Per-class accuracy ``hits / max(1, hits + misses)`` (0 for a class never seen)."""
        return self.hits.double() / (self.hits + self.misses).clamp(min=1).double()

    @property
    def accuracy(self) -> float:
        """Mean of the per-class accuracies (over the classes chosen by ``classes``)."""
        acc = self.class_accuracies
        if self.classes == "evaluated":
            seen = (self.hits + self.misses) > 0
            return float(acc[seen].mean()) if bool(seen.any()) else math.nan
        return float(acc.mean())

    @property
    def global_accuracy(self) -> float:
        """``sum(hits) / sum(hits + misses)`` over all classes (NaN without pairs)."""
        total = int((self.hits + self.misses).sum())
        return int(self.hits.sum()) / total if total else math.nan

    def __str__(self) -> str:
        per_class = " ".join(
            f"{c}:{100 * float(a):4.1f}%" for c, a in enumerate(self.class_accuracies)
        )
        return f"{100 * self.accuracy:4.1f}% [{per_class}]"


# --------------------------------------------------------------------------- result


@dataclass
class PointingGameResult(Result):
    """Pointing-game outcome of N (image, class) pairs.

    Attributes
    ----------
    points
        N×2 ``(y, x)`` points.
    hit
        ``(N,)`` booleans (False for skipped pairs).
    evaluated
        ``(N,)`` booleans: the pair counted as a hit or a miss (not skipped).
    labels
        ``(N,)`` class of each pair.
    hits, misses, skipped
        Per-class counts, ``(C,)``.
    class_accuracies
        Per-class ``hits / max(1, hits + misses)``, ``(C,)`` float64.
    accuracy
        Mean per-class accuracy (see ``classes``).
    global_accuracy
        ``sum(hits) / sum(hits + misses)``.
    tolerance, classes, num_classes
        Settings.
    """

    points: torch.Tensor
    hit: torch.Tensor
    evaluated: torch.Tensor
    labels: torch.Tensor
    hits: torch.Tensor
    misses: torch.Tensor
    skipped: torch.Tensor
    class_accuracies: torch.Tensor
    accuracy: float
    global_accuracy: float
    tolerance: float = 15.0
    classes: str = "all"
    num_classes: int = 0

    def plot(self, class_names: Sequence[str] | None = None) -> Figure:
        """Bar chart of the per-class accuracies, with the mean accuracy as a dashed line."""
        from convscope.plots.images import bar_chart

        names = (
            [str(c) for c in class_names]
            if class_names is not None
            else [str(c) for c in range(self.num_classes)]
        )
        if len(names) != self.num_classes:
            raise InputError(f"Got {len(names)} class names for {self.num_classes} classes.")
        acc = self.class_accuracies.double().clone()
        acc[(self.hits + self.misses) == 0] = math.nan  # shown as "n/a"
        return bar_chart(
            (names, acc),
            title=f"Pointing game (tolerance {self.tolerance:g} px)",
            ylabel="accuracy",
            ylim=(0, 1.05),
            reference=self.accuracy if math.isfinite(self.accuracy) else None,
            reference_label=f"mean {self.accuracy:.3f}, global {self.global_accuracy:.3f}",
        )


def _pair_flags(flags: PairFlags, labels: torch.Tensor, what: str) -> torch.Tensor | None:
    """Per-pair booleans from a tensor / sequence or a callable ``(index, label) -> bool``."""
    if flags is None:
        return None
    n = labels.shape[0]
    if callable(flags) and not isinstance(flags, torch.Tensor):
        fn = flags
        values = [bool(fn(i, int(c))) for i, c in enumerate(labels.tolist())]
        return torch.tensor(values, dtype=torch.bool)
    out = torch.as_tensor(flags).cpu()
    if out.ndim != 1 or out.shape[0] != n:
        raise InputError(
            f"{what} must hold one flag per pair ({n}), got shape {tuple(out.shape)}; or pass "
            "a callable (index, label) -> bool."
        )
    if out.dtype != torch.bool:
        if out.is_floating_point():
            raise InputError(f"{what} must be boolean flags, got dtype {out.dtype}.")
        out = out != 0
    return out


def pointing_game_from_points(
    points: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    *,
    num_classes: int | None = None,
    tolerance: float = 15,
    difficult: PairFlags = None,
    skip: PairFlags = None,
    skip_empty: bool = True,
    classes: ClassAveraging = "all",
) -> PointingGameResult:
    """The pointing game from given points (see :func:`pointing_game` for the arguments)."""
    masks = _as_masks(masks)
    n = masks.shape[0]
    pts = _as_points(points, n)
    lab = torch.as_tensor(labels)
    if lab.ndim != 1 or lab.shape[0] != n or lab.is_floating_point() or lab.dtype == torch.bool:
        raise InputError(
            f"labels must be one integer class per pair ({n}), got shape {tuple(lab.shape)} and "
            f"dtype {lab.dtype}."
        )
    lab = lab.long().cpu()
    if n and int(lab.min()) < 0:
        raise InputError(f"labels must be 0 or more, got {int(lab.min())}.")
    if num_classes is None:
        num_classes = int(lab.max()) + 1 if n else 1
    game = PointingGame(num_classes, tolerance, classes)
    if n and int(lab.max()) >= num_classes:
        raise InputError(
            f"Label {int(lab.max())} is out of range for num_classes={num_classes}; pass the "
            "dataset's class count."
        )
    evaluated = torch.ones(n, dtype=torch.bool)
    keep = _pair_flags(difficult, lab, "difficult")
    if keep is not None:
        evaluated &= keep
    drop = _pair_flags(skip, lab, "skip")
    if drop is not None:
        evaluated &= ~drop
    if skip_empty:
        evaluated &= masks.flatten(1).any(dim=1).cpu()
    hit = pointing_hits(pts, masks, game.tolerance).cpu() & evaluated
    game.hits = torch.bincount(lab[hit], minlength=num_classes)
    game.misses = torch.bincount(lab[evaluated & ~hit], minlength=num_classes)
    game.skipped = torch.bincount(lab[~evaluated], minlength=num_classes)
    return PointingGameResult(
        points=pts.cpu(),
        hit=hit,
        evaluated=evaluated,
        labels=lab,
        hits=game.hits,
        misses=game.misses,
        skipped=game.skipped,
        class_accuracies=game.class_accuracies,
        accuracy=game.accuracy,
        global_accuracy=game.global_accuracy,
        tolerance=game.tolerance,
        classes=classes,
        num_classes=num_classes,
    )


def pointing_game(
    saliency: torch.Tensor,
    masks: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    *,
    num_classes: int | None = None,
    tolerance: float = 15,
    difficult: PairFlags = None,
    skip: PairFlags = None,
    skip_empty: bool = True,
    classes: ClassAveraging = "all",
) -> PointingGameResult:
    """Play the pointing game on N (image, class) pairs.

    Parameters
    ----------
    saliency
        N×1×h×w maps, one per pair (the map of image i for class ``labels[i]``); resized to the
        masks' size before the argmax (:func:`saliency_to_point`).
    masks
        N×H×W boolean ground-truth regions of the pair's class.
    labels
        ``(N,)`` class of each pair.
    num_classes
        C (default: ``max(labels) + 1``; pass the dataset's count so that absent classes count
        in the per-class mean).
    tolerance
        Hit tolerance in pixels (strict; 0 = exact pixel).
    difficult
        The "difficult subset" hook: per-pair booleans, or a callable ``(index, label) -> bool``;
        only the pairs flagged True are evaluated, the rest are skipped (TorchRay's EBP flag
        files).
    skip
        Per-pair booleans or a callable ``(index, label) -> bool``: True skips the pair (e.g. a
        VOC class whose boxes are all "difficult").
    skip_empty
        Skip pairs whose mask is empty (the class is absent, so there is nothing to point at).
    classes
        ``"all"`` (TorchRay) or ``"evaluated"``: the classes averaged in ``accuracy``.

    Returns
    -------
    PointingGameResult
        Points, per-pair hits, per-class counts and accuracies, mean and global accuracy.
    """
    masks = _as_masks(masks)
    points = saliency_to_point(saliency, size=tuple(masks.shape[-2:]))
    return pointing_game_from_points(
        points,
        masks,
        labels,
        num_classes=num_classes,
        tolerance=tolerance,
        difficult=difficult,
        skip=skip,
        skip_empty=skip_empty,
        classes=classes,
    )


def center_baseline(
    masks: torch.Tensor, labels: torch.Tensor | Sequence[int], **kwargs: Any
) -> PointingGameResult:
    """The centre baseline: every pair points at ``(H / 2, W / 2)`` (TorchRay's ``center``).

    Keyword arguments are those of :func:`pointing_game`.
    """
    masks = _as_masks(masks)
    points = center_points(masks.shape[0], tuple(masks.shape[-2:]))
    return pointing_game_from_points(points, masks, labels, **kwargs)
