r"""Standalone network segments fed single HSV channels (the paper's third series).

Kharyuk, Matveev & Oseledets cut the network between neighbouring checkpoints and analyse each
piece on its own (paper Sec. 2.5.3): a *segment* :math:`s = m_j \circ \dots \circ m_i` of
consecutive modules receives, instead of the activations of the preceding layers, one HSV
channel of the image repeated over the :math:`c_\text{in}` input channels of its first
convolution,

.. math::

    \tilde s_c(x) = P_U\, s\bigl(\underbrace{[h_c(x), \dots, h_c(x)]}_{c_\text{in}}\bigr),
    \qquad c \in \{H, S, V\},

where :math:`h(x) = (H, S, V)` is
:func:`~convscope.sensitivity.augmentation.augmentations.rgb_to_hsv`
(all three in [0, 1], hue ÷ 360°) and :math:`P_U` keeps the selected output units (the
paper's manually selected, most sensitive channels). The same variance-based analysis
(:func:`~convscope.sensitivity.augmentation_sensitivity`) then runs on
:math:`\tilde s_c` as on the intact network: augmentations act on the RGB image *before* the
HSV conversion, as in the reference code.

* :func:`segment` — the children ``first..last`` of one parent container as an
  ``nn.Sequential`` sharing the model's modules. This assumes the parent runs its children in
  registration order (``nn.Sequential``, torchvision's ``AlexNet.features``, ``ResNet``'s
  ``conv1 … layer4``); the assumption is checked on a probe input against the model's own
  activations (forward hooks), and a parent that does something else between or instead
  (ResNet's ``flatten`` before ``fc``, a skip connection across children, a different order)
  is refused with a clear error.
* :class:`SingleChannelSegment` — :math:`\tilde s_c` as an ``nn.Module``; its output passes
  through the submodule ``output`` (an identity), so ``checkpoints=["output"]`` names it.
* :func:`first_conv_in_channels` — :math:`c_\text{in}` of the first convolution.

Segments take raw HSV values; the normalisation of the intact model (e.g. the wrapper's
``normalize``) is not part of any segment, as in the reference code. Segments spanning
several parents (AlexNet's ``features.10–12`` + ``avgpool``) are built by the user as
``nn.Sequential(segment(m, "features.10", "features.12"), m.avgpool)``.

Reference: V. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity of
convolutional neural networks in the context of simultaneous image augmentations" (Fig. 5,
Figures S7.7).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.layers import resolve_layer
from convscope.core.state import inference_state
from convscope.sensitivity.augmentation.augmentations import rgb_to_hsv

__all__ = [
    "HSV_CHANNELS",
    "SingleChannelSegment",
    "first_conv_in_channels",
    "multiplex_channel",
    "segment",
]

HSVChannel = Literal["H", "S", "V"]
#: The HSV channels by name, in the order of :func:`rgb_to_hsv`.
HSV_CHANNELS: tuple[str, ...] = ("H", "S", "V")


def _qualified_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module and name:
            return name
    raise InputError("The module is not a submodule of the model.")  # resolve_layer prevents it


def _parent(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    parent_name = name.rpartition(".")[0]
    return parent_name, (resolve_layer(model, parent_name) if parent_name else model)


def segment(
    model: nn.Module,
    first: str,
    last: str,
    *,
    example: Tensor | None = None,
    check: bool = True,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> nn.Sequential:
    """The consecutive children ``first..last`` (inclusive) of one parent, as a module.

    Parameters
    ----------
    model : nn.Module
        The intact network.
    first, last : str
        Dotted names of the first and last module (``"features.3"``, ``"layer1"``; a
        :func:`~convscope.data.with_normalization` wrapper's ``model.`` prefix may be left
        out). Both must be children of the same parent, ``first`` registered no later than
        ``last``.
    example : Tensor, optional
        Input of ``model`` for the check, default two seeded random 3×224×224 images in
        [0, 1]; pass one of the right size for models that need another.
    check : bool, default True
        Run ``model(example)``, record the input of ``first`` and the output of ``last``
        with hooks, and require ``segment(input) ≈ output`` (``torch.allclose`` with
        ``rtol``, ``atol``). This catches parents that do not simply chain their children.
    rtol, atol : float
        Tolerances of the check.

    Returns
    -------
    nn.Sequential
        The children under their own names (``"layer1"``, ``"3"``), shared with ``model``
        (no copy: the segment's parameters are the model's).

    Raises
    ------
    InputError
        ``first`` and ``last`` have different parents or are in the wrong order, or the
        check fails (the parent does more than chaining its children in order).
    LayerNotFoundError
        A name is not a module of ``model``.
    """
    first_name = _qualified_name(model, resolve_layer(model, first))
    last_name = _qualified_name(model, resolve_layer(model, last))
    parent_first, parent = _parent(model, first_name)
    parent_last, _ = _parent(model, last_name)
    if parent_first != parent_last:
        raise InputError(
            f"{first!r} and {last!r} are not children of the same module "
            f"({parent_first or '<model>'!r} vs {parent_last or '<model>'!r}). A segment is a "
            "run of consecutive "
            "children of one container; chain segments of different parents with "
            "nn.Sequential(...)."
        )
    children = list(parent.named_children())
    keys = [k for k, _ in children]
    i, j = keys.index(first_name.rpartition(".")[2]), keys.index(last_name.rpartition(".")[2])
    if i > j:
        raise InputError(
            f"{first!r} is registered after {last!r} in {parent_first or 'the model'!r} "
            f"(children: {keys}); pass them as first={last!r}, last={first!r}."
        )
    seg = nn.Sequential(OrderedDict(children[i : j + 1]))
    if check:
        _check_segment(model, seg, first_name, last_name, example, rtol, atol)
    return seg


def _check_segment(
    model: nn.Module,
    seg: nn.Sequential,
    first: str,
    last: str,
    example: Tensor | None,
    rtol: float,
    atol: float,
) -> None:
    device, dtype = model_device(model), model_dtype(model)
    if example is None:
        gen = torch.Generator().manual_seed(0)
        example = torch.rand(2, 3, 224, 224, generator=gen)
    if not isinstance(example, Tensor):
        raise InputError(f"example must be a tensor input of the model, got {type(example)}.")
    seen: dict[str, Tensor] = {}

    def grab_input(_m: nn.Module, args: tuple[Any, ...]) -> None:
        if "in" not in seen:
            if len(args) != 1 or not isinstance(args[0], Tensor):
                raise InputError(
                    f"{first!r} does not take a single tensor; it cannot start a segment."
                )
            seen["in"] = args[0].detach().clone()  # later in-place modules must not alter it

    def grab_output(_m: nn.Module, _args: Any, out: Any) -> None:
        if isinstance(out, Tensor) and "out" not in seen:
            seen["out"] = out.detach().clone()

    handles = [
        resolve_layer(model, first).register_forward_pre_hook(grab_input),
        resolve_layer(model, last).register_forward_hook(grab_output),
    ]
    try:
        with inference_state(model), torch.no_grad():
            try:
                model(example.to(device=device, dtype=dtype))
            except RuntimeError as exc:
                raise InputError(
                    f"The model fails on the probe input of shape {tuple(example.shape)} "
                    f"({exc}); pass example= with an input the model accepts, or check=False."
                ) from exc
            if "in" not in seen or "out" not in seen:
                raise InputError(
                    f"{first!r} or {last!r} did not run in the model's forward pass; a segment "
                    "needs modules on the forward path."
                )
            try:
                got = seg(seen["in"].clone())
            except RuntimeError as exc:
                got = exc
    finally:
        for h in handles:
            h.remove()
    want = seen["out"]
    if isinstance(got, RuntimeError) or got.shape != want.shape:
        detail = str(got) if isinstance(got, RuntimeError) else f"shape {tuple(got.shape)}"
        raise InputError(
            f"The children {first!r}..{last!r} chained in registration order do not reproduce "
            f"the model's output of {last!r} ({detail} vs {tuple(want.shape)}): its parent "
            "runs them differently (another order, a reshape or skip connection between them). "
            "Choose first/last inside a plain sequential part, or build the segment by hand."
        )
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        err = float((got - want).abs().max())
        raise InputError(
            f"The children {first!r}..{last!r} chained in registration order do not reproduce "
            f"the model's output of {last!r} (max abs difference {err:.3g}): its parent runs "
            "them differently (another order, an extra operation or skip connection between "
            "them). Choose first/last inside a plain sequential part, or build the segment by "
            "hand."
        )


def first_conv_in_channels(module: nn.Module) -> int:
    """Input channels :math:`c_\\text{in}` of the first ``nn.Conv2d`` of ``module``.

    "First" is the order of ``module.modules()`` (registration order), which is the order of
    execution for sequential segments.

    Raises
    ------
    InputError
        ``module`` has no 2-D convolution.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    raise InputError(
        f"{type(module).__name__} has no nn.Conv2d, so its input channel count is unknown; "
        "pass in_channels explicitly."
    )


