"""PyTorch reference definitions of the project's models, and weight converters.

The Keras models in `keras_cnns.models` are meant to be *exactly* the networks
of the seed text (AlexNet) and of d2l.ai (LeNet-5). This package holds those
networks as the PyTorch `nn.Module`s they were written as, plus converters that
move weights between the two frameworks, so that the claim can be tested: port
the weights, feed both the same images, and compare the logits.

It needs PyTorch (the `torch` extra); nothing else in `keras_cnns` imports it.

Example:
    >>> from keras_cnns.models import build_model
    >>> from keras_cnns.reference import build_reference, torch_to_keras
    >>> ref = build_reference("alexnet", input_shape=(96, 96, 1), num_classes=10).eval()
    >>> model = build_model("alexnet", input_shape=(96, 96, 1), num_classes=10)
    >>> torch_to_keras(ref, model)  # model(x) now equals ref(x), channels moved last
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "keras_cnns.reference needs PyTorch; install the torch extra: pip install -e '.[torch]'"
    ) from err

from keras_cnns.reference.conversion import (
    keras_to_torch,
    keras_weights_to_state_dict,
    load_state_dict_into_keras,
    reference_for,
    torch_layer_map,
    torch_to_keras,
)
from keras_cnns.reference.spec import reference_spec
from keras_cnns.reference.twins import AlexNet, AlexNet2012, LeNet5, build_reference

__all__ = [
    "AlexNet",
    "AlexNet2012",
    "LeNet5",
    "build_reference",
    "keras_to_torch",
    "keras_weights_to_state_dict",
    "load_state_dict_into_keras",
    "reference_for",
    "reference_spec",
    "torch_layer_map",
    "torch_to_keras",
]
