"""The PyTorch networks the Keras models are written to match.

Reference:
    AlexNet: the `AlexNet(nn.Module)` of "From LeNet to AlexNet: Why Deep CNNs
    Finally Won" (shared/seed/), after Krizhevsky, Sutskever and Hinton, NeurIPS
    2012. AlexNet2012: `torchvision.models.AlexNet` (torchvision/models/alexnet.py),
    the same module structure with 64-192-384-256-256 convolutions, 6x6 adaptive
    pooling and a 4096-4096 classifier. LeNet-5: the `net = nn.Sequential(...)` of
    d2l.ai, chapter "Convolutional Neural Networks (LeNet)", after LeCun et al., Proc. IEEE 1998.

Each keeps its source's module structure, so a checkpoint trained with the
source's code loads with `load_state_dict` as it is: AlexNet has the seed's
`features` / `avgpool` / `classifier`, AlexNet2012 torchvision's (keys
`features.0.weight` ... `classifier.6.bias`), LeNet-5 is the d2l `nn.Sequential`
(keys `0.weight`, `3.weight`, ...). The extra options (width, activation,
pooling, dropout, channels) are the Keras registry's, and at their defaults
the modules are the sources' exactly.

Each module carries `keras_layer_map`: the Keras layer name of every weighted
module, which is what the converters in `keras_cnns.reference.conversion` match on.
"""

from __future__ import annotations

import torch
from torch import nn

from keras_cnns.models import get_model_entry
from keras_cnns.models.common import scaled

