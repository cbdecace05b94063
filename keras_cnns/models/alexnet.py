"""AlexNet, exactly the single-tower variant of the project's seed text.

Reference:
    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
    Convolutional Neural Networks", NeurIPS 2012. The layer sizes are those of
    "From LeNet to AlexNet: Why Deep CNNs Finally Won" (shared/seed/): five
    convolutions 96-256-384-384-256, adaptive average pooling to 2x2, and a
    1024-512 classifier with dropout *before* each of its first two dense layers.
"""

from __future__ import annotations

import keras

from keras_cnns.models.common import check_common_args, scaled

_ACTIVATIONS = ("relu", "gelu", "silu", "elu", "tanh", "sigmoid")


def _conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def alexnet_feature_size(size: int) -> int:
    """Side of the last feature map (before adaptive pooling) for an input side `size`."""
    size = _conv_out(size, 11, 4, 2)  # conv1
    size = _conv_out(size, 3, 2)  # pool1
    size = _conv_out(size, 3, 2)  # pool2 (conv2..5 keep the size)
    return _conv_out(size, 3, 2)  # pool5


def alexnet_min_input_size() -> int:
    size = 1
    while alexnet_feature_size(size) < 1:
        size += 1
    return size


def AlexNet(
    *,
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    activation: str = "relu",
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "alexnet",
) -> keras.Model:
    """Instantiate the seed's AlexNet (5,303,498 parameters at 1 channel, 10 classes).

    PyTorch's `Conv2d(kernel_size=11, stride=4, padding=2)` pads two pixels on
    every side, which Keras' "same" does not do (it pads asymmetrically and by a
    size that depends on the input), so the padding is an explicit layer.

    `AdaptiveAveragePooling2D((2, 2))` averages PyTorch's windows. Keras'
    layer fails in graph mode and under XLA when its input is smaller than its
    output, which is the case for inputs of 63 to 94 pixels (1x1 feature map).
    There each output cell's window is that one cell, so the map is replicated
    with `UpSampling2D` first; the result is PyTorch's for every input size.

    Args:
        input_shape: `(height, width, channels)`; at least 63x63, any channels.
        num_classes: number of logits, at least 2.
        activation: activation after every hidden layer ("relu" in the paper).
        width: multiplier on the convolution channels and dense units.
        dropout: rate of the two dropout layers of the classifier.
        name: the model's name.

    Example:
        >>> model = AlexNet(input_shape=(224, 224, 1), num_classes=10)
        >>> model.count_params()
        5303498
    """
    check_common_args("AlexNet", input_shape, num_classes, width, dropout, alexnet_min_input_size())
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"AlexNet option activation must be one of {', '.join(map(repr, _ACTIVATIONS))}, "
            f"got {activation!r}."
        )
    height, width_px, _ = (int(d) for d in input_shape)

    inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="images")
    x = keras.layers.ZeroPadding2D(2, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(scaled(96, width), 11, strides=4, activation=activation, name="conv1")(
        x
    )
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = keras.layers.Conv2D(
        scaled(256, width), 5, padding="same", activation=activation, name="conv2"
    )(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    for index, filters in ((3, 384), (4, 384), (5, 256)):
        x = keras.layers.Conv2D(
            scaled(filters, width), 3, padding="same", activation=activation, name=f"conv{index}"
        )(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)

    rows, cols = alexnet_feature_size(height), alexnet_feature_size(width_px)
    if rows < 2 or cols < 2:
        x = keras.layers.UpSampling2D(
            size=(2 if rows < 2 else 1, 2 if cols < 2 else 1), name="avgpool_replicate"
        )(x)
    x = keras.layers.AdaptiveAveragePooling2D((2, 2), name="avgpool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = keras.layers.Dense(scaled(1024, width), activation=activation, name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="dropout2")(x)
    x = keras.layers.Dense(scaled(512, width), activation=activation, name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)
