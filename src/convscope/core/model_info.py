"""What convscope knows of a model: the :class:`ModelInfo` attached as ``model.convscope_info``.

:func:`convscope.load_model` attaches a :class:`ModelInfo` to every model it returns; users may
attach one to their own models (or any object with some of its attributes). :func:`model_info`
reads it back, typed, so callers never probe ``getattr(model, "convscope_info", None)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelInfo", "model_info"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet in ``[0, 1]`` units (torchvision's pretrained models)."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet in ``[0, 1]`` units."""


@dataclass(frozen=True)
class ModelInfo:
    """What convscope knows of a loaded model (attached as ``model.convscope_info``)."""

    name: str
    class_names: tuple[str, ...] = ()
    input_size: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    #: A good default layer for layer attributions such as Grad-CAM (inner name); None lets
    #: :func:`convscope.core.default_layer` find the last spatial layer.
    default_layer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def model_info(model: Any) -> ModelInfo | None:
    """The :class:`ModelInfo` a model carries as ``convscope_info``, or None.

    Parameters
    ----------
    model : torch.nn.Module or None
        Any model (None gives None).

    Returns
    -------
    ModelInfo or None
        ``model.convscope_info`` itself when it is a :class:`ModelInfo`. Another object (e.g. a
        ``SimpleNamespace(mean=...)`` set by hand) is read attribute by attribute: the
        attributes it has override the :class:`ModelInfo` defaults, except ``mean`` and ``std``,
        which become ``()`` when missing, so that an undeclared normalisation is not mistaken
        for ImageNet's. None when the model has no ``convscope_info``.
    """
    info = getattr(model, "convscope_info", None) if model is not None else None
    if info is None or isinstance(info, ModelInfo):
        return info
    values: dict[str, Any] = {"name": str(getattr(info, "name", "") or ""), "mean": (), "std": ()}
    for f in fields(ModelInfo):
        if f.name == "name" or not hasattr(info, f.name):
            continue
        value = getattr(info, f.name)
        if f.name in ("class_names", "mean", "std"):
            value = tuple(value) if value is not None else ()
            if f.name != "class_names":
                value = tuple(float(v) for v in value)
        elif f.name == "metadata":
            value = dict(value) if value is not None else {}
        values[f.name] = value
    return ModelInfo(**values)
