"""scripts/verify.py and scripts/predict.py on a tiny export, each in a fresh process."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnns import export as export_lib
from keras_cnns.data import build_pipeline, load_source
from keras_cnns.models import build_model

ROOT = Path(__file__).resolve().parent.parent
VERIFY = ROOT / "scripts" / "verify.py"
PREDICT = ROOT / "scripts" / "predict.py"
CONFIG = {"model": "lenet", "dataset": "synthetic", "image_size": 16, "label_smoothing": 0.1}
# Run a script as __main__, then list the Keras / keras_cnns modules it left loaded.
WATCH = textwrap.dedent("""
    import runpy, sys
    sys.argv = sys.argv[1:]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    roots = {"keras", "keras_cnns", "tf_keras"}
    loaded = sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in roots)
    print("LOADED", loaded)
    sys.exit(code)
""")


def run(*args, watch=False):
    # keras_cnns is importable (PYTHONPATH), so "not imported" means verify.py did not import it.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, *(["-c", WATCH] if watch else []), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]


def make_export(path, limit=None):
    source = load_source("synthetic")
    model = build_model("lenet", input_shape=(16, 16, 1), num_classes=10, activation="relu")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    train = build_pipeline(source, "train", image_size=16, batch_size=100, repeat=True)
    model.fit(train, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)
    return source, export_lib.export_model(model, path, config=CONFIG, source=source,
                                           metrics={"test_accuracy": 0.5, "test_loss": 1.5})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("exports") / "tiny")


@pytest.fixture
def copy(exported, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(exported[1], target)
    return target


def test_verify_passes_without_importing_keras_or_keras_cnns(exported):
    result = run(VERIFY, exported[1], watch=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["PASS", "LOADED []"], result.stdout
    assert result.stderr == ""
    for check in ("files", "golden", "accuracy"):
        assert f"ok    {check}" in result.stdout, result.stdout


def _flip_variables(path: Path):
    data = next((path / "variables").glob("variables.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return "variables/" + data.name


def _edit_manifest(path: Path, edit):
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _bump_golden(manifest):
    manifest["golden"]["probabilities"][3][1] += 1e-4


def _bump_accuracy(manifest):  # within [0, 1], so the schema passes it and the score differs
    accuracy = manifest["metrics"]["test_accuracy"]
    manifest["metrics"]["test_accuracy"] = accuracy + (0.005 if accuracy < 0.5 else -0.005)


@pytest.mark.parametrize("damage", ["tampered file", "missing file", "golden", "accuracy"])
def test_verify_fails_with_one_sentence_naming_what_differs(copy, damage):
    if damage == "tampered file":
        expected = _flip_variables(copy) + " does not match its sha256"
    elif damage == "missing file":
        (copy / "model.keras").unlink()
        expected = "File model.keras listed in the manifest is missing"
    elif damage == "golden":
        _edit_manifest(copy, _bump_golden)
        expected = "Golden probability 1 of probe image 3"
    else:
        _edit_manifest(copy, _bump_accuracy)
        expected = "The test accuracy is"
    result = run(VERIFY, copy)
    assert expected in one_line(result)
    assert result.stdout.rstrip().endswith("FAIL")


def test_verify_of_an_export_without_its_test_split_needs_data(tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib.bundle, "TEST_SET_LIMIT_BYTES", 0)
    source, path = make_export(tmp_path / "big")
    result = run(VERIFY, path)
    assert result.returncode == 0, result.stderr
    assert "ok    golden" in result.stdout and "skip  accuracy" in result.stdout
    assert "--data" in result.stdout
    images, labels = source.arrays("test")
    np.savez(tmp_path / "test.npz", images=images, labels=labels)
    np.savez(tmp_path / "wrong.npz", images=images[1:], labels=labels[1:])
    result = run(VERIFY, path, "--data", tmp_path / "test.npz")
    assert result.returncode == 0 and "ok    accuracy" in result.stdout, result.stderr
    assert "not the ones the export was scored on" in one_line(
        run(VERIFY, path, "--data", tmp_path / "wrong.npz"))


def _write_images(folder: Path) -> dict[str, np.ndarray]:
    """Grey and colour PNG and JPEG files of odd sizes; returns the PNGs' exact pixels."""
    rng = np.random.default_rng(1)
    pngs = {
        "grey.png": rng.integers(0, 256, (13, 17, 1), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (20, 11, 4), dtype=np.uint8),
    }
    for name, pixels in pngs.items():
        (folder / name).write_bytes(tf.io.encode_png(pixels).numpy())
    for name, shape in (("colour.jpg", (23, 9, 3)), ("grey.jpeg", (40, 41, 1))):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        (folder / name).write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return pngs


def test_predict_prints_top_k_for_png_and_jpeg_files(exported, tmp_path):
    source, path = exported
    pngs = _write_images(tmp_path)
    names = ["grey.png", "rgba.png", "colour.jpg", "grey.jpeg"]
    result = run(PREDICT, path, *(tmp_path / n for n in names), "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 * len(names), result.stdout
    classes = set(source.info.class_names)
    for i, name in enumerate(names):
        block = lines[3 * i:3 * i + 3]
        assert block[0] == str(tmp_path / name)
        top = [line.split() for line in block[1:]]
        assert all(cls in classes for _, cls in top)
        assert float(top[0][0]) >= float(top[1][0]) > 0.0
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    probabilities = serving(images=tf.constant(pngs["grey.png"][None]))["probabilities"][0]
    best = int(np.argmax(probabilities))
    assert lines[1].split() == [f"{float(probabilities[best]):.4f}", f"class_{best}"]


@pytest.mark.parametrize("problem", ["missing image", "corrupt image", "missing export"])
def test_predict_fails_with_one_sentence(exported, tmp_path, problem):
    export, image = exported[1], tmp_path / "x.png"
    if problem == "corrupt image":
        image.write_bytes(b"not an image at all")
        expected = "is not a PNG, JPEG, GIF or BMP file"
    elif problem == "missing image":
        expected = f"Image {image} does not exist"
    else:
        export, expected = tmp_path / "nowhere", "does not exist"
        image.write_bytes(b"")
    assert expected in one_line(run(PREDICT, export, image))
