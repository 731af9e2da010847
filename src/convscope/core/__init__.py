"""The probing core every method family uses.

* :mod:`~convscope.core.layers` — resolve layers by dotted name, with suggestions;
* :mod:`~convscope.core.hooks` — record and edit activations as context managers;
* :mod:`~convscope.core.gradients` — gradients with respect to inputs and activations;
* :mod:`~convscope.core.targets` — class index, per-sample indices or callable targets;
* :mod:`~convscope.core.batching` — one ``batch_size`` bounding every forward pass;
* :mod:`~convscope.core.state` — restore train/eval mode and ``requires_grad`` flags;
* :mod:`~convscope.core.device`, :mod:`~convscope.core.seeding`,
  :mod:`~convscope.core.results`, :mod:`~convscope.core.errors`.
"""

from convscope.core.batching import (
    DEFAULT_BATCH_SIZE,
    batch_slices,
    check_batch_size,
    forward_batched,
    map_batches,
)
from convscope.core.device import model_device, model_dtype, to_model
from convscope.core.errors import (
    ConvscopeError,
    ImageReadError,
    InputError,
    LayerNotFoundError,
    LayerReuseError,
    ModelNotFoundError,
    ResultFormatError,
    TargetError,
    WeightsError,
)
from convscope.core.gradients import Gradients, gradients, input_gradient, layer_gradient
from convscope.core.hooks import (
    Activations,
    LayerCall,
    default_layer,
    edit_activations,
    last_spatial_layer,
    layer_calls,
    probe,
    record_activations,
)
from convscope.core.jsonable import to_jsonable
from convscope.core.layers import layer_names, resolve_layer, resolve_layers
from convscope.core.model_info import ModelInfo, model_info
from convscope.core.progress import progress_bar, set_progress
from convscope.core.results import Result
from convscope.core.seeding import numpy_generator, torch_generator
from convscope.core.state import inference_state, preserved_state
from convscope.core.targets import Target, TargetLike, as_target, resolve_target
from convscope.core.validation import check_images

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Activations",
    "ConvscopeError",
    "Gradients",
    "ImageReadError",
    "InputError",
    "LayerCall",
    "LayerNotFoundError",
    "LayerReuseError",
    "ModelInfo",
    "ModelNotFoundError",
    "Result",
    "ResultFormatError",
    "Target",
    "TargetError",
    "TargetLike",
    "WeightsError",
    "as_target",
    "batch_slices",
    "check_batch_size",
    "check_images",
    "default_layer",
    "edit_activations",
    "forward_batched",
    "gradients",
    "inference_state",
    "input_gradient",
    "last_spatial_layer",
    "layer_calls",
    "layer_gradient",
    "layer_names",
    "map_batches",
    "model_device",
    "model_dtype",
    "model_info",
    "numpy_generator",
    "preserved_state",
    "probe",
    "progress_bar",
    "record_activations",
    "resolve_layer",
    "resolve_layers",
    "resolve_target",
    "set_progress",
    "to_jsonable",
    "to_model",
    "torch_generator",
]
