"""The export: SavedModel signatures, manifest, golden probe, stored test split, atomicity."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnns import export as export_lib
from keras_cnns.data import build_pipeline, load_source
from keras_cnns.models import build_model

CONFIG = {"model": "lenet", "dataset": "synthetic", "image_size": 16, "label_smoothing": 0.0}
KERAS_METRICS = {"test_accuracy": 0.125, "test_loss": 2.5, "train_seconds": 1.0}


def tiny_model(source, steps: int = 5):
    """A ReLU LeNet at 16x16 fitted a few steps: seconds, and it tells the classes apart."""
    channels = source.info.channels
    model = build_model("lenet", input_shape=(16, 16, channels), num_classes=10,
                        activation="relu")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    train = build_pipeline(source, "train", image_size=16, batch_size=100, repeat=True)
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    source = load_source("synthetic")
    model = tiny_model(source)
    path = export_lib.export_model(model, tmp_path_factory.mktemp("exports") / "grey",
                                   config=CONFIG, source=source, metrics=KERAS_METRICS,
                                   extra={"run_dir": "runs/x"})
    return source, model, path


def pipeline_batch(source):
    """The pipeline's first test batch (preprocessed) and the same uint8 images and labels."""
    # deterministic: else the parallel map may hand out a later batch first under load.
    x, y = next(iter(build_pipeline(source, "test", image_size=16, batch_size=64,
                                   deterministic=True)))
    images, labels = source.arrays("test")
    np.testing.assert_array_equal(y.numpy(), labels[:64])
    return x, images[:64], labels[:64]


def test_saved_model_loads_plainly_with_both_signatures(grey):
    source, model, path = grey
    loaded = tf.saved_model.load(str(path))
    serving = loaded.signatures["serving_default"]
    (spec,) = serving.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None] * 4
    assert set(serving.structured_outputs) == {"probabilities", "classes", "labels"}
    x, _, _ = pipeline_batch(source)
    logits = loaded.serve(x).numpy()
    np.testing.assert_allclose(logits, model(x, training=False).numpy(), atol=1e-5)
    (out,) = loaded.signatures["serve"](inputs=x).values()
    np.testing.assert_allclose(out.numpy(), logits, atol=1e-6)


