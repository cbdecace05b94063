"""LiteRT (TFLite): model.tflite in an export, the interpreter against the SavedModel.

The contract (keras_cnns/export/tflite_export.py): uint8 [1, H, W, C] images of the model's
input size in, probabilities, classes and labels out, builtin ops only; a float file matches
serving_default's probabilities within 1e-5, an int8 file (calibrated on training images only)
keeps its test accuracy within 1 point; the manifest records both accuracies, size and sha256,
and scripts/verify.py re-runs the file.
"""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from bad_inputs import assert_one_sentence, run_in_process, snapshot
from test_export import CONFIG, tiny_model

from keras_cnns import export as export_lib
from keras_cnns.data import load_source
from keras_cnns.export import tflite_export

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source():
    return load_source("synthetic")


@pytest.fixture(scope="module")
def model(source):
    return tiny_model(source, steps=20)


@pytest.fixture(scope="module")
def float_export(tmp_path_factory, model, source):
    return export_lib.export_model(model, tmp_path_factory.mktemp("tflite") / "float",
                                   config=CONFIG, source=source, metrics={}, tflite=True)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, model, source):
    return export_lib.export_model(model, tmp_path_factory.mktemp("tflite") / "int8",
                                   config=CONFIG, source=source, metrics={}, tflite=True,
                                   tflite_quantize="int8")


def serving(path):
    return export_lib.load_serving(path)


def test_float_file_is_recorded_and_hashed(float_export, source):
    manifest = export_lib.read_manifest(float_export)
    file = float_export / "model.tflite"
    section = manifest["tflite"]
    assert manifest["files"]["model.tflite"] == export_lib.sha256_file(file) == section["sha256"]
    assert section["size_bytes"] == file.stat().st_size
    assert section["quantize"] is None and section["calibration"] is None
    assert section["checked_images"] == source.info.split_sizes["test"]
    assert 0.0 <= section["max_probability_gap"] <= tflite_export.FLOAT_TOLERANCE
    assert section["test_accuracy"] == section["serving_default_test_accuracy"]


def test_only_builtin_ops_and_a_static_uint8_signature(float_export):
    lite, _ = tflite_export.interpreter(float_export / "model.tflite")
    ops = tflite_export.op_names(tflite_export.ops_details(lite))
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    # Variables folded into constants: no resource-variable ops are left behind.
    assert "READ_VARIABLE" not in ops and "VAR_HANDLE" not in ops
    runner = lite.get_signature_runner("serving_default")
    (name, spec), = runner.get_input_details().items()
    assert name == "images" and spec["dtype"] == np.uint8
    assert spec["shape"].tolist() == spec["shape_signature"].tolist() == [1, 16, 16, 1]
    outputs = runner.get_output_details()
    assert set(outputs) == {"probabilities", "classes", "labels"}
    assert outputs["classes"]["dtype"] == np.int64 and outputs["probabilities"]["dtype"] == \
        np.float32


class _InterpreterWithoutOpsDetails:
    """An interpreter of a LiteRT release that dropped the private `_get_ops_details`."""

    def __init__(self, lite):
        self._lite = lite

    def __getattr__(self, name):
        if name == "_get_ops_details":
            raise AttributeError(name)
        return getattr(self._lite, name)


def test_without_the_private_ops_list_the_check_runs_and_says_so(float_export, source,
                                                                  monkeypatch, capsys):
    real = tflite_export.interpreter
    monkeypatch.setattr(tflite_export, "interpreter", lambda path: (
        _InterpreterWithoutOpsDetails(real(path)[0]), "LiteRT"))
    images, labels = source.arrays("test")
    section = tflite_export.check_tflite(float_export / "model.tflite", images, labels,
                                         serving(float_export),
                                         class_names=source.info.class_names)
    assert section["ops"] is None and section["float_ops"] is None
    assert section["test_accuracy"] == section["serving_default_test_accuracy"]
    assert "LiteRT lists no ops" in capsys.readouterr().err


def test_float_file_gives_serving_defaults_probabilities_and_labels(float_export, source):
    images = np.random.default_rng(3).integers(0, 256, (12, 16, 16, 1), dtype=np.uint8)
    out = tflite_export.run_tflite(float_export / "model.tflite", images)
    want = serving(float_export)(images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"], want["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["classes"], want["classes"].numpy())
    names = source.info.class_names
    assert [label.decode() for label in out["labels"]] == [names[c] for c in out["classes"]]


def test_other_sizes_are_resized_as_serving_default_does(float_export):
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    resized = tflite_export.at_size(images, (16, 16))
    assert resized.shape == (3, 16, 16, 1) and resized.dtype == np.uint8
    out = tflite_export.run_tflite(float_export / "model.tflite", resized)
    want = serving(float_export)(images=tf.constant(resized))["probabilities"].numpy()
    np.testing.assert_allclose(out["probabilities"], want, atol=1e-5)


