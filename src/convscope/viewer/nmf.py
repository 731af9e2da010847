r"""Non-negative matrix factorisation of the activation vectors of many locations.

Theory
------
Interactive similarity overlays (Fong, Mordvintsev, Vedaldi & Olah, VISxAI 2021; Fong, DPhil
thesis, ch. 6) group the locations of a set of images into a few "parts" by factorising the
matrix :math:`A \in \mathbb{R}_{\ge 0}^{M \times D}` of the activation vectors of all
:math:`M = N H W` locations of all :math:`N` images,

.. math:: A \approx W H, \qquad W \in \mathbb{R}_{\ge 0}^{M \times k},\;
          H \in \mathbb{R}_{\ge 0}^{k \times D},

with :math:`k = 4` components by default (3 for some classes in the thesis). Row :math:`m`
of :math:`W` says how much of each component is present at location :math:`m`; each component
gets a colour and the images are painted with it. This follows "The Building Blocks of
Interpretability" (Olah et al., Distill 2018), whose Lucid ``ChannelReducer`` calls
scikit-learn's ``NMF`` with its default initialisation and solver; so do we
(:class:`sklearn.decomposition.NMF`, Frobenius loss, coordinate descent, ``init=None``), with
``random_state=seed``.

Choices the thesis leaves open (it names no NMF solver, colouring or normalisation):

* no normalisation of the activations before the factorisation (raw post-ReLU values);
* each component's weights are rescaled to a maximum of 1 over all locations, and the
  component vector by the inverse factor, so :math:`W H` is unchanged and weights are
  comparable across components (the scale factors are kept in ``scales``);
* two colourings: ``"mix"`` (:math:`\mathrm{clip}(\sum_k w_k c_k, 0, 1)`) and ``"argmax"`` (the
  colour of the strongest component, black where every weight is 0).
"""

from __future__ import annotations

import colorsys
import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from convscope.core.errors import InputError
from convscope.core.results import Result
from convscope.core.seeding import _as_int
from convscope.core.validation import positive_int

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_MAX_ITER", "NMFComponents", "component_colors", "nmf_components"]

#: Iterations of the coordinate-descent solver (scikit-learn's default is 200).
DEFAULT_MAX_ITER = 1000

# Ten distinct colours, most distinguishable first; the first seven are the Okabe-Ito
# colour-blind-safe set (black left out: it means "no component" in argmax colourings).
_PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#882255",  # wine
    "#44AA99",  # teal
    "#999933",  # olive
)


def component_colors(k: int) -> np.ndarray:
    """RGB colours in [0, 1] for ``k`` NMF components, ``k×3`` float64.

    Up to 10 components use a fixed qualitative palette (the first seven are the colour-blind
    safe Okabe-Ito colours); beyond that, ``k`` evenly spaced hues (saturation 0.75, value 0.9).
    """
    k = positive_int(k, "k")
    if k <= len(_PALETTE):
        hexes = _PALETTE[:k]
        return np.array(
            [[int(h[i : i + 2], 16) / 255.0 for i in (1, 3, 5)] for h in hexes], dtype=np.float64
        )
    return np.array([colorsys.hsv_to_rgb(i / k, 0.75, 0.9) for i in range(k)], dtype=np.float64)


@dataclasses.dataclass
class NMFComponents(Result):
    """NMF of the activation vectors of all locations of a set of images.

    Attributes
    ----------
    weights : ndarray
        ``N×H×W×k`` float32 non-negative weights; each component's maximum over all images
        and locations is 1 (0 for a component that is never used).
    components : ndarray
        ``k×D`` float32 component vectors, scaled so that ``weights @ components``
        reconstructs the activations (channel-last).
    colors : ndarray
        ``k×3`` RGB colours in [0, 1].
    scales : ndarray
        ``(k,)`` the factors the raw NMF weights were divided by.
    layer : str or None
        The layer the activations came from.
    k : int
        Number of components.
    seed : int
        ``random_state`` of the factorisation.
    reconstruction_error : float
        :math:`\\lVert A - W H \\rVert_F / \\lVert A \\rVert_F`.
    n_iter : int
        Solver iterations run.
    """

    weights: np.ndarray
    components: np.ndarray
    colors: np.ndarray
    scales: np.ndarray
    layer: str | None
    k: int
    seed: int
    reconstruction_error: float
    n_iter: int

    def colorize(self, mode: Literal["mix", "argmax"] = "mix") -> np.ndarray:
        r"""Paint every location with its components' colours, ``N×H×W×3`` in [0, 1].

        ``"mix"``: :math:`\mathrm{clip}(\sum_k w_k c_k, 0, 1)`; ``"argmax"``: the colour of the
        largest weight, black where all weights are 0.
        """
        w = np.asarray(self.weights, dtype=np.float64)
        colors = np.asarray(self.colors, dtype=np.float64)
        if mode == "mix":
            return np.clip(w @ colors, 0.0, 1.0)
        if mode == "argmax":
            out = colors[np.argmax(w, axis=-1)]
            out[~(w > 0).any(axis=-1)] = 0.0
            return out
        raise InputError(f"mode must be 'mix' or 'argmax', got {mode!r}.")

    def plot(self, images: Tensor | np.ndarray | None = None, **kwargs: Any) -> Figure:
        """Figure of the component maps over the images; see
        :func:`convscope.plots.viewer.nmf_figure` for the options."""
        from convscope.plots.viewer import nmf_figure

        return nmf_figure(self, images, **kwargs)


