"""AlexNet as torchvision builds it: the 2012 ImageNet network without local response norm.

Reference:
    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional
    Neural Networks", NeurIPS 2012, in the single-GPU layout of Krizhevsky, "One weird trick
    for parallelizing convolutional neural networks", arXiv:1404.5997 (2014), which is
    `torchvision.models.alexnet` (weights `alexnet-owt-7be5be79.pth`): Conv 64@11x11/4 pad 2,
    MaxPool 3/2, Conv 192@5x5 pad 2, MaxPool 3/2, Conv 384, 256, 256 @3x3 pad 1, MaxPool 3/2,
    AdaptiveAvgPool 6x6, Dropout, Linear 9216->4096, ReLU, Dropout, Linear 4096->4096, ReLU,
    Linear 4096->classes; ReLU after every convolution. 61,100,840 parameters at 3 channels
    and 1000 classes.

The Keras layers carry the same names as `alexnet`'s (`conv1` ... `fc2`, `predictions`), and
`keras_cnns.reference` maps them to torchvision's state-dict keys (`features.0` ...
`classifier.6`), so torchvision checkpoints convert as they are
(`scripts/convert.py alexnet-owt-7be5be79.pth --to keras --model alexnet2012`).
"""

from __future__ import annotations

import keras

from keras_cnns.models.alexnet import alexnet_layers, alexnet_min_input_size, read_alexnet_options
from keras_cnns.models.registry import ModelEntry, ParityCase, frozen, register_model

# Keras layer -> filters / units at width 1.0 (torchvision's alexnet).
UNITS = frozen(conv1=64, conv2=192, conv3=384, conv4=256, conv5=256, fc1=4096, fc2=4096)
POOLED = (6, 6)


def AlexNet2012(
    *,
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    activation: str = "relu",
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "alexnet2012",
) -> keras.Model:
    """Instantiate torchvision's AlexNet (61,100,840 parameters at 224x224x3, 1000 classes).

    Any input of at least 63x63 pixels works, as in PyTorch: the adaptive pooling brings
    every feature map to 6x6 with PyTorch's windows, including maps of 1 to 5 cells, where
    the windows repeat cells (see `keras_cnns.models.alexnet.alexnet_layers`).

    Args:
        input_shape: `(height, width, channels)`; at least 63x63; 3 channels for ImageNet
            weights, 1 for grey data sets.
        num_classes: number of logits, at least 2 (1000 for ImageNet).
        activation: activation after every hidden layer ("relu" in torchvision).
        width: multiplier on the convolution channels and dense units.
        dropout: rate of the two dropout layers of the classifier.
        name: the model's name.

    Example:
        >>> model = AlexNet2012(input_shape=(224, 224, 3), num_classes=1000)
        >>> model.count_params()
        61100840
    """
    return alexnet_layers(
        "AlexNet-2012", input_shape=input_shape, num_classes=num_classes, units=UNITS,
        pooled=POOLED, activation=activation, width=width, dropout=dropout, name=name,
    )


_NARROW = frozen(width=0.25)

register_model(
    ModelEntry(
        name="alexnet2012",
        builder=AlexNet2012,
        default_image_size=64,
        min_image_size=alexnet_min_input_size(),
        options=frozen(activation="relu", width=1.0, dropout=0.5),
        # 61M parameters against 1,257 training digits: a lower rate than the seed's
        # AlexNet, and its augmentation (docs/BENCHMARKS.md).
        recipe=frozen(
            image_size=64, epochs=15, batch_size=64, optimizer="adamw", lr=3e-4,
            weight_decay=5e-4, warmup_epochs=2, augment="light",
        ),
        reference=(
            "Krizhevsky, Sutskever and Hinton, NeurIPS 2012, as torchvision.models.alexnet "
            "(Krizhevsky, 'One weird trick for parallelizing convolutional neural networks', "
            "arXiv:1404.5997): 64-192-384-256-256 convolutions, adaptive 6x6 pooling, "
            "4096-4096 classifier."
        ),
        torch_reference="keras_cnns.reference.twins:alexnet2012_reference",
        layer_units=UNITS,
        read_options=read_alexnet_options,
        parity_cases=(
            # Every feature-map size from 1 (the smallest input) to 7, and non-square ones;
            # full width at the smallest input and at ImageNet's 224.
            ParityCase((63, 63, 3), why="63-map1x1-full"),
            ParityCase((224, 224, 3), why="224-map6x6-full"),
            ParityCase((96, 96, 1), _NARROW, "96-map2x2"),
            ParityCase((127, 127, 1), _NARROW, "127-map3x3"),
            ParityCase((159, 159, 1), _NARROW, "159-map4x4"),
            ParityCase((191, 191, 3), _NARROW, "191-map5x5-rgb"),
            ParityCase((80, 191, 1), _NARROW, "80x191-map1x5"),
            ParityCase((255, 130, 1), frozen(width=0.25, activation="gelu"), "255x130-map7x3-gelu"),
        ),
        test_options=_NARROW,
        search_space=frozen(
            dropout={"min": 0.2, "max": 0.6, "step": 0.1},
            width={"choices": [0.25, 0.5, 1.0]},
            lr={"min": 0.0001, "max": 0.001, "sampling": "log"},
            augment={"choices": ["none", "light"]},
        ),
    )
)
