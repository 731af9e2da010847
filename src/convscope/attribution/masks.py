r"""Smooth masks and the area constraint of extremal perturbations (thesis ch. 4 §3.3-3.5).

**Smooth mask family.** A mask :math:`m: \Omega \to [0, 1]` is generated from a low-resolution
auxiliary mask :math:`\bar m` on a grid of cells of side :math:`\rho` (``step``) by a
*max-convolution* with a radial kernel :math:`k`,

.. math::

    m(u) = \max_v k(u - c_v)\, \bar m(v),

where :math:`c_v` is the centre of cell :math:`v`. Lemma 1 of the paper: if
:math:`k \in [0, 1]` and :math:`k(0) = 1` then :math:`\bar m(u) \le m(u) \le 1` (a cell set to
one gives a mask of exactly one there, unlike an ordinary convolution, which damps it), and
:math:`m` is Lipschitz with the constant of :math:`k`. The max has sparse gradients, so it is
replaced by the *smooth max* with coldness :math:`c = 1/T` (eq. 7),

.. math::

    \operatorname{smax}_{d} f_d = \frac{\sum_d f_d\, e^{c f_d}}{\sum_d e^{c f_d}},
    \qquad f_d = k(u - c_{v+d})\,\bar m(v + d),

which tends to the max as :math:`c \to \infty` and to the mean as :math:`c \to 0`. It is the
softmax-*weighted average* of the values, not a softmax with temperature.

The kernel profile is TorchRay's, :math:`k(z) = \exp(-2 \max(z - 1/2, 0)^2)` with
:math:`z = \lVert u - c_v \rVert / \sigma` (flat up to half a ``sigma``); ``kernel='paper'``
uses the thesis formula :math:`\exp(-\max(z - 1, 0)^2 / 4)` with the missing minus sign
restored (Fong 2020, ch. 4, Sec. 3.5). Each pixel sees the :math:`(2R + 1)^2` cells around
its own, with :math:`R = 1 + \lceil \sigma / \rho \rceil` as in TorchRay; outside the
grid :math:`\bar m = 0`.

Geometry (ours, documented deviation): the grid has :math:`\lceil H/\rho \rceil \times
\lceil W/\rho \rceil` cells covering the image, cell :math:`b` centred at
:math:`\rho b + (\rho - 1)/2`. TorchRay adds a margin of ``sigma`` pixels around the image
and counts the area on that padded canvas (260×260 for a 224×224 image); here the area is
counted on the image itself, as in the paper's definition :math:`\lVert m \rVert_1 = a|\Omega|`.

**Area constraint** (§3.3). With :math:`\operatorname{vecsort}(m)` the mask's values sorted in
non-decreasing order and :math:`r_a` the vector of :math:`(1 - a)|\Omega|` zeros followed by
:math:`a|\Omega|` ones, :math:`R_a(m) = \lVert \operatorname{vecsort}(m) - r_a \rVert^2`. It is
zero exactly for a binary mask of area :math:`a`. :func:`area_loss` returns the *mean* over
elements, as TorchRay does, so the area weight does not scale with the image size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from convscope.core.errors import InputError

__all__ = ["MaskGenerator", "Pooling", "area_loss", "area_reference", "kernel_profile", "smax"]

Pooling = Literal["softmax", "max", "sum", "sigmoid"]
KernelName = Literal["torchray", "paper"]


def kernel_profile(z: torch.Tensor, kernel: KernelName = "torchray") -> torch.Tensor:
    r"""The radial kernel :math:`k(z)`, with :math:`z` the distance in units of ``sigma``.

    ``"torchray"``: :math:`\exp(-2\max(z - 0.5, 0)^2)`; ``"paper"``:
    :math:`\exp(-\max(z - 1, 0)^2 / 4)`. Both equal 1 at :math:`z = 0` and lie in (0, 1].
    """
    if kernel == "torchray":
        return torch.exp(-2.0 * (z - 0.5).clamp(min=0) ** 2)
    if kernel == "paper":
        return torch.exp(-((z - 1.0).clamp(min=0) ** 2) / 4.0)
    raise InputError(f"Unknown kernel {kernel!r}; use 'torchray' or 'paper'.")


def smax(values: torch.Tensor, dim: int, coldness: float) -> torch.Tensor:
    r"""Smooth max :math:`\sum_d f_d e^{c f_d} / \sum_d e^{c f_d}` along ``dim`` (eq. 7)."""
    if math.isinf(coldness):
        return values.amax(dim)
    weights = torch.softmax(coldness * values, dim=dim)
    return (values * weights).sum(dim)


def area_reference(n: int, area: float) -> torch.Tensor:
    """The reference :math:`r_a`: ``n - round(a n)`` zeros followed by ``round(a n)`` ones."""
    ones = round(area * n)
    ref = torch.zeros(n)
    ref[n - ones :] = 1.0
    return ref


def area_loss(mask: torch.Tensor, area: float | torch.Tensor) -> torch.Tensor:
    r"""Sorted-vector area loss :math:`\frac{1}{n}\lVert\operatorname{vecsort}(m) - r_a\rVert^2`.

    Parameters
    ----------
    mask
        A batch of masks, shape ``(B, ...)``; each row is flattened to ``n`` values.
    area
        The target area fraction :math:`a \in [0, 1]`, one for all rows or one per row
        (shape ``(B,)``). Row :math:`i` gets ``round(a_i n)`` ones in its reference.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``: the mean squared difference between the sorted mask and :math:`r_a`;
        exactly 0 for a binary mask with ``round(a n)`` ones. Differentiable in ``mask``.

    Notes
    -----
    Sorting is replaced by an equivalent O(n) selection: with :math:`k = \mathrm{round}(a n)`,
    :math:`\lVert\operatorname{vecsort}(m) - r_a\rVert^2 = \sum m^2 - 2\,\mathrm{top}_k(m) + k`,
    where :math:`\mathrm{top}_k(m)` is the sum of the :math:`k` largest values, found from the
    :math:`k`-th largest value. Its gradient, :math:`2(m - \mathbb 1[m \text{ among the top }
    k])/n`, is the sort's, except that values tied at the threshold share the selection
    equally (a sort breaks such ties by position).
    """
    flat = mask.reshape(mask.shape[0], -1)
    rows, n = flat.shape
    areas = torch.as_tensor(area, dtype=torch.float64).reshape(-1)
    if areas.numel() == 1:
        areas = areas.expand(rows)
    if areas.numel() != rows:
        raise InputError(f"area_loss got {areas.numel()} areas for {rows} masks; pass one per row.")
    if not bool(((areas >= 0) & (areas <= 1)).all()):  # also refuses NaN
        raise InputError(f"Areas must lie in [0, 1], got {areas.tolist()}.")
    counts = torch.round(areas * n).long()  # on the host: grouping rows needs no sync
    return _AreaLoss.apply(flat, counts)


class _AreaLoss(torch.autograd.Function):
    """Sorted-vector loss through an O(n) selection of the k-th largest value per row.

    The gradient is the sort's, :math:`2(m - s)/n` with :math:`s_i = 1` for the k largest
    values; values tied with the k-th largest share the remaining ones equally, so a flat
    mask (all ones at the start of the optimization) gets a uniform gradient instead of one
    pixel singled out by tie-breaking.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, flat: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        n = flat.shape[1]
        selected = torch.zeros_like(flat)
        for k in torch.unique(counts).tolist():
            if k == 0:
                continue
            sel = (counts == k).nonzero().squeeze(1).to(flat.device)
            values = flat[sel]
            # k-th largest value = (n - k + 1)-th smallest
            threshold = values.kthvalue(n - k + 1, dim=1, keepdim=True).values
            above = values > threshold
            tied = values == threshold
            share = (k - above.sum(1, keepdim=True)).to(flat.dtype) / tied.sum(1, keepdim=True)
            selected[sel] = above.to(flat.dtype) + tied.to(flat.dtype) * share
        ctx.save_for_backward(flat, selected)
        # sum((sorted - r)^2) = sum(m^2) - 2 * (sum of the k largest) + k
        top = (flat * selected).sum(1)
        ones = counts.to(device=flat.device, dtype=flat.dtype)
        return ((flat * flat).sum(1) - 2.0 * top + ones) / n

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        flat, selected = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad[:, None] * 2.0 * (flat - selected) / flat.shape[1], None


