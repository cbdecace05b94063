"""Every registered model: shapes, parameter counts, errors, serialisation."""

import keras
import numpy as np
import pytest

from keras_cnns.models import build_model, get_model_entry, list_models

EXPECTED_PARAMS = {
    ("lenet", (28, 28, 1), 10): 61_706,
    ("alexnet", (224, 224, 1), 10): 5_303_498,
    # The adaptive pooling fixes the classifier's input, so the count is size-independent.
    ("alexnet", (63, 63, 1), 10): 5_303_498,
    ("alexnet", (96, 96, 1), 10): 5_303_498,
    # 3 input channels add 2 * 11 * 11 * 96 conv1 weights.
    ("alexnet", (224, 224, 3), 10): 5_303_498 + 2 * 11 * 11 * 96,
    ("alexnet", (224, 224, 1), 1000): 5_303_498 + 990 * 513,
    # torchvision's alexnet: 61,100,840 at ImageNet's shape, at any input size.
    ("alexnet2012", (224, 224, 3), 1000): 61_100_840,
    ("alexnet2012", (63, 63, 3), 1000): 61_100_840,
    ("alexnet2012", (64, 64, 1), 10): 61_100_840 - 2 * 11 * 11 * 64 - 990 * 4097,
}


def test_registry_lists_every_model():
    assert list_models() == ["alexnet", "alexnet2012", "lenet"]


@pytest.mark.parametrize("name", list_models())
def test_entry_defaults_are_consistent(name):
    entry = get_model_entry(name)
    assert entry.min_image_size <= entry.default_image_size
    assert entry.recipe["image_size"] >= entry.min_image_size
    assert entry.reference
    assert entry.check_options(entry.test_options) is None
    for case in entry.parity_cases:
        assert min(case.shape[:2]) >= entry.min_image_size, case
        entry.check_options(case.options)


def _small(name):
    """Options for a quick instance: the entry's test_options (alexnet2012 at width 0.25)."""
    return dict(get_model_entry(name).test_options)


@pytest.mark.parametrize(("name", "shape", "classes"), list(EXPECTED_PARAMS))
def test_parameter_counts(name, shape, classes):
    model = build_model(name, input_shape=shape, num_classes=classes)
    assert model.count_params() == EXPECTED_PARAMS[(name, shape, classes)]


def _sizes(name):
    low = get_model_entry(name).min_image_size
    return sorted({low, low + 1, get_model_entry(name).default_image_size, 2 * low + 3})


@pytest.mark.parametrize(("name", "size"), [(n, s) for n in list_models() for s in _sizes(n)])
def test_output_shape_and_finite_logits(name, size):
    model = build_model(name, input_shape=(size, size, 1), num_classes=7, **_small(name))
    logits = keras.ops.convert_to_numpy(model(np.random.rand(2, size, size, 1), training=False))
    assert logits.shape == (2, 7)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_non_square_and_colour_inputs(name):
    low = get_model_entry(name).min_image_size
    model = build_model(name, input_shape=(low, 2 * low + 5, 3), num_classes=3, **_small(name))
    assert model(np.zeros((1, low, 2 * low + 5, 3)), training=False).shape == (1, 3)


@pytest.mark.parametrize("name", list_models())
def test_width_scales_every_layer(name):
    full = build_model(name, input_shape=(96, 96, 1), num_classes=10)
    half = build_model(name, input_shape=(96, 96, 1), num_classes=10, width=0.5)
    for layer in full.layers:
        if (
            isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
            and layer.name != "predictions"
        ):
            units = getattr(layer, "filters", None) or layer.units
            other = half.get_layer(layer.name)
            assert (getattr(other, "filters", None) or other.units) == max(1, round(units * 0.5))
    assert half.count_params() < full.count_params() / 2
    # The entry's width table is the full model's: how a saved model's width is read back.
    units = get_model_entry(name).layer_units
    assert units and {n: _units(full.get_layer(n)) for n in units} == dict(units)


def _units(layer):
    return getattr(layer, "filters", None) or layer.units


def test_lenet_options():
    model = build_model(
        "lenet",
        input_shape=(28, 28, 1),
        num_classes=10,
        activation="relu",
        pooling="max",
        dropout=0.25,
    )
    assert model.get_layer("conv1").activation.__name__ == "relu"
    assert isinstance(model.get_layer("pool1"), keras.layers.MaxPooling2D)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [
        0.25,
        0.25,
        0.25,
    ]
    # Dropout has no weights: the count stays the classic one.
    assert model.count_params() == 61_706