def _activation_matrix(activations: Tensor | np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    if isinstance(activations, Tensor):
        arr = activations.detach().to(device="cpu", dtype=torch.float64).numpy()
    elif isinstance(activations, np.ndarray):
        if not np.issubdtype(activations.dtype, np.number):
            raise InputError(f"activations must be numeric, got dtype {activations.dtype}.")
        arr = activations.astype(np.float64)
    else:
        raise InputError(
            f"activations must be an N×D×H×W tensor or array, got {type(activations).__name__}."
        )
    if arr.ndim != 4:
        raise InputError(
            f"activations must be N×D×H×W (all images of one layer), got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InputError("activations contain NaN or infinite values.")
    n, d, h, w = arr.shape
    return np.moveaxis(arr, 1, -1).reshape(n * h * w, d), (n, h, w, d)


def nmf_components(
    activations: Tensor | np.ndarray,
    k: int = 4,
    *,
    seed: int = 0,
    max_iter: int = DEFAULT_MAX_ITER,
    negative: Literal["error", "clip"] = "error",
    layer: str | None = None,
) -> NMFComponents:
    r"""Factorise the activations of all locations of all images, :math:`A \approx W H`.

    Scikit-learn's ``NMF`` with its default initialisation and solver, as Lucid's
    ``ChannelReducer`` in Building Blocks (Olah et al. 2018), which the overlay article
    (Fong et al., VISxAI 2021; thesis ch. 6) follows, over the ``(N·H·W)×D`` matrix.

    Parameters
    ----------
    activations : Tensor or ndarray
        ``N×D×H×W`` non-negative activations of one layer (e.g. from
        :func:`convscope.viewer.similarity.layer_activations`).
    k : int, default 4
        Number of components (4 in the article).
    seed : int, default 0
        ``random_state`` of the factorisation.
    max_iter : int, default 1000
        Solver iterations (scikit-learn warns when it has not converged).
    negative : {"error", "clip"}, default "error"
        What to do with negative activations (a pre-ReLU layer): refuse, or set them to 0.
    layer : str, optional
        Layer name, recorded in the result.

    Returns
    -------
    NMFComponents
        Weights ``N×H×W×k`` scaled to maximum 1 per component, the matching components and
        colours, and the relative reconstruction error.

    Raises
    ------
    InputError
        Wrong shape, negative values with ``negative="error"``, all-zero activations, or
        ``k > min(N·H·W, D)``.
    """
    from sklearn.decomposition import NMF

    matrix, (n, h, w, d) = _activation_matrix(activations)
    seed = _as_int(seed)
    k = positive_int(k, "k", hint="The article uses 4.")
    if k > min(matrix.shape):
        raise InputError(
            f"k={k} components cannot be more than min(N·H·W, D) = min({matrix.shape[0]}, "
            f"{d}) = {min(matrix.shape)}; use a smaller k or more images."
        )
    max_iter = positive_int(max_iter, "max_iter")
    if negative not in ("error", "clip"):
        raise InputError(f"negative must be 'error' or 'clip', got {negative!r}.")
    if (matrix < 0).any():
        if negative == "error":
            where = f" of layer {layer!r}" if layer else ""
            raise InputError(
                f"The activations{where} have negative values (min {matrix.min():.4g}), so NMF "
                "is undefined: use the layer after the ReLU (e.g. 'relu3' instead of 'conv3'), "
                "or pass negative='clip' to set negative values to 0."
            )
        matrix = np.maximum(matrix, 0.0)
    norm = float(np.linalg.norm(matrix))
    if norm == 0.0:
        raise InputError(
            "The activations are all zero, so there is nothing to factorise: pick another "
            "layer or other images."
        )
    model = NMF(n_components=int(k), random_state=seed, max_iter=int(max_iter))
    raw_weights = model.fit_transform(matrix)
    raw_components = model.components_
    error = float(np.linalg.norm(matrix - raw_weights @ raw_components)) / norm
    peak = raw_weights.max(axis=0)
    scales = np.where(peak > 0, peak, 1.0)  # an unused component keeps its scale
    weights = (raw_weights / scales).reshape(n, h, w, int(k))
    components = raw_components * scales[:, None]
    return NMFComponents(
        weights=weights.astype(np.float32),
        components=components.astype(np.float32),
        colors=component_colors(int(k)),
        scales=scales.astype(np.float64),
        layer=layer,
        k=int(k),
        seed=seed,
        reconstruction_error=error,
        n_iter=int(model.n_iter_),
    )
