"""ONNX: model.onnx in an export, onnxruntime against the SavedModel, and adding it afterwards.

The contract (keras_cnns/export/onnx_export.py): onnxruntime's probabilities equal
`serving_default`'s within 1e-5 (relative to their max), on uint8 images of any size, grey or
colour, and its labels are the class names of its classes.
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
import tensorflow as tf
from extras import require
from test_tflite import assert_a_failed_check_leaves_no_export

from keras_cnns import export as export_lib
from keras_cnns.data import build_pipeline, load_source
from keras_cnns.models import build_model

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5
CONFIG = {"model": "lenet", "dataset": "synthetic", "image_size": 16, "label_smoothing": 0.0}

require("onnxruntime", "onnx", "tf2onnx")
if keras.backend.backend() != "tensorflow":
    pytest.skip("these tests build their exports under the TensorFlow backend",
                allow_module_level=True)

from keras_cnns.export import onnx_export  # noqa: E402


def gap(values, reference) -> float:
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def tiny_model(source, steps: int = 3):
    model = build_model("lenet", input_shape=(16, 16, source.info.channels), num_classes=10,
                        activation="relu")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    train = build_pipeline(source, "train", image_size=16, batch_size=100, repeat=True)
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="module")
def source():
    return load_source("synthetic", image_size=16, train_size=300, test_size=120)


@pytest.fixture(scope="module")
def model(source):
    return tiny_model(source)


@pytest.fixture(scope="module")
def with_onnx(source, model, tmp_path_factory):
    path = tmp_path_factory.mktemp("exports") / "with_onnx"
    return export_lib.export_model(model, path, config=CONFIG, source=source, metrics={},
                                   onnx=True)


def serving(path):
    return tf.saved_model.load(str(path)).signatures["serving_default"]


def test_export_records_model_onnx_and_its_check(with_onnx, source):
    manifest = export_lib.read_manifest(with_onnx)
    assert (with_onnx / "model.onnx").is_file()
    assert manifest["files"]["model.onnx"] == export_lib.sha256_file(with_onnx / "model.onnx")
    on_disk = {p.relative_to(with_onnx).as_posix() for p in with_onnx.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    section = manifest["onnx"]
    assert section["file"] == "model.onnx" and section["opset"] == onnx_export.OPSET
    assert section["checked_images"] == source.info.split_sizes["test"]
    assert section["checked_against"] == "serving_default"
    assert 0.0 <= section["max_probability_gap"] <= RTOL
    assert section["classes_agree"] == section["checked_images"]


def test_onnx_signature(with_onnx):
    sess = onnx_export.session(with_onnx / "model.onnx")
    (images,) = sess.get_inputs()
    assert images.name == "images" and images.type == "tensor(uint8)" and len(images.shape) == 4
    outputs = {o.name: o.type for o in sess.get_outputs()}
    assert outputs == {"probabilities": "tensor(float)", "classes": "tensor(int64)",
                       "labels": "tensor(string)", "logits": "tensor(float)"}


@pytest.mark.parametrize("shape", [(5, 16, 16, 1), (3, 31, 17, 1), (2, 9, 40, 3)])
def test_onnxruntime_gives_the_saved_models_probabilities(with_onnx, model, shape):
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    want = serving(with_onnx)(images=tf.constant(images))
    got = onnx_export.run_onnx(onnx_export.session(with_onnx / "model.onnx"), images)
    assert gap(got["probabilities"], want["probabilities"].numpy()) <= RTOL
    np.testing.assert_array_equal(got["classes"], want["classes"].numpy())
    # tf2onnx turns the SavedModel's string gather into an ONNX Gather on a string table.
    assert got["labels"].tolist() == [label.decode() for label in want["labels"].numpy()]
    probabilities = tf.nn.softmax(got["logits"]).numpy()
    assert gap(probabilities, want["probabilities"].numpy()) <= RTOL


def test_colour_model_onnx(tmp_path):
    source = load_source("synthetic", image_size=20, channels=3, train_size=100, test_size=40)
    model = tiny_model(source, steps=1)
    path = export_lib.export_model(model, tmp_path / "colour", config=CONFIG, source=source,
                                   metrics={}, onnx=True)
    sess = onnx_export.session(path / "model.onnx")
    for shape in [(4, 20, 20, 3), (2, 33, 25, 1)]:
        images = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
        want = serving(path)(images=tf.constant(images))["probabilities"].numpy()
        assert gap(onnx_export.run_onnx(sess, images)["probabilities"], want) <= RTOL


def test_a_failed_onnx_check_leaves_no_export(source, model, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no gap passes
    assert_a_failed_check_leaves_no_export(tmp_path, model, source, "onnx",
                                           "onnxruntime's probabilities differ")


def test_add_onnx_to_an_existing_export(source, model, tmp_path, monkeypatch):
    path = export_lib.export_model(model, tmp_path / "plain", config=CONFIG, source=source,
                                   metrics={})
    before = (path / "manifest.json").read_text()
    assert "onnx" not in json.loads(before)
    files = sorted(p.relative_to(path) for p in path.rglob("*"))

    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)
    with pytest.raises(export_lib.ExportError, match="differ"):
        export_lib.add_onnx(path)
    assert (path / "manifest.json").read_text() == before  # a failed add changes nothing
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == files  # no temporaries
    monkeypatch.undo()

    section = export_lib.add_onnx(path)
    manifest = export_lib.read_manifest(path)
    assert manifest["onnx"] == section and section["max_probability_gap"] <= RTOL
    assert manifest["files"]["model.onnx"] == export_lib.sha256_file(path / "model.onnx")
    unchanged = {k: v for k, v in manifest.items() if k not in ("onnx", "files")}
    assert unchanged == {k: v for k, v in json.loads(before).items() if k != "files"}
    with pytest.raises(export_lib.ExportError, match="already has model.onnx"):
        export_lib.add_onnx(path)
    assert export_lib.add_onnx(path, replace=True)["file"] == "model.onnx"


@pytest.mark.slow
def test_convert_script_adds_onnx_and_verify_accepts_it(source, model, tmp_path):
    path = export_lib.export_model(model, tmp_path / "e", config=CONFIG, source=source,
                                   metrics={})
    script = textwrap.dedent(
        """
        import runpy, sys
        for argv in ([sys.argv[1], sys.argv[3], "--to", "onnx"], [sys.argv[2], sys.argv[3]]):
            sys.argv = argv
            try:
                runpy.run_path(argv[0], run_name="__main__")
            except SystemExit as stop:
                print("EXIT", stop.code, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "scripts" / "convert.py"),
         str(ROOT / "scripts" / "verify.py"), str(path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.stdout.count("EXIT 0") == 2, proc.stdout + proc.stderr[-3000:]
    assert "max probability gap" in proc.stdout
    assert "model.onnx" in export_lib.read_manifest(path)["files"]