def test_int8_is_integer_smaller_and_within_a_point(int8_export, float_export):
    section = export_lib.read_manifest(int8_export)["tflite"]
    assert section["quantize"] == "int8"
    assert section["calibration"]["split"] == "train"
    assert section["serving_default_test_accuracy"] - section["test_accuracy"] <= 0.01
    # The convolutions and dense layers compute in int8; float only at the entrance and exit.
    assert not {"CONV_2D", "FULLY_CONNECTED"} & set(section["float_ops"]), section["float_ops"]
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(section["ops"])
    float_size = export_lib.read_manifest(float_export)["tflite"]["size_bytes"]
    assert section["size_bytes"] < float_size / 2
    images = np.random.default_rng(5).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    out = tflite_export.run_tflite(int8_export / "model.tflite", images)
    assert out["probabilities"].dtype == np.float32
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=0.02)


def test_int8_calibrates_on_training_images_only(tmp_path, model, source, monkeypatch):
    seen = []
    original = tflite_export.calibration_sample

    def spy(images, *args, **kwargs):
        seen.append(images)
        return original(images, *args, **kwargs)

    monkeypatch.setattr(tflite_export, "calibration_sample", spy)
    export_lib.export_model(model, tmp_path / "q", config=CONFIG, source=source, metrics={},
                            tflite=True, tflite_quantize="int8")
    (images,) = seen
    assert images is source.arrays("train")[0]


def assert_a_failed_check_leaves_no_export(tmp_path, model, source, fmt: str, says: str):
    """With its check's tolerance set below zero by the caller, exporting `fmt` fails in one
    ExportError saying `says`, and leaves nothing behind."""
    with pytest.raises(export_lib.ExportError, match=says):
        export_lib.export_model(model, tmp_path / "out", config=CONFIG, source=source,
                                metrics={}, **{fmt: True})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_leaves_no_export(tmp_path, model, source, monkeypatch):
    monkeypatch.setattr(tflite_export, "FLOAT_TOLERANCE", -1.0)  # no gap passes
    assert_a_failed_check_leaves_no_export(tmp_path, model, source, "tflite",
                                           "interpreter's probabilities differ")


def verify(path):
    env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "verify.py"), str(path)],
                          capture_output=True, text=True, timeout=180, env=env)


def test_verify_reruns_the_tflite_file(int8_export, tmp_path):
    result = verify(int8_export)
    assert result.returncode == 0, result.stderr
    assert "ok    tflite    int8" in result.stdout
    copy = tmp_path / "copy"
    shutil.copytree(int8_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tflite"]["test_accuracy"] -= 0.25
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = verify(copy)
    assert result.returncode == 1 and "TFLite test accuracy" in result.stderr, result.stderr


def test_convert_adds_tflite_to_an_existing_export(float_export, tmp_path, capsys):
    copy = tmp_path / "e"
    shutil.copytree(float_export, copy)
    (copy / "model.tflite").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["tflite"], manifest["files"]["model.tflite"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = run_in_process("convert", [str(copy), "--to", "tflite"], capsys)
    assert code == 0 and "model.tflite (float32" in out
    section = export_lib.read_manifest(copy)["tflite"]
    assert section["file"] == "model.tflite" and section["test_accuracy"] is not None
    assert export_lib.read_manifest(copy)["files"]["model.tflite"] == \
        export_lib.sha256_file(copy / "model.tflite")
    assert verify(copy).returncode == 0


# -- bad inputs (the format of tests/test_bad_inputs.py) ----------------------------------------
TRAIN = "--run-dir {tmp}/runs --output {tmp}/out --model lenet --epochs 1 --warmup-epochs 0 "


def _no_converter(tmp, monkeypatch):
    import keras_cnns.preflight as preflight

    monkeypatch.setattr(preflight, "tflite_converter_missing", lambda: "it is not importable")


def _fake_converted_export(tmp, monkeypatch):
    from test_manifest_schema import converted_manifest

    (tmp / "s").mkdir()
    (tmp / "s" / "model.keras").write_bytes(b"")
    (tmp / "s" / "manifest.json").write_text(json.dumps(converted_manifest()))


BAD = [
    ("train", TRAIN + "--tflite-quantize int4", 2, "got 'int4'", None),
    ("train", TRAIN + "--tflite-quantize int8", 2, "--tflite-quantize int8", None),
    ("train", TRAIN + "--tflite", 2, "--tflite needs", _no_converter),
    ("convert", "{file} --to tflite", 2, "export directory", None),
    ("convert", "{tmp} --to onnx --tflite-quantize int8", 2, "--tflite-quantize", None),
    ("convert", "{tmp} --to tflite --tflite-quantize int4", 2, "'int4'", None),
    ("convert", "{tmp}/s --to tflite --tflite-quantize int8", 1, "no training data set",
     _fake_converted_export),
]


@pytest.mark.parametrize("script, args, code, says, setup", BAD,
                         ids=[f"{row[0]}:{row[1].split('0 ')[-1]}" for row in BAD])
def test_bad_tflite_input_ends_in_one_sentence(script, args, code, says, setup, tmp_path,
                                               capsys, monkeypatch):
    file = tmp_path / "a_file.txt"
    file.write_text("x")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    if setup:
        setup(tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    argv = shlex.split(args.format(tmp=tmp_path, file=file))
    code_got, _, err = run_in_process(script, argv, capsys)
    assert_one_sentence(code_got, err, code, says, f"{script}.py")
    assert snapshot(tmp_path) == before
