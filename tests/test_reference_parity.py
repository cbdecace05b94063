"""The Keras models compute what their PyTorch references compute.

Weights of a randomly initialised `keras_cnns.reference` module are ported to
the Keras model, and both are fed the same images. The models are the same
network exactly when the logits agree to float32 rounding.

Parity metric: `gap = max|keras - torch| / max|torch|`, the largest difference
over the whole batch of logits in units of the logits' own scale, must not
exceed 1e-5. An element-wise relative tolerance would be unsound for logits
near zero, and an absolute one depends on the initialisation; against the
scale it is both strict and meaningful. Float32 convolutions in two libraries
differ by about 1e-7 to 2e-6 of it; a layout mistake (a flatten order, a kernel
transpose) costs well over 1e-3, which `test_metric_catches_flatten_order` checks.

The references are re-initialised with He-normal weights and small random
biases (`_randomise`): with PyTorch's default initialisation the AlexNet signal
shrinks layer by layer until the logits are mostly the last bias (their
input-dependent part ~0.3% of them), which would make any tolerance
relative to the logits lax about everything before the classifier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from extras import require

require("torch")  # the PyTorch references; skips the module, fails under CI
import torch  # noqa: E402

from keras_cnns.models import build_model, get_model_entry, list_models  # noqa: E402
from keras_cnns.reference import (  # noqa: E402
    AlexNet,
    AlexNet2012,
    LeNet5,
    build_reference,
    keras_to_torch,
    keras_weights_to_state_dict,
    load_state_dict_into_keras,
    torch_layer_map,
    torch_to_keras,
)

RTOL = 1e-5
BATCH = 3

# Every registered model's own cases (ModelEntry.parity_cases): the smallest input, each
# feature-map size where the pooling changes behaviour, odd, non-square and colour inputs.
PARITY_CASES = [
    pytest.param(name, case.shape, dict(case.options), id=f"{name}-{case.why}")
    for name in list_models()
    for case in get_model_entry(name).parity_cases
]


def _small(name):
    return dict(get_model_entry(name).test_options)


def gap(actual, expected) -> float:
    """max|actual - expected| / max|expected| (see the module docstring)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _randomise(module, seed: int):
    """He-normal weights and U(-0.1, 0.1) biases, so the logits depend on the input."""
    torch.manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            torch.nn.init.uniform_(layer.bias, -0.1, 0.1)
    return module.eval()


def _images(shape, seed: int = 0) -> np.ndarray:
    # Uniform [0, 1] pixels, each image at its own brightness so the images differ.
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(BATCH, *shape)) * rng.uniform(0.1, 1.0, size=(BATCH, 1, 1, 1))
    return x.astype("float32")


