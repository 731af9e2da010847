r"""RISE: randomized input sampling for explanation (Petsiuk, Das & Saenko, BMVC 2018).

RISE treats the model as a black box. It draws random smooth masks :math:`M_i` with values in
[0, 1], scores the masked images and averages the masks weighted by the scores:

.. math::

    S(\lambda) = \frac{1}{N\,\mathbb{E}[M]} \sum_{i=1}^{N} f(I \odot M_i)\, M_i(\lambda),

a Monte Carlo estimate of :math:`\mathbb{E}[f(I \odot M) \mid M(\lambda) = 1]` for binary
masks: the expected score when pixel :math:`\lambda` is kept. :math:`\mathbb{E}[M] = p`, the
probability of keeping a cell.

Masks (paper §3.2): a ``num_cells`` × ``num_cells`` grid whose cells are 1 (keep) with
probability :math:`p` and 0 otherwise is upsampled bilinearly to
:math:`(s+1) C_H \times (s+1) C_W`, with :math:`s` = ``num_cells`` and cell size
:math:`C_H = \lceil H/s \rceil`, :math:`C_W = \lceil W/s \rceil`, and an :math:`H \times W`
window is cropped at a uniformly random offset in :math:`[0, C_H) \times [0, C_W)`. The shift
makes the mask statistics the same at every pixel, so :math:`\mathbb{E}[M(\lambda)] = p`
everywhere.

Implementation choices:

* masks are generated in blocks of a fixed size on the model's device from a seeded
  ``torch.Generator`` (never all at once, and the global RNG is untouched); the blocks do not
  depend on ``batch_size``, so the result does not either;
* the same masks are used for every image; a forward pass holds at most ``batch_size``
  masked images (images × masks);
* the weighted sum is accumulated in float64, batch by batch;
* bilinear upsampling is ``F.interpolate(..., align_corners=False)`` (edge values repeated at
  the border; the reference code uses scikit-image with reflection);
* the masked image is :math:`M \odot I + (1 - M)\, b` with ``baseline`` :math:`b`, 0 (black)
  by default, the literal :math:`I \odot M`. The reference code and TorchRay multiply the
  *normalised* image, i.e. their substrate is the dataset mean: pass
  ``baseline=model.normalize.mean`` for that;
* the score is the softmax probability of the target class, as in the paper (``score=``
  ``"logit"`` for the raw score; TorchRay uses ``"sigmoid"``). A callable target defines the
  score itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.batching import check_batch_size
from convscope.core.device import model_device, model_dtype, to_model
from convscope.core.errors import InputError
from convscope.core.progress import progress_bar
from convscope.core.seeding import SeedLike, torch_generator
from convscope.core.state import inference_state
from convscope.core.targets import Target, TargetLike, check_target_count, resolve_target
from convscope.core.validation import check_images, positive_int

__all__ = ["rise", "rise_masks"]

Score = Literal["softmax", "sigmoid", "logit"]

#: Masks generated per draw from the generator: fixed so the stream is batch-size independent.
_MASK_BLOCK = 64


def _check_mask_args(num_masks: int, num_cells: int, p: float) -> None:
    positive_int(num_masks, "num_masks")
    positive_int(num_cells, "num_cells", hint="The paper uses 7.")
    if not isinstance(p, (int, float)) or not 0.0 < float(p) <= 1.0:
        raise InputError(
            f"p is the probability of keeping a cell and must be in (0, 1], got {p!r} "
            "(0.5 in the paper)."
        )


def _mask_blocks(
    num_masks: int,
    size: tuple[int, int],
    num_cells: int,
    p: float,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> Iterator[torch.Tensor]:
    """Yield the masks in blocks of at most ``_MASK_BLOCK``, each block m×H×W."""
    H, W = size
    cell_h, cell_w = math.ceil(H / num_cells), math.ceil(W / num_cells)
    up = ((num_cells + 1) * cell_h, (num_cells + 1) * cell_w)
    rows, cols = torch.arange(H, device=device), torch.arange(W, device=device)
    for start in range(0, num_masks, _MASK_BLOCK):
        m = min(_MASK_BLOCK, num_masks - start)
        grid = torch.rand(m, 1, num_cells, num_cells, generator=generator, device=device) < p
        smooth = F.interpolate(grid.to(dtype), size=up, mode="bilinear", align_corners=False)
        dy = torch.randint(0, cell_h, (m,), generator=generator, device=device)
        dx = torch.randint(0, cell_w, (m,), generator=generator, device=device)
        index = torch.arange(m, device=device)[:, None, None]
        yield smooth[index, 0, (dy[:, None] + rows)[:, :, None], (dx[:, None] + cols)[:, None, :]]


def rise_masks(
    num_masks: int,
    size: tuple[int, int],
    *,
    num_cells: int = 7,
    p: float = 0.5,
    seed: SeedLike = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The RISE masks that :func:`rise` draws with the same arguments, as one tensor.

    Parameters
    ----------
    num_masks
        Number of masks.
    size
        ``(H, W)`` of the images.
    num_cells, p, seed
        Grid side, probability of keeping a cell, and seed (see :func:`rise`).
    device, dtype
        Where and in which precision the masks are made (:func:`rise` uses the model's).

    Returns
    -------
    torch.Tensor
        ``num_masks``×H×W masks with values in [0, 1]. Memory grows with ``num_masks``: for
        inspection, not for large runs.
    """
    _check_mask_args(num_masks, num_cells, p)
    device = torch.device(device)
    gen = torch_generator(seed, device)
    hw = (int(size[0]), int(size[1]))
    return torch.cat(list(_mask_blocks(num_masks, hw, num_cells, p, gen, device, dtype)))


