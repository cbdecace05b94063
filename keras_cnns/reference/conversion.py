"""Move weights between the Keras models and their PyTorch references.

Two levels:

* `keras_weights_to_state_dict(keras_model)` / `load_state_dict_into_keras(sd, keras_model)`
  work on a PyTorch `state_dict` (keys like `features.0.weight`), so a checkpoint
  written by the seed's or d2l's own code can be loaded into Keras without this
  project's modules.
* `keras_to_torch(keras_model, module)` / `torch_to_keras(module, keras_model)`
  copy between live models.

Layers are matched by name (Keras `conv1` <-> PyTorch `features.0`, see
`torch_layer_map`), never by position, and every layer on both sides must be
matched with equal shapes; anything else is a ValueError that names the layer.

Layout differences, as in `keras.applications` weight ports:

* Conv2D kernels: Keras `(kh, kw, in, out)` (HWIO), PyTorch `(out, in, kh, kw)` (OIHW).
* Dense kernels: Keras `(in, out)`, PyTorch `(out, in)`.
* The first Dense after Flatten: PyTorch flattens a `(C, H, W)` map, Keras a
  `(H, W, C)` one, so the rows of that kernel are permuted as well.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from keras_cnns.reference.spec import reference_spec
from keras_cnns.reference.twins import build_reference

# The Dense layer fed by the Flatten layer: every registered model names them so.
_FLATTEN = "flatten"
_FLATTEN_DENSE = "fc1"


def torch_layer_map(keras_model) -> dict[str, str]:
    """Keras layer name -> PyTorch submodule path for a model of a registered architecture.

    The architecture is recognised from the model's layers (`reference_spec`), since a
    model's own name is free, and the map is its reference module's `keras_layer_map`.
    Raises ValueError for any other model.
    """
    return dict(_untrained_twin(keras_model).keras_layer_map)


def _untrained_twin(keras_model):
    spec = reference_spec(keras_model)
    return build_reference(spec["name"], input_shape=spec["input_shape"],
                           num_classes=spec["num_classes"], **spec["options"])


def _same_names(wanted, found, mismatch: str, lacking: str, surplus: str) -> None:
    """A ValueError naming what `found` lacks of `wanted` and what it holds beyond it."""
    missing, extra = sorted(set(wanted) - set(found)), sorted(set(found) - set(wanted))
    if missing or extra:
        raise ValueError(f"{mismatch}: {lacking}: {missing or 'none'}; "
                         f"{surplus}: {extra or 'none'}.")


def _weighted_layers(keras_model, layer_map: Mapping[str, str]) -> dict:
    """The Keras layers that hold weights, by name, checked against `layer_map`."""
    layers = {layer.name: layer for layer in keras_model.layers if layer.weights}
    _same_names(layer_map, layers, f"Keras model '{keras_model.name}' does not match the layer "
                "map", "layers without weights or absent", "weighted layers the map lacks")
    for name, layer in layers.items():
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense") or not layer.use_bias:
            raise ValueError(
                f"Layer '{name}' is a {kind} (bias: {layer.use_bias}); "
                "only Conv2D and Dense with biases convert."
            )
        if kind == "Conv2D" and layer.data_format != "channels_last":
            raise ValueError(f"Layer '{name}' is {layer.data_format}; only channels_last converts.")
    return layers


def _flatten_hwc(keras_model) -> tuple[int, int, int]:
    """`(H, W, C)` of the map the Flatten layer flattens."""
    _, height, width, channels = keras_model.get_layer(_FLATTEN).input.shape
    return int(height), int(width), int(channels)


def _keras_to_torch_arrays(name, layer, hwc) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    if kernel.ndim == 4:
        return kernel.transpose(3, 2, 0, 1), bias  # HWIO -> OIHW
    if name == _FLATTEN_DENSE:
        height, width, channels = hwc
        # Rows ordered (h, w, c) -> (c, h, w): PyTorch's flatten order.
        kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
        kernel = kernel.reshape(height * width * channels, -1)
    return kernel.T, bias


def _torch_to_keras_arrays(name, weight, hwc) -> np.ndarray:
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    kernel = weight.T
    if name == _FLATTEN_DENSE:
        height, width, channels = hwc
        kernel = kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3)
        kernel = kernel.reshape(height * width * channels, -1)
    return kernel


def keras_weights_to_state_dict(keras_model, layer_map=None) -> dict[str, torch.Tensor]:
    """The Keras model's weights as a PyTorch `state_dict` (float32 CPU tensors).

    Args:
        keras_model: a model of a registered architecture (channels last).
        layer_map: Keras layer name -> PyTorch submodule path; by default
            `torch_layer_map(keras_model)`, which fits `keras_cnns.reference`'s
            modules and their sources' own (the seed's, d2l's, torchvision's).
    """
    layer_map = torch_layer_map(keras_model) if layer_map is None else layer_map
    layers = _weighted_layers(keras_model, layer_map)
    hwc = _flatten_hwc(keras_model) if _FLATTEN_DENSE in layers else None
    state = {}
    for name, path in layer_map.items():
        weight, bias = _keras_to_torch_arrays(name, layers[name], hwc)
        state[f"{path}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{path}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    return state


def load_state_dict_into_keras(state_dict, keras_model, layer_map=None) -> None:
    """Set the Keras model's weights from a PyTorch `state_dict`, in place.

    Every entry of `state_dict` must be used and every weighted Keras layer set,
    with equal shapes; otherwise a ValueError names what differs and the Keras
    model is left unchanged.

    Args:
        state_dict: a mapping of `path.weight` / `path.bias` to tensors or arrays.
        keras_model: a model of a registered architecture (channels last).
        layer_map: as for `keras_weights_to_state_dict`.
    """
    layer_map = torch_layer_map(keras_model) if layer_map is None else layer_map
    layers = _weighted_layers(keras_model, layer_map)
    expected = {f"{path}.{kind}" for path in layer_map.values() for kind in ("weight", "bias")}
    _same_names(expected, state_dict, f"state_dict does not match Keras model "
                f"'{keras_model.name}'", "missing keys", "unexpected keys")
    hwc = _flatten_hwc(keras_model) if _FLATTEN_DENSE in layers else None

    # Convert and check every layer before setting any, so a mismatch changes nothing.
    updates = []
    for name, path in layer_map.items():
        weight, bias = (_to_numpy(state_dict[f"{path}.{kind}"]) for kind in ("weight", "bias"))
        layer = layers[name]
        want = [tuple(w.shape) for w in layer.weights]
        # The PyTorch shapes the Keras ones imply: OIHW for a conv, (out, in) for a dense layer.
        kernel_shape = want[0]
        torch_shape = (
            (kernel_shape[3], kernel_shape[2], *kernel_shape[:2])
            if len(kernel_shape) == 4
            else kernel_shape[::-1]
        )
        if (tuple(weight.shape), tuple(bias.shape)) != (torch_shape, want[1]):
            raise ValueError(
                f"Layer '{name}' <- '{path}': PyTorch shapes {tuple(weight.shape)}, "
                f"{tuple(bias.shape)} do not match Keras {want} (PyTorch layout "
                f"{torch_shape}, {want[1]})."
            )
        kernel = _torch_to_keras_arrays(name, weight, hwc)
        updates.append((layer, [kernel, bias]))
    for layer, weights in updates:
        layer.set_weights(weights)


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _module_map(module) -> dict[str, str]:
    try:
        return dict(module.keras_layer_map)
    except AttributeError:
        raise ValueError(
            f"{type(module).__name__} has no keras_layer_map; use the state_dict functions "
            "with an explicit layer_map."
        ) from None


def keras_to_torch(keras_model, torch_module) -> None:
    """Copy the Keras model's weights into a `keras_cnns.reference` module, in place.

    The module's own `keras_layer_map` says which submodule each Keras layer
    fills; names or shapes that differ raise a ValueError and change nothing.
    """
    layer_map = _module_map(torch_module)
    state = keras_weights_to_state_dict(keras_model, layer_map)
    keras_names = {path: name for name, path in layer_map.items()}
    target = torch_module.state_dict()
    _same_names(target, state, f"{type(torch_module).__name__} does not match Keras model "
                f"'{keras_model.name}'", "module entries not set", "absent from the module")
    for key, value in state.items():
        if value.shape != target[key].shape:
            raise ValueError(
                f"Layer '{keras_names[key.rsplit('.', 1)[0]]}' -> '{key}': "
                f"Keras gives {tuple(value.shape)}, "
                f"{type(torch_module).__name__} has {tuple(target[key].shape)}."
            )
    torch_module.load_state_dict(state, strict=True)


def torch_to_keras(torch_module, keras_model) -> None:
    """Copy a `keras_cnns.reference` module's weights into the Keras model, in place."""
    load_state_dict_into_keras(torch_module.state_dict(), keras_model, _module_map(torch_module))


def reference_for(keras_model):
    """The PyTorch reference module of `keras_model`, holding its weights, in eval mode."""
    module = _untrained_twin(keras_model)
    keras_to_torch(keras_model, module)
    return module.eval()
