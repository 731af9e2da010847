"""Partitions of an image into regions (grid cells, masks, superpixels, foreground/background).

A partition is a :class:`Regions` object holding an int64 label map: ``H×W`` (one partition
shared by every image of a batch) or ``N×H×W`` (one partition per image). Labels run from ``0``
to ``n_regions - 1``.

Invariant (checked on construction): for an ``H×W`` map every label ``0..n_regions-1`` is
present. For an ``N×H×W`` map each image ``i`` uses exactly the labels ``0..d_i-1`` (consecutive,
all present) and ``n_regions = max_i d_i``; with per-image region counts (superpixels of a
batch) image ``i`` therefore has empty regions ``d_i..n_regions-1``, whose masks are all False
and whose :func:`region_means` are NaN. ``Regions.n_regions_per_image`` gives the ``d_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convscope.core.errors import InputError
from convscope.core.validation import positive_int
from convscope.data.normalization import check_images

__all__ = [
    "Regions",
    "foreground_background",
    "grid_regions",
    "n_selected",
    "region_heatmap",
    "region_means",
    "regions_from_masks",
    "superpixel_regions",
]


def _counts_per_image(labels: Tensor, n_regions: int) -> Tensor:
    """Pixel counts per (image, region): ``N×d`` for ``N×H×W`` labels, ``1×d`` for ``H×W``."""
    flat = labels.reshape(labels.shape[0] if labels.ndim == 3 else 1, -1)
    n = flat.shape[0]
    offsets = torch.arange(n, device=flat.device).unsqueeze(1) * n_regions
    counts = torch.bincount((flat + offsets).reshape(-1), minlength=n * n_regions)
    return counts.reshape(n, n_regions)


@dataclass(frozen=True, eq=False)
class Regions:
    """A partition of images into regions.

    Parameters
    ----------
    labels : torch.Tensor
        int64 label map, ``H×W`` (shared by all images) or ``N×H×W`` (per image), values in
        ``0..n_regions-1`` (see the module docstring for the invariant).
    n_regions : int
        Number of regions ``d`` (the maximum over images for ``N×H×W`` maps).
    kind : str
        What made the partition: ``"grid"``, ``"masks"``, ``"labels"``, ``"superpixels"``,
        ``"foreground_background"`` or a user's own name.
    settings : dict
        The settings that made the partition (e.g. grid rows and columns, SLIC parameters,
        the original label values).

    Raises
    ------
    InputError
        ``labels`` is not an integer ``H×W``/``N×H×W`` tensor or breaks the invariant.
    """

    labels: Tensor
    n_regions: int
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = self.labels
        if not isinstance(labels, Tensor):
            raise InputError(
                f"Regions.labels must be a torch.Tensor, got {type(labels).__name__}; use "
                "torch.as_tensor(labels)."
            )
        if labels.dtype != torch.int64:
            if (
                labels.dtype.is_floating_point
                or labels.dtype.is_complex
                or (labels.dtype == torch.bool)
            ):
                raise InputError(
                    f"Regions.labels must be an integer label map, got dtype {labels.dtype}; "
                    "use regions_from_masks(...) to build regions from masks or label maps."
                )
            labels = labels.long()
            object.__setattr__(self, "labels", labels)
        if labels.ndim not in (2, 3) or labels.numel() == 0:
            raise InputError(
                f"Regions.labels must be a non-empty H×W or N×H×W label map, got shape "
                f"{tuple(labels.shape)}."
            )
        if isinstance(self.n_regions, bool) or not isinstance(self.n_regions, int):
            raise InputError(f"n_regions must be an int, got {self.n_regions!r}.")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self.n_regions:
            raise InputError(
                f"Region labels must lie in 0..{self.n_regions - 1}, got values in {lo}..{hi}; "
                "relabel them with regions_from_masks(label_map)."
            )
        if hi != self.n_regions - 1:  # checked before counting, which allocates n_regions
            raise InputError(
                f"n_regions is {self.n_regions} but the largest label is {hi}; every label "
                f"0..{self.n_regions - 1} must be used. Pass n_regions={hi + 1} or relabel with "
                "regions_from_masks(label_map)."
            )
        present = _counts_per_image(labels, self.n_regions) > 0
        per_image = present.sum(dim=1)
        # each image must use a prefix 0..d_i-1 of the labels
        prefix = torch.arange(self.n_regions, device=labels.device) < per_image.unsqueeze(1)
        if not bool((present == prefix).all()) or int(per_image.max()) != self.n_regions:
            if labels.ndim == 2:
                missing = (~present[0]).nonzero().reshape(-1).tolist()
                raise InputError(
                    f"Every region label 0..{self.n_regions - 1} must be present, but "
                    f"{missing[:10]} {'are' if len(missing) > 1 else 'is'} missing; relabel "
                    "with regions_from_masks(label_map) or lower n_regions."
                )
            raise InputError(
                "In each image of an N×H×W label map the labels must be 0..d_i-1 (consecutive, "
                f"all present) with n_regions = max d_i = {self.n_regions}; relabel each image "
                "with regions_from_masks(label_map)."
            )

    def __len__(self) -> int:
        """Return the number of regions ``n_regions``."""
        return self.n_regions

    @property
    def is_batched(self) -> bool:
        """Whether the labels are per image (``N×H×W``) rather than shared (``H×W``)."""
        return self.labels.ndim == 3

    @property
    def shape(self) -> tuple[int, int]:
        """Image size ``(H, W)``."""
        return (int(self.labels.shape[-2]), int(self.labels.shape[-1]))

    @property
    def n_regions_per_image(self) -> tuple[int, ...]:
        """Number of non-empty regions of each image (``(n_regions,)`` for shared labels)."""
        present = _counts_per_image(self.labels, self.n_regions) > 0
        return tuple(int(v) for v in present.sum(dim=1).tolist())

    def masks(self) -> Tensor:
        """Return one-hot boolean masks.

        Returns
        -------
        torch.Tensor
            ``d×H×W`` (shared labels) or ``N×d×H×W`` (per-image labels) bool tensor;
            ``masks[..., k, :, :]`` is True on region ``k``. Each pixel is True in exactly one
            mask.
        """
        ids = torch.arange(self.n_regions, device=self.labels.device).view(-1, 1, 1)
        return self.labels.unsqueeze(-3) == ids

    def sizes(self) -> Tensor:
        """Return the number of pixels of each region.

        Returns
        -------
        torch.Tensor
            int64 tensor of shape ``d`` (shared labels) or ``N×d`` (per-image labels).
        """
        counts = _counts_per_image(self.labels, self.n_regions)
        return counts if self.is_batched else counts[0]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"{name} must be an int or a pair (rows, cols), got {value!r}.")
        return positive_int(value[0], name), positive_int(value[1], name)
    v = positive_int(value, name)
    return v, v


def _as_tensor(x: object, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise InputError(
        f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}; use "
        f"torch.as_tensor({name})."
    )


def _boundaries(length: int, parts: int) -> list[int]:
    """``round(k * length / parts)`` for ``k = 0..parts`` (halves rounded up), exact ints."""
    return [(2 * k * length + parts) // (2 * parts) for k in range(parts + 1)]


def _relabel_consecutive(labels: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], int]:
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int64), int(values.size)


# --------------------------------------------------------------------------------------------
# partitions
# --------------------------------------------------------------------------------------------


def grid_regions(
    height: int,
    width: int,
    cells: int | tuple[int, int] | None = None,
    *,
    cell_size: int | tuple[int, int] | None = None,
) -> Regions:
    """Partition an ``height×width`` image into a grid of rectangular cells.

    Parameters
    ----------
    height, width : int
        Image size.
    cells : int or tuple of int, optional
        ``(rows, cols)`` of the grid (an int means a square grid). Give exactly one of ``cells``
        and ``cell_size``.
    cell_size : int or tuple of int, optional
        Target cell ``(height, width)`` in pixels (an int means square cells). The grid has
        ``rows = ceil(height / cell_height)`` rows (and likewise columns): the fewest cells
        such that none exceeds ``cell_size``.

    Returns
    -------
    Regions
        ``H×W`` labels, ``n_regions = rows * cols``, numbered row-major (label
        ``r * cols + c`` is row ``r``, column ``c``), ``kind="grid"``; ``settings`` holds
        ``rows``, ``cols``, ``row_bounds`` and ``col_bounds``.

    Notes
    -----
    Sizes that do not divide evenly are spread: the row boundaries are
    ``round(k * height / rows)`` for ``k = 0..rows`` (halves rounded up), so every cell is
    non-empty and cell heights (and widths) differ by at most one pixel. E.g. 10 pixels in 3
    rows gives heights 3, 4, 3.

    Raises
    ------
    InputError
        Both or neither of ``cells`` and ``cell_size`` given, non-positive values, or more
        rows (columns) than pixel rows (columns).
    """
    height = positive_int(height, "height")
    width = positive_int(width, "width")
    if (cells is None) == (cell_size is None):
        raise InputError(
            "Pass exactly one of cells=(rows, cols) and cell_size=(h, w) to grid_regions, "
            "e.g. grid_regions(224, 224, cells=7) or grid_regions(224, 224, cell_size=32)."
        )
    if cells is not None:
        rows, cols = _pair(cells, "cells")
    else:
        ch, cw = _pair(cell_size, "cell_size")
        rows, cols = math.ceil(height / ch), math.ceil(width / cw)
    if rows > height or cols > width:
        raise InputError(
            f"A {rows}×{cols} grid has more cells than the {height}×{width} image has pixel "
            f"rows/columns; use at most cells=({height}, {width}) or a larger cell_size."
        )
    row_bounds = _boundaries(height, rows)
    col_bounds = _boundaries(width, cols)
    row_of = torch.bucketize(torch.arange(height), torch.tensor(row_bounds[1:-1]), right=True)
    col_of = torch.bucketize(torch.arange(width), torch.tensor(col_bounds[1:-1]), right=True)
    labels = row_of.unsqueeze(1) * cols + col_of.unsqueeze(0)
    return Regions(
        labels=labels.long(),
        n_regions=rows * cols,
        kind="grid",
        settings={
            "rows": rows,
            "cols": cols,
            "row_bounds": tuple(row_bounds),
            "col_bounds": tuple(col_bounds),
        },
    )


def regions_from_masks(masks: Tensor | np.ndarray[Any, Any], *, background: bool = True) -> Regions:
    """Build regions from boolean masks or from an integer label map.

    Parameters
    ----------
    masks : torch.Tensor or numpy.ndarray
        Either a bool stack ``K×H×W`` (a bool ``H×W`` is one mask), or an integer label map
        ``H×W`` with arbitrary values.

        * Masks may overlap: **later masks win**, i.e. a pixel in masks 1 and 3 belongs to
          region 3. Mask ``k`` becomes region ``k``; a mask that ends up with no pixel (empty,
          or entirely covered by later masks) is an error, so indices never shift.
        * A label map is relabelled to ``0..d-1`` in sorted order of its values; the original
          values are in ``settings["original_labels"]`` (region ``k`` is
          ``original_labels[k]``).
    background : bool, default True
        For masks only: pixels in no mask form one extra region, labelled ``K`` (the last one),
        if there are any such pixels. With ``False`` uncovered pixels are an error.

    Returns
    -------
    Regions
        ``H×W`` labels. ``kind="masks"`` with ``settings`` ``n_masks`` and ``background_label``
        (``K`` or ``None`` when every pixel is covered), or ``kind="labels"`` with
        ``original_labels``.

    Raises
    ------
    InputError
        Float or 3-D integer input, no masks, an empty or fully covered mask, or uncovered
        pixels with ``background=False``.
    """
    m = _as_tensor(masks, "masks")
    if m.dtype == torch.bool:
        if m.ndim == 2:
            m = m.unsqueeze(0)
        if m.ndim != 3 or m.shape[0] == 0 or m.shape[1] == 0 or m.shape[2] == 0:
            raise InputError(
                f"masks must be a K×H×W bool stack with K >= 1 and a non-empty image, got shape "
                f"{tuple(m.shape)}."
            )
        k = int(m.shape[0])
        h, w = int(m.shape[1]), int(m.shape[2])
        # later masks win: the owner of a pixel is the last mask covering it
        idx = torch.arange(1, k + 1, device=m.device).view(-1, 1, 1)
        owner = (m.long() * idx).amax(dim=0) - 1  # -1 where no mask covers the pixel
        sizes = torch.bincount(owner.reshape(-1) + 1, minlength=k + 1)
        empty = (sizes[1:] == 0).nonzero().reshape(-1).tolist()
        if empty:
            j = empty[0]
            why = "is empty" if not bool(m[j].any()) else "is entirely covered by later masks"
            raise InputError(
                f"Mask {j} {why} (later masks win on overlaps), so region {j} would have no "
                f"pixels; drop or reorder the mask{'s ' + str(empty) if len(empty) > 1 else ''}."
            )
        uncovered = int(sizes[0])
        labels = owner
        background_label: int | None = None
        if uncovered:
            if not background:
                raise InputError(
                    f"{uncovered} of {h * w} pixels are in no mask; pass background=True to make "
                    "them an extra region, or add a mask covering them."
                )
            background_label = k
            labels = torch.where(owner < 0, torch.full_like(owner, k), owner)
        return Regions(
            labels=labels.long(),
            n_regions=k + (1 if background_label is not None else 0),
            kind="masks",
            settings={"n_masks": k, "background_label": background_label},
        )
    if m.dtype.is_floating_point or m.dtype.is_complex:
        raise InputError(
            f"masks must be bool masks (K×H×W) or an integer label map (H×W), got dtype "
            f"{m.dtype}; threshold soft masks (masks > 0.5) or convert labels (labels.long())."
        )
    if m.ndim != 2:
        hint = (
            " It holds only 0/1 values: if it is a stack of masks, pass masks.bool()."
            if m.numel() and bool(((m == 0) | (m == 1)).all())
            else ""
        )
        raise InputError(
            f"An integer label map must be H×W, got shape {tuple(m.shape)}.{hint} For several "
            "images build one Regions per image."
        )
    if m.numel() == 0:
        raise InputError(f"The label map is empty (shape {tuple(m.shape)}).")
    values, inverse = torch.unique(m.long(), sorted=True, return_inverse=True)
    return Regions(
        labels=inverse.reshape(m.shape).long(),
        n_regions=int(values.numel()),
        kind="labels",
        settings={"original_labels": tuple(int(v) for v in values.tolist())},
    )


def superpixel_regions(
    image: Tensor,
    n_segments: int = 100,
    compactness: float = 10.0,
    *,
    sigma: float = 0.0,
    max_num_iter: int = 10,
) -> Regions:
    """Partition images into SLIC superpixels (``skimage.segmentation.slic``).

    Parameters
    ----------
    image : torch.Tensor
        ``3×H×W`` image or ``N×3×H×W`` batch with values in ``[0, 1]``.
    n_segments : int, default 100
        Approximate number of superpixels per image. SLIC often returns fewer (its initial grid
        is coarser and small segments are merged), e.g. about 40 for ``n_segments=50`` on a
        48×48 photograph; read ``n_regions`` for the actual count.
    compactness : float, default 10.0
        Colour versus space trade-off of SLIC (in CIELAB units): higher gives more square,
        grid-like superpixels.
    sigma : float, default 0.0
        Width of the Gaussian smoothing applied before segmenting.
    max_num_iter : int, default 10
        Maximum number of k-means iterations.

    Returns
    -------
    Regions
        ``kind="superpixels"``. For a ``3×H×W`` image: ``H×W`` labels. For a batch: ``N×H×W``
        labels, each image relabelled to ``0..d_i-1``; ``n_regions`` is ``max_i d_i``, so
        images with fewer superpixels have empty trailing regions (see
        :attr:`Regions.n_regions_per_image`). ``settings`` holds the SLIC parameters.

    Notes
    -----
    SLIC is deterministic (grid initialisation, no randomness): the same image and settings
    always give the same partition, so there is no seed. Segments are forced to be connected
    (``enforce_connectivity=True``) and labels are renumbered consecutively.

    Raises
    ------
    InputError
        ``image`` is not a (batch of) 3-channel float image(s), or the parameters are invalid.
    """
    from skimage.segmentation import slic

    if isinstance(image, Tensor) and image.ndim == 3:
        batch = check_images(image.unsqueeze(0), name="image")
        single = True
    else:
        batch = check_images(image, name="image")
        single = False
    n_segments = positive_int(n_segments, "n_segments")
    max_num_iter = positive_int(max_num_iter, "max_num_iter")
    if not (isinstance(compactness, (int, float)) and math.isfinite(compactness)) or (
        compactness <= 0
    ):
        raise InputError(f"compactness must be a positive number, got {compactness!r}.")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma)) or sigma < 0:
        raise InputError(f"sigma must be a non-negative number, got {sigma!r}.")

    arrays = batch.detach().clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().double().numpy()
    maps: list[Tensor] = []
    counts: list[int] = []
    for arr in arrays:
        seg = slic(
            arr,
            n_segments=n_segments,
            compactness=float(compactness),
            max_num_iter=max_num_iter,
            sigma=float(sigma),
            start_label=0,
            channel_axis=-1,
        )
        relabelled, d = _relabel_consecutive(np.asarray(seg))
        maps.append(torch.from_numpy(relabelled))
        counts.append(d)
    labels = maps[0] if single else torch.stack(maps)
    return Regions(
        labels=labels.to(batch.device),
        n_regions=max(counts),
        kind="superpixels",
        settings={
            "n_segments": n_segments,
            "compactness": float(compactness),
            "sigma": float(sigma),
            "max_num_iter": max_num_iter,
        },
    )


def foreground_background(mask: Tensor | np.ndarray[Any, Any]) -> Regions:
    """Split images into background (region 0) and foreground (region 1).

    Parameters
    ----------
    mask : torch.Tensor or numpy.ndarray
        Bool ``H×W`` mask (shared by a batch) or ``N×H×W`` masks, True on the foreground.

    Returns
    -------
    Regions
        Labels ``mask.long()`` (0 = background, 1 = foreground), ``n_regions=2``,
        ``kind="foreground_background"``.

    Raises
    ------
    InputError
        Non-bool or wrongly shaped mask, or a mask (of any image) that is empty or covers every
        pixel.
    """
    m = _as_tensor(mask, "mask")
    if m.dtype != torch.bool:
        raise InputError(
            f"mask must be a bool tensor (True = foreground), got dtype {m.dtype}; use "
            "mask.bool() for 0/1 masks or mask > 0.5 for soft masks."
        )
    if m.ndim not in (2, 3) or m.numel() == 0:
        raise InputError(
            f"mask must be a non-empty H×W or N×H×W bool tensor, got shape {tuple(m.shape)}."
        )
    flat = m.reshape(m.shape[0] if m.ndim == 3 else 1, -1)
    where = lambda i: f" (image {i})" if m.ndim == 3 else ""  # noqa: E731
    empty = (~flat.any(dim=1)).nonzero().reshape(-1).tolist()
    if empty:
        raise InputError(
            f"The foreground mask is empty{where(empty[0])}: there is no foreground region. "
            "Pass a mask with at least one True pixel, or use grid_regions for a partition "
            "without a foreground."
        )
    full = flat.all(dim=1).nonzero().reshape(-1).tolist()
    if full:
        raise InputError(
            f"The foreground mask covers every pixel{where(full[0])}: there is no background "
            "region. Pass a mask with at least one False pixel, or use grid_regions for a "
            "partition without a background."
        )
    return Regions(
        labels=m.long(),
        n_regions=2,
        kind="foreground_background",
        settings={},
    )


def region_means(values: Tensor | np.ndarray[Any, Any], regions: Regions) -> Tensor:
    """Average a map over each region.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray
        ``H×W`` or ``N×H×W`` map (e.g. an attribution summed over channels), the same ``H×W``
        as ``regions``.
    regions : Regions
        Shared (``H×W``) or per-image (``N×H×W``) regions. A shared map/partition is broadcast
        against a batch.

    Returns
    -------
    torch.Tensor
        Per-region means: shape ``d`` when both are ``H×W``, otherwise ``N×d``. Floating dtype
        of ``values`` (float32 for integer input), on its device. Empty regions (per-image
        superpixels) give NaN.

    Raises
    ------
    InputError
        Wrong rank (``N×C×H×W`` maps must be reduced over channels first), different image
        sizes, or different batch sizes.
    """
    if not isinstance(regions, Regions):
        raise InputError(
            f"regions must be a Regions object, got {type(regions).__name__}; build one with "
            "grid_regions, regions_from_masks, superpixel_regions or foreground_background."
        )
    v = _as_tensor(values, "values")
    if v.ndim == 4:
        raise InputError(
            f"values must be an H×W or N×H×W map, got shape {tuple(v.shape)}; reduce the "
            "channels first, e.g. values.sum(dim=1)."
        )
    if v.ndim not in (2, 3):
        raise InputError(f"values must be an H×W or N×H×W map, got shape {tuple(v.shape)}.")
    if tuple(v.shape[-2:]) != regions.shape:
        raise InputError(
            f"values are {v.shape[-2]}×{v.shape[-1]} but the regions are "
            f"{regions.shape[0]}×{regions.shape[1]}; build the regions for the same image size."
        )
    if not v.is_floating_point():
        v = v.float()
    labels = regions.labels.to(v.device)
    d = regions.n_regions
    squeeze = v.ndim == 2 and labels.ndim == 2
    vb = v if v.ndim == 3 else v.unsqueeze(0)
    lb = labels if labels.ndim == 3 else labels.unsqueeze(0)
    if vb.shape[0] != lb.shape[0] and 1 not in (vb.shape[0], lb.shape[0]):
        raise InputError(
            f"values have {vb.shape[0]} images but the regions have {lb.shape[0]}; pass matching "
            "batches (or shared H×W regions)."
        )
    n = 0 if 0 in (vb.shape[0], lb.shape[0]) else max(vb.shape[0], lb.shape[0])
    if n == 0:
        return torch.zeros(0, d, dtype=v.dtype, device=v.device)
    vb = vb.expand(n, -1, -1).reshape(n, -1)
    lb = lb.expand(n, -1, -1).reshape(n, -1)
    index = (lb + torch.arange(n, device=v.device).unsqueeze(1) * d).reshape(-1)
    # Accumulate in float64: half-precision sums and counts overflow past 65504.
    sums = torch.zeros(n * d, dtype=torch.float64, device=v.device).scatter_add_(
        0, index, vb.reshape(-1).double()
    )
    counts = torch.bincount(index, minlength=n * d).double()
    means = (sums / counts).reshape(n, d).to(v.dtype)  # 0/0 = NaN for empty regions
    return means[0] if squeeze else means


def _as_float_tensor(values: Any, name: str) -> Tensor:
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(np.ascontiguousarray(values))
    if not isinstance(values, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor or numpy array, got {type(values).__name__}; use "
            f"torch.as_tensor({name})."
        )
    values = values.detach()
    if values.dtype == torch.bool or values.is_complex():
        raise InputError(f"{name} must hold real numbers, got dtype {values.dtype}.")
    return values if values.is_floating_point() else values.double()


def _as_2d(values: Any, name: str) -> Tensor:
    v = _as_float_tensor(values, name)
    if v.ndim == 1:
        v = v.unsqueeze(0)
    if v.ndim != 2:
        raise InputError(
            f"{name} must be an (N, d) array of region values (or (d,) for one image), got "
            f"shape {tuple(v.shape)}."
        )
    return v


def n_selected(fraction: float, n_regions: int) -> int:
    r"""Number of regions a fraction selects: :math:`\min(d, \max(1, \lfloor f d + 1/2\rfloor))`.

    Parameters
    ----------
    fraction : float
        Fraction of the regions, in ``(0, 1]``.
    n_regions : int
        Number of non-empty regions :math:`d \ge 1`.

    Returns
    -------
    int
        Halves are rounded up, at least 1 and at most ``n_regions`` (20% of 16 is 3).
    """
    # the 1e-9 keeps 0.7 * 5 = 3.4999999999999996 on the intended side of the half
    return min(n_regions, max(1, math.floor(fraction * n_regions + 0.5 + 1e-9)))


def region_heatmap(values: Tensor | np.ndarray[Any, Any], regions: Regions) -> Tensor:
    r"""Project region values onto pixels: pixel :math:`p` gets :math:`v_{k(p)}`.

    Parameters
    ----------
    values : torch.Tensor
        ``N×d`` or ``d`` (shared by all images) values, e.g. ``total_order``.
    regions : Regions
        Shared ``H×W`` or per-image ``N×H×W`` partition with ``d`` regions.

    Returns
    -------
    torch.Tensor
        ``N×H×W`` map (``1×H×W`` for ``d`` values and shared regions), floating, on the device
        of ``values``. NaN values (undefined or empty regions) stay NaN.
    """
    if not isinstance(regions, Regions):
        raise InputError(f"regions must be a Regions object, got {type(regions).__name__}.")
    v = _as_2d(values, "values")
    d = regions.n_regions
    if v.shape[1] != d:
        raise InputError(
            f"values have {v.shape[1]} entries per image but the regions have {d}; pass one "
            "value per region."
        )
    labels = regions.labels.to(v.device)
    lb = labels if labels.ndim == 3 else labels.unsqueeze(0)
    n = max(v.shape[0], lb.shape[0])
    if v.shape[0] not in (1, n) or lb.shape[0] not in (1, n):
        raise InputError(
            f"values have {v.shape[0]} images but the regions have {lb.shape[0]}; pass matching "
            "batches (or shared H×W regions)."
        )
    h, w = lb.shape[-2:]
    flat = lb.expand(n, h, w).reshape(n, -1)
    return v.expand(n, d).gather(1, flat).view(n, h, w)
