"""Exports: one self-verifying directory, written atomically.

An export is written into a hidden temporary sibling directory and renamed into place only when
complete, so a failed or interrupted export never leaves a half-written directory and never
replaces an earlier one. (A process killed outright leaves only its `.<name>.tmp-*` sibling.)

Layout of `saved_models/<model>-<dataset>-<stamp>/`, itself the SavedModel's root:
    saved_model.pb, variables/, assets/, fingerprint.pb    the TF SavedModel (see below)
    model.keras       the trained Keras model
    test_set.npz      the test split the metrics were computed on (`images` uint8 [N, H, W, C],
                      `labels` int64 [N]) when at most TEST_SET_LIMIT_BYTES; else golden.npz,
                      the probe images only, and verifying the accuracy needs the split itself
    manifest.json     config, dataset, preprocessing, metrics, evaluation, golden, versions,
                      hardware, and `files`: the sha256 of every other file
    model.onnx        only with `export_model(..., onnx=True)` or `scripts/convert.py EXPORT --to
                      onnx`: serving_default as ONNX (keras_cnns.onnx_export), checked by
                      onnxruntime against the SavedModel; the manifest's `onnx` section

SavedModel signatures (plain `tf.saved_model.load(export_dir)`, no Keras needed):
    serving_default(images: uint8 [batch, height, width, channels]) ->
        {"probabilities": float32 [batch, classes], "classes": int64 [batch]}
        Any height and width; channels 1 or 3 (converted to the model's, anything else fails).
        The training preprocessing (`keras_cnns.data.preprocess`: scale, resize, normalise, with
        the source's constants) is traced into the graph.
    serve(inputs: float32 [batch, *model input]) -> logits, for already-preprocessed inputs.
One signature per name (as TF Serving needs), so the channel count is handled inside the graph.
Any Keras backend exports: TensorFlow traces the model directly; JAX through jax2tf (StableHLO
lowered for CPU and CUDA inside the graph; serving needs TensorFlow only); torch, whose Keras export
needs torch_xla, through a TensorFlow-backend subprocess that loads the saved `model.keras`.

`metrics.test_accuracy` and `test_loss` are computed through `serving_default` on the stored
uint8 test images, so `scripts/verify.py` (TensorFlow and numpy only) reproduces them; the
trainer's own Keras-side figures are kept beside them as `keras_test_accuracy` and
`keras_test_loss`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import faults
from keras_cnns.machine import cpu_facts, process_alive

# The SavedModel's signatures live in their own module; these names stay importable from here.
from keras_cnns.saved_model import (  # noqa: F401
    EVAL_BATCH_SIZE,
    MODEL_FILE,
    ExportError,
    load_serving,
    model_input_shape,
    run_serving,
    save_keras_file,
    serving_function,
    write_in_tensorflow,
    write_saved_model,
)

FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
TEST_SET_FILE = "test_set.npz"
GOLDEN_FILE = "golden.npz"
ONNX_FILE = "model.onnx"
# The stored test split's cap (MNIST's is 7.9 MB, CIFAR-10's 31 MB): an export should stay
# copyable, and a bigger split is better re-read from its source.
TEST_SET_LIMIT_BYTES = 64 << 20
GOLDEN_SIZE = 16
GOLDEN_TOLERANCE = 1e-6
# Probabilities are clipped like Keras's cross-entropy on probabilities, so log(0) never occurs.
LOSS_EPSILON = 1e-7


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    import keras_cnns

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "keras_cnns": keras_cnns.__version__,
        "git_commit": _git_commit(),
    }


def hardware() -> dict[str, Any]:
    import tensorflow as tf

    cpu_model, cpu_isa = cpu_facts()
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model,
        "cpu_isa": cpu_isa,
        "cpu_count": os.cpu_count(),
        "gpus": [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")
        ],
    }


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _json_default(value):
    # Metrics often carry numpy scalars (np.float32 is not a float subclass).
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_export(output: str | Path, write_contents: Callable[[Path], dict[str, Any]]) -> Path:
    """Write an export directory atomically.

    `write_contents(tmp_dir)` writes the export's files into `tmp_dir` and
    returns the manifest (without `files`); the file hashes are added here.
    """
    output = Path(output)
    if output.exists():
        raise ExportError(f"Export path {output} already exists; choose another --output.")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export's folder {output.parent}: "
                          f"{error.strerror or error}.") from None
    remove_stale_exports(output.parent)
    # Not mkdtemp: its directory is private, and an export is meant to be read by servers too;
    # mkdir applies the umask, and fails rather than share a name.
    tmp_dir = output.parent / f".{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp_dir.mkdir()
    except OSError as error:
        raise ExportError(f"Cannot write into {output.parent}: {error.strerror or error}.") \
            from None
    try:
        manifest = write_contents(tmp_dir)
        manifest["files"] = {
            path.relative_to(tmp_dir).as_posix(): sha256_file(path)
            for path in sorted(tmp_dir.rglob("*"))
            if path.is_file()
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default)
        (tmp_dir / MANIFEST_FILE).write_text(text + "\n")
        faults.reach("export")
        # rename() is atomic on one filesystem and fails if a non-empty `output` appeared
        # meanwhile (an empty one is replaced, which loses nothing).
        os.rename(tmp_dir, output)
    except OSError as error:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ExportError(
                f"The disk filled up while writing the export {output}; nothing was kept. Free "
                "some space and run the same command again: the finished run only exports."
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return output


_TEMPORARY_EXPORT = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}$")


def remove_stale_exports(parent: Path) -> list[Path]:
    """Delete the temporary folders that exports killed outright left in `parent`.

    A folder is stale when the process its name records no longer runs on this host. (On a
    filesystem shared between hosts, give each host its own export folder: a pid from another
    host cannot be checked here.) Returns them, and says so on stdout.
    """
    removed = []
    for path in Path(parent).glob(".*.tmp-*"):
        match = _TEMPORARY_EXPORT.match(path.name)
        if match and path.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            print(f"Removed {path}, the unfinished export of process {match.group(1)}, which "
                  "no longer runs.", flush=True)
    return removed


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    path = Path(export_dir) / MANIFEST_FILE
    if not Path(export_dir).is_dir():
        raise ExportError(f"Export {export_dir} does not exist.")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"Export {export_dir} has no {MANIFEST_FILE}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ExportError(f"The manifest of export {export_dir} is not valid JSON.") from None


# -- the SavedModel -----------------------------------------------------------------------------

def score(probabilities, classes, labels, label_smoothing: float = 0.0) -> dict[str, Any]:
    """Accuracy of `classes` and mean cross-entropy of `probabilities` against `labels`.

    scripts/verify.py repeats this computation (it may not import keras_cnns): keep them equal.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[-1]
    targets = np.full(probabilities.shape, label_smoothing / num_classes, dtype=np.float64)
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    clipped = np.clip(probabilities.astype(np.float64), LOSS_EPSILON, 1.0)
    correct = int(np.sum(classes == labels))
    return {
        "test_accuracy": correct / len(labels),
        "test_loss": float(np.mean(-np.sum(targets * np.log(clipped), axis=-1))),
        "test_correct": correct,
        "test_examples": len(labels),
    }


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of a split's shapes, pixels and labels (verify.py checks `--data` against it)."""
    digest = hashlib.sha256(f"{images.shape}:{labels.shape};".encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def golden_indices(labels, count: int = GOLDEN_SIZE) -> np.ndarray:
    """A fixed stratified probe: each class's first test image, then each one's second, ...

    Depends only on the labels, so every export of a dataset probes the same images.
    """
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        rank[where] = np.arange(len(where))
    return np.sort(np.lexsort((labels, rank))[:count])


# -- the whole export ---------------------------------------------------------------------------

def export_model(
    model, output: str | Path, *, config: dict, source, metrics: dict,
    extra: dict | None = None, onnx: bool = False,
) -> Path:
    """Export a trained model, its test split and its manifest to `output` (which must not exist).

    `source` is the `DataSource` the model was trained on: its info goes into the manifest and
    its test split is scored through the written SavedModel (module docstring). `metrics` are the
    trainer's Keras-side figures; `extra` adds top-level manifest keys (the standard keys win).
    `onnx=True` adds `model.onnx` (`keras_cnns.onnx_export`), checked against `serving_default`
    on the whole stored test split, and the manifest's `onnx` section.
    """
    from keras_cnns.data.pipeline import match_stats

    info = source.info
    height, width, channels = model_input_shape(model)
    size = config.get("image_size")
    if size is not None and (height, width) != (size, size):
        raise ExportError(
            f"The model takes {height}x{width} images but the config says image_size {size}."
        )
    images, labels = source.arrays("test")
    label_smoothing = float(config.get("label_smoothing") or 0.0)
    store_test_set = images.nbytes + labels.nbytes <= TEST_SET_LIMIT_BYTES
    probe = golden_indices(labels)
    norm_mean, norm_std = match_stats(info.mean, info.std, channels)

    def contents(tmp_dir: Path) -> dict[str, Any]:
        import keras

        onnx_file = tmp_dir / ONNX_FILE if onnx else None
        if keras.backend.backend() in ("tensorflow", "jax"):
            write_saved_model(model, tmp_dir, mean=info.mean, std=info.std)
            save_keras_file(model, tmp_dir / MODEL_FILE)
        else:  # one TensorFlow subprocess writes both from model.keras
            save_keras_file(model, tmp_dir / MODEL_FILE)
            write_in_tensorflow(tmp_dir / MODEL_FILE, saved_model=tmp_dir, onnx=onnx_file,
                                mean=info.mean, std=info.std)
        if onnx_file is not None and not onnx_file.exists():
            write_in_tensorflow(tmp_dir / MODEL_FILE, onnx=onnx_file, mean=info.mean,
                                std=info.std)
        # Scored by the files just written, as verify.py will score them.
        signature = load_serving(tmp_dir)
        golden, _ = run_serving(signature, images[probe], batch_size=len(probe))
        probabilities, classes = run_serving(signature, images)
        scores = score(probabilities, classes, labels, label_smoothing)
        onnx_section = {}
        if onnx_file is not None:
            from keras_cnns import onnx_export

            onnx_section["onnx"] = onnx_export.check_onnx(onnx_file, images, probabilities)
        if store_test_set:
            np.savez_compressed(tmp_dir / TEST_SET_FILE, images=images, labels=labels)
        else:
            np.savez_compressed(tmp_dir / GOLDEN_FILE, images=images[probe], labels=labels[probe])
        matrix = np.zeros((len(info.class_names),) * 2, dtype=np.int64)
        np.add.at(matrix, (labels, classes), 1)
        per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
        evaluated = dict(metrics)
        for key in ("test_accuracy", "test_loss"):
            if key in metrics:
                evaluated[f"keras_{key}"] = metrics[key]
        evaluated.update(scores, per_class_accuracy=dict(
            zip(info.class_names, per_class.tolist(), strict=True)))
        megabytes = (images.nbytes + labels.nbytes) / 2**20
        return {
            **(extra or {}),
            **onnx_section,
            "format_version": FORMAT_VERSION,
            "config": config,
            "dataset": info.to_dict(),
            "preprocessing": {
                "input": "uint8 [batch, height, width, 1 or 3 channels], any height and width",
                "steps": "x / 255; channels to the model's (ITU-R 601 luma or tiling); "
                         "tf.image.resize bilinear, half-pixel centres, no antialiasing; "
                         "(x - mean) / std per channel",
                "image_size": [height, width],
                "channels": channels,
                "mean": norm_mean,
                "std": norm_std,
            },
            "metrics": evaluated,
            "evaluation": {
                "endpoint": "serving_default",
                "batch_size": EVAL_BATCH_SIZE,
                "test_set": TEST_SET_FILE if store_test_set else None,
                "content_sha256": content_sha256(images, labels),
                "examples": int(len(labels)),
                "label_smoothing": label_smoothing,
                "loss_epsilon": LOSS_EPSILON,
                "loss": "mean cross-entropy of the probabilities clipped to [loss_epsilon, 1] "
                        "against label-smoothed one-hot targets",
                "note": None if store_test_set else (
                    f"The {megabytes:.0f} MB test split is not stored (limit "
                    f"{TEST_SET_LIMIT_BYTES >> 20} MB); verify.py needs --data to recompute "
                    "the accuracy."),
            },
            "golden": {
                "indices": probe.tolist(),
                "images_file": None if store_test_set else GOLDEN_FILE,
                "probabilities": golden.tolist(),
                "tolerance": GOLDEN_TOLERANCE,
            },
            "versions": versions(),
            "hardware": hardware(),
        }

    return write_export(output, contents)
