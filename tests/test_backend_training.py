"""scripts/train.py under KERAS_BACKEND=jax and torch, and the parity report over all paths.

Each backend trains a tiny LeNet (synthetic data, 16x16, two epochs) in a subprocess through
the whole stack: tf.data pipeline, default strategy (said on stdout), BackupAndRestore,
ModelCheckpoint, CSVLogger, TensorBoard, and the export (a SavedModel with TensorFlow's
signatures: through jax2tf under JAX, through a TensorFlow subprocess under torch). Its
`.keras` then gives the same logits (relative gap <= 1e-5) under TensorFlow, here, and under
the other backend, in a subprocess. Each test does all of its backend's work, so pytest-xdist
never trains a model twice.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from extras import require

from keras_cnns import export as export_lib
from keras_cnns.data import build_pipeline, load_source
from keras_cnns.machine import backend_env
from keras_cnns.measure import logit_parity as parity

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-5
EPOCHS = 2


@pytest.fixture(autouse=True)
def _tensorflow_here():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the checks in this process use the TensorFlow backend")


def _env(backend: str) -> dict[str, str]:
    return backend_env(backend, {"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})


def train(backend: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    export = tmp_path / f"export-{backend}"
    command = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "--model", "lenet",
        "--dataset", "synthetic", "--image-size", "16", "--epochs", str(EPOCHS),
        "--warmup-epochs", "0", "--batch-size", "50", "--augment", "none",
        "--output", str(export), "--run-dir", str(tmp_path / "runs"), *extra,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=_env(backend))
    assert proc.returncode == 0, f"train.py under {backend}:\n{proc.stderr[-4000:]}"
    return proc, export


def gap(values, reference) -> float:
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def check_run(backend: str, proc, export: Path, tmp_path: Path) -> None:
    assert (f"Keras backend {backend}: training with the default (single-device) strategy"
            in proc.stdout), proc.stdout[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    with open(run_dir / "history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(EPOCHS))
    assert (run_dir / "checkpoints" / "best.weights.h5").is_file()
    assert list((run_dir / "logs" / "train").glob("events.out.tfevents.*"))
    assert (run_dir / "metrics.json").is_file()
    manifest = export_lib.read_manifest(export)
    assert manifest["versions"]["keras_backend"] == backend
    assert manifest["metrics"]["strategy"] == "default"
    assert manifest["metrics"]["replicas"] == 1


def check_export_in_tensorflow(export: Path) -> np.ndarray:
    """The export's signatures are TensorFlow's, and the .keras reproduces them here."""
    loaded = tf.saved_model.load(str(export))
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serve"}
    serving = loaded.signatures["serving_default"]
    (spec,) = serving.structured_input_signature[1].values()
    assert spec.name == "images" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None] * 4
    assert set(serving.structured_outputs) == {"probabilities", "classes", "labels"}
    (spec,) = loaded.signatures["serve"].structured_input_signature[1].values()
    assert spec.name == "inputs" and spec.shape.as_list() == [None, 16, 16, 1]

    model = keras.saving.load_model(export / "model.keras", compile=False)
    source = load_source("synthetic")
    x, _ = next(iter(build_pipeline(source, "test", image_size=16, batch_size=32,
                                    deterministic=True)))
    logits = model.predict(x, verbose=0)
    (served,) = loaded.signatures["serve"](inputs=x).values()
    assert gap(served.numpy(), logits) <= RTOL
    images, _ = source.arrays("test")
    probabilities = serving(images=tf.constant(images[:32]))["probabilities"].numpy()
    assert gap(probabilities, tf.nn.softmax(logits).numpy()) <= RTOL
    manifest = export_lib.read_manifest(export)
    golden = manifest["golden"]
    want = serving(images=tf.constant(images[golden["indices"]]))["probabilities"].numpy()
    assert gap(want, np.asarray(golden["probabilities"])) <= RTOL
    return x.numpy()


def check_keras_file_under(backend: str, export: Path, x: np.ndarray, tmp_path: Path) -> None:
    """The trained .keras, loaded in a `backend` subprocess, gives this process's logits."""
    case_dir = tmp_path / f"case-{backend}"
    case_dir.mkdir()
    shutil.copyfile(export / "model.keras", case_dir / "model.keras")
    np.savez(case_dir / "inputs.npz", x=x, images=np.zeros((1, 1, 1, 1), np.uint8))
    parity.run_keras_backend(backend, [{"dir": str(case_dir)}], 1)
    model = keras.saving.load_model(export / "model.keras", compile=False)
    want = model.predict(x, verbose=0)
    assert gap(np.load(case_dir / f"{backend}.npy"), want) <= RTOL


