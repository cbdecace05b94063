"""Model registry: one module per architecture, each registering itself.

After timm's registry: a model is built by name, and every entry carries what a caller needs
to know without building it (input sizes, a training recipe, its PyTorch reference, the paper
it comes from; see `registry.ModelEntry`). Tests and tools iterate over `list_models()`, so an
architecture is trained, converted, measured and tested the day its module is imported here.

To add an architecture: write `keras_cnns/models/<name>.py` with its builder and a
`register_model(ModelEntry(...))` call, its PyTorch twin in `keras_cnns/reference/`, and
import the module below.

Example:
    >>> from keras_cnns.models import build_model
    >>> model = build_model("alexnet", input_shape=(224, 224, 1), num_classes=10)
    >>> model.count_params()
    5303498
"""

from __future__ import annotations

# Importing an architecture's module registers it.
from keras_cnns.models.alexnet import AlexNet
from keras_cnns.models.alexnet2012 import AlexNet2012
from keras_cnns.models.lenet import LeNet5
from keras_cnns.models.preset import PresetError, from_preset, list_presets
from keras_cnns.models.registry import (
    ModelEntry,
    ParityCase,
    build_model,
    default_model,
    get_model_entry,
    list_models,
    register_model,
)

__all__ = [
    "AlexNet",
    "AlexNet2012",
    "LeNet5",
    "ModelEntry",
    "ParityCase",
    "PresetError",
    "build_model",
    "default_model",
    "from_preset",
    "get_model_entry",
    "list_models",
    "list_presets",
    "register_model",
]
