"""Load models by name: embedded models, torchvision architectures, or local weight files.

``load_model`` returns an eval-mode model that takes [0, 1] images (N×3×H×W) and normalizes
them itself (unless ``normalize=False``). Weights are read with
``torch.load(..., weights_only=True)``: nothing is ever unpickled.

Names
-----
``"shapes-cnn"``, ``"shapes-cnn-spurious"``
    Small CNNs trained on the shapes world, shipped inside the package.
``"torchvision:<arch>"`` (e.g. ``"torchvision:resnet18"``, ``"torchvision:resnet18:IMAGENET1K_V1"``)
    A torchvision architecture with its pretrained weights from torchvision's weight enums
    (downloaded by torchvision into ``$TORCH_HOME/hub/checkpoints`` on first use).
``"cifar-resnet20"``, ``"cifar-resnet56"``, ...
    The CIFAR ResNet architecture; weights must come from a file (``weights=``).
A path to a weights file, with ``arch=``
    A local state dict (plain, or under a ``"state_dict"`` key; a ``module.`` prefix from
    DataParallel is removed) loaded into architecture ``arch``. For ``arch="shapes-cnn"`` the
    widths and class count are read from the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from convscope.core.errors import InputError, ModelNotFoundError, WeightsError, suggestion
from convscope.core.model_info import ModelInfo
from convscope.data.normalization import IMAGENET_MEAN, IMAGENET_STD, with_normalization
from convscope.models.architectures import ShapesCNN, cifar_resnet

__all__ = [
    "EMBEDDED_MODELS",
    "ModelInfo",
    "available_models",
    "build_architecture",
    "load_model",
    "load_state_dict",
    "model_info",
]

#: Embedded models: name -> weights file stem inside ``convscope/models/weights``.
EMBEDDED_MODELS: dict[str, str] = {
    "shapes-cnn": "shapes-cnn",
    "shapes-cnn-spurious": "shapes-cnn-spurious",
}

#: Normalization the embedded shapes models were trained with (applied inside the model).
SHAPES_MEAN = (0.5, 0.5, 0.5)
SHAPES_STD = (0.25, 0.25, 0.25)

_CIFAR_ARCH = re.compile(r"^cifar-resnet(\d+)$")


def _weights_dir() -> Path:
    return Path(str(resources.files("convscope.models") / "weights"))


def available_models() -> list[str]:
    """Names ``load_model`` accepts directly (torchvision names are listed by torchvision)."""
    return [*EMBEDDED_MODELS, "cifar-resnet20", "cifar-resnet56", "torchvision:<arch>"]


def model_info(name: str) -> ModelInfo:
    """Metadata of an embedded model (class names, training settings, accuracy)."""
    if name not in EMBEDDED_MODELS:
        raise ModelNotFoundError(
            f"{name!r} is not an embedded model." + suggestion(name, EMBEDDED_MODELS, "names")
        )
    meta_path = _weights_dir() / f"{EMBEDDED_MODELS[name]}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"The metadata of embedded model {name!r} ({meta_path}) is missing or corrupted "
            f"({exc}). Reinstall convscope, or retrain with `convscope train-models`."
        ) from exc
    return ModelInfo(
        name=name,
        class_names=tuple(meta["class_names"]),
        input_size=int(meta["input_size"]),
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        default_layer=meta.get("default_layer"),
        metadata=meta,
    )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` without unpickling code.

    Accepts a plain state dict or a checkpoint dict with a ``"state_dict"`` or ``"model"`` key;
    a ``module.`` prefix (DataParallel) is removed.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"Weights file {path} does not exist. Check the path.")
    if path.is_dir():
        raise WeightsError(f"{path} is a directory; pass the weights file inside it.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise WeightsError(
            f"Cannot read weights file {path}: it is corrupted, truncated, or not a PyTorch "
            f"state dict saved with torch.save ({type(exc).__name__}: {str(exc)[:200]}). "
            "Files that need unpickling arbitrary objects are refused on purpose: save "
            "model.state_dict() instead."
        ) from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} does not hold a state dict (a dict of tensors). Save model.state_dict()."
        )
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models())


def build_architecture(arch: str, num_classes: int | None = None) -> nn.Module:
    """An untrained module of architecture ``arch`` (``shapes-cnn``, ``cifar-resnetN`` or a
    torchvision name, with or without the ``torchvision:`` prefix)."""
    if arch in EMBEDDED_MODELS:
        return ShapesCNN(num_classes=num_classes or 6)
    match = _CIFAR_ARCH.match(arch)
    if match:
        return cifar_resnet(int(match.group(1)), num_classes=num_classes or 10)
    tv_name = arch.removeprefix("torchvision:")
    names = _torchvision_names()
    if tv_name not in names:
        raise ModelNotFoundError(
            f"Unknown architecture {arch!r}."
            + suggestion(tv_name, [*EMBEDDED_MODELS, *names], "architectures")
            + " Embedded: shapes-cnn; CIFAR: cifar-resnet20, cifar-resnet56; or any "
            "torchvision.models.list_models() name."
        )
    import torchvision.models as tvm

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return tvm.get_model(tv_name, weights=None, **kwargs)


def _last_linear_out(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears and f"{linears[-1]}.weight" in state:
        return int(state[f"{linears[-1]}.weight"].shape[0])
    return None


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise WeightsError(
            f"The weights in {source} do not fit architecture {type(model).__name__}: "
            f"{str(exc)[:400]}. Check arch= (and num_classes=)."
        ) from exc
    if missing or unexpected:
        raise WeightsError(
            f"The weights in {source} do not fit architecture {type(model).__name__}: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected keys "
            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}. Check arch=."
        )


def _finish(
    model: nn.Module, info: ModelInfo, device: str | torch.device, normalize: bool
) -> nn.Module:
    model = model.to(device)
    wrapped: nn.Module = with_normalization(model, info.mean, info.std) if normalize else model
    wrapped.eval()
    wrapped.convscope_info = info  # type: ignore[assignment]
    return wrapped


def _shapes_cnn_for(state: dict[str, torch.Tensor], default_classes: int) -> ShapesCNN:
    """A ShapesCNN with the widths and class count that ``state`` was saved with."""
    widths: list[int] = []
    while f"features.conv{len(widths) + 1}.weight" in state:
        widths.append(int(state[f"features.conv{len(widths) + 1}.weight"].shape[0]))
    head = state.get("classifier.weight")
    return ShapesCNN(
        num_classes=int(head.shape[0]) if head is not None else default_classes,
        widths=tuple(widths) or (16, 32, 64, 128),
    )


def _load_embedded(name: str, weights: str | Path | None) -> tuple[nn.Module, ModelInfo]:
    info = model_info(name)
    path = Path(weights) if weights is not None else _weights_dir() / f"{EMBEDDED_MODELS[name]}.pt"
    state = load_state_dict(path)
    model = _shapes_cnn_for(state, len(info.class_names))
    _load_into(model, state, str(path))
    if model.num_classes != len(info.class_names):
        info = replace(info, class_names=tuple(str(i) for i in range(model.num_classes)))
    return model, info


def _load_torchvision(
    spec: str, weights: str | Path | None, num_classes: int | None
) -> tuple[nn.Module, ModelInfo]:
    import torchvision.models as tvm

    arch, _, weight_name = spec.partition(":")
    names = _torchvision_names()
    if arch not in names:
        raise ModelNotFoundError(
            f"torchvision has no model {arch!r}." + suggestion(arch, names, "torchvision names")
        )
    if weights is not None:
        model = build_architecture(arch, num_classes)
        state = load_state_dict(weights)
        out = _last_linear_out(model, state)
        if (
            num_classes is None
            and out is not None
            and out != _last_linear_out(model, model.state_dict())
        ):
            model = build_architecture(arch, out)
        _load_into(model, state, str(weights))
        return model, ModelInfo(name=f"torchvision:{arch}")
    enum = tvm.get_model_weights(arch)
    try:
        w = enum[weight_name] if weight_name else enum.DEFAULT
    except KeyError as exc:
        raise ModelNotFoundError(
            f"torchvision model {arch!r} has no weights {weight_name!r}; available: "
            f"{[m.name for m in enum]}."
        ) from exc
    try:
        model = tvm.get_model(arch, weights=w)
    except (OSError, RuntimeError) as exc:
        raise WeightsError(
            f"Could not get torchvision weights {w} ({type(exc).__name__}: {str(exc)[:200]}). "
            f"torchvision downloads them once into {_hub_checkpoint_dir()}; without network, "
            f"place the file {Path(w.url).name} there, or pass weights=<local file>."
        ) from exc
    transform = w.transforms()
    info = ModelInfo(
        name=f"torchvision:{arch}",
        class_names=tuple(w.meta.get("categories", ())),
        input_size=int(getattr(transform, "crop_size", [224])[0]),
        mean=tuple(getattr(transform, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(transform, "std", IMAGENET_STD)),
        metadata={"weights": str(w)},
    )
    return model, info


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_model(
    name: str | Path,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    normalize: bool = True,
) -> nn.Module:
    """Load a model that takes [0, 1] images, in eval mode.

    Parameters
    ----------
    name
        ``"shapes-cnn"``, ``"shapes-cnn-spurious"``, ``"torchvision:<arch>[:<weights>]"``,
        ``"cifar-resnet<depth>"`` (with ``weights=``), or a path to a weights file (with
        ``arch=``).
    weights
        A local weights file to load instead of the default weights.
    arch
        Architecture of a weights file given as ``name``.
    num_classes
        Number of outputs for an architecture loaded from a file. Inferred from the file for
        torchvision architectures (their last linear layer) and for ``shapes-cnn``; pass it for
        a CIFAR ResNet with other than 10 classes.
    device
        Where to put the model.
    normalize
        Wrap the model so that it normalizes [0, 1] inputs with its training mean and std
        (inner layers are then reachable with or without the ``model.`` prefix).

    Returns
    -------
    torch.nn.Module
        The model in eval mode, with ``model.convscope_info`` (:class:`ModelInfo`).
    """
    name_str = str(name)
    if name_str in EMBEDDED_MODELS:
        model, info = _load_embedded(name_str, weights)
    elif name_str.startswith("torchvision:"):
        model, info = _load_torchvision(name_str.removeprefix("torchvision:"), weights, num_classes)
    elif _CIFAR_ARCH.match(name_str):
        if weights is None:
            raise WeightsError(
                f"{name_str} has no embedded weights: pass weights=<path to a state dict>."
            )
        model = build_architecture(name_str, num_classes)
        _load_into(model, load_state_dict(weights), str(weights))
        info = ModelInfo(name=name_str, input_size=32, default_layer="layer3")
    elif (
        Path(name_str).suffix in (".pt", ".pth", ".th", ".bin", ".ckpt") or Path(name_str).exists()
    ):
        if arch is None:
            raise InputError(
                f"{name_str} is a weights file: also pass its architecture, e.g. "
                "load_model(path, arch='resnet18') or arch='shapes-cnn'."
            )
        if arch in EMBEDDED_MODELS:
            model, info = _load_embedded(arch, name_str)
        elif arch.startswith("torchvision:") or not _CIFAR_ARCH.match(arch):
            model, info = _load_torchvision(
                arch.removeprefix("torchvision:"), name_str, num_classes
            )
        else:
            return load_model(
                arch, weights=name_str, num_classes=num_classes, device=device, normalize=normalize
            )
    elif name_str in _torchvision_names():
        raise ModelNotFoundError(
            f"Unknown model {name_str!r}. For torchvision's {name_str} with pretrained weights "
            f"use 'torchvision:{name_str}'; for a weights file, pass it with arch={name_str!r}."
        )
    else:
        raise ModelNotFoundError(
            f"Unknown model {name_str!r}."
            + suggestion(name_str, [*EMBEDDED_MODELS, "cifar-resnet20", "cifar-resnet56"], "names")
            + " Use an embedded name (shapes-cnn, shapes-cnn-spurious), "
            "'torchvision:<arch>' (e.g. torchvision:resnet18), or a weights file with arch=."
        )
    return _finish(model, info, device, normalize)