class _SmoothMaxConv(torch.autograd.Function):
    """Smooth max over each pixel's cell window, evaluated a few rows of cells at a time.

    ``cells``: (R, w, D) window values of the auxiliary mask, R = B·h rows of cells over the
    whole batch; ``weights``: (D, Q) kernel values for the Q = rho² pixel offsets of a cell.
    Output: (R, w, Q). Blocks of ``rows`` rows keep every operation on contiguous,
    cache-sized memory whatever the batch size, and the backward pass recomputes each block
    instead of storing B·D·H·W intermediates (the memory traffic that dominates TorchRay's
    cost).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        cells: torch.Tensor,
        weights: torch.Tensor,
        coldness: float,
        rows: int,
    ) -> torch.Tensor:
        r, w, _ = cells.shape
        q = weights.shape[1]
        # Values f <= the window's largest cell; shifting by it keeps exp() in range.
        shift = coldness * cells.amax(2, keepdim=True).unsqueeze(3)
        out = cells.new_empty(r, w, q)
        den = cells.new_empty(r, w, q)
        for s in range(0, r, rows):
            f = cells[s : s + rows, :, :, None] * weights
            e = f.mul(coldness).sub_(shift[s : s + rows]).exp_()
            den_s = e.sum(2)
            out[s : s + rows] = e.mul_(f).sum(2).div_(den_s.clamp_min_(_TINY))
            den[s : s + rows] = den_s
        ctx.save_for_backward(cells, weights, out, den, shift)
        ctx.coldness = coldness  # type: ignore[attr-defined]
        ctx.rows = rows  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None]:
        cells, weights, out, den, shift = ctx.saved_tensors  # type: ignore[attr-defined]
        coldness: float = ctx.coldness  # type: ignore[attr-defined]
        rows: int = ctx.rows  # type: ignore[attr-defined]
        # d smax / d f_d = e_d (1 + c (f_d - smax)) / sum(e)
        g = (grad_out / den).unsqueeze(2)
        centre = (1.0 - coldness * out).unsqueeze(2)
        grad_cells = torch.empty_like(cells)
        for s in range(0, cells.shape[0], rows):
            f = cells[s : s + rows, :, :, None] * weights
            e = f.mul(coldness).sub_(shift[s : s + rows]).exp_()
            factor = f.mul_(coldness).add_(centre[s : s + rows])  # 1 + c (f - smax)
            grad_f = factor.mul_(e).mul_(g[s : s + rows])
            grad_cells[s : s + rows] = grad_f.mul_(weights).sum(3)
        return grad_cells, None, None, None


#: Elements of one block of the smooth max (about 1 MB in float32: fits in the L2 cache).
BLOCK_ELEMENTS = 1 << 18

_TINY = torch.finfo(torch.float32).tiny


class _StridedSmoothMax(torch.autograd.Function):
    """Smooth max at the points of a sampling grid, a few grid rows at a time.

    ``cells``: (B, h, w, D) window values of the auxiliary mask; ``rows``/``cols``: the cell
    of each grid row/column; ``weights``: (Hs, Ws, D) kernel values at the grid points.
    Output: (B, Hs, Ws). Like :class:`_SmoothMaxConv`, blocks stay cache-sized and the
    backward pass recomputes them.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        cells: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        weights: torch.Tensor,
        coldness: float,
    ) -> torch.Tensor:
        b, hs, ws = cells.shape[0], rows.numel(), cols.numel()
        block = max(1, BLOCK_ELEMENTS // (b * ws * weights.shape[2]))
        out = cells.new_empty(b, hs, ws)
        den = cells.new_empty(b, hs, ws)
        for s in range(0, hs, block):
            f = _grid_values(cells, rows[s : s + block], cols, weights[s : s + block])
            e = f.mul(coldness).sub_(coldness * f.amax(3, keepdim=True)).exp_()
            den_s = e.sum(3).clamp_min_(_TINY)
            out[:, s : s + block] = e.mul_(f).sum(3).div_(den_s)
            den[:, s : s + block] = den_s
        ctx.save_for_backward(cells, rows, cols, weights, out, den)
        ctx.coldness = coldness  # type: ignore[attr-defined]
        ctx.block = block  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        cells, rows, cols, weights, out, den = ctx.saved_tensors  # type: ignore[attr-defined]
        c: float = ctx.coldness  # type: ignore[attr-defined]
        block: int = ctx.block  # type: ignore[attr-defined]
        g = (grad_out / den).unsqueeze(3)
        centre = (1.0 - c * out).unsqueeze(3)
        grad_cells = torch.zeros_like(cells)
        b, _, w, d = cells.shape
        for s in range(0, rows.numel(), block):
            f = _grid_values(cells, rows[s : s + block], cols, weights[s : s + block])
            e = f.mul(c).sub_(c * f.amax(3, keepdim=True)).exp_()
            grad_f = f.mul_(c).add_(centre[:, s : s + block]).mul_(e).mul_(g[:, s : s + block])
            grad_f.mul_(weights[s : s + block])
            per_row = grad_f.new_zeros(b, grad_f.shape[1], w, d).index_add_(2, cols, grad_f)
            grad_cells.index_add_(1, rows[s : s + block], per_row)
        return grad_cells, None, None, None, None


def _grid_values(
    cells: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    return cells.index_select(1, rows).index_select(2, cols).mul_(weights)


class MaskGenerator:
    r"""Generate smooth masks from a low-resolution auxiliary mask (max-convolution, eq. 6-7).

    Parameters
    ----------
    shape
        Output mask size ``(H, W)``.
    step
        Cell side :math:`\rho` in pixels (TorchRay default 7).
    sigma
        Kernel scale :math:`\sigma` in pixels (TorchRay default 21).
    coldness
        :math:`1/T` of the smooth max (20, as in the paper and TorchRay).
    pooling
        ``"softmax"`` (smooth max, default), ``"max"`` (hard max-convolution, Lemma 1 exactly),
        ``"sum"`` (:math:`\sum_d f_d`, an ordinary unnormalized convolution) or ``"sigmoid"``
        (:math:`\mathrm{sigmoid}(c\sum_d f_d - 3)`, TorchRay's variants).
    kernel
        ``"torchray"`` or ``"paper"`` profile (module docstring).
    radius
        Cells seen on each side of a pixel's own cell (default :math:`1 + \lceil\sigma/\rho\rceil`).
    clamp
        Clamp the generated mask to [0, 1].
    stride
        Evaluate the mask every ``stride`` pixels (on a uniform grid spanning the mask) and
        interpolate bilinearly in between. 1 (default) is exact; 2 or 3 cut the generator's
        cost by about ``stride²`` at an interpolation error that is small because the mask
        varies on the scale of ``sigma`` (Lemma 1 then holds at the grid points).

    Attributes
    ----------
    shape_in
        The auxiliary mask's grid ``(h, w)`` = ``(ceil(H/step), ceil(W/step))``.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        step: int = 7,
        sigma: float = 21.0,
        *,
        coldness: float = 20.0,
        pooling: Pooling = "softmax",
        kernel: KernelName = "torchray",
        radius: int | None = None,
        clamp: bool = True,
        stride: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if int(stride) != stride or stride < 1:
            raise InputError(f"stride must be a positive integer, got {stride}.")
        if int(step) != step or step < 1:
            raise InputError(f"step must be a positive integer number of pixels, got {step}.")
        if not sigma > 0:
            raise InputError(f"sigma must be positive, got {sigma}.")
        if pooling not in ("softmax", "max", "sum", "sigmoid"):
            raise InputError(
                f"Unknown pooling {pooling!r}; use 'softmax', 'max', 'sum' or 'sigmoid'."
            )
        if not coldness > 0:
            raise InputError(f"coldness must be positive, got {coldness}.")
        self.shape = (int(shape[0]), int(shape[1]))
        self.step = int(step)
        self.sigma = float(sigma)
        self.coldness = float(coldness)
        self.pooling: Pooling = pooling
        self.kernel: KernelName = kernel
        self.radius = 1 + math.ceil(sigma / step) if radius is None else int(radius)
        if self.radius < 0:
            raise InputError(f"radius must be 0 or more cells, got {radius}.")
        self.clamp = clamp
        self.shape_in = (math.ceil(self.shape[0] / step), math.ceil(self.shape[1] / step))
        self.weights = self._weights(device, dtype)
        self.stride = int(stride)
        if self.stride > 1:
            self._rows, self._cols, self._grid_weights = self._strided_weights(device, dtype)

    def _strided_weights(
        self, device: torch.device | str | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r, rho = self.radius, self.step
        axes = []
        for size, cells in zip(self.shape, self.shape_in, strict=True):
            count = math.ceil((size - 1) / self.stride) + 1
            pos = torch.linspace(0, size - 1, count, dtype=torch.float64)
            base = torch.div(pos, rho, rounding_mode="floor").clamp(max=cells - 1)
            axes.append((base.long(), pos - rho * base - (rho - 1) / 2))
        (rows, dy_off), (cols, dx_off) = axes
        d = torch.arange(-r, r + 1, dtype=torch.float64) * rho
        disp_y = dy_off[:, None] - d[None, :]  # (Hs, 2r+1)
        disp_x = dx_off[:, None] - d[None, :]  # (Ws, 2r+1)
        dist = torch.sqrt(disp_y[:, None, :, None] ** 2 + disp_x[None, :, None, :] ** 2)
        k = kernel_profile(dist / self.sigma, self.kernel)  # (Hs, Ws, dy, dx)
        k = k.reshape(rows.numel(), cols.numel(), -1).to(device=device, dtype=dtype)
        return rows.to(device), cols.to(device), k

    def _weights(self, device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
        r, rho = self.radius, self.step
        d = torch.arange(-r, r + 1, dtype=torch.float64)
        p = torch.arange(rho, dtype=torch.float64) - (rho - 1) / 2
        # displacement of pixel offset p from the centre of the cell d steps away
        disp = p[None, :] - rho * d[:, None]  # (2r+1, rho)
        dist = torch.sqrt(disp[:, None, :, None] ** 2 + disp[None, :, None, :] ** 2)
        k = kernel_profile(dist / self.sigma, self.kernel)  # (dy, dx, py, px)
        # (D, Q): window cell (dy, dx) by pixel offset (py, px)
        return k.reshape(-1, rho * rho).to(device=device, dtype=dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> MaskGenerator:
        """Move the kernel table (in place) and return ``self``."""
        self.weights = self.weights.to(device=device, dtype=dtype or self.weights.dtype)
        if self.stride > 1:
            self._rows, self._cols = self._rows.to(device), self._cols.to(device)
            self._grid_weights = self._grid_weights.to(device=device, dtype=self.weights.dtype)
        return self

    def generate(self, params: torch.Tensor, *, rows: int | None = None) -> torch.Tensor:
        """The mask for auxiliary masks ``params`` of shape ``(B, 1, h, w)`` → ``(B, 1, H, W)``.

        ``rows`` rows of cells (over the whole batch) are processed at a time; by default as
        many as fit in :data:`BLOCK_ELEMENTS` (a memory/speed trade-off only).
        """
        if params.ndim != 4 or params.shape[1] != 1 or tuple(params.shape[2:]) != self.shape_in:
            raise InputError(
                f"MaskGenerator for masks of {self.shape} expects parameters of shape "
                f"(B, 1, {self.shape_in[0]}, {self.shape_in[1]}), got {tuple(params.shape)}."
            )
        weights = self.weights.to(device=params.device, dtype=params.dtype)
        r, rho = self.radius, self.step
        b = params.shape[0]
        h, w = self.shape_in
        cells = F.unfold(params, 2 * r + 1, padding=r).reshape(b, -1, h, w)
        cells = cells.permute(0, 2, 3, 1).contiguous()  # (B, h, w, D)
        if self.stride > 1:
            return self._generate_strided(cells)
        if self.pooling == "softmax" and not math.isinf(self.coldness):
            d, q = weights.shape
            block = max(1, BLOCK_ELEMENTS // (w * d * q)) if rows is None else max(1, int(rows))
            flat = _SmoothMaxConv.apply(cells.reshape(b * h, w, d), weights, self.coldness, block)
            out = flat.reshape(b, h, w, q)
        else:
            f = cells[..., None] * weights
            if self.pooling == "sum":
                out = f.sum(3)
            elif self.pooling == "sigmoid":
                out = torch.sigmoid(self.coldness * f.sum(3) - 3.0)
            else:  # "max", or "softmax" with infinite coldness
                out = f.amax(3)
        # (B, h, w, rho, rho) -> (B, 1, h*rho, w*rho)
        out = out.reshape(b, h, w, rho, rho).permute(0, 1, 3, 2, 4).reshape(b, 1, h * rho, w * rho)
        mask = out[:, :, : self.shape[0], : self.shape[1]]
        return mask.clamp(0.0, 1.0) if self.clamp else mask

    def _generate_strided(self, cells: torch.Tensor) -> torch.Tensor:
        rows = self._rows.to(cells.device)
        cols = self._cols.to(cells.device)
        weights = self._grid_weights.to(device=cells.device, dtype=cells.dtype)
        if self.pooling == "softmax" and not math.isinf(self.coldness):
            out = _StridedSmoothMax.apply(cells, rows, cols, weights, self.coldness)
            mask = F.interpolate(
                out.unsqueeze(1), size=self.shape, mode="bilinear", align_corners=True
            )
            return mask.clamp(0.0, 1.0) if self.clamp else mask
        f = cells.index_select(1, rows).index_select(2, cols) * weights  # (B, Hs, Ws, D)
        if self.pooling == "sum":
            out = f.sum(-1)
        elif self.pooling == "sigmoid":
            out = torch.sigmoid(self.coldness * f.sum(-1) - 3.0)
        else:
            out = f.amax(-1)
        mask = F.interpolate(out.unsqueeze(1), size=self.shape, mode="bilinear", align_corners=True)
        return mask.clamp(0.0, 1.0) if self.clamp else mask

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return self.generate(params)
