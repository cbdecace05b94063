"""ONNX: an export's `serving_default` as one ONNX graph, checked with onnxruntime.

`model.onnx` is tf2onnx's conversion of the very function that the SavedModel serves as
`serving_default` (`keras_cnns.export.serving_function`), with the logits as a third output:

    input   images         uint8   [batch, height, width, channels]  any height and width,
                                                                     channels 1 or 3
    output  probabilities  float32 [batch, classes]
            classes        int64   [batch]
            logits         float32 [batch, classes]

The preprocessing (scale, channels, bilinear resize, normalise) is in the graph, as in the
SavedModel; only the SavedModel's check that the channels are 1 or 3 has no ONNX equivalent
(tf2onnx drops asserts), so feed 1 or 3 channels. Opset 17 (onnxruntime >= 1.13).

The conversion needs the TensorFlow Keras backend (tf2onnx converts TensorFlow graphs); under
JAX or torch it runs in a TensorFlow-backend subprocess on the model saved as `.keras`, so the
file is the same whichever backend trained the model. Keras's own `model.export(format="onnx")`
goes through tf2onnx as well under TensorFlow, but exports the model's call only (float inputs,
logits) and, under JAX, needs jax2onnx; converting `serving_function` keeps the ONNX file's
contract that of `serving_default`.

Two ways in:
    export_model(..., onnx=True)         writes model.onnx into a new export (scripts/train.py)
    add_onnx(export_dir)                 adds it to an existing one (scripts/convert.py --to onnx)
Both check it with onnxruntime against the SavedModel's `serving_default` on the export's stored
test images (or golden probe) and record the result in the manifest's `onnx` section; a
probability gap above `TOLERANCE` is an ExportError and leaves no file behind.

Needs the `onnx` extra: onnxruntime, onnx and tf2onnx (>= 1.17 for numpy 2).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export import (
    EVAL_BATCH_SIZE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TEST_SET_FILE,
    ExportError,
    _json_default,
    load_serving,
    model_input_shape,
    read_manifest,
    run_serving,
    serving_function,
    sha256_file,
    write_in_tensorflow,
)

OPSET = 17
# Max |onnxruntime - serving_default| / max |serving_default| over the checked probabilities.
TOLERANCE = 1e-5
OUTPUTS = ("probabilities", "classes", "logits")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"The ONNX export needs {module}; install the onnx extra: pip install -e '.[onnx]'."
        ) from None


def gap(values, reference) -> float:
    """The project's parity metric: `max|values - reference| / max|reference|`."""
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    scale = float(np.abs(reference).max()) or 1.0
    return float(np.abs(values - reference).max() / scale)


def write_onnx(model, path: str | Path, *, mean, std, opset: int = OPSET) -> None:
    """Write `model`'s serving graph (module docstring) as ONNX to `path`.

    `mean` and `std` are the source's, as for `keras_cnns.export.write_saved_model`. Under a
    non-TensorFlow Keras backend the model is saved to a temporary `.keras` file and converted
    in a TensorFlow-backend subprocess.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="keras_cnns-onnx-") as tmp:
            keras_file = Path(tmp) / MODEL_FILE
            model.save(keras_file)
            write_in_tensorflow(keras_file, onnx=path, mean=mean, std=std, opset=opset)
        return

    import logging

    import tensorflow as tf

    tf2onnx = _require("tf2onnx")
    _require("onnx")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    shape = model_input_shape(model)

    def model_call(x):
        return tf.cast(model(x, training=False), tf.float32)

    signature = (tf.TensorSpec([None, None, None, None], tf.uint8, name="images"),)
    function = tf.function(
        serving_function(model_call, shape, mean=mean, std=std, logits=True),
        input_signature=signature,
        autograph=False,
    )
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    proto.doc_string = (
        "keras_cnns serving_default: images uint8 [batch, height, width, 1 or 3] -> "
        "probabilities float32 [batch, classes], classes int64 [batch], logits float32"
    )
    Path(path).write_bytes(proto.SerializeToString())


def session(path: str | Path):
    """An onnxruntime CPU session for `path`."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(sess, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> dict[str, np.ndarray]:
    """`{"probabilities", "classes", "logits"}` of `model.onnx` on uint8 `images`, batched."""
    names = [output.name for output in sess.get_outputs()]
    parts = {name: [] for name in names}
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start:start + batch_size], dtype=np.uint8)
        for name, value in zip(names, sess.run(names, {"images": batch}), strict=True):
            parts[name].append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