_ACTIVATIONS = {
    # torch.nn.GELU is the exact (erf) GELU, as is Keras' "gelu" by default.
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def _activation(name: str, allowed) -> nn.Module:
    if name not in allowed:
        raise ValueError(
            f"activation must be one of {', '.join(map(repr, allowed))}, got {name!r}."
        )
    return _ACTIVATIONS[name]()


def alexnet_layer_map() -> dict[str, str]:
    """Keras layer name -> AlexNet submodule path, for the seed's layout."""
    return {
        "conv1": "features.0",
        "conv2": "features.3",
        "conv3": "features.6",
        "conv4": "features.8",
        "conv5": "features.10",
        "fc1": "classifier.1",
        "fc2": "classifier.4",
        "predictions": "classifier.6",
    }


def lenet_layer_map(dropout: bool) -> dict[str, str]:
    """Keras layer name -> LeNet5 submodule path; dropout layers shift the dense ones."""
    if dropout:
        return {"conv1": "0", "conv2": "3", "fc1": "8", "fc2": "11", "predictions": "14"}
    return {"conv1": "0", "conv2": "3", "fc1": "7", "fc2": "9", "predictions": "11"}


class AlexNet(nn.Module):
    """The seed's single-tower AlexNet (5,303,498 parameters at 1 channel, 10 classes).

    Subclasses change `CHANNELS` (five convolutions), `UNITS` (two hidden dense layers) and
    `POOLED` (the adaptive pooling's output side).

    Args:
        num_classes: number of logits.
        in_channels: input channels (1 in the seed).
        width: multiplier on every convolution's channels and dense layer's units.
        dropout: rate of the classifier's two dropout layers.
        activation: "relu" (the seed), "gelu", "silu", "elu", "tanh" or "sigmoid".

    Inputs are `(batch, channels, height, width)`, at least 63x63; outputs are logits.
    """

    CHANNELS = (96, 256, 384, 384, 256)
    UNITS = (1024, 512)
    POOLED = 2

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = (scaled(c, width) for c in self.CHANNELS)
        f1, f2 = (scaled(u, width) for u in self.UNITS)
        pooled = self.POOLED

        def act():
            return _activation(activation, tuple(_ACTIVATIONS))

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            act(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            act(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * pooled * pooled, f1),
            act(),
            nn.Dropout(dropout),
            nn.Linear(f1, f2),
            act(),
            nn.Linear(f2, num_classes),
        )
        self.keras_layer_map = alexnet_layer_map()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class AlexNet2012(AlexNet):
    """torchvision's `alexnet` (61,100,840 parameters at 3 channels, 1000 classes).

    The same modules under the same names as `torchvision.models.AlexNet`, so its state
    dicts (`alexnet-owt-7be5be79.pth`) load with `load_state_dict` as they are. Defaults are
    torchvision's: 3 channels, 1000 classes, dropout 0.5, ReLU.
    """

    CHANNELS = (64, 192, 384, 256, 256)
    UNITS = (4096, 4096)
    POOLED = 6

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
        dropout: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__(num_classes, in_channels, width, dropout, activation)


class LeNet5(nn.Sequential):
    """LeNet-5 as d2l.ai writes it (61,706 parameters at 28x28x1, 10 classes).

    Conv 6@5x5 pad 2 -> act -> pool 2 -> Conv 16@5x5 -> act -> pool 2 -> Flatten ->
    Linear 120 -> act -> Linear 84 -> act -> Linear `num_classes`. With
    `dropout > 0` a Dropout stands before each Linear, as in the Keras model.

    Args:
        num_classes: number of logits.
        in_channels: input channels.
        activation: "sigmoid" (d2l) or "relu".
        pooling: "avg" (d2l) or "max".
        width: multiplier on every layer's channels and units.
        dropout: rate of the dropout before each Linear; 0 adds none.
        image_size: input side, or `(height, width)`; it sets the first
            Linear's input size (400 at 28x28). At least 12.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        activation: str = "sigmoid",
        pooling: str = "avg",
        width: float = 1.0,
        dropout: float = 0.0,
        image_size: int | tuple[int, int] = 28,
    ):
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}.")
        height, width_px = (image_size, image_size) if isinstance(image_size, int) else image_size
        # 'same' 5x5 conv keeps the side; pool halves it (floor); the 'valid' 5x5 conv takes 4.
        rows, cols = (((side // 2) - 4) // 2 for side in (height, width_px))
        if rows < 1 or cols < 1:
            raise ValueError(f"LeNet-5 needs inputs of at least 12x12, got {height}x{width_px}.")
        c1, c2 = scaled(6, width), scaled(16, width)
        u1, u2 = scaled(120, width), scaled(84, width)
        pool = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d

        def act():
            return _activation(activation, ("sigmoid", "relu"))

        def drop():
            return [nn.Dropout(dropout)] if dropout > 0 else []

        super().__init__(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Flatten(),
            *drop(),
            nn.Linear(c2 * rows * cols, u1),
            act(),
            *drop(),
            nn.Linear(u1, u2),
            act(),
            *drop(),
            nn.Linear(u2, num_classes),
        )
        self.keras_layer_map = lenet_layer_map(dropout > 0)


def alexnet_reference(*, input_shape, num_classes: int, **options) -> AlexNet:
    """The registry's `alexnet` as a PyTorch module (channels-last `input_shape`)."""
    return AlexNet(num_classes=num_classes, in_channels=int(input_shape[2]), **options)


def alexnet2012_reference(*, input_shape, num_classes: int, **options) -> AlexNet2012:
    """The registry's `alexnet2012` as a PyTorch module (channels-last `input_shape`)."""
    return AlexNet2012(num_classes=num_classes, in_channels=int(input_shape[2]), **options)


def lenet_reference(*, input_shape, num_classes: int, **options) -> LeNet5:
    """The registry's `lenet` as a PyTorch module (channels-last `input_shape`)."""
    height, width_px, channels = (int(d) for d in input_shape)
    return LeNet5(num_classes=num_classes, in_channels=channels, image_size=(height, width_px),
                  **options)


def build_reference(name: str, *, input_shape, num_classes: int, **options) -> nn.Module:
    """Build the PyTorch twin of `keras_cnns.models.build_model(name, ...)`.

    Takes the Keras registry's arguments: `input_shape` is channels last,
    `(height, width, channels)`, as for the Keras model, and `options` are the
    registry entry's (unknown ones raise the registry's ValueError). The module
    comes from the entry's `torch_reference`.

    Returns:
        The module in training mode, as `nn.Module`s start; call `.eval()` to
        compare logits.
    """
    import importlib

    entry = get_model_entry(name)
    entry.check_options(options)
    height, width_px, _ = (int(d) for d in input_shape)
    if min(height, width_px) < entry.min_image_size:
        raise ValueError(
            f"{name} needs inputs of at least {entry.min_image_size}x{entry.min_image_size} "
            f"pixels, got {height}x{width_px}."
        )
    if not entry.torch_reference:
        raise ValueError(f"Model '{name}' has no PyTorch reference (its torch_reference).")
    module_name, _, function = entry.torch_reference.partition(":")
    builder = getattr(importlib.import_module(module_name), function)
    return builder(input_shape=input_shape, num_classes=num_classes,
                   **{**entry.options, **options})
