"""ONNX: an export's `serving_default` as one ONNX graph, checked with onnxruntime.

`model.onnx` is tf2onnx's conversion of the very function that the SavedModel serves as
`serving_default` (`keras_cnns.export.saved_model.serving_function`), with the logits as an
extra output:

    input   images         uint8   [batch, height, width, channels]  any height and width,
                                                                     channels 1 or 3
    output  probabilities  float32 [batch, classes]
            classes        int64   [batch]
            labels         string  [batch]   the class names (ONNX Gather on a string table)
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
    amend.add_onnx(export_dir)           adds it to an existing one (scripts/convert.py --to onnx)
Both check it with onnxruntime against the SavedModel's `serving_default` on the export's stored
test images (or golden probe) and record the result in the manifest's `onnx` section; a
probability gap above `TOLERANCE` is an ExportError and leaves no file behind.

Needs the `onnx` extra: onnxruntime, onnx and tf2onnx (>= 1.17 for numpy 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export.directory import EVAL_BATCH_SIZE, ExportError
from keras_cnns.export.saved_model import (
    model_input_shape,
    serving_function,
    wrote_in_tensorflow_child,
)
from keras_cnns.export.scoring import relative_gap

OPSET = 17
# Max |onnxruntime - serving_default| / max |serving_default| over the checked probabilities.
TOLERANCE = 1e-5
OUTPUTS = ("probabilities", "classes", "logits")  # and "labels" with class names


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"The ONNX export needs {module}; install the onnx extra: pip install -e '.[onnx]'."
        ) from None


def write_onnx(model, path: str | Path, *, mean, std, class_names=None,
               opset: int = OPSET) -> None:
    """Write `model`'s serving graph (module docstring) as ONNX to `path`.

    `mean`, `std` and `class_names` are the source's, as for `write_saved_model`. Under a
    non-TensorFlow Keras backend the model is saved to a temporary `.keras` file and converted
    in a TensorFlow-backend subprocess.
    """
    if wrote_in_tensorflow_child(model, onnx=path, mean=mean, std=std,
                                 class_names=class_names, opset=opset):
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
        serving_function(model_call, shape, mean=mean, std=std, class_names=class_names,
                         logits=True),
        input_signature=signature,
        autograph=False,
    )
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    proto.doc_string = (
        "keras_cnns serving_default: images uint8 [batch, height, width, 1 or 3] -> "
        "probabilities float32 [batch, classes], classes int64 [batch], "
        + ("labels string [batch], " if class_names is not None else "")
        + "logits float32 [batch, classes]"
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


def check_onnx(path: str | Path, images: np.ndarray, probabilities: np.ndarray,
               class_names=None) -> dict[str, Any]:
    """Compare `model.onnx` on `images` with `serving_default`'s `probabilities` of them, and
    its `labels` with `class_names` (when given) of its classes.

    Returns the manifest's `onnx` section; raises ExportError when the gap exceeds TOLERANCE.
    """
    onnx = _require("onnx")
    sess = session(path)
    names = {output.name for output in sess.get_outputs()}
    wanted = OUTPUTS + (("labels",) if class_names is not None else ())
    if {i.name for i in sess.get_inputs()} != {"images"} or not set(wanted) <= names:
        raise ExportError(f"{Path(path).name} does not have the images -> {wanted} signature.")
    out = run_onnx(sess, images)
    if class_names is not None:
        expected = np.asarray([str(name) for name in class_names], dtype=object)[out["classes"]]
        if [str(label) for label in out["labels"]] != expected.tolist():
            raise ExportError(f"{Path(path).name}'s labels are not the class names of its "
                              "classes.")
    worst = relative_gap(out["probabilities"], probabilities)
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
            **({"labels": "string [batch], the class names"} if class_names is not None
               else {}),
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
