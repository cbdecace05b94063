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
