"""Models: the embedded shapes CNNs, torchvision architectures, and local weight files.

See :func:`load_model`. The embedded weights are retrained, deterministically, by
``convscope train-models`` (:mod:`convscope.models.train`).
"""

from convscope.models.architectures import CifarResNet, ShapesCNN, cifar_resnet
from convscope.models.evaluation import accuracy, outputs, predict
from convscope.models.registry import (
    EMBEDDED_MODELS,
    ModelInfo,
    available_models,
    build_architecture,
    load_model,
    load_state_dict,
    model_info,
)

__all__ = [
    "EMBEDDED_MODELS",
    "CifarResNet",
    "ModelInfo",
    "ShapesCNN",
    "accuracy",
    "available_models",
    "build_architecture",
    "cifar_resnet",
    "load_model",
    "load_state_dict",
    "model_info",
    "outputs",
    "predict",
]
