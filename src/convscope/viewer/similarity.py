r"""Cosine similarity between the activation vectors of spatial locations.

Theory
------
Interactive similarity overlays (Fong, Mordvintsev, Vedaldi & Olah, "Interactive Similarity
Overlays", VISxAI 2021; Fong, DPhil thesis, ch. 6) look at a convolutional layer
:math:`f_l(x) = z \in \mathbb{R}^{D \times H \times W}` as a grid of activation vectors
:math:`z_{ij} \in \mathbb{R}^D`, one per spatial location. When the user points at a location
:math:`(i, j)` of one image, every location :math:`(u, v)` of the same or of another image
:math:`z'` is coloured by

.. math::

    s(z_{ij}, z'_{uv}) = \frac{z_{ij} \cdot z'_{uv}}
                              {(\lVert z_{ij} \rVert + \varepsilon)(\lVert z'_{uv} \rVert
                              + \varepsilon)},

the cosine similarity with the small :math:`\varepsilon = 10^{-4}` of the original code, which
keeps all-zero vectors (dead locations after a ReLU) at similarity 0 instead of NaN. After a
ReLU every activation is non-negative, so :math:`s \in [0, 1]`; the self-similarity of a
location is :math:`\lVert u \rVert^2 / (\lVert u \rVert + \varepsilon)^2 \approx 1`.

Because :math:`s(a, b) = \hat a \cdot \hat b` with :math:`\hat u = u / (\lVert u \rVert +
\varepsilon)`, the features are normalised once (:func:`normalized_features`) and every map is a
matrix product. All ordered pairs of :math:`N` images cost :math:`O(N^2 H^2 W^2)` values (the
original's pre-computed "sprite sheets", :func:`similarity_grids`, :func:`sprite_sheet`), while
the screen shows only :math:`O(N H W)` at any time; the HTML viewer therefore ships the
normalised features and computes the map of the hovered location on demand.

``center=`` subtracts a mean vector (:func:`center_of`) before normalising: a centred cosine,
whose values are signed (the thesis lists signed colour coding as future work).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from convscope.core.batching import batch_slices
from convscope.core.device import to_model
from convscope.core.errors import InputError
from convscope.core.hooks import record_activations
from convscope.core.layers import resolve_layers
from convscope.core.state import inference_state
from convscope.core.validation import check_images

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MAX_VALUES",
    "center_of",
    "cosine_similarity_maps",
    "layer_activations",
    "normalized_features",
    "query_maps",
    "similarity_grids",
    "sprite_sheet",
    "synchronized_cell",
]

#: The ε of the original code: s(u, v) = u·v / ((‖u‖ + ε)(‖v‖ + ε)).
DEFAULT_EPS = 1e-4

#: Largest N²(HW)² that :func:`similarity_grids` materialises (200 MB of float32).
DEFAULT_MAX_VALUES = 50_000_000


def _as_tensor(x: Tensor | np.ndarray, what: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InputError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}.")
    if not x.is_floating_point():
        x = x.float()
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # half precision loses too much in the norms
    return x.detach()


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0.0:
        raise InputError(f"eps must be a non-negative number (1e-4 in the original), got {eps!r}.")
    if not np.isfinite(eps):
        raise InputError(f"eps must be finite, got {eps!r}.")
    return float(eps)


def _check_finite(x: Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise InputError(
            f"{what} contains NaN or infinite values; check the model's inputs and the layer."
        )


def layer_activations(
    model: nn.Module,
    input: Tensor,
    layers: str | Sequence[str],
    *,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Activations ``N×D×H×W`` of one or several convolutional layers, on the host.

    The model runs in eval mode without gradients (its state is restored), at most
    ``batch_size`` images per forward pass; the outputs are recorded with forward hooks and
    stacked **on the CPU as float32**, because the viewer and NumPy need host arrays. As in the
    thesis (ch. 6), :math:`z = f_l(x)` is the output of the hooked module; hook the module after
    a ReLU to get non-negative activations (cosine in [0, 1]).

    Parameters
    ----------
    model : nn.Module
        The model, carrying its own input normalisation.
    input : Tensor
        ``N×3×H×W`` images in [0, 1].
    layers : str or sequence of str
        Dotted module names (``"features.relu3"``).
    batch_size : int, optional
        Images per forward pass (default :data:`convscope.core.batching.DEFAULT_BATCH_SIZE`).

    Returns
    -------
    dict of str to Tensor
        ``{layer: N×D×H×W float32 CPU tensor}`` in the order the layers were given.

    Raises
    ------
    InputError
        Bad images or batch size, or a layer whose output is not ``N×C×H×W``.
    LayerNotFoundError
        A name that is not a module of the model.
    """
    check_images(input)
    names = [layers] if isinstance(layers, str) else list(layers)
    resolve_layers(model, names)
    slices = batch_slices(input.shape[0], batch_size)
    chunks: dict[str, list[Tensor]] = {name: [] for name in names}
    with (
        inference_state(model),
        torch.no_grad(),
        record_activations(model, names) as acts,
    ):
        for sl in slices:
            model(to_model(input[sl], model))
            for name in names:
                out = acts[name]
                if out.ndim != 4:
                    raise InputError(
                        f"Layer {name!r} outputs a {out.ndim}-D tensor of shape "
                        f"{tuple(out.shape)}, not N×C×H×W: similarity overlays need a spatial "
                        "grid of activation vectors. Pick a convolutional layer (or the ReLU "
                        "after one), e.g. from `convscope layers MODEL`."
                    )
                chunks[name].append(out.detach().to(device="cpu", dtype=torch.float32))
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def normalized_features(
    activations: Tensor | np.ndarray,
    *,
    eps: float = DEFAULT_EPS,
    center: Tensor | np.ndarray | None = None,
) -> Tensor:
    r"""Channel-last activation vectors divided by their norm plus ε.

    .. math:: \hat u = \frac{u - c}{\lVert u - c \rVert + \varepsilon}

    so that :math:`\hat u \cdot \hat v` is exactly the ε-cosine :math:`s(u, v)` of the original
    code (Fong et al., VISxAI 2021). An all-zero vector stays zero (similarity 0, never NaN),
    also with ``eps=0``.

    Parameters
    ----------
    activations : Tensor or ndarray
        ``N×D×H×W`` (or one ``D×H×W``) activations.
    eps : float, default 1e-4
        The ε of the denominator.
    center : Tensor or ndarray, optional
        A ``(D,)`` vector :math:`c` subtracted first (centred cosine, signed values), e.g.
        :func:`center_of`.

    Returns
    -------
    Tensor
        ``N×H×W×D`` (or ``H×W×D``) normalised vectors, float32 (float64 input stays float64).
    """
    eps = _check_eps(eps)
    x = _as_tensor(activations, "activations")
    if x.ndim not in (3, 4):
        raise InputError(f"activations must be N×D×H×W (or one D×H×W), got shape {tuple(x.shape)}.")
    x = torch.movedim(x, -3, -1)
    if center is not None:
        c = _as_tensor(center, "center").to(x.dtype)
        if c.shape != (x.shape[-1],):
            raise InputError(
                f"center must be a ({x.shape[-1]},) vector, one value per channel, got shape "
                f"{tuple(c.shape)}."
            )
        x = x - c
    _check_finite(x, "activations")
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    # eps = 0 would divide 0 by 0 at dead locations: define their similarity as 0.
    return torch.where(norm > 0, x / (norm + eps), torch.zeros_like(x))


