"""Keras <-> PyTorch: state_dict files, scripts/convert.py, and one SGD step in both frameworks.

Parity metric, as in test_reference_parity.py: `max|a - b| / max|b|` must be at most 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from extras import require

from keras_cnns.models import build_model, get_model_entry, list_models

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5

require("torch")
import torch  # noqa: E402
from test_reference_parity import _randomise  # noqa: E402

from keras_cnns.reference import (  # noqa: E402
    build_reference,
    keras_to_torch,
    keras_weights_to_state_dict,
    reference_spec,
)
from keras_cnns.reference.checkpoints import (  # noqa: E402
    ConversionError,
    keras_to_torch_file,
    torch_file_to_keras,
)


def _case(name):
    """A small instance of every registered model, with options away from their defaults."""
    entry = get_model_entry(name)
    size = entry.default_image_size
    options = {"dropout": 0.2, **entry.test_options}
    if entry.options.get("activation") == "relu":
        options["activation"] = "gelu"
    return (name, (size, size, 3), options)


CASES = [_case(name) for name in list_models()]


def gap(values, reference) -> float:
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def _images(shape, batch=4, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def _torch_logits(module, x):
    with torch.inference_mode():
        return module.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


@pytest.mark.parametrize(("name", "shape", "options"), CASES, ids=list_models())
def test_state_dict_files_round_trip_with_the_same_logits(tmp_path, name, shape, options):
    keras.utils.set_random_seed(4)
    model = build_model(name, input_shape=shape, num_classes=7, **options)
    model.save(tmp_path / "m.keras")
    x = _images(shape)
    want = model.predict(x, verbose=0)

    record = keras_to_torch_file(tmp_path / "m.keras", tmp_path / "w.pt")
    assert record["reference"] == reference_spec(model)
    assert record["reference"]["options"] == {**get_model_entry(name).options, **options}
    # Plain torch: the file is a state_dict of the module that the JSON beside it describes.
    spec = json.loads((tmp_path / "w.json").read_text())["reference"]
    module = build_reference(spec["name"], input_shape=spec["input_shape"],
                             num_classes=spec["num_classes"], **spec["options"])
    module.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert gap(_torch_logits(module, x), want) <= RTOL

    back = torch_file_to_keras(tmp_path / "w.pt", tmp_path / "back.keras")
    assert back["logits_gap"] <= RTOL
    restored = keras.saving.load_model(tmp_path / "back.keras", compile=False)
    for got, expected in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)  # a lossless round trip


def test_conversions_refuse_to_overwrite_or_guess(tmp_path):
    model = build_model("lenet", input_shape=(28, 28, 1), num_classes=10)
    model.save(tmp_path / "m.keras")
    keras_to_torch_file(tmp_path / "m.keras", tmp_path / "w.pt")
    with pytest.raises(ConversionError, match="already exists"):
        keras_to_torch_file(tmp_path / "m.keras", tmp_path / "w.pt")
    (tmp_path / "bare.pt").write_bytes((tmp_path / "w.pt").read_bytes())
    with pytest.raises(ConversionError, match="no bare.json beside it"):
        torch_file_to_keras(tmp_path / "bare.pt", tmp_path / "x.keras")
    alexnet = {"name": "alexnet", "input_shape": [64, 64, 1], "num_classes": 10, "options": {}}
    with pytest.raises(ConversionError, match="missing keys"):
        torch_file_to_keras(tmp_path / "bare.pt", tmp_path / "y.keras", spec=alexnet)
    assert not (tmp_path / "y.keras").exists()


@pytest.mark.parametrize("name", list_models())
def test_one_sgd_step_updates_the_weights_alike(name):
    """Identical weights, batch and plain SGD: Keras (TF) and PyTorch land on the same weights."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the Keras side of this check is the TensorFlow backend")
    entry = get_model_entry(name)
    size, options = entry.default_image_size, {**entry.test_options, "dropout": 0.0}
    keras.utils.set_random_seed(5)
    shape = (size, size, 1)
    model = build_model(name, input_shape=shape, num_classes=10, **options)
    module = build_reference(name, input_shape=shape, num_classes=10, **options)
    keras_to_torch(model, module)
    before = {key: value.clone() for key, value in module.state_dict().items()}
    rng = np.random.default_rng(5)
    x, y = _images(shape, batch=16, seed=5), rng.integers(0, 10, 16)
    lr = 1.0  # large, so that the updates are far above float32 rounding of the weights

    model.compile(keras.optimizers.SGD(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    keras_loss = float(model.train_on_batch(x, y))
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    module.train()  # no dropout layers: training mode changes nothing
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(
        module(torch.from_numpy(x.transpose(0, 3, 1, 2))), torch.from_numpy(y))
    loss.backward()
    optimizer.step()

    assert abs(keras_loss - loss.item()) <= RTOL * abs(loss.item())
    after = keras_weights_to_state_dict(model)
    for key, value in module.state_dict().items():
        torch_new, keras_new, old = (t.numpy() for t in (value, after[key], before[key]))
        assert not np.array_equal(torch_new, old), key
        assert gap(keras_new, torch_new) <= RTOL, key
        # The updates themselves (the gradients times lr) agree too, to float32 noise.
        assert gap(keras_new - old, torch_new - old) <= 1e-3, key


@pytest.mark.slow
def test_convert_script_round_trip(tmp_path):
    """scripts/convert.py --to torch, then --to keras three ways, in one process."""
    model = build_model("lenet", input_shape=(20, 20, 1), num_classes=4, activation="relu")
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(
        """
        import runpy, sys
        from keras_cnns.commands.convert import main
        d = sys.argv[2]
        for argv in (
            [f"{d}/m.keras", "--to", "torch"],
            [f"{d}/m.pt", "--to", "keras", "--output", f"{d}/a.keras"],
            [f"{d}/m.pt", "--to", "keras", "--output", f"{d}/b.keras", "--like", f"{d}/m.keras"],
            [f"{d}/m.pt", "--to", "keras", "--output", f"{d}/c.keras", "--model", "lenet",
             "--input-shape", "20", "20", "1", "--num-classes", "4",
             "--model-kwargs", "activation=relu"],
            [f"{d}/m.pt", "--to", "keras", "--output", f"{d}/a.keras"],
        ):
            try:
                code = main(argv)
            except SystemExit as stop:
                code = stop.code
            print("EXIT", code, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "scripts" / "convert.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.stdout.count("EXIT") == 5, proc.stderr[-3000:]
    codes = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("EXIT")]
    assert codes == ["0", "0", "0", "0", "1"], proc.stdout + proc.stderr[-3000:]
    assert "logits gap" in proc.stdout
    assert "a.keras already exists" in proc.stderr
    x = _images((20, 20, 1))
    want = model.predict(x, verbose=0)
    for name in ("a", "b", "c"):
        restored = keras.saving.load_model(tmp_path / f"{name}.keras", compile=False)
        assert gap(restored.predict(x, verbose=0), want) <= RTOL, name


# -- torchvision's AlexNet: its checkpoints in, a SavedModel out ---------------------------------

# torchvision.models.alexnet().state_dict(), keys and shapes (the layout of alexnet-owt-7be5be79).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}


def _torchvision_checkpoint(path, module):
    state = module.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == TORCHVISION_ALEXNET
    torch.save(state, path)  # a bare state_dict, as torchvision publishes it


def test_torchvision_checkpoint_converts_with_the_same_logits(tmp_path):
    from keras_cnns.reference import AlexNet2012

    module = _randomise(AlexNet2012(), 0)
    _torchvision_checkpoint(tmp_path / "alexnet-owt.pth", module)
    for size in (224, get_model_entry("alexnet2012").min_image_size):
        # Only the name: channels and classes come from the weights; the size from the spec.
        spec = {"name": "alexnet2012", "input_shape": [size, size] if size != 224 else None}
        out = tmp_path / f"m{size}.keras"
        record = torch_file_to_keras(tmp_path / "alexnet-owt.pth", out, spec=spec)
        assert record["reference"]["input_shape"] == [size, size, 3]
        assert record["reference"]["num_classes"] == 1000
        model = keras.saving.load_model(out, compile=False)
        assert model.count_params() == 61_100_840
        x = _images((size, size, 3), batch=2)
        expected = _torch_logits(module, x)
        eager, graph = model(x, training=False), model.predict(x, verbose=0)
        print(f"torchvision checkpoint at {size}px: gaps {gap(eager, expected):.1e}, "
              f"{gap(graph, expected):.1e}")
        assert gap(eager, expected) <= RTOL and gap(graph, expected) <= RTOL


def test_real_torchvision_alexnet_if_installed(tmp_path):
    """Where torchvision imports (not beside this project's CPU torch), its own module."""
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed")
    module = _randomise(torchvision.models.alexnet(weights=None), 0)
    _torchvision_checkpoint(tmp_path / "tv.pth", module)
    torch_file_to_keras(tmp_path / "tv.pth", tmp_path / "tv.keras", spec={"name": "alexnet2012"})
    model = keras.saving.load_model(tmp_path / "tv.keras", compile=False)
    x = _images((224, 224, 3), batch=2)
    assert gap(model.predict(x, verbose=0), _torch_logits(module, x)) <= RTOL


def test_checkpoint_of_another_model_is_one_sentence(tmp_path):
    torch.save(build_reference("lenet", input_shape=(28, 28, 1), num_classes=10).state_dict(),
               tmp_path / "lenet.pt")
    with pytest.raises(ConversionError, match="not a alexnet2012 checkpoint"):
        torch_file_to_keras(tmp_path / "lenet.pt", tmp_path / "x.keras",
                            spec={"name": "alexnet2012"})


@pytest.mark.slow
def test_converted_checkpoint_exports_and_predicts_its_class_names(tmp_path):
    """convert.py W.pth --to export --mean --std --class-names; predict.py prints the names."""
    from PIL import Image

    module = _randomise(build_reference("alexnet2012", input_shape=(64, 64, 3), num_classes=3,
                                 width=0.25), 0)
    torch.save(module.state_dict(), tmp_path / "w.pth")
    (tmp_path / "names.txt").write_text("tabby cat\ngolden retriever\nespresso\n")
    export = tmp_path / "export"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert.py"), str(tmp_path / "w.pth"),
         "--to", "export", "--model", "alexnet2012", "--input-shape", "64", "64", "3",
         "--model-kwargs", "width=0.25", "--mean", "0.485", "0.456", "0.406",
         "--std", "0.229", "0.224", "0.225", "--class-names", str(tmp_path / "names.txt"),
         "--output", str(export)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["dataset"]["class_names"] == ["tabby cat", "golden retriever", "espresso"]
    assert manifest["preprocessing"]["std"] == [0.229, 0.224, 0.225]
    assert manifest["conversion"]["logits_gap"] <= RTOL

    # serving_default: uint8 RGB of another size, resized and normalised ImageNet-style.
    image = np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    import tensorflow as tf

    x = tf.image.resize(image[None].astype("float32") / 255.0, (64, 64)).numpy()
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    want = torch.softmax(torch.from_numpy(_torch_logits(module, x.astype("float32"))), -1)
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        images=tf.constant(image[None]))
    assert gap(served["probabilities"].numpy(), want.numpy()) <= 1e-4
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), str(export),
         str(tmp_path / "photo.png"), "--top-k", "3"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("tabby cat", "golden retriever", "espresso"):
        assert name in proc.stdout
    # verify.py checks what a converted export has: hashes and golden probabilities.
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify.py"), str(export)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok    golden" in proc.stdout and "skip  accuracy  converted weights" in proc.stdout


@pytest.mark.parametrize("sidecar, flags, says", [
    # CV2_tv5_as10: the classes a flag names are the checkpoint's, or refused; never dropped.
    (None, ["--model", "lenet", "--num-classes", "10"],
     "--num-classes says 10; the checkpoint's last layer has 5 classes."),
    # CV2_listside: a sidecar of the wrong shape is one sentence, not a TypeError.
    ("[1, 2]", [], "does not hold a reference spec"),
    ('{"reference": {"name": "lenet", "input_shape": "28", "num_classes": 5}}', [],
     "does not hold a reference spec"),
])
def test_what_a_checkpoint_cannot_honour_is_one_sentence(sidecar, flags, says, tmp_path,
                                                         capsys):
    from bad_inputs import assert_one_sentence, run_in_process, snapshot

    torch.save(build_reference("lenet", input_shape=(28, 28, 1), num_classes=5).state_dict(),
               tmp_path / "w.pt")
    if sidecar is not None:
        (tmp_path / "w.json").write_text(sidecar)
    before = snapshot(tmp_path)
    argv = [str(tmp_path / "w.pt"), "--to", "keras", "--output", str(tmp_path / "m.keras")]
    code, _, err = run_in_process("convert", [*argv, *flags], capsys)
    assert_one_sentence(code, err, 1, says, "convert.py")
    assert snapshot(tmp_path) == before