def _torch_logits(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def _pair(name, shape, options, seed=0):
    ref = _randomise(build_reference(name, input_shape=shape, num_classes=10, **options), seed)
    model = build_model(name, input_shape=shape, num_classes=10, **options)
    return ref, model


@pytest.mark.parametrize(("name", "shape", "options"), PARITY_CASES)
def test_torch_weights_give_torch_logits(name, shape, options):
    ref, model = _pair(name, shape, options)
    assert model.count_params() == sum(p.numel() for p in ref.parameters())
    torch_to_keras(ref, model)
    x = _images(shape)
    expected = _torch_logits(ref, x)
    eager = gap(model(x, training=False), expected)
    graph = gap(model.predict(x, batch_size=BATCH, verbose=0), expected)
    print(f"{name} {shape} {options}: eager gap {eager:.2e}, predict gap {graph:.2e}")
    assert eager <= RTOL
    assert graph <= RTOL


@pytest.mark.parametrize(
    ("name", "shape", "options"),
    [
        ("alexnet", (63, 63, 1), {}),
        ("alexnet", (191, 255, 1), {}),
        ("alexnet2012", (63, 63, 3), {"width": 0.25}),
        ("alexnet2012", (159, 255, 1), {"width": 0.25}),
    ],
    ids=["alexnet-map1x1", "alexnet-map5x7", "alexnet2012-map1x1", "alexnet2012-map4x7"],
)
def test_xla_predict_matches_torch(name, shape, options):
    # predict() under XLA: replicated 1-cell maps, repeated and overlapping adaptive windows.
    ref, model = _pair(name, shape, options)
    torch_to_keras(ref, model)
    model.compile(jit_compile=True)
    x = _images(shape)
    xla = gap(model.predict(x, verbose=0), _torch_logits(ref, x))
    print(f"{name} {shape} under XLA: predict gap {xla:.2e}")
    assert xla <= RTOL


@pytest.mark.parametrize("name", list_models())
def test_keras_weights_give_keras_logits(name):
    # The other direction: Keras' own initialisation, ported to PyTorch, at an odd size.
    entry = get_model_entry(name)
    size = 2 * entry.min_image_size + 1
    shape, options = (size, size + 6, 3), {"dropout": 0.2, **_small(name)}
    keras.utils.set_random_seed(1)
    ref, model = _pair(name, shape, options)
    keras_to_torch(model, ref)
    x = _images(shape, seed=1)
    assert gap(_torch_logits(ref, x), model.predict(x, verbose=0)) <= RTOL


@pytest.mark.parametrize("name", list_models())
def test_round_trips_are_exact(name):
    entry = get_model_entry(name)
    shape = (entry.default_image_size, entry.default_image_size, 3)
    options = {"dropout": 0.1, "width": 0.5, **_small(name)}
    keras.utils.set_random_seed(2)
    ref, model = _pair(name, shape, options)
    original = {k: v.clone() for k, v in ref.state_dict().items()}
    torch_to_keras(ref, model)
    back = keras_weights_to_state_dict(model)
    assert back.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(back[key], value), key

    keras_weights = [w.copy() for w in model.get_weights()]
    fresh = build_reference(name, input_shape=shape, num_classes=10, **options)
    keras_to_torch(model, fresh)
    model.set_weights([np.zeros_like(w) for w in keras_weights])
    load_state_dict_into_keras(fresh.state_dict(), model)
    for got, want in zip(model.get_weights(), keras_weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_metric_catches_flatten_order():
    # Sigmoid LeNet is the case where the logits depend least on the input.
    ref, model = _pair("lenet", (28, 28, 1), {})
    torch_to_keras(ref, model)
    fc1 = model.get_layer("fc1")
    naive = ref.state_dict()["7.weight"].numpy().T  # no (C, H, W) -> (H, W, C) row permutation
    fc1.set_weights([naive, fc1.get_weights()[1]])
    x = _images((28, 28, 1))
    assert gap(model.predict(x, verbose=0), _torch_logits(ref, x)) > 100 * RTOL


def test_layer_maps_name_the_right_modules():
    for ref in (AlexNet(), AlexNet2012(width=0.25), LeNet5(), LeNet5(dropout=0.5)):
        modules = dict(ref.named_modules())
        for keras_name, path in ref.keras_layer_map.items():
            kind = torch.nn.Conv2d if keras_name.startswith("conv") else torch.nn.Linear
            assert isinstance(modules[path], kind), (keras_name, path)


def test_references_match_their_sources():
    # The sources' code, verbatim but for line breaks: the seed's AlexNet, d2l's LeNet.
    nn = torch.nn
    seed_features = nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )  # fmt: skip
    seed_classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 2 * 2, 1024), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(1024, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )  # fmt: skip
    d2l_net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10),
    )  # fmt: skip
    alexnet = AlexNet()
    assert repr(alexnet.features) == repr(seed_features)
    assert repr(alexnet.avgpool) == repr(nn.AdaptiveAvgPool2d((2, 2)))
    assert repr(alexnet.classifier) == repr(seed_classifier)
    # LeNet5 *is* the d2l Sequential, so d2l checkpoints load by key.
    assert repr(list(LeNet5())) == repr(list(d2l_net))
    LeNet5().load_state_dict(d2l_net.state_dict())
    assert sum(p.numel() for p in alexnet.parameters()) == 5_303_498
    assert sum(p.numel() for p in d2l_net.parameters()) == 61_706
    model = build_model("alexnet", input_shape=(64, 64, 1), num_classes=10)
    assert torch_layer_map(model) == AlexNet().keras_layer_map


