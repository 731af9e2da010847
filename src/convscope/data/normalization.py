"""Input normalisation carried by the model, and validation of image batches.

convscope keeps images in ``[0, 1]`` everywhere (perturbations, baselines, plots) and lets the
model carry its own normalisation. :func:`with_normalization` wraps a model that expects
normalised inputs into a :class:`NormalizedModel` that takes ``[0, 1]`` images::

    model = with_normalization(torchvision.models.resnet18(weights=...).eval())
    logits = model(images)  # images: N×3×H×W in [0, 1]

The wrapper has two submodules, ``normalize`` and ``model``, so the wrapped model's layer
``"layer3"`` is named ``"model.layer3"`` in ``wrapper.named_modules()``. convscope's layer
resolver accepts both spellings.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.model_info import IMAGENET_MEAN, IMAGENET_STD, model_info
from convscope.core.validation import check_images

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "NormalizedModel",
    "check_images",
    "normalization_mean",
    "with_normalization",
]


def _as_floats(values: Sequence[float] | Tensor, name: str) -> tuple[float, ...]:
    if isinstance(values, Tensor):
        if values.numel() == 0 or (values.ndim > 1 and values.squeeze().ndim > 1):
            raise InputError(
                f"{name} must be a 1-D sequence of per-channel values, got a tensor of shape "
                f"{tuple(values.shape)}. Pass e.g. {name}=(0.5, 0.5, 0.5)."
            )
        return tuple(float(v) for v in values.detach().reshape(-1).tolist())
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputError(
            f"{name} must be a sequence of per-channel floats, got {values!r}. Pass e.g. "
            f"{name}=(0.5, 0.5, 0.5)."
        )
    out: list[float] = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise InputError(
                f"{name} must contain numbers, got {values!r}. Pass e.g. {name}=(0.5, 0.5, 0.5)."
            ) from None
    return tuple(out)


def _check_mean_std(
    mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    m = _as_floats(mean, "mean")
    s = _as_floats(std, "std")
    if not m:
        raise InputError("mean is empty. Pass one value per channel, e.g. mean=IMAGENET_MEAN.")
    if len(m) != len(s):
        raise InputError(
            f"mean has {len(m)} values but std has {len(s)}; pass one mean and one std per channel."
        )
    if not all(math.isfinite(v) for v in m + s):
        raise InputError(f"mean and std must be finite, got mean={m}, std={s}.")
    if any(v <= 0 for v in s):
        raise InputError(
            f"std must be positive (it divides the input), got std={s}. Use 1.0 for a channel "
            "that should not be scaled."
        )
    if any(abs(v) > 1.0 for v in m) and all(v >= 1.0 for v in s):
        warnings.warn(
            f"mean={m}, std={s} look like 0-255 pixel units, but convscope images are in [0, 1]. "
            "Divide mean and std by 255.",
            UserWarning,
            stacklevel=3,
        )
    return m, s


class Normalize(nn.Module):
    """Per-channel normalisation ``(x - mean) / std`` as a module.

    Parameters
    ----------
    mean : sequence of float or torch.Tensor, default IMAGENET_MEAN
        Per-channel mean, in the units of the input (``[0, 1]`` for convscope images).
    std : sequence of float or torch.Tensor, default IMAGENET_STD
        Per-channel standard deviation, all positive.

    Attributes
    ----------
    mean, std : torch.Tensor
        Buffers of shape ``1×C×1×1`` (float32 unless the module is converted); they move with
        ``.to(device)`` and are saved in the ``state_dict``.

    Raises
    ------
    InputError
        ``mean`` and ``std`` have different lengths, are empty, non-finite, or ``std <= 0``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        mean: Sequence[float] | Tensor = IMAGENET_MEAN,
        std: Sequence[float] | Tensor = IMAGENET_STD,
    ) -> None:
        super().__init__()
        m, s = _check_mean_std(mean, std)
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def channels(self) -> int:
        """Number of channels the module normalises."""
        return int(self.mean.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        """Return ``(x - mean) / std`` for an ``N×C×H×W`` batch.

        Parameters
        ----------
        x : torch.Tensor
            ``N×C×H×W`` batch with ``C == self.channels``.

        Returns
        -------
        torch.Tensor
            The normalised batch, same shape.
        """
        # the check is skipped under torch.fx symbolic tracing, where x is a Proxy
        if isinstance(x, Tensor) and (x.ndim != 4 or x.shape[1] != self.channels):
            hint = " Add the batch dimension with x.unsqueeze(0)." if x.ndim == 3 else ""
            raise InputError(
                f"Normalize expects an N×{self.channels}×H×W batch, got shape {tuple(x.shape)}."
                f"{hint}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the mean and std in ``repr(module)``."""
        mean = tuple(round(v, 4) for v in self.mean.detach().reshape(-1).tolist())
        std = tuple(round(v, 4) for v in self.std.detach().reshape(-1).tolist())
        return f"mean={mean}, std={std}"


class NormalizedModel(nn.Module):
    """A model that takes ``[0, 1]`` images and normalises them itself.

    ``forward(x) = model(normalize(x))``. The two parts are the submodules ``normalize`` and
    ``model``; a layer ``"layer3"`` of the wrapped model is therefore ``"model.layer3"`` here
    (convscope's layer resolver accepts ``"layer3"`` as well).

    Parameters
    ----------
    normalize : Normalize
        The normalisation applied first.
    model : torch.nn.Module
        The model expecting normalised inputs.

    See Also
    --------
    with_normalization : build one, matching the model's device, dtype and mode.
    """

    def __init__(self, normalize: Normalize, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(normalize, nn.Module):
            raise InputError(
                f"normalize must be a Normalize module, got {type(normalize).__name__}."
            )
        if not isinstance(model, nn.Module):
            raise InputError(
                f"model must be a torch.nn.Module, got {type(model).__name__}. Wrap functions in "
                "an nn.Module."
            )
        self.normalize = normalize
        self.model = model

    def forward(self, x: Tensor) -> Any:
        """Normalise ``x`` and run the wrapped model.

        Parameters
        ----------
        x : torch.Tensor
            ``N×C×H×W`` batch of images in ``[0, 1]``.

        Returns
        -------
        Any
            The wrapped model's output.

        Notes
        -----
        The single-argument signature keeps the wrapper traceable by ``torch.fx`` (and so
        usable with ``torchvision.models.feature_extraction``); call ``wrapper.model`` directly
        for models that need extra arguments.
        """
        return self.model(self.normalize(x))


def with_normalization(
    model: nn.Module,
    mean: Sequence[float] | Tensor = IMAGENET_MEAN,
    std: Sequence[float] | Tensor = IMAGENET_STD,
) -> NormalizedModel:
    """Wrap ``model`` so that it takes ``[0, 1]`` images.

    Parameters
    ----------
    model : torch.nn.Module
        A model expecting inputs normalised with ``mean`` and ``std``.
    mean : sequence of float or torch.Tensor, default IMAGENET_MEAN
        Per-channel mean in ``[0, 1]`` units.
    std : sequence of float or torch.Tensor, default IMAGENET_STD
        Per-channel standard deviation in ``[0, 1]`` units, all positive.

    Returns
    -------
    NormalizedModel
        ``forward(x) = model((x - mean) / std)``. It is in the same train/eval mode as ``model``
        (submodule modes are left untouched) and its normalisation buffers are on the device and
        floating dtype of ``model``'s first parameter (first buffer if it has no parameters,
        else CPU float32). Layer names gain a ``"model."`` prefix.

    Raises
    ------
    InputError
        ``model`` is not a module or already a :class:`NormalizedModel`, or ``mean``/``std`` are
        invalid (different lengths, empty, non-finite, ``std <= 0``).

    Warns
    -----
    UserWarning
        ``mean``/``std`` look like 0-255 pixel units.

    Examples
    --------
    >>> net = with_normalization(torch.nn.Conv2d(3, 8, 3))
    >>> net(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 8, 14, 14])
    """
    if isinstance(model, NormalizedModel):
        raise InputError(
            "The model is already a NormalizedModel; wrapping it again would normalise twice. "
            "Use it as is, or wrap its inner model: with_normalization(model.model, mean, std)."
        )
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model must be a torch.nn.Module, got {type(model).__name__}. Wrap functions in an "
            "nn.Module."
        )
    normalize = Normalize(mean, std)
    device, dtype = model_device(model), model_dtype(model)
    normalize = normalize.to(device=device, dtype=dtype)
    wrapped = NormalizedModel(normalize, model)
    # set the flags directly: .train(mode) would recurse and overwrite the submodules' modes
    wrapped.training = model.training
    normalize.training = model.training
    return wrapped


def normalization_mean(model: nn.Module | None, *, declared: bool = True) -> Tensor | None:
    """The per-channel colour ``model`` maps to 0: its normalisation mean, or None.

    This is the "mean colour" every method pads or fills with (extremal and meaningful
    perturbation, the deletion/insertion ``"mean"`` substrate, region Sobol's ``"scale"``
    baseline), so that they all agree on one model.

    Parameters
    ----------
    model : torch.nn.Module or None
        Any model (None gives None).
    declared : bool, default True
        Fall back to the mean declared in ``convscope_info`` when the model has no
        :class:`Normalize` module. The deletion/insertion substrate and region Sobol' pass
        False: a model loaded with ``load_model(..., normalize=False)`` takes inputs that are
        already normalised, so its zero is 0, not the declared mean.

    Returns
    -------
    torch.Tensor or None
        A detached ``1×C×1×1`` tensor: the ``mean`` of the first :class:`Normalize` among
        ``model.modules()`` (a model wrapped by :func:`with_normalization`, as
        :func:`convscope.load_model` returns them), on its device and dtype; else the ``mean``
        declared in the model's ``convscope_info`` (:func:`convscope.core.model_info.model_info`)
        as float64 on CPU, for a model that normalises without a :class:`Normalize` module;
        else None (no normalisation known: callers use their documented default).
    """
    if model is None:
        return None
    for module in model.modules():
        if isinstance(module, Normalize):
            return module.mean.detach().reshape(1, -1, 1, 1)
    info = model_info(model) if declared else None
    if info is not None and info.mean:
        return torch.tensor(info.mean, dtype=torch.float64).view(1, -1, 1, 1)
    return None