def _channel_index(channel: str) -> int:
    if not isinstance(channel, str) or channel.upper() not in HSV_CHANNELS:
        raise InputError(f"channel must be one of {HSV_CHANNELS}, got {channel!r}.")
    return HSV_CHANNELS.index(channel.upper())


def multiplex_channel(x: Tensor, channel: HSVChannel, in_channels: int) -> Tensor:
    """One HSV channel of RGB images repeated ``in_channels`` times.

    Parameters
    ----------
    x : Tensor
        ``N×3×H×W`` RGB images in [0, 1].
    channel : {"H", "S", "V"}
        The HSV channel (all in [0, 1], hue ÷ 360°).
    in_channels : int
        Number of copies :math:`c_\\text{in}`.

    Returns
    -------
    Tensor
        ``N×in_channels×H×W`` (contiguous, so in-place first layers are safe).
    """
    c = _channel_index(channel)
    if isinstance(in_channels, bool) or not isinstance(in_channels, (int, np.integer)):
        raise InputError(f"in_channels must be a positive int, got {in_channels!r}.")
    if in_channels < 1:
        raise InputError(f"in_channels must be a positive int, got {in_channels!r}.")
    hsv = rgb_to_hsv(x)
    return hsv[:, c : c + 1].expand(-1, int(in_channels), -1, -1).contiguous()