def test_alexnet2012_is_torchvisions_module():
    """torchvision/models/alexnet.py's AlexNet, verbatim but for line breaks."""
    nn = torch.nn
    features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )  # fmt: skip
    classifier = nn.Sequential(
        nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, 1000),
    )  # fmt: skip
    ref = AlexNet2012()
    # Same modules (torchvision's ReLUs are in place, which changes no result) and same keys.
    assert repr(ref.features) == repr(features).replace("ReLU(inplace=True)", "ReLU()")
    assert repr(ref.avgpool) == repr(nn.AdaptiveAvgPool2d((6, 6)))
    assert repr(ref.classifier) == repr(classifier).replace("ReLU(inplace=True)", "ReLU()")
    assert sum(p.numel() for p in ref.parameters()) == 61_100_840
    state = {**{f"features.{k}": v for k, v in features.state_dict().items()},
             **{f"classifier.{k}": v for k, v in classifier.state_dict().items()}}
    ref.load_state_dict(state, strict=True)
    model = build_model("alexnet2012", input_shape=(64, 64, 3), num_classes=10, width=0.25)
    assert torch_layer_map(model) == ref.keras_layer_map


def test_mismatches_raise_value_errors():
    lenet = build_model("lenet", input_shape=(28, 28, 1), num_classes=10)
    with pytest.raises(ValueError, match="does not match the layer map"):
        torch_to_keras(AlexNet(), lenet)
    with pytest.raises(ValueError, match="Layer 'conv1'"):
        torch_to_keras(LeNet5(width=2.0), lenet)
    with pytest.raises(ValueError, match="Layer 'fc1'"):
        torch_to_keras(LeNet5(image_size=32), lenet)  # fc1 sees 6x6, not 5x5
    # Dropout shifts the dense layers' keys; the inferred map must not guess across that.
    with pytest.raises(ValueError, match="missing keys: \\['7.bias'"):
        load_state_dict_into_keras(LeNet5(dropout=0.5).state_dict(), lenet)
    with pytest.raises(ValueError, match="Layer 'conv1'"):
        keras_to_torch(lenet, LeNet5(in_channels=3))

    before = [w.copy() for w in lenet.get_weights()]
    state = LeNet5().state_dict()
    state["11.weight"] = state["11.weight"][:5]  # 5 classes; the Keras model has 10
    with pytest.raises(ValueError, match="Layer 'predictions'"):
        load_state_dict_into_keras(state, lenet)
    state = {**LeNet5().state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="unexpected keys: \\['extra.weight'\\]"):
        load_state_dict_into_keras(state, lenet)
    for got, want in zip(lenet.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)  # a failed load changes nothing

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    with pytest.raises(ValueError, match="none of the registered architectures"):
        keras_weights_to_state_dict(other)
    with pytest.raises(ValueError, match="no option 'depth'"):
        build_reference("alexnet", input_shape=(64, 64, 1), num_classes=10, depth=3)
    with pytest.raises(ValueError, match="at least 63x63"):
        build_reference("alexnet", input_shape=(62, 62, 1), num_classes=10)


def test_torch_stays_optional():
    code = (
        "import sys\n"
        "import keras_cnns, keras_cnns.models\n"
        "assert 'torch' not in sys.modules, 'keras_cnns.models imported torch'\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "try:\n"
        "    import keras_cnns.reference\n"
        "except ImportError as err:\n"
        "    assert \"pip install -e '.[torch]'\" in str(err), err\n"
        "else:\n"
        "    raise AssertionError('no ImportError without torch')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**_env(), "KERAS_BACKEND": "tensorflow"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _env():
    repo = str(Path(__file__).resolve().parents[1])
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
    }


def _training_cases():
    """Every model at its smallest input and its recipe's; the seed's AlexNet at every map."""
    cases = set()
    for name in list_models():
        entry = get_model_entry(name)
        cases |= {(name, entry.min_image_size), (name, entry.default_image_size)}
    cases |= {("alexnet", size) for size in (96, 150, 224)}
    return sorted(cases)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["no-jit", "jit"])
@pytest.mark.parametrize(("name", "size"), _training_cases())
def test_one_training_step(name, size, jit_compile):
    keras.utils.set_random_seed(3)
    model = build_model(name, input_shape=(size, size, 1), num_classes=10, **_small(name))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    x, y = _images((size, size, 1))[:2], np.array([1, 7])
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for weight, old in zip(model.trainable_weights, before, strict=True):
        assert not np.array_equal(keras.ops.convert_to_numpy(weight), old), weight.path