def test_serving_default_equals_keras_softmax_on_the_pipeline_batch(grey):
    source, model, path = grey
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    x, images, _ = pipeline_batch(source)
    out = serving(images=tf.constant(images))
    probabilities = out["probabilities"].numpy()
    expected = tf.nn.softmax(model(x, training=False)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert out["classes"].dtype == tf.int64
    np.testing.assert_array_equal(out["classes"].numpy(), probabilities.argmax(-1))
    # Each image's class name, from the data set's names (the manifest's), in the graph.
    assert out["labels"].dtype == tf.string
    names = source.info.class_names
    assert [label.decode() for label in out["labels"].numpy()] == \
        [names[c] for c in out["classes"].numpy()]


@pytest.mark.parametrize("shape", [(2, 16, 16, 1), (3, 31, 17, 1), (1, 9, 40, 3), (2, 16, 16, 3)])
def test_serving_default_takes_any_size_grey_or_colour(grey, shape):
    serving = tf.saved_model.load(str(grey[2])).signatures["serving_default"]
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    probabilities = serving(images=tf.constant(images))["probabilities"].numpy()
    assert probabilities.shape == (shape[0], 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    if shape[-1] == 1:  # the same grey image in colour: luma weights sum to 0.9999
        tiled = serving(images=tf.constant(np.repeat(images, 3, axis=-1)))["probabilities"]
        np.testing.assert_allclose(tiled.numpy(), probabilities, atol=1e-3)


def test_serving_default_rejects_other_channel_counts(grey):
    serving = tf.saved_model.load(str(grey[2])).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="1 or 3 channels"):
        serving(images=tf.zeros((1, 16, 16, 4), tf.uint8))


def test_colour_model_export_serves_colour_and_grey(tmp_path):
    source = load_source("synthetic", image_size=20, channels=3, train_size=100, test_size=40)
    model = tiny_model(source, steps=1)
    path = export_lib.export_model(model, tmp_path / "colour", config=CONFIG, source=source,
                                   metrics={})
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    x, images, _ = pipeline_batch(source)
    expected = tf.nn.softmax(model(x, training=False)).numpy()
    got = serving(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    grey_in = serving(images=tf.constant(images[..., :1]))["probabilities"].numpy()
    np.testing.assert_allclose(grey_in.sum(-1), 1.0, atol=1e-5)
    manifest = export_lib.read_manifest(path)
    assert manifest["preprocessing"]["channels"] == 3 and len(manifest["dataset"]["mean"]) == 3


def test_manifest_records_everything_and_hashes_every_file(grey):
    source, _, path = grey
    manifest = export_lib.read_manifest(path)
    for key in ("config", "dataset", "preprocessing", "metrics", "evaluation", "golden",
                "versions", "hardware", "files"):
        assert key in manifest, key
    assert manifest["config"] == CONFIG and manifest["run_dir"] == "runs/x"
    info = source.info
    assert manifest["dataset"]["fingerprint"] == info.fingerprint
    assert manifest["dataset"]["class_names"] == list(info.class_names)
    assert manifest["dataset"]["split_sizes"] == info.split_sizes
    assert manifest["dataset"]["mean"] == list(info.mean)
    assert manifest["preprocessing"]["image_size"] == [16, 16]
    for key in ("python", "tensorflow", "keras", "numpy", "keras_cnns", "git_commit"):
        assert key in manifest["versions"], key
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert {"saved_model.pb", "model.keras", "test_set.npz"} <= set(manifest["files"])
    assert any(name.startswith("variables/") for name in manifest["files"])
    for name, digest in manifest["files"].items():
        assert export_lib.sha256_file(path / name) == digest, name


def test_metrics_are_the_saved_models_and_keep_the_keras_figures(grey):
    source, _, path = grey
    manifest = export_lib.read_manifest(path)
    metrics = manifest["metrics"]
    assert metrics["keras_test_accuracy"] == KERAS_METRICS["test_accuracy"]
    assert metrics["keras_test_loss"] == KERAS_METRICS["test_loss"]
    assert metrics["train_seconds"] == 1.0
    images, labels = source.arrays("test")
    with np.load(path / "test_set.npz") as stored:
        np.testing.assert_array_equal(stored["images"], images)
        np.testing.assert_array_equal(stored["labels"], labels)
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    probabilities, classes = export_lib.run_serving(serving, images)
    assert metrics["test_accuracy"] == float(np.mean(classes == labels))
    assert metrics["test_examples"] == len(labels) == manifest["evaluation"]["examples"]
    assert len(metrics["per_class_accuracy"]) == 10
    golden = manifest["golden"]
    assert len(golden["indices"]) == 16 and set(labels[golden["indices"]]) == set(range(10))
    probe, _ = export_lib.run_serving(serving, images[golden["indices"]], batch_size=16)
    np.testing.assert_allclose(probe, golden["probabilities"], atol=1e-6)


def test_export_to_an_existing_path_raises_and_leaves_it_untouched(grey, tmp_path):
    source, model, _ = grey
    target = tmp_path / "good"
    target.mkdir()
    (target / "manifest.json").write_text("{}")
    with pytest.raises(export_lib.ExportError, match="already exists"):
        export_lib.export_model(model, target, config=CONFIG, source=source, metrics={})
    assert [p.name for p in tmp_path.iterdir()] == ["good"]
    assert [p.name for p in target.iterdir()] == ["manifest.json"]
    assert (target / "manifest.json").read_text() == "{}"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_mid_write_leaves_no_directory_behind(grey, tmp_path, monkeypatch, error):
    source, model, _ = grey

    def fail(*args, **kwargs):  # after the SavedModel and model.keras are written
        raise error("disk full")

    monkeypatch.setattr(export_lib.bundle, "score", fail)
    with pytest.raises(error, match="disk full"):
        export_lib.export_model(model, tmp_path / "out", config=CONFIG, source=source,
                                metrics={})
    assert list(tmp_path.iterdir()) == []


def test_a_large_test_split_is_left_out_with_a_note(grey, tmp_path, monkeypatch):
    source, model, _ = grey
    monkeypatch.setattr(export_lib.bundle, "TEST_SET_LIMIT_BYTES", 1000)
    path = export_lib.export_model(model, tmp_path / "big", config=CONFIG, source=source,
                                   metrics={})
    manifest = export_lib.read_manifest(path)
    assert not (path / "test_set.npz").exists() and (path / "golden.npz").is_file()
    assert manifest["evaluation"]["test_set"] is None
    assert "--data" in manifest["evaluation"]["note"]
    assert manifest["golden"]["images_file"] == "golden.npz"
    assert 0.0 <= manifest["metrics"]["test_accuracy"] <= 1.0


def test_config_image_size_must_match_the_model(grey, tmp_path):
    source, model, _ = grey
    with pytest.raises(export_lib.ExportError, match="image_size 32"):
        export_lib.export_model(model, tmp_path / "x", config={**CONFIG, "image_size": 32},
                                source=source, metrics={})
    assert list(tmp_path.iterdir()) == []


def test_read_manifest_errors_are_one_sentence(tmp_path):
    with pytest.raises(export_lib.ExportError, match="does not exist"):
        export_lib.read_manifest(tmp_path / "nope")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(export_lib.ExportError, match="not valid JSON"):
        export_lib.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"ok": 1}))
    with pytest.raises(export_lib.ExportError, match="^The manifest has no format_version; "):
        export_lib.read_manifest(tmp_path)


