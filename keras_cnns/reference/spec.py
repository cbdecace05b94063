"""Read a Keras model's registry arguments back from its layers, to build its PyTorch twin.

A `.keras` file (or an export's `model.keras`) keeps the layers but not the registry call that
made them, so `reference_spec` recovers `build_reference`'s arguments: the input shape, the
number of classes, and for each registered architecture in turn, the options its entry reads
from the layers (`ModelEntry.read_options`) and the width multiplier that reproduces every
layer's size (`ModelEntry.layer_units`). The first architecture whose rebuilt model has the
same layers, layer types and weight shapes is the model's.
"""

from __future__ import annotations

from typing import Any

from keras_cnns.models import build_model, get_model_entry, list_models
from keras_cnns.models.common import scaled


def _units(layer) -> int:
    return int(getattr(layer, "filters", None) or layer.units)


def _width(bases, keras_model) -> float:
    """A width multiplier that gives every layer in `bases` (name -> units at width 1) its size."""
    sizes = {layer: _units(keras_model.get_layer(layer)) for layer in bases}
    # Each layer allows widths in [low, high); the multiplier lies in their intersection.
    low = max(0.0 if n == 1 else (n - 0.5) / bases[k] for k, n in sizes.items())
    high = min((n + 0.5) / bases[k] for k, n in sizes.items())
    # Prefer a short decimal (0.5, 0.25, ...) when one fits, as a person would have written.
    candidates = [round(sizes[k] / bases[k], digits) for digits in (1, 2, 3, 4) for k in sizes]
    candidates.append((low + high) / 2)
    for width in candidates:
        if width > 0 and all(scaled(bases[k], width) == n for k, n in sizes.items()):
            return float(width)
    raise ValueError(
        f"Keras model '{keras_model.name}': no width multiplier gives its layer sizes {sizes}."
    )


def _signature(keras_model) -> list:
    """What two models of one architecture share: layer names, types and weight shapes."""
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in keras_model.layers
    ]


def _candidate(entry, keras_model, shape, classes) -> dict[str, Any] | None:
    try:
        options = dict(entry.read_options(keras_model)) if entry.read_options else {}
        if "width" in entry.options and entry.layer_units:
            options["width"] = _width(entry.layer_units, keras_model)
        options = {k: v for k, v in options.items() if k in entry.options}
        twin = build_model(entry.name, input_shape=shape, num_classes=classes, **options)
    except (ValueError, TypeError, AttributeError):
        return None
    if _signature(twin) != _signature(keras_model):
        return None
    return {"name": entry.name, "input_shape": list(shape), "num_classes": classes,
            "options": {**entry.options, **options}}


def reference_spec(keras_model) -> dict[str, Any]:
    """`{"name", "input_shape", "num_classes", "options"}` of a registered architecture, such
    that `build_reference(name, input_shape=..., num_classes=..., **options)` is its twin.

    Raises ValueError, naming the registered models, for any other model.
    """
    shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    classes = int(keras_model.outputs[0].shape[-1])
    for name in list_models():
        spec = _candidate(get_model_entry(name), keras_model, shape, classes)
        if spec is not None:
            return spec
    raise ValueError(
        f"Keras model '{keras_model.name}' is none of the registered architectures "
        f"({', '.join(list_models())}): no entry rebuilds its layers and weight shapes; "
        "pass layer_map."
    )