class SingleChannelSegment(nn.Module):
    r"""A segment fed one HSV channel: :math:`P_U\, s([h_c(x)]^{c_\text{in}})`.

    Parameters
    ----------
    segment : nn.Module
        The segment :math:`s` (e.g. from :func:`segment`); stored as the submodule
        ``segment`` (its children keep their names: ``"segment.layer1"``).
    channel : {"H", "S", "V"}
        The HSV channel fed to every input channel.
    in_channels : int, optional
        :math:`c_\text{in}`; default :func:`first_conv_in_channels` of ``segment``.
    units : sequence of int, optional
        Output channels (dim 1) kept, in the given order; None keeps all.

    Notes
    -----
    ``forward`` takes ``N×3×H×W`` RGB images in [0, 1] and returns the segment's output
    (units selected) through the identity submodule ``output``, so
    ``augmentation_sensitivity(SingleChannelSegment(...), images, labels, ["output"])``
    analyses exactly the selected units.
    """

    units: Tensor | None

    def __init__(
        self,
        segment: nn.Module,
        channel: HSVChannel,
        in_channels: int | None = None,
        units: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(segment, nn.Module):
            raise InputError(f"segment must be an nn.Module, got {type(segment).__name__}.")
        self.channel_index = _channel_index(channel)
        self.channel = HSV_CHANNELS[self.channel_index]
        self.in_channels = first_conv_in_channels(segment) if in_channels is None else in_channels
        if (
            isinstance(self.in_channels, bool)
            or not isinstance(self.in_channels, (int, np.integer))
            or self.in_channels < 1
        ):
            raise InputError(f"in_channels must be a positive int, got {in_channels!r}.")
        self.segment = segment
        self.output = nn.Identity()
        if units is None:
            self.register_buffer("units", None, persistent=False)
        else:
            idx = torch.as_tensor(list(units))
            if (
                idx.ndim != 1
                or idx.numel() == 0
                or idx.is_floating_point()
                or idx.dtype == torch.bool
                or bool((idx < 0).any())
                or len(set(idx.tolist())) != idx.numel()
            ):
                raise InputError(
                    f"units must be distinct non-negative channel indices, e.g. [0, 5, 7], got "
                    f"{list(units)!r}."
                )
            self.register_buffer("units", idx.long(), persistent=False)
        # kept on the host so forward() checks the range without a device sync
        self._max_unit = None if units is None else max(int(u) for u in units)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"SingleChannelSegment expects N×3×H×W RGB images, got {shape}.")
        y = self.segment(multiplex_channel(x, self.channel, int(self.in_channels)))  # type: ignore[arg-type]
        if self.units is not None and self._max_unit is not None:
            if y.ndim < 2 or self._max_unit >= y.shape[1]:
                raise InputError(
                    f"units go up to {self._max_unit}, but the segment's output has "
                    f"shape {tuple(y.shape)} (channels on dim 1); pick units below "
                    f"{y.shape[1] if y.ndim >= 2 else 0}."
                )
            y = y.index_select(1, self.units)
        return self.output(y)

    def extra_repr(self) -> str:
        units = None if self.units is None else self.units.tolist()
        return f"channel={self.channel!r}, in_channels={self.in_channels}, units={units}"