@pytest.mark.parametrize("name", ["alexnet", "alexnet2012"])
def test_alexnet_dropout_stands_before_the_first_two_dense_layers(name):
    model = build_model(name, input_shape=(96, 96, 1), num_classes=10, dropout=0.3, width=0.25)
    names = [layer.name for layer in model.layers]
    assert names[-6:] == ["flatten", "dropout1", "fc1", "dropout2", "fc2", "predictions"]
    assert model.get_layer("dropout1").rate == model.get_layer("dropout2").rate == 0.3


@pytest.mark.parametrize(("name", "pooled"), [("alexnet", 2), ("alexnet2012", 6)])
def test_alexnet_replicates_a_one_cell_map(name, pooled):
    """Inputs of 63-94 px leave a 1x1 map; PyTorch's adaptive pool copies it to every cell."""
    model = build_model(name, input_shape=(80, 80, 1), num_classes=10, width=0.25)
    probe = keras.Model(model.input, model.get_layer("avgpool").output)
    out = keras.ops.convert_to_numpy(probe(np.random.rand(1, 80, 80, 1)))
    assert out.shape == (1, pooled, pooled, 64)
    np.testing.assert_array_equal(out[0], np.broadcast_to(out[0, :1, :1], out[0].shape))
    assert "avgpool_replicate" not in [
        layer.name
        for layer in build_model(name, input_shape=(95, 95, 1), num_classes=10).layers
    ]


def test_alexnet2012_is_torchvisions_layout():
    model = build_model("alexnet2012", input_shape=(224, 224, 3), num_classes=1000)
    sizes = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    assert sizes == {"conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256}
    assert model.get_layer("conv1").kernel_size == (11, 11)
    assert model.get_layer("conv1").strides == (4, 4)
    assert model.get_layer("conv2").kernel_size == (5, 5)
    assert model.get_layer("avgpool").output.shape[1:] == (6, 6, 256)
    assert [model.get_layer(n).units for n in ("fc1", "fc2", "predictions")] == [4096, 4096, 1000]
    assert model.get_layer("fc1").input.shape[-1] == 9216


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "resnet"}, "known models are: alexnet, alexnet2012, lenet"),
        ({"name": "alexnet2012", "input_shape": (62, 62, 3)}, "at least 63x63"),
        ({"name": "alexnet2012", "width": 0}, "width > 0"),
        ({"input_shape": (62, 62, 1)}, "at least 63x63"),
        ({"name": "lenet", "input_shape": (11, 11, 1)}, "at least 12x12"),
        ({"width": 0}, "width > 0"),
        ({"width": -1.5}, "width > 0"),
        ({"dropout": 1.0}, "dropout in [0, 1)"),
        ({"dropout": -0.1}, "dropout in [0, 1)"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"activation": "swish?"}, "activation must be one of"),
        ({"name": "lenet", "pooling": "mean"}, "pooling must be one of"),
        ({"name": "lenet", "input_shape": (28, 28, 1), "bogus": 1}, "has no option 'bogus'"),
    ],
)
def test_bad_arguments_raise_one_clear_sentence(kwargs, fragment):
    args = {"name": "alexnet", "input_shape": (96, 96, 1), "num_classes": 10} | kwargs
    name = args.pop("name")
    with pytest.raises(ValueError) as info:
        build_model(name, **args)
    message = str(info.value)
    assert fragment in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("name", list_models())
def test_get_config_round_trip(name):
    size = get_model_entry(name).default_image_size
    model = build_model(name, input_shape=(size, size, 1), num_classes=10,
                        **{"width": 0.5, **_small(name)})
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.count_params() == model.count_params()


@pytest.mark.parametrize("name", list_models())
def test_keras_file_round_trip_in_safe_mode(name, tmp_path):
    size = get_model_entry(name).min_image_size
    model = build_model(name, input_shape=(size, size, 1), num_classes=10, **_small(name))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    batch = np.random.rand(3, size, size, 1).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(batch, training=False)),
        keras.ops.convert_to_numpy(loaded(batch, training=False)),
    )