def check_onnx(path: str | Path, images: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Compare `model.onnx` on `images` with `serving_default`'s `probabilities` of them.

    Returns the manifest's `onnx` section; raises ExportError when the gap exceeds TOLERANCE.
    """
    onnx = _require("onnx")
    sess = session(path)
    names = {output.name for output in sess.get_outputs()}
    if {i.name for i in sess.get_inputs()} != {"images"} or not set(OUTPUTS) <= names:
        raise ExportError(f"{Path(path).name} does not have the images -> {OUTPUTS} signature.")
    out = run_onnx(sess, images)
    worst = gap(out["probabilities"], probabilities)
    agree = int(np.sum(out["classes"] == np.argmax(probabilities, axis=-1)))
    if not worst <= TOLERANCE:
        raise ExportError(
            f"onnxruntime's probabilities differ from serving_default's by {worst:.2e} "
            f"(relative) on {len(images)} images, more than {TOLERANCE:.0e}."
        )
    onnxruntime, tf2onnx = _require("onnxruntime"), _require("tf2onnx")
    model = onnx.load(str(path), load_external_data=False)
    return {
        "file": Path(path).name,
        "opset": int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))),
        "inputs": {"images": "uint8 [batch, height, width, 1 or 3 channels], any height/width"},
        "outputs": {
            "probabilities": "float32 [batch, classes]",
            "classes": "int64 [batch]",
            "logits": "float32 [batch, classes]",
        },
        "converter": f"tf2onnx {tf2onnx.__version__} from serving_default's function",
        "checked_against": "serving_default",
        "checked_images": int(len(images)),
        "max_probability_gap": worst,
        "classes_agree": agree,
        "tolerance": TOLERANCE,
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "tf2onnx": tf2onnx.__version__},
    }


def _export_images(export_dir: Path, manifest: dict) -> np.ndarray:
    evaluation = manifest.get("evaluation") or {}
    name = evaluation.get("test_set") or (manifest.get("golden") or {}).get("images_file")
    for candidate in filter(None, (name, TEST_SET_FILE, GOLDEN_FILE)):
        if (export_dir / candidate).is_file():
            with np.load(export_dir / candidate) as data:
                return data["images"]
    raise ExportError(f"Export {export_dir} has neither {TEST_SET_FILE} nor {GOLDEN_FILE}.")


def add_onnx(export_dir: str | Path, *, opset: int = OPSET, replace: bool = False) -> dict:
    """Add `model.onnx` to an existing export and record it in the manifest; return the section.

    Converts the export's `model.keras` with its dataset's mean and std, checks it against the
    export's own `serving_default` on its stored images, then moves it into place and rewrites
    `manifest.json` (its `files` hashes and `onnx` section). A failure before that leaves the
    export as it was. `replace=True` replaces an existing `model.onnx`.
    """
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    target = export_dir / ONNX_FILE
    if target.exists() and not replace:
        raise ExportError(f"Export {export_dir} already has {ONNX_FILE}; pass replace to redo it.")
    if not (export_dir / MODEL_FILE).is_file():
        raise ExportError(f"Export {export_dir} has no {MODEL_FILE} to convert.")
    dataset = manifest.get("dataset") or {}
    mean, std = dataset.get("mean"), dataset.get("std")
    if not mean or not std:
        raise ExportError(f"The manifest of export {export_dir} has no dataset mean and std.")
    images = _export_images(export_dir, manifest)

    token = secrets.token_hex(4)
    tmp_onnx = export_dir / f".{ONNX_FILE}.tmp-{os.getpid()}-{token}"
    tmp_manifest = export_dir / f".{MANIFEST_FILE}.tmp-{os.getpid()}-{token}"
    try:
        write_in_tensorflow(export_dir / MODEL_FILE, onnx=tmp_onnx, mean=mean, std=std,
                            opset=opset)
        signature = load_serving(export_dir)
        probabilities, _ = run_serving(signature, images)
        section = check_onnx(tmp_onnx, images, probabilities)
        section["file"] = ONNX_FILE
        files = dict(manifest.get("files") or {})
        files[ONNX_FILE] = sha256_file(tmp_onnx)
        manifest = {**manifest, "files": dict(sorted(files.items())), "onnx": section}
        text = json.dumps(manifest, indent=2, sort_keys=True, default=_json_default)
        tmp_manifest.write_text(text + "\n")
        # model.onnx first, then the manifest that lists it: each rename is atomic, and if the
        # second fails the first is undone.
        os.replace(tmp_onnx, target)
        try:
            os.replace(tmp_manifest, export_dir / MANIFEST_FILE)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    finally:
        tmp_onnx.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
    return section
