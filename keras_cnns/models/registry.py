"""Model registry: one entry per architecture, each with its default config.

After timm's registry: a model is built by name, and every entry carries what a
caller needs to know without building it (input sizes, a training recipe, the
paper it comes from). Tests iterate over `list_models()`, so an architecture
is tested the day it is registered.

Example:
    >>> from keras_cnns.models import build_model
    >>> model = build_model("alexnet", input_shape=(224, 224, 1), num_classes=10)
    >>> model.count_params()
    5303498
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from keras_cnns.models.alexnet import AlexNet, alexnet_min_input_size
from keras_cnns.models.lenet import LeNet5, lenet_min_input_size


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one architecture.

    Attributes:
        name: registry name (`--model NAME`).
        builder: `builder(input_shape=..., num_classes=..., **options)` -> `keras.Model`.
        default_image_size: the square input size its training recipe uses.
        min_image_size: the smallest square input the architecture accepts.
        options: the model options and their defaults (what `--model-kwargs`
            and the tuner may set).
        recipe: training defaults that meet the project's targets on the
            embedded `digits` data set (see docs/BENCHMARKS.md).
        reference: the paper or text the architecture follows.
    """

    name: str
    builder: Callable[..., Any]
    default_image_size: int
    min_image_size: int
    options: Mapping[str, Any]
    recipe: Mapping[str, Any]
    reference: str
    description: str = ""

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ValueError, in one sentence, for options this architecture does not have."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"Model '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {', '.join(self.options)}."
            )


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"A model named '{entry.name}' is already registered.")
    _REGISTRY[entry.name] = entry
    return entry


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for `name`; a ValueError naming the known models otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(list_models())
        raise ValueError(f"Unknown model '{name}'; known models are: {known}.") from None


def build_model(name: str, *, input_shape, num_classes: int, **options):
    """Build the registered architecture `name` as a functional `keras.Model`.

    Args:
        name: a name from `list_models()`.
        input_shape: `(height, width, channels)`, channels last.
        num_classes: number of output logits (at least 2).
        **options: architecture options (see each entry's `options`), for
            example `width=0.5, dropout=0.3` or `activation="relu"`.

    Returns:
        An uncompiled `keras.Model` that maps float images to logits.
    """
    entry = get_model_entry(name)
    entry.check_options(options)
    return entry.builder(input_shape=input_shape, num_classes=num_classes, **options)


register_model(
    ModelEntry(
        name="lenet",
        builder=LeNet5,
        default_image_size=28,
        min_image_size=lenet_min_input_size(),
        options=MappingProxyType(
            {"activation": "sigmoid", "pooling": "avg", "width": 1.0, "dropout": 0.0}
        ),
        # Sigmoid LeNet learns slowly with SGD; AdamW at 2e-2 reaches 99% on digits in
        # 40 epochs of about half a second each (docs/BENCHMARKS.md).
        recipe=MappingProxyType(
            {
                "image_size": 28,
                "epochs": 40,
                "batch_size": 64,
                "optimizer": "adamw",
                "lr": 2e-2,
                "weight_decay": 1e-4,
                "warmup_epochs": 1,
                "augment": "light",
            }
        ),
        reference=(
            "LeCun et al., 'Gradient-based learning applied to document recognition', "
            "Proc. IEEE 1998; the d2l.ai form (sigmoid, average pooling, padded first conv)."
        ),
        description="LeNet-5, classic form: 61,706 parameters at 28x28x1, 10 classes.",
    )
)

register_model(
    ModelEntry(
        name="alexnet",
        builder=AlexNet,
        default_image_size=64,
        min_image_size=alexnet_min_input_size(),
        options=MappingProxyType({"activation": "relu", "width": 1.0, "dropout": 0.5}),
        recipe=MappingProxyType(
            {
                "image_size": 64,
                "epochs": 20,
                "batch_size": 64,
                "optimizer": "adamw",
                "lr": 1e-3,
                "weight_decay": 5e-4,
                "warmup_epochs": 2,
                "augment": "light",
            }
        ),
        reference=(
            "Krizhevsky, Sutskever and Hinton, 'ImageNet Classification with Deep "
            "Convolutional Neural Networks', NeurIPS 2012; the single-tower variant of "
            "'From LeNet to AlexNet: Why Deep CNNs Finally Won' (96-256-384-384-256 "
            "convolutions, adaptive 2x2 pooling, 1024-512 classifier)."
        ),
        description="AlexNet, the seed's variant: 5,303,498 parameters at 1 channel, 10 classes.",
    )
)

__all__ = [
    "AlexNet",
    "LeNet5",
    "ModelEntry",
    "build_model",
    "get_model_entry",
    "list_models",
    "register_model",
]
