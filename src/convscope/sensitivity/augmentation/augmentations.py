r"""Parameterised image augmentations as inputs of a variance-based sensitivity analysis.

Kharyuk, Matveev & Oseledets ("Exploring specialization and sensitivity of convolutional
neural networks in the context of simultaneous image augmentations") treat every internal
activation :math:`f_{c,h,w}` of a CNN as a function of *sensitivity-analysis variables*: the
inner parameters :math:`\theta_i` of :math:`d` augmentations :math:`g_1, \dots, g_d`, the order
:math:`\sigma \in \Pi(d)` in which they are applied, the class and the data partition. An image
:math:`x` is transformed into

.. math::

    \tilde x = g_{\sigma(d)}^{\gamma_{\sigma(d)}}(\,\cdots g_{\sigma(1)}^{\gamma_{\sigma(1)}}
    (x; \theta_{\sigma(1)}) \cdots; \theta_{\sigma(d)}), \qquad
    g_i^{\gamma}(x; \theta) = \begin{cases} g_i(x; \theta) & \gamma = 1 \\ x & \gamma = 0
    \end{cases},

where the switches :math:`\gamma_i` are always 1 in the independent-variables scheme (Sobol'
indices; parameter-free augmentations there get a switch of their own) and Bernoulli in the
spike-and-slab scheme (Shapley effects), in which the identity parameters :math:`\theta_{i,0}`
make :math:`g_i(\cdot; \theta_{i,0})` the identity.

Every inner parameter is uniform on an interval, :math:`U_C` (continuous), :math:`U_D`
(discrete: sampled continuously and rounded, as the reference code does) or log-uniform. A
:class:`Parameter` maps a unit-cube coordinate :math:`u \in [0, 1]` to its value, so any
design on :math:`[0, 1)^k` (:func:`~convscope.sensitivity.pick_freeze_design`) drives the
augmentations. The two sets of the paper (Appendix Table 1, minus signs restored):

============================  ====================================================================
A1 ``erasing``                rectangle filled with 0: centre row :math:`U_D(H/5, H - H/5)`,
                              centre column :math:`U_D(W/5, W - W/5)` (integer division),
                              area fraction :math:`U_C(0.02, 0.33)`, aspect ratio
                              :math:`\mathrm{LogU}(0.3, 3.3)`
A1 ``sharpness_const``        ``adjust_sharpness`` with factor 1.5 (no parameter)
A1 ``rolling``                circular shift, :math:`U_D(-H/5, H/5)` rows, :math:`U_D(-W/5, W/5)`
                              columns
A1 ``grayscale``              ITU-R 601 luma in 3 channels (no parameter)
A1 ``gaussian_blur``          7×7 Gaussian, :math:`\sigma \sim U_C(0.1, 2)`
A2 ``brightness``             factor :math:`U_C(0.1, 2.5)`
A2 ``contrast``               factor :math:`U_C(0.01, 3.5)`
A2 ``saturation``             factor :math:`U_C(0.01, 3.5)`
A2 ``hue``                    shift :math:`U_C(-0.5, 0.5)` of the HSV hue
A2 ``hflip``                  horizontal flip (no parameter)
A2 ``rotation``               angle :math:`U_C(-10°, 10°)`, black borders cropped, resized back
A2 ``elliptic_local_blur``    Gaussian blur inside an ellipse: angle :math:`U_C(-15°, 15°)`,
                              semi-axes :math:`U_D(10, 32)`, centre shifts :math:`U_D(-32, 32)`
                              pixels for 224-pixel images (relative to the side here)
============================  ====================================================================

Augmented images are rescaled per image and channel to :math:`[0, 1]` before the model
(:func:`minmax_rescale`, the reference pipeline's step; the paper is silent).

Every augmentation works on float m×3×H×W batches in [0, 1] on any device, with one parameter
row per image (:meth:`Augmentation.apply`); :func:`compose` applies a set in a per-image order
(:func:`permutation_from_index`: lexicographic rank of the order, as the reference) with
per-image switches. Where torchvision takes one scalar per call, the operation is vectorised
with per-image factors and checked against torchvision image by image (brightness, contrast,
saturation, hue, Gaussian blur, erasing, rolling); only the rotation loops over images. Unlike
the reference, rotation and elliptic blur stay in float instead of going through uint8 PIL
images. User-defined augmentations subclass :class:`Augmentation` or wrap a function in
:class:`FunctionAugmentation`; :func:`rgb_to_hsv` feeds the single-channel segments of the
paper's third series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

from convscope.core.errors import InputError, suggestion
from convscope.data.filters import gaussian_blur as _gaussian_filter

__all__ = [
    "A1",
    "A2",
    "AUGMENTATIONS",
    "AUGMENTATION_SETS",
    "MAX_PERMUTED",
    "Augmentation",
    "Brightness",
    "Contrast",
    "EllipticLocalBlur",
    "Erasing",
    "FunctionAugmentation",
    "GaussianBlur",
    "Grayscale",
    "HorizontalFlip",
    "Hue",
    "Parameter",
    "ParameterKind",
    "Rolling",
    "Rotation",
    "Saturation",
    "SharpnessConst",
    "augmentation_set",
    "compose",
    "hsv_to_rgb",
    "minmax_rescale",
    "permutation_from_index",
    "rgb_to_hsv",
]

ParameterKind = Literal["continuous", "integer", "log"]

#: The largest number of augmentations a permutation index can address (20! < 2**63).
MAX_PERMUTED = 20

# Relative integer bounds are pixel counts; this absorbs the float error of e.g. 10/224*224.
_PIXEL_TOL = 1e-9


def _relative_pixels(fraction: float, side: int) -> float:
    """``fraction`` of ``side`` as a whole pixel count, floored from the nearer end of [0, side].

    This is the reference's ``side // 5`` rule: ``0.2 -> side // 5``, ``0.8 -> side - side // 5``,
    ``-0.2 -> -(side // 5)``.
    """
    mag = abs(fraction)
    if mag <= 0.5:
        pixels = float(math.floor(mag * side + _PIXEL_TOL))
    else:
        pixels = side - float(math.floor((1.0 - mag) * side + _PIXEL_TOL))
    return math.copysign(pixels, fraction)


@dataclass(frozen=True)
class Parameter:
    r"""One inner parameter of an augmentation and its distribution.

    Parameters
    ----------
    name : str
        Short name, unique within its augmentation (e.g. ``"sigma"``).
    low, high : float
        Bounds of the distribution. With ``relative`` set they are fractions of that image side.
    kind : {"continuous", "integer", "log"}, default "continuous"
        ``"continuous"``: :math:`U_C(\ell, h)`, :math:`\ell + u (h - \ell)`. ``"integer"``:
        :math:`U_D(\ell, h)` sampled continuously and rounded half-to-even (the reference's
        ``int(round(.))``; the two end values get half the weight of the inner ones, as in
        the reference's Saltelli scheme). ``"log"``: log-uniform,
        :math:`\exp(\ln \ell + u(\ln h - \ln \ell))`.
    relative : {None, "height", "width"}, default None
        Bounds are fractions of the image height or width. For integer parameters they are
        whole pixel counts, floored from the nearer end of ``[0, side]`` (so 0.2 and 0.8 give
        ``side // 5`` and ``side - side // 5``, as in the reference code); continuous relative
        bounds are ``fraction * side`` exactly.
    """

    name: str
    low: float
    high: float
    kind: ParameterKind = "continuous"
    relative: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("continuous", "integer", "log"):
            raise InputError(
                f"Parameter {self.name!r}: unknown kind {self.kind!r}; use 'continuous', "
                "'integer' or 'log'."
            )
        if self.relative not in (None, "height", "width"):
            raise InputError(
                f"Parameter {self.name!r}: relative must be None, 'height' or 'width', got "
                f"{self.relative!r}."
            )
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise InputError(
                f"Parameter {self.name!r}: bounds must be finite with low <= high, got "
                f"({self.low}, {self.high})."
            )
        if self.kind == "log" and self.low <= 0:
            raise InputError(
                f"Parameter {self.name!r}: a log-uniform parameter needs low > 0, got {self.low}."
            )

    def bounds(self, height: int, width: int) -> tuple[float, float]:
        """The actual bounds for an image of ``height`` × ``width`` pixels."""
        if self.relative is None:
            return float(self.low), float(self.high)
        side = height if self.relative == "height" else width
        if self.kind == "integer":
            return _relative_pixels(self.low, side), _relative_pixels(self.high, side)
        return self.low * side, self.high * side

    def value(self, u: Tensor, height: int, width: int) -> Tensor:
        """Map unit-cube coordinates ``u`` (any shape) to parameter values (same shape, dtype)."""
        lo, hi = self.bounds(height, width)
        u = u if u.is_floating_point() else u.double()
        if self.kind == "log":
            return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        out = lo + u * (hi - lo)
        return torch.round(out) if self.kind == "integer" else out


class Augmentation:
    """Base class of the augmentations; subclass it for user-defined ones.

    A subclass sets the class (or instance) attributes ``name``, ``label``, ``params`` and
    ``identity`` and implements :meth:`apply`. :class:`FunctionAugmentation` wraps a function.

    Attributes
    ----------
    name : str
        Short name used in variable names, e.g. ``"gaussian_blur"``.
    label : str
        Display label, e.g. ``"Gaus.blur"``.
    params : tuple of Parameter
        Inner parameters, ``()`` for parameter-free augmentations.
    identity : tuple of float
        Parameter values that make the augmentation the identity (``()`` when parameter-free).
    """

    name: str = ""
    label: str = ""
    params: tuple[Parameter, ...] = ()
    identity: tuple[float, ...] = ()

    @property
    def n_params(self) -> int:
        """Number of inner parameters."""
        return len(self.params)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the inner parameters, in column order."""
        return tuple(p.name for p in self.params)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        """Augment ``x`` (m×3×H×W in [0, 1]) with one parameter row of ``theta`` per image.

        ``theta`` is m × ``n_params`` actual values (already mapped by :meth:`sample`). Returns
        m×3×H×W in [0, 1] on ``x``'s device.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement apply(x, theta).")

    def sample(self, u: Tensor, height: int, width: int) -> Tensor:
        """Map an m × ``n_params`` block of unit-cube points to parameter values."""
        if u.ndim != 2 or u.shape[1] != self.n_params:
            raise InputError(
                f"{self.name}: u must have shape (m, {self.n_params}), got {tuple(u.shape)}."
            )
        if not self.params:
            return u.new_zeros((u.shape[0], 0), dtype=u.dtype if u.is_floating_point() else None)
        return torch.stack(
            [p.value(u[:, i], height, width) for i, p in enumerate(self.params)], dim=1
        )

    def identity_theta(
        self, m: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The identity parameters repeated for ``m`` images (m × ``n_params``)."""
        row = torch.tensor(self.identity, device=device, dtype=dtype or torch.float64)
        return row.reshape(1, self.n_params).expand(m, -1).clone()

    def check(self) -> Augmentation:
        """Validate the declared attributes; return ``self``."""
        cls = type(self).__name__
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"{cls}: set a non-empty string `name`.")
        if not all(isinstance(p, Parameter) for p in self.params):
            raise InputError(f"{self.name}: `params` must be a tuple of Parameter objects.")
        if len(self.identity) != len(self.params):
            raise InputError(
                f"{self.name}: `identity` has {len(self.identity)} values for "
                f"{len(self.params)} parameters; give one identity value per parameter."
            )
        names = self.param_names
        if len(set(names)) != len(names):
            raise InputError(f"{self.name}: parameter names {names} are not unique.")
        return self

    def __call__(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        """Validated :meth:`apply`; ``theta=None`` uses the identity parameters."""
        _check_batch(x, "x")
        if theta is None:
            theta = self.identity_theta(x.shape[0], device=x.device)
        _check_theta(self, theta, x.shape[0])
        return self.apply(x, theta.to(x.device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={list(self.param_names)})"


class FunctionAugmentation(Augmentation):
    """A user-defined augmentation from a function.

    Parameters
    ----------
    name : str
        Short name used in variable names.
    fn : callable
        ``fn(x, theta) -> x``. With ``batched=True`` it receives the m×3×H×W batch and the
        m × n_params values; with ``batched=False`` it is called image by image with a
        1×3×H×W image and the parameter row of length n_params.
    params : sequence of Parameter
        Inner parameters.
    identity : sequence of float
        Values making ``fn`` the identity.
    label : str, optional
        Display label (default ``name``).
    batched : bool, default True
        See ``fn``.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[Tensor, Tensor], Tensor],
        params: Sequence[Parameter] = (),
        identity: Sequence[float] = (),
        *,
        label: str | None = None,
        batched: bool = True,
    ) -> None:
        self.name = name
        self.label = label if label is not None else name
        self.params = tuple(params)
        self.identity = tuple(float(v) for v in identity)
        self.fn = fn
        self.batched = batched
        self.check()

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        if self.batched:
            return self.fn(x, theta)
        return torch.cat([self.fn(x[i : i + 1], theta[i]) for i in range(x.shape[0])])


def _per_image(v: Tensor, x: Tensor) -> Tensor:
    """A per-image column as an m×1×1×1 tensor in ``x``'s dtype, for broadcasting."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    # torchvision's _blend: factor * x + (1 - factor) * other, (1 - factor) taken in double.
    f = factor.to(device=x.device, dtype=torch.float64)
    return (x * _per_image(f, x) + _per_image(1.0 - f, x) * other).clamp(0.0, 1.0)


class Erasing(Augmentation):
    r"""Fill a rectangle with a constant (A1.1; torchvision's random erasing with fixed centre).

    With the centre :math:`(c_y, c_x)`, area fraction :math:`s` and aspect ratio :math:`r`:
    :math:`h = \mathrm{round}(\sqrt{HWs\,r})` rows, :math:`w = \mathrm{round}(\sqrt{HWs/r})`
    columns, top-left :math:`(\max(0, c_y - \lfloor h/2\rfloor), \max(0, c_x - \lfloor w/2
    \rfloor))`. As in the reference code, the image is left **unchanged** when the rectangle
    does not fit, i.e. when top + h ≥ H or left + w ≥ W (so the erasing distribution
    is truncated). The reference's ``erase`` names the row centre ``center_x`` but draws it from
    the height range, so row/column roles agree with the names used here.

    Identity: scale 0 (an empty rectangle), ``(0, 0, 0, 1)``.
    """

    name = "erasing"
    label = "Erasing"
    params = (
        Parameter("center_y", 0.2, 0.8, "integer", "height"),
        Parameter("center_x", 0.2, 0.8, "integer", "width"),
        Parameter("scale", 0.02, 0.33),
        Parameter("ratio", 0.3, 3.3, "log"),
    )
    identity = (0.0, 0.0, 0.0, 1.0)

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def rectangles(self, theta: Tensor, height: int, width: int) -> tuple[Tensor, ...]:
        """Per-image ``(top, left, h, w, fits)`` of the rectangles (float64, bool)."""
        t = theta.to(torch.float64)
        cy, cx = torch.round(t[:, 0]), torch.round(t[:, 1])
        area = height * width * t[:, 2]
        hh = torch.round(torch.sqrt(area * t[:, 3]))
        ww = torch.round(torch.sqrt(area / t[:, 3]))
        top = (cy - torch.floor(hh / 2)).clamp_min(0)
        left = (cx - torch.floor(ww / 2)).clamp_min(0)
        fits = (top + hh < height) & (left + ww < width)
        return top, left, hh, ww, fits

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        top, left, hh, ww, fits = self.rectangles(theta.to(x.device), H, W)
        rows = torch.arange(H, device=x.device, dtype=torch.float64)
        cols = torch.arange(W, device=x.device, dtype=torch.float64)
        in_rows = (rows >= top[:, None]) & (rows < (top + hh)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + ww)[:, None])
        mask = fits[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]
        return x.masked_fill(mask[:, None], self.value)


class SharpnessConst(Augmentation):
    """``torchvision`` ``adjust_sharpness`` with a constant factor (A1.2, factor 1.5)."""

    name = "sharpness_const"
    label = "Sharp."

    def __init__(self, factor: float = 1.5) -> None:
        self.factor = float(factor)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return TF.adjust_sharpness(x, self.factor)


class Rolling(Augmentation):
    r"""Circular 2-D shift (A1.3): ``out[r, c] = x[(r - dy) mod H, (c - dx) mod W]``.

    ``torch.roll(x, (dy, dx), dims=(-2, -1))`` per image, vectorised by index arithmetic;
    shifts :math:`U_D(-H/5, H/5)`, :math:`U_D(-W/5, W/5)`. Identity ``(0, 0)``.
    """

    name = "rolling"
    label = "Rolling"
    params = (
        Parameter("shift_y", -0.2, 0.2, "integer", "height"),
        Parameter("shift_x", -0.2, 0.2, "integer", "width"),
    )
    identity = (0.0, 0.0)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        m, c, H, W = x.shape
        shift = torch.round(theta.to(device=x.device, dtype=torch.float64)).long()
        rows = (torch.arange(H, device=x.device) - shift[:, 0:1]).remainder(H)
        cols = (torch.arange(W, device=x.device) - shift[:, 1:2]).remainder(W)
        batch = torch.arange(m, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


class Grayscale(Augmentation):
    """ITU-R 601 luma repeated in 3 channels (A1.4, ``rgb_to_grayscale(x, 3)``)."""

    name = "grayscale"
    label = "Grayscale"

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return TF.rgb_to_grayscale(x, num_output_channels=x.shape[1])


class GaussianBlur(Augmentation):
    r"""``torchvision`` Gaussian blur with a fixed kernel size and per-image σ (A1.5).

    Kernel taps :math:`k_t \propto \exp(-t^2 / 2\sigma^2)`, :math:`t = -3, \dots, 3` for the
    7×7 kernel, normalised, applied separably with reflect padding (``gaussian_blur(x, (7, 7),
    σ)``); σ ~ U(0.1, 2). Identity σ = 0 (a unit impulse).
    """

    name = "gaussian_blur"
    label = "Gaus.blur"
    params = (Parameter("sigma", 0.1, 2.0),)
    identity = (0.0,)

    def __init__(self, kernel_size: int = 7) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be a positive odd integer, got {kernel_size}.")
        self.kernel_size = int(kernel_size)

    def kernels(self, sigma: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Per-image normalised 1-D kernels, m × kernel_size."""
        half = (self.kernel_size - 1) / 2
        t = torch.linspace(-half, half, self.kernel_size, device=sigma.device, dtype=dtype)
        s = sigma.to(dtype)[:, None]
        positive = s > 0
        pdf = torch.exp(-0.5 * (t / torch.where(positive, s, torch.ones_like(s))) ** 2)
        kernel = pdf / pdf.sum(dim=1, keepdim=True)
        impulse = (t == 0).to(dtype).expand_as(kernel)
        return torch.where(positive, kernel, impulse)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        m, c, H, W = x.shape
        k = self.kernel_size
        kernel = self.kernels(theta[:, 0].to(x.device), x.dtype).repeat_interleave(c, dim=0)
        half = k // 2
        if half >= H or half >= W:  # reflect padding needs a larger image
            raise InputError(
                f"gaussian_blur: a {k}×{k} kernel needs images larger than {half} pixels, got "
                f"{H}×{W}; use a smaller kernel_size."
            )
        flat = F.pad(x.reshape(1, m * c, H, W), (half, half, half, half), mode="reflect")
        flat = F.conv2d(flat, kernel.reshape(m * c, 1, k, 1), groups=m * c)
        flat = F.conv2d(flat, kernel.reshape(m * c, 1, 1, k), groups=m * c)
        # exact identity at sigma 0 even where convolutions run in reduced precision (TF32)
        keep = _per_image(theta[:, 0], x) <= 0
        return torch.where(keep, x, flat.reshape(m, c, H, W))


class Brightness(Augmentation):
    """``adjust_brightness``: ``clamp(f·x, 0, 1)``, f ~ U(0.1, 2.5) (A2.1). Identity 1."""

    name = "brightness"
    label = "Bright."
    params = (Parameter("factor", 0.1, 2.5),)
    identity = (1.0,)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return (x * _per_image(theta[:, 0], x)).clamp(0.0, 1.0)


class Contrast(Augmentation):
    """``adjust_contrast``: blend with the mean luma, f ~ U(0.01, 3.5) (A2.2). Identity 1."""

    name = "contrast"
    label = "Contrast"
    params = (Parameter("factor", 0.01, 3.5),)
    identity = (1.0,)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        mean = TF.rgb_to_grayscale(x, num_output_channels=1).mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(x, mean, theta[:, 0])


class Saturation(Augmentation):
    """``adjust_saturation``: blend with the luma image, f ~ U(0.01, 3.5) (A2.3). Identity 1."""

    name = "saturation"
    label = "Satur."
    params = (Parameter("factor", 0.01, 3.5),)
    identity = (1.0,)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return _blend(x, TF.rgb_to_grayscale(x, num_output_channels=1), theta[:, 0])


class Hue(Augmentation):
    r"""``adjust_hue``: HSV hue rotated by :math:`h \mapsto (h + f) \bmod 1`, f ~ U(-0.5, 0.5).

    A2.4. Vectorised through :func:`rgb_to_hsv` / :func:`hsv_to_rgb`. Identity 0 (exactly the
    input; the reference code's identity value 1 is a different but equivalent shift).
    """

    name = "hue"
    label = "Hue"
    params = (Parameter("factor", -0.5, 0.5),)
    identity = (0.0,)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        f = _per_image(theta[:, 0], x)
        hsv = rgb_to_hsv(x)
        hue = (hsv[:, 0:1] + f).remainder(1.0)
        out = hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))
        return torch.where(f == 0, x, out)


class HorizontalFlip(Augmentation):
    """Mirror the columns (A2.5, ``hflip``)."""

    name = "hflip"
    label = "Hflip"

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return TF.horizontal_flip(x)


class Rotation(Augmentation):
    r"""Rotation without expansion, black borders cropped, bilinear resize back (A2.6).

    With :math:`t = |\tan\varphi|` and :math:`k = t / (1 - t^2)`, the reference crops
    :math:`\mathrm{round}(k (W - H t))` rows at the top and the bottom and
    :math:`\mathrm{round}(k (H - W t))` columns at each side, then resizes bilinearly to H×W.
    This removes every black corner but crops about twice as much as needed (for a square image
    at 10° it keeps the central 70 %, a zoom of 1.43), so rotation also zooms; very elongated
    images (aspect ratio ≳ 1 / (2 tan φ)) keep nothing and are rejected. The reference rotates
    uint8 PIL images; here the images stay float.
    The rotation uses nearest-neighbour sampling as the reference (PIL, ``resample=False``);
    ``interpolation="bilinear"`` is an option. φ ~ U(-10°, 10°) (counter-clockwise positive).
    Identity 0. Applied image by image (torchvision's ``rotate`` takes one angle).
    """

    name = "rotation"
    label = "Rotation"
    params = (Parameter("angle", -10.0, 10.0),)
    identity = (0.0,)

    def __init__(self, interpolation: Literal["nearest", "bilinear"] = "nearest") -> None:
        if interpolation not in ("nearest", "bilinear"):
            raise InputError(
                f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}."
            )
        self.interpolation = interpolation

    @staticmethod
    def margins(angle: float, height: int, width: int) -> tuple[int, int]:
        """``(rows, columns)`` cropped at each border after a rotation by ``angle`` degrees."""
        t = abs(math.tan(math.radians(angle)))
        k = t / (1.0 - t * t)
        return round(k * (width - height * t)), round(k * (height - width * t))

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        mode = InterpolationMode(self.interpolation)
        out = []
        for img, angle in zip(x, theta[:, 0].tolist(), strict=True):
            if angle == 0:
                out.append(img[None])
                continue
            mr, mc = self.margins(angle, H, W)
            if not (0 <= mr < H / 2 and 0 <= mc < W / 2):
                raise InputError(
                    f"rotation: angle {angle:.4g}° leaves nothing of a {H}×{W} image after "
                    "cropping the borders (the reference formula over-crops elongated images); "
                    "use smaller angles or a less elongated image."
                )
            rot = TF.rotate(img[None], angle, interpolation=mode, expand=False, fill=0.0)
            crop = rot[..., mr : H - mr, mc : W - mc]
            out.append(
                TF.resize(crop, [H, W], interpolation=InterpolationMode.BILINEAR, antialias=False)
            )
        return torch.cat(out).clamp(0.0, 1.0)


class EllipticLocalBlur(Augmentation):
    r"""Gaussian blur inside a filled ellipse, the rest unchanged (A2.7).

    The ellipse has semi-axes :math:`a` (along its own x axis) and :math:`b`, centre
    :math:`(W{/\!/}2 + s_x, H{/\!/}2 + s_y)` (column, row) and is turned by :math:`\varphi`
    counter-clockwise on screen (OpenCV's ``ellipse`` with angle :math:`-\varphi`, as the
    reference): pixel :math:`(r, c)` is inside iff :math:`(u/a)^2 + (v/b)^2 \le 1` with
    :math:`u = \Delta c \cos\psi + \Delta r \sin\psi`, :math:`v = -\Delta c \sin\psi +
    \Delta r \cos\psi`, :math:`\psi = -\varphi`. The reference's ranges are for 224-pixel
    images (a, b ~ U_D(10, 32), shifts ~ U_D(-32, 32)); here they are fractions (÷224) of the
    width (a, s_x) and height (b, s_y), so a 64-pixel image gets proportionally smaller ellipses.
    The reference swaps H and W in the centre (harmless for square images).

    ``sigma`` is in pixels: 2 as in the paper; the reference code passes 3 (a PIL radius).
    The blur is :func:`convscope.data.filters.gaussian_blur` with replicate padding, in float
    (the reference blurs uint8 PIL images). Identity ``a = b = 0``: an empty ellipse (OpenCV
    would still paint the centre pixel).
    """

    name = "elliptic_local_blur"
    label = "El.loc.blur"
    params = (
        Parameter("a", 10 / 224, 32 / 224, "integer", "width"),
        Parameter("b", 10 / 224, 32 / 224, "integer", "height"),
        Parameter("shift_x", -32 / 224, 32 / 224, "integer", "width"),
        Parameter("shift_y", -32 / 224, 32 / 224, "integer", "height"),
        Parameter("angle", -15.0, 15.0),
    )
    identity = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __init__(self, sigma: float = 2.0) -> None:
        if not sigma > 0:
            raise InputError(f"sigma must be positive, got {sigma}.")
        self.sigma = float(sigma)

    def masks(self, theta: Tensor, height: int, width: int) -> Tensor:
        """Boolean m×H×W masks of the filled ellipses."""
        t = theta.to(torch.float64)
        a, b = torch.round(t[:, 0])[:, None, None], torch.round(t[:, 1])[:, None, None]
        cx = width // 2 + torch.round(t[:, 2])[:, None, None]
        cy = height // 2 + torch.round(t[:, 3])[:, None, None]
        psi = torch.deg2rad(-t[:, 4])[:, None, None]
        rows = torch.arange(height, device=t.device, dtype=torch.float64)[None, :, None]
        cols = torch.arange(width, device=t.device, dtype=torch.float64)[None, None, :]
        dc, dr = cols - cx, rows - cy
        u = dc * torch.cos(psi) + dr * torch.sin(psi)
        v = -dc * torch.sin(psi) + dr * torch.cos(psi)
        ok = (a > 0) & (b > 0)
        one = torch.ones_like(a)
        inside = (u / torch.where(ok, a, one)) ** 2 + (v / torch.where(ok, b, one)) ** 2 <= 1
        return inside & ok

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        mask = self.masks(theta.to(x.device), H, W)[:, None]
        blurred = _gaussian_filter(x, self.sigma, padding_mode="replicate")
        return torch.where(mask, blurred, x)


#: The five augmentations of set A1, in the paper's order.
A1: list[Augmentation] = [Erasing(), SharpnessConst(), Rolling(), Grayscale(), GaussianBlur()]
#: The seven augmentations of set A2, in the paper's order.
A2: list[Augmentation] = [
    Brightness(),
    Contrast(),
    Saturation(),
    Hue(),
    HorizontalFlip(),
    Rotation(),
    EllipticLocalBlur(),
]
#: The paper's augmentation sets by name.
AUGMENTATION_SETS: dict[str, list[Augmentation]] = {"A1": A1, "A2": A2}
#: Every built-in augmentation by name.
AUGMENTATIONS: Mapping[str, Augmentation] = {aug.name: aug for aug in (*A1, *A2)}


def augmentation_set(spec: str | Sequence[Augmentation | str]) -> list[Augmentation]:
    """Resolve an augmentation set.

    Parameters
    ----------
    spec : str or sequence of (Augmentation or str)
        ``"A1"``, ``"A2"``, one augmentation name, or a sequence of names of built-in
        augmentations (:data:`AUGMENTATIONS`) and :class:`Augmentation` objects.

    Returns
    -------
    list of Augmentation
        A new list (the built-in objects are shared; they hold no state).

    Raises
    ------
    InputError
        Unknown names (the message lists the valid ones), an empty set, duplicate names or an
        object that is not an :class:`Augmentation`.
    """
    valid = f"sets {sorted(AUGMENTATION_SETS)} or augmentations {list(AUGMENTATIONS)}"
    if isinstance(spec, str):
        if spec in AUGMENTATION_SETS:
            return list(AUGMENTATION_SETS[spec])
        spec = [spec]
    if not isinstance(spec, Sequence) or len(spec) == 0:
        raise InputError(f"Give a non-empty augmentation set: one of the {valid}.")
    out: list[Augmentation] = []
    for item in spec:
        if isinstance(item, str):
            if item not in AUGMENTATIONS:
                hint = suggestion(item, [*AUGMENTATION_SETS, *AUGMENTATIONS])
                raise InputError(f"Unknown augmentation {item!r}.{hint} Valid: {valid}.")
            out.append(AUGMENTATIONS[item])
        elif isinstance(item, Augmentation):
            out.append(item.check())
        else:
            raise InputError(
                f"Augmentations must be names or Augmentation objects, got "
                f"{type(item).__name__}. Valid names: {valid}."
            )
    names = [aug.name for aug in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"Augmentation names must be unique in a set; repeated: {dup}.")
    return out


def permutation_from_index(index: Tensor, d: int) -> Tensor:
    r"""Orders of ``d`` items from their lexicographic ranks (factorial number system).

    The rank :math:`k = \sum_{i=0}^{d-1} c_i (d-1-i)!` with digits :math:`0 \le c_i \le d-1-i`
    picks, at step :math:`i`, the :math:`c_i`-th smallest item not used yet (Lehmer code).
    Index 0 is the identity order, :math:`d! - 1` the reversed one.

    Parameters
    ----------
    index : Tensor
        Ranks in ``[0, d!)``, shape (m,); floating values are floored (``floor(u · d!)``).
    d : int
        Number of items, 1 ≤ d ≤ 20.

    Returns
    -------
    Tensor
        (m, d) int64 on ``index``'s device; row i applies ``order[i, 0]`` first.
    """
    if not 1 <= d <= MAX_PERMUTED:
        raise InputError(f"d must be in [1, {MAX_PERMUTED}], got {d}.")
    if index.ndim != 1:
        raise InputError(f"index must be 1-D (m,), got shape {tuple(index.shape)}.")
    idx = torch.floor(index).long() if index.is_floating_point() else index.long()
    n_orders = math.factorial(d)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_orders):
        raise InputError(
            f"Permutation indices must lie in [0, {d}!) = [0, {n_orders}), got values in "
            f"[{int(idx.min())}, {int(idx.max())}]."
        )
    m = idx.shape[0]
    available = torch.ones(m, d, dtype=torch.bool, device=idx.device)
    rows = torch.arange(m, device=idx.device)
    order = torch.empty(m, d, dtype=torch.long, device=idx.device)
    for i in range(d):
        base = math.factorial(d - 1 - i)
        digit, idx = idx // base, idx % base
        # the digit-th still-available item: where the running count of available items hits it
        hit = available & (available.long().cumsum(dim=1) == (digit + 1)[:, None])
        chosen = hit.long().argmax(dim=1)
        order[:, i] = chosen
        available[rows, chosen] = False
    return order


def compose(
    x: Tensor,
    augmentations: Sequence[Augmentation],
    thetas: Sequence[Tensor | None],
    order: Tensor,
    active: Tensor | None = None,
) -> Tensor:
    r"""Apply ``d`` augmentations in a per-image order, with per-image switches and parameters.

    Image i becomes :math:`g_{o_{d-1}}(\cdots g_{o_0}(x_i))` with :math:`o = ` ``order[i]``,
    where augmentation j is skipped (identity) when ``active[i, j]`` is False.

    Parameters
    ----------
    x : Tensor
        m×3×H×W images in [0, 1].
    augmentations : sequence of Augmentation
        The d augmentations.
    thetas : sequence of Tensor
        ``thetas[j]``: m × ``augmentations[j].n_params`` parameter values (``None``: the
        identity parameters, convenient for parameter-free augmentations).
    order : Tensor
        (m, d) integer permutations of ``0..d-1``; ``augmentations[order[i, 0]]`` comes first.
    active : Tensor, optional
        (m, d) bool switches indexed by augmentation (column j is ``augmentations[j]``, not a
        position in the order). ``None``: all on.

    Returns
    -------
    Tensor
        m×3×H×W on ``x``'s device; ``x`` is not modified.
    """
    _check_batch(x, "x")
    m, d = x.shape[0], len(augmentations)
    if len(thetas) != d:
        raise InputError(f"Give one theta per augmentation: {d} augmentations, {len(thetas)}.")
    values = [
        aug.identity_theta(m, device=x.device) if theta is None else theta
        for aug, theta in zip(augmentations, thetas, strict=True)
    ]
    for aug, theta in zip(augmentations, values, strict=True):
        _check_theta(aug, theta, m)
    if tuple(order.shape) != (m, d) or order.is_floating_point():
        raise InputError(
            f"order must be an integer ({m}, {d}) tensor of permutations, got shape "
            f"{tuple(order.shape)} and dtype {order.dtype}; see permutation_from_index."
        )
    # One transfer of the small index tensors; the per-step row selection is then host-side.
    order_cpu = order.detach().long().cpu()
    if not torch.equal(order_cpu.sort(dim=1).values, torch.arange(d).expand(m, d)):
        raise InputError(f"Every row of order must be a permutation of 0..{d - 1}.")
    if active is None:
        active_cpu = torch.ones(m, d, dtype=torch.bool)
    elif tuple(active.shape) != (m, d) or active.dtype != torch.bool:
        raise InputError(
            f"active must be a bool ({m}, {d}) tensor of switches, got shape "
            f"{tuple(active.shape)} and dtype {active.dtype}."
        )
    else:
        active_cpu = active.detach().cpu()
    out = x
    for step in range(d):
        for j, aug in enumerate(augmentations):
            rows = ((order_cpu[:, step] == j) & active_cpu[:, j]).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            theta = values[j].to(x.device)
            if rows.numel() == m:
                out = aug.apply(out, theta)
                continue
            idx = rows.to(x.device)
            sub = aug.apply(out.index_select(0, idx), theta.index_select(0, idx))
            out = out.index_copy(0, idx, sub)
    return out


def minmax_rescale(x: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Rescale each image channel to [0, 1] over H×W (the reference pipeline's step).

    :math:`y = x - \min x`, then :math:`y / \max y` where :math:`\max y \ge \varepsilon`; a
    channel with a range below :math:`\varepsilon` is only shifted (so a constant channel
    becomes 0), exactly as the reference ``img_normalize`` (the paper is silent).

    Parameters
    ----------
    x : Tensor
        (..., H, W), typically m×3×H×W.
    eps : float, default 1e-6
        Smallest range that is stretched.
    """
    if x.ndim < 2:
        raise InputError(f"minmax_rescale expects (..., H, W), got shape {tuple(x.shape)}.")
    y = x - x.amin(dim=(-2, -1), keepdim=True)
    top = y.amax(dim=(-2, -1), keepdim=True)
    return y / torch.where(top < eps, torch.ones_like(top), top)


def rgb_to_hsv(x: Tensor, eps: float = 1e-20) -> Tensor:
    r"""HSV channels of RGB images in [0, 1], all three in [0, 1] (hue ÷ 360°).

    :math:`V = \max`, :math:`S = (\max - \min) / (\max + \varepsilon)`, and with
    :math:`\Delta = \max - \min > 0` the hexcone hue :math:`H = \frac{1}{6}((g - b)/\Delta \bmod
    6)` if :math:`\max = r`, :math:`\frac{1}{6}((b - r)/\Delta + 2)` if :math:`\max = g`,
    :math:`\frac{1}{6}((r - g)/\Delta + 4)` otherwise; H = 0 on grey pixels (``colorsys``'s
    convention). The reference code (series 3) computes the same hue from the arg-min
    channel with :math:`\Delta + \varepsilon`, which leaves grey pixels at an arbitrary hue and
    black pixels at S = 1; here they get H = S = 0.

    Parameters
    ----------
    x : Tensor
        N×3×H×W RGB.
    eps : float, default 1e-20
        Guards the division of S.

    Returns
    -------
    Tensor
        N×3×H×W with channels (H, S, V).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"rgb_to_hsv expects N×3×H×W RGB images, got shape {tuple(x.shape)}.")
    r, g, b = x.unbind(dim=1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    grey = delta <= 0
    safe = torch.where(grey, torch.ones_like(delta), delta)
    hue = torch.where(
        maxc == r,
        ((g - b) / safe).remainder(6.0),
        torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(grey, torch.zeros_like(hue), hue / 6.0)
    sat = delta / (maxc + eps)
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    r"""RGB from HSV channels in [0, 1] (inverse of :func:`rgb_to_hsv`).

    Channel :math:`n \in \{5, 3, 1\}` (r, g, b): with :math:`k = (n + 6H) \bmod 6`, the value is
    :math:`V - VS \max(0, \min(k, 4 - k, 1))`.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"hsv_to_rgb expects N×3×H×W HSV images, got shape {tuple(x.shape)}.")
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).reshape(1, 3, 1, 1)
    k = (n + 6.0 * h).remainder(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return (v - v * s * ramp).clamp(0.0, 1.0)


def _check_batch(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(
            f"{name} must be a floating m×3×H×W image batch in [0, 1], got {shape}; add a "
            f"batch dimension with {name}.unsqueeze(0) for one image."
        )


def _check_theta(aug: Augmentation, theta: Tensor, m: int) -> None:
    if not isinstance(theta, Tensor) or tuple(theta.shape) != (m, aug.n_params):
        shape = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
        raise InputError(
            f"{aug.name}: theta must have shape ({m}, {aug.n_params}) (one row of "
            f"{list(aug.param_names)} per image), got {shape}."
        )