@pytest.mark.parametrize("had_one", [True, False], ids=["replacing", "adding"])
def test_add_file_leaves_the_export_as_it_was_when_the_manifest_rename_fails(
        grey, tmp_path, monkeypatch, had_one):
    import os
    import shutil

    from keras_cnns import files
    from keras_cnns.export.directory import add_file

    export = shutil.copytree(grey[2], tmp_path / "export")

    def finished(content: bytes):
        written = files.temporary_sibling(export / "model.onnx")
        written.write_bytes(content)
        return written

    if had_one:
        add_file(export, finished(b"old onnx"), "model.onnx", {"file": "model.onnx"})
    before = {p.name: p.read_bytes() for p in export.iterdir() if p.is_file()}
    real_replace = os.replace

    def failing_for_the_manifest(source, target):
        if os.path.basename(target) == "manifest.json":
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_for_the_manifest)
    written = finished(b"new onnx")
    with pytest.raises(OSError, match="No space"):
        add_file(export, written, "model.onnx", {"file": "model.onnx"})
    written.unlink(missing_ok=True)  # the caller's to remove (amend.py does, in `finally`)
    assert {p.name: p.read_bytes() for p in export.iterdir() if p.is_file()} == before


def test_export_package_imports_with_every_public_name():
    """In a fresh interpreter, where a cycle would meet a partially initialised module.
    (That its modules import one another without a cycle, test_layers.py checks.)"""
    import subprocess
    import sys

    probe = "import keras_cnns.export as e; print(sorted(set(e.__all__) - set(dir(e))))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def _repo(root, files):
    import subprocess

    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_git_commit_is_this_projects_checkout_with_its_dirty_flag(tmp_path, monkeypatch):
    from keras_cnns.export import directory

    head = _repo(tmp_path, {"pyproject.toml": 'name = "keras_cnns"\n',
                            "keras_cnns/__init__.py": "", "keras_cnns/export/directory.py": ""})
    monkeypatch.setattr(directory, "__file__", str(tmp_path / "keras_cnns/export/directory.py"))
    assert directory._git_state() == {"git_commit": head, "git_dirty": False}
    (tmp_path / "keras_cnns/__init__.py").write_text("changed = True\n")
    assert directory._git_state() == {"git_commit": head, "git_dirty": True}


def test_no_git_commit_from_another_repository_the_package_is_installed_in(tmp_path,
                                                                            monkeypatch):
    from keras_cnns.export import directory

    site = ".venv/lib/python3.11/site-packages/keras_cnns"
    _repo(tmp_path, {"pyproject.toml": 'name = "someone_elses"\n', "app.py": "",
                     f"{site}/__init__.py": "", f"{site}/export/directory.py": ""})
    monkeypatch.setattr(directory, "__file__", str(tmp_path / site / "export/directory.py"))
    assert directory._git_state() == {"git_commit": None, "git_dirty": None}