def _scores(outputs: torch.Tensor, target: Target, score: Score | None, n: int) -> torch.Tensor:
    if target.function is not None:
        return resolve_target(target, outputs, n=n)
    if score in (None, "softmax"):
        resolve_target(target, outputs, n=n)  # validates the class index
        return resolve_target(target, outputs.softmax(1), n=n)
    logits = resolve_target(target, outputs, n=n)
    return logits.sigmoid() if score == "sigmoid" else logits


def rise(
    model: nn.Module,
    input: torch.Tensor,
    target: TargetLike,
    *,
    num_masks: int = 8000,
    num_cells: int = 7,
    p: float = 0.5,
    score: Score | None = None,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    seed: SeedLike = 0,
    progress: bool | None = None,
) -> torch.Tensor:
    r"""RISE saliency maps :math:`S = \frac{1}{N p} \sum_i f(M_i \odot I)\, M_i`.

    Parameters
    ----------
    model, input, target
        Model taking [0, 1] images, N×3×H×W images, and the target (class index, per-sample
        indices, or a callable mapping the outputs to one score per row; it must act row by
        row because a forward pass mixes images and masks).
    num_masks
        Number of masks :math:`N` (8000 in the paper and TorchRay; 4000 in Xplique).
    num_cells
        Side :math:`s` of the random grid (7 in the paper).
    p
        Probability of keeping a grid cell, :math:`\mathbb{E}[M]` (0.5 in the paper).
    score
        ``"softmax"`` (default for class indices, the paper's class probability), ``"sigmoid"``
        (TorchRay) or ``"logit"`` (the raw output). Not allowed with a callable target, which
        is itself the score.
    baseline
        Value of the masked-out pixels: a float or a tensor broadcastable to 1×3×H×W
        (default 0, black).
    batch_size
        Masked images per forward pass (default 64); the cost is ``N × num_masks`` forwards.
    seed
        Seed of the mask generator (the global RNG is not touched).
    progress
        Show a progress bar (None: on long loops only).

    Returns
    -------
    torch.Tensor
        N×1×H×W maps on the model's device, in the model's dtype.

    References
    ----------
    V. Petsiuk, A. Das, K. Saenko, *RISE: Randomized Input Sampling for Explanation of
    Black-box Models*, BMVC 2018 (arXiv:1806.07421).
    """
    check_images(input)
    _check_mask_args(num_masks, num_cells, p)
    if score not in (None, "softmax", "sigmoid", "logit"):
        raise InputError(f"score must be 'softmax', 'sigmoid' or 'logit', got {score!r}.")
    tgt = check_target_count(target, input.shape[0])
    if tgt.function is not None and score is not None:
        raise InputError(
            "A callable target already defines the score; drop score= (or pass a class index "
            "to use score='softmax'/'sigmoid'/'logit')."
        )
    size = check_batch_size(batch_size)
    n, _, H, W = input.shape
    device, dtype = model_device(model), model_dtype(model)
    x_all = to_model(input, model)
    fill = torch.as_tensor(baseline, device=device, dtype=dtype)
    try:
        torch.broadcast_shapes(fill.shape, (1, 3, H, W))
    except RuntimeError as exc:
        raise InputError(
            f"baseline must be a float or broadcastable to 1×3×{H}×{W}, got shape "
            f"{tuple(fill.shape)}."
        ) from exc
    gen = torch_generator(seed, device)
    total = torch.zeros(n, H, W, device=device, dtype=torch.float64)
    n_img = min(n, size)
    per_pass = max(1, size // n_img)  # masks per forward pass
    blocks = _mask_blocks(num_masks, (H, W), num_cells, p, gen, device, dtype)
    n_passes = math.ceil(num_masks / _MASK_BLOCK)
    with inference_state(model), torch.no_grad():
        for masks in progress_bar(blocks, total=n_passes, desc="RISE", show=progress):
            for start in range(0, n, n_img):
                x = x_all[start : start + n_img]
                for m0 in range(0, masks.shape[0], per_pass):
                    m = masks[m0 : m0 + per_pass, None]  # k×1×H×W
                    # image-major: row i*k + j is image i under mask j
                    batch = (x[:, None] * m + (1 - m) * fill).reshape(-1, 3, H, W)
                    rows = torch.arange(start, start + x.shape[0])  # CPU, like the targets
                    row_target = tgt.subset(rows.repeat_interleave(m.shape[0]))
                    s = _scores(model(batch), row_target, score, batch.shape[0])
                    weights = s.reshape(x.shape[0], m.shape[0]).to(dtype)
                    total[start : start + x.shape[0]] += torch.einsum(
                        "ik,khw->ihw", weights, m[:, 0]
                    ).double()
    return (total / (num_masks * p)).to(dtype).unsqueeze(1)
