"""Read a Keras model's registry arguments back from its layers, to build its PyTorch twin.

A `.keras` file (or an export's `model.keras`) keeps the layers but not the registry call that
made them, so `reference_spec` recovers `build_reference`'s arguments: the architecture (by
layer names, as `torch_layer_map`), the input shape, the number of classes, and the options
(activation, pooling, dropout, and the width multiplier that reproduces every layer's size).
"""

from __future__ import annotations

from typing import Any

from keras_cnns.reference.convert import keras_to_torch, torch_layer_map
from keras_cnns.reference.models import alexnet_layer_map, build_reference

# Layer name -> units at width 1.0, as the Keras builders and the reference modules scale them.
_BASE_UNITS = {
    "alexnet": {"conv1": 96, "conv2": 256, "conv3": 384, "conv4": 384, "conv5": 256,
                "fc1": 1024, "fc2": 512},
    "lenet": {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84},
}


def _scaled(units: int, width: float) -> int:
    return max(1, int(round(units * width)))


def _units(layer) -> int:
    return int(getattr(layer, "filters", None) or layer.units)


def _width(name: str, keras_model) -> float:
    """A width multiplier that gives every layer of the model its size."""
    sizes = {layer: _units(keras_model.get_layer(layer)) for layer in _BASE_UNITS[name]}
    bases = _BASE_UNITS[name]
    # Each layer allows widths in [low, high); the multiplier lies in their intersection.
    low = max(0.0 if n == 1 else (n - 0.5) / bases[k] for k, n in sizes.items())
    high = min((n + 0.5) / bases[k] for k, n in sizes.items())
    # Prefer a short decimal (0.5, 0.25, ...) when one fits, as a person would have written.
    candidates = [round(sizes[k] / bases[k], digits) for digits in (1, 2, 3, 4) for k in sizes]
    candidates.append((low + high) / 2)
    for width in candidates:
        if all(_scaled(bases[k], width) == n for k, n in sizes.items()):
            return float(width)
    raise ValueError(
        f"Keras model '{keras_model.name}': no width multiplier gives its layer sizes {sizes}."
    )


def _activation(layer) -> str:
    activation = layer.get_config().get("activation")
    if not isinstance(activation, str):
        raise ValueError(f"Layer '{layer.name}' has a custom activation {activation!r}.")
    return activation


def reference_spec(keras_model) -> dict[str, Any]:
    """`{"name", "input_shape", "num_classes", "options"}` of a keras_cnns LeNet-5 or AlexNet,
    such that `build_reference(name, input_shape=..., num_classes=..., **options)` is its twin.

    Raises ValueError for any other model.
    """
    layer_map = torch_layer_map(keras_model)
    name = "alexnet" if layer_map == alexnet_layer_map() else "lenet"
    names = {layer.name for layer in keras_model.layers}
    options: dict[str, Any] = {
        "activation": _activation(keras_model.get_layer("conv1")),
        "width": _width(name, keras_model),
        "dropout": float(keras_model.get_layer("dropout1").rate) if "dropout1" in names else 0.0,
    }
    if name == "lenet":
        pool = type(keras_model.get_layer("pool1")).__name__
        options["pooling"] = "avg" if pool.startswith("Average") else "max"
    shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    return {
        "name": name,
        "input_shape": list(shape),
        "num_classes": _units(keras_model.get_layer("predictions")),
        "options": options,
    }


def reference_for(keras_model):
    """The PyTorch reference module of `keras_model`, holding its weights, in eval mode."""
    spec = reference_spec(keras_model)
    module = build_reference(
        spec["name"], input_shape=spec["input_shape"], num_classes=spec["num_classes"],
        **spec["options"],
    )
    keras_to_torch(keras_model, module)
    return module.eval()