@pytest.mark.slow
def test_train_under_jax_and_load_everywhere(tmp_path):
    require("jax", "torch", "onnxruntime", "tf2onnx")
    proc, export = train("jax", tmp_path)
    check_run("jax", proc, export, tmp_path)
    x = check_export_in_tensorflow(export)
    check_keras_file_under("torch", export, x, tmp_path)

    # ONNX for a JAX export: convert.py under JAX converts in a TensorFlow subprocess.
    convert = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert.py"), str(export), "--to", "onnx"],
        capture_output=True, text=True, timeout=600, env=_env("jax"),
    )
    assert convert.returncode == 0, convert.stderr[-4000:]
    section = export_lib.read_manifest(export)["onnx"]
    assert section["max_probability_gap"] <= RTOL


@pytest.mark.slow
def test_train_under_torch_and_load_everywhere(tmp_path):
    require("torch", "jax")
    proc, export = train("torch", tmp_path, "--strategy", "mirrored", "--jit-compile")
    assert "(--strategy mirrored ignored)" in proc.stdout
    assert "without torch.compile" in proc.stdout
    check_run("torch", proc, export, tmp_path)
    x = check_export_in_tensorflow(export)
    check_keras_file_under("jax", export, x, tmp_path)


@pytest.mark.slow
def test_parity_report(tmp_path):
    """scripts/parity.py: every path within 1e-5 of the TF backend, for both models."""
    require("jax", "torch", "onnxruntime", "onnx", "tf2onnx")
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "parity.py"), "--model", "lenet", "alexnet",
         "--batch-size", "8", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=_env("tensorflow"),
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    rows = json.loads(out.read_text())
    assert {(r["model"], r["path"]) for r in rows} == {
        (m, p) for m in ("lenet", "alexnet") for p in parity.PATHS}
    for row in rows:
        assert row["error"] is None and row["gap"] <= RTOL, row
        assert row["ms"] > 0, row
    assert "| alexnet | 64x64x1 | ONNX Runtime |" in proc.stdout
    assert "All 10 gaps are at most 1e-05" in proc.stdout


def test_other_backends_get_a_stand_in_that_the_trainer_treats_as_the_default(monkeypatch):
    """Under JAX or torch, make_strategy returns SingleDevice: the trainer's strategy helpers must
    answer for it exactly as for TensorFlow's default strategy."""
    from keras_cnns.training.strategy import (
        SingleDevice,
        backend_note,
        check_global_batch,
        is_chief,
        make_strategy,
    )

    assert backend_note("mirrored", True) is None  # TensorFlow: nothing to say
    default, kind = make_strategy("default")
    assert kind == "default" and isinstance(default, tf.distribute.Strategy)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    stand_in, kind = make_strategy("mirrored")
    assert kind == "default" and isinstance(stand_in, SingleDevice)
    assert "(--strategy mirrored ignored)" in backend_note("mirrored")
    for strategy in (default, stand_in):
        assert is_chief(strategy), strategy
        assert check_global_batch(7, strategy) == 7, strategy
        with strategy.scope():
            assert not tf.distribute.has_strategy(), strategy  # nothing mirrors the variables