def cosine_similarity_maps(
    source: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    *,
    eps: float = DEFAULT_EPS,
    center: Tensor | np.ndarray | None = None,
) -> Tensor:
    r"""Similarity of every location of ``source`` to every location of ``target``.

    ``out[i, j, u, v]`` :math:`= s(\text{source}_{:,ij}, \text{target}_{:,uv}) =
    \frac{a \cdot b}{(\lVert a \rVert + \varepsilon)(\lVert b \rVert + \varepsilon)}`
    (the original's ``cossim_grid``; Fong et al., VISxAI 2021).

    Parameters
    ----------
    source, target : Tensor or ndarray
        ``D×H×W`` and ``D×H'×W'`` activations of one image each (same D).
    eps : float, default 1e-4
        The ε of the denominator.
    center : Tensor or ndarray, optional
        ``(D,)`` vector subtracted from both first (centred cosine).

    Returns
    -------
    Tensor
        ``H×W×H'×W'`` similarities.
    """
    a = _as_tensor(source, "source")
    b = _as_tensor(target, "target")
    for t, what in ((a, "source"), (b, "target")):
        if t.ndim != 3:
            raise InputError(
                f"{what} must be the D×H×W activations of one image, got shape "
                f"{tuple(t.shape)}; index one image out of a batch (acts[0])."
            )
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"source and target have {a.shape[0]} and {b.shape[0]} channels; compare "
            "activations of the same layer."
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    fa = normalized_features(a.to(dtype), eps=eps, center=center)
    fb = normalized_features(b.to(dtype), eps=eps, center=center)
    return torch.einsum("ijd,uvd->ijuv", fa, fb)


