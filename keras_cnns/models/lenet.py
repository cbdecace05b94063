"""LeNet-5 in its classic reference form.

Reference:
    LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE 86(11), 1998. The layout is the one
    d2l.ai uses as "LeNet": the first convolution is padded so that 28x28
    MNIST images keep LeNet's 32x32 geometry, activations are sigmoids and
    subsampling is 2x2 average pooling.
"""

from __future__ import annotations

import keras

from keras_cnns.models.common import (
    check_choice,
    check_common_args,
    read_activation,
    read_dropout,
    scaled,
)
from keras_cnns.models.registry import ModelEntry, ParityCase, frozen, register_model

_ACTIVATIONS = ("sigmoid", "relu")
_POOLINGS = ("avg", "max")


def lenet_min_input_size() -> int:
    # 'same' conv -> pool/2 -> 5x5 'valid' conv -> pool/2 needs floor(s/2) - 4 >= 2.
    return 12


def LeNet5(
    *,
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    activation: str = "sigmoid",
    pooling: str = "avg",
    width: float = 1.0,
    dropout: float = 0.0,
    name: str = "lenet",
) -> keras.Model:
    """Instantiate LeNet-5 (61,706 parameters at 28x28x1 and 10 classes).

    Conv 6@5x5 'same' -> pool 2 -> Conv 16@5x5 'valid' -> pool 2 -> Flatten ->
    Dense 120 -> Dense 84 -> Dense `num_classes`, with `activation` after every
    hidden layer. The model returns logits.

    Args:
        input_shape: `(height, width, channels)`; at least 12x12.
        num_classes: number of logits, at least 2.
        activation: "sigmoid" (the classic form) or "relu".
        pooling: "avg" (the classic form) or "max".
        width: multiplier on every layer's channels and units.
        dropout: rate of the dropout before each dense layer; 0 adds no
            dropout layer at all.
        name: the model's name.

    Example:
        >>> model = LeNet5(input_shape=(28, 28, 1), num_classes=10)
        >>> model.count_params()
        61706
    """
    check_common_args("LeNet-5", input_shape, num_classes, width, dropout, lenet_min_input_size())
    check_choice("LeNet-5", "activation", activation, _ACTIVATIONS)
    check_choice("LeNet-5", "pooling", pooling, _POOLINGS)
    pool = keras.layers.AveragePooling2D if pooling == "avg" else keras.layers.MaxPooling2D

    inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="images")
    x = keras.layers.Conv2D(
        scaled(6, width), 5, padding="same", activation=activation, name="conv1"
    )(inputs)
    x = pool(2, strides=2, name="pool1")(x)
    x = keras.layers.Conv2D(
        scaled(16, width), 5, padding="valid", activation=activation, name="conv2"
    )(x)
    x = pool(2, strides=2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate((120, 84), start=1):
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout{index}")(x)
        x = keras.layers.Dense(scaled(units, width), activation=activation, name=f"fc{index}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout3")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def read_lenet_options(keras_model) -> dict:
    """The activation, pooling and dropout of a built LeNet-5."""
    pool = type(keras_model.get_layer("pool1")).__name__
    return {
        "activation": read_activation(keras_model),
        "pooling": "avg" if pool.startswith("Average") else "max",
        "dropout": read_dropout(keras_model),
    }


register_model(
    ModelEntry(
        name="lenet",
        builder=LeNet5,
        default_image_size=28,
        min_image_size=lenet_min_input_size(),
        options=frozen(activation="sigmoid", pooling="avg", width=1.0, dropout=0.0),
        # Sigmoid LeNet learns slowly with SGD; AdamW at 2e-2 reaches 97-99% on digits in
        # 40 epochs of well under a second each (docs/BENCHMARKS.md).
        recipe=frozen(
            image_size=28, epochs=40, batch_size=64, optimizer="adamw", lr=2e-2,
            weight_decay=1e-4, warmup_epochs=1, augment="light",
        ),
        # On Fashion-MNIST the shifts and flips cost LeNet-5 more than they give: 0.889 test
        # accuracy with them, 0.902 without. On digits the raw weights' best epoch left one
        # seed in 15 runs under 97%; their moving average (decay 0.99) gave 0.986-0.992 at
        # seeds 0-4 (docs/BENCHMARKS.md, "Recipe goals").
        dataset_recipes=frozen(digits=frozen(ema_decay=0.99),
                               fashion_mnist=frozen(augment="none")),
        reference=(
            "LeCun et al., 'Gradient-based learning applied to document recognition', "
            "Proc. IEEE 1998; the d2l.ai form (sigmoid, average pooling, padded first conv)."
        ),
        torch_reference="keras_cnns.reference.twins:lenet_reference",
        layer_units=frozen(conv1=6, conv2=16, fc1=120, fc2=84),
        read_options=read_lenet_options,
        parity_cases=(
            ParityCase((28, 28, 1), why="28-classic"),
            ParityCase((28, 28, 1), frozen(activation="relu", pooling="max", dropout=0.3),
                       "28-relu-max-dropout"),
            ParityCase((33, 30, 3), frozen(width=1.5), "33x30-rgb-width1.5"),
            ParityCase((12, 12, 1), why="12-smallest"),
        ),
        search_space=frozen(
            dropout={"min": 0.0, "max": 0.5, "step": 0.1},
            width={"choices": [0.5, 1.0, 1.5, 2.0]},
            lr={"min": 0.002, "max": 0.05, "sampling": "log"},
        ),
    )
)