def similarity_grids(
    activations: Tensor | np.ndarray,
    *,
    eps: float = DEFAULT_EPS,
    center: Tensor | np.ndarray | None = None,
    max_values: int = DEFAULT_MAX_VALUES,
) -> Tensor:
    """All maps of all ordered pairs of images: ``out[a, b] = cosine_similarity_maps(a, b)``.

    This is what the original pre-computes into sprite sheets (``get_cossim_grids``); it holds
    :math:`N^2 (HW)^2` values, which grows fast (6 images at 28×28: 22 M).

    Parameters
    ----------
    activations : Tensor or ndarray
        ``N×D×H×W`` activations of one layer.
    eps : float, default 1e-4
        The ε of the denominator.
    center : Tensor or ndarray, optional
        ``(D,)`` vector subtracted first (centred cosine).
    max_values : int, default 50_000_000
        Refuse to build more values than this.

    Returns
    -------
    Tensor
        ``N×N×H×W×H×W``; ``out[a, b, i, j, u, v]`` is the similarity of location ``(i, j)`` of
        image ``a`` and ``(u, v)`` of image ``b``, so ``out[a, b, i, j, u, v] ==
        out[b, a, u, v, i, j]``.

    Raises
    ------
    InputError
        Wrong shape, or more than ``max_values`` values.
    """
    x = _as_tensor(activations, "activations")
    if x.ndim != 4:
        raise InputError(f"activations must be N×D×H×W, got shape {tuple(x.shape)}.")
    if isinstance(max_values, bool) or not isinstance(max_values, (int, np.integer)):
        raise InputError(f"max_values must be an int, got {max_values!r}.")
    n, _, h, w = x.shape
    total = n * n * (h * w) ** 2
    if total > max_values:
        raise InputError(
            f"All pairwise maps of {n} images at {h}×{w} hold N²(HW)² = {total:,} values, more "
            f"than max_values={max_values:,}. Use fewer images or a coarser layer, raise "
            "max_values, or compute maps on demand (query_maps, cosine_similarity_maps) as the "
            "HTML viewer does."
        )
    f = normalized_features(x, eps=eps, center=center)
    return torch.einsum("aijd,buvd->abijuv", f, f)


def query_maps(features: Tensor | np.ndarray, image: int, row: int, col: int) -> Tensor:
    """Similarity of one query location to every location of every image.

    ``out[b, u, v] = features[image, row, col] · features[b, u, v]``: the overlays the viewer
    draws when location ``(row, col)`` of image ``image`` is hovered.

    Parameters
    ----------
    features : Tensor or ndarray
        ``N×H×W×D`` output of :func:`normalized_features`.
    image, row, col : int
        The query.

    Returns
    -------
    Tensor
        ``N×H×W`` maps.
    """
    f = _as_tensor(features, "features")
    if f.ndim != 4:
        raise InputError(
            f"features must be N×H×W×D (from normalized_features), got shape {tuple(f.shape)}."
        )
    n, h, w, _ = f.shape
    for value, size, what in ((image, n, "image"), (row, h, "row"), (col, w, "col")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{what} must be an int, got {value!r}.")
        if not 0 <= value < size:
            raise InputError(f"{what}={value} is outside [0, {size - 1}].")
    return torch.einsum("buvd,d->buv", f, f[image, row, col])


def sprite_sheet(grid: Tensor | np.ndarray) -> Tensor:
    """Tile an ``H×W×H'×W'`` grid into one ``(H·H')×(W·W')`` image, the original's layout.

    Tile ``(i, j)`` occupies rows ``i·H' … (i+1)·H' - 1`` and columns ``j·W' … (j+1)·W' - 1``
    and holds the map of query ``(i, j)``: ``sheet[i·H' + u, j·W' + v] = grid[i, j, u, v]``
    (``np.hstack(np.hstack(grid))`` in the original code). For static export.
    """
    g = _as_tensor(grid, "grid")
    if g.ndim != 4:
        raise InputError(
            f"grid must be H×W×H'×W' (one pair of images), got shape {tuple(g.shape)}."
        )
    h, w, h2, w2 = g.shape
    return g.permute(0, 2, 1, 3).reshape(h * h2, w * w2)


def center_of(activations: Tensor | np.ndarray) -> Tensor:
    """Mean activation vector ``(D,)`` over all images and locations of ``N×D×H×W``.

    Pass it as ``center=`` for a centred cosine.
    """
    x = _as_tensor(activations, "activations")
    if x.ndim != 4:
        raise InputError(f"activations must be N×D×H×W, got shape {tuple(x.shape)}.")
    _check_finite(x, "activations")
    return x.mean(dim=(0, 2, 3))


def synchronized_cell(
    row: int, col: int, source_size: tuple[int, int], target_size: tuple[int, int]
) -> tuple[int, int]:
    r"""The cell of another layer's grid under the cursor: the multi-layer view's sync rule.

    :math:`(\operatorname{round}(h_t/h_s \cdot i), \operatorname{round}(w_t/w_s \cdot j))` as
    in the original's multi-layer component (rounding half up, like JavaScript's
    ``Math.round``), clipped to the target grid. Receptive-field centres and padding offsets
    are ignored, so grids of odd or unrelated sizes align only approximately, as in the original.

    Parameters
    ----------
    row, col : int
        Cell of the hovered layer's ``source_size = (h_s, w_s)`` grid.
    source_size, target_size : (int, int)
        Grid sizes of the hovered layer and of the other layer.

    Returns
    -------
    (int, int)
        The cell of the ``target_size`` grid.
    """
    hs, ws = (int(v) for v in source_size)
    ht, wt = (int(v) for v in target_size)
    if min(hs, ws, ht, wt) < 1:
        raise InputError(
            f"Grid sizes must be positive, got source {source_size} and target {target_size}."
        )
    if not (0 <= row < hs and 0 <= col < ws):
        raise InputError(f"Cell ({row}, {col}) is outside the {hs}×{ws} source grid.")
    r = min(int(np.floor(ht / hs * row + 0.5)), ht - 1)
    c = min(int(np.floor(wt / ws * col + 0.5)), wt - 1)
    return r, c
