"""Run the TensorFlow-only writers in a TensorFlow-backend child process.

The SavedModel under torch (whose Keras export needs torch_xla), and ONNX and TFLite under
any backend but TensorFlow (tf2onnx and the TFLite converter convert TensorFlow graphs), are
written by `python -m keras_cnns.export.worker` from a saved `.keras` file, so every file is the
same whichever backend trained the model. This module only starts that process; it imports no
writer, which keeps the package's import graph acyclic.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from keras_cnns.export.directory import ExportError
from keras_cnns.machine import BackendProcessError, run_python

WORKER_MODULE = "keras_cnns.export.worker"


def run_tensorflow_writers(keras_file: str | Path, *, mean, std, **options) -> None:
    """Write the requested files from `keras_file` in a TensorFlow-backend subprocess.

    The keyword arguments are those of `keras_cnns.export.worker.write_in_tensorflow`;
    `calibration` (uint8 training images for int8 TFLite) travels through a temporary `.npy`.
    """
    args = ["-m", WORKER_MODULE, "--keras", str(Path(keras_file).resolve())]
    for name in ("saved_model", "onnx", "tflite"):
        if options.get(name) is not None:
            args += ["--" + name.replace("_", "-"), str(Path(options[name]).resolve())]
    for name in ("opset", "quantize"):
        if options.get(name) is not None:
            args += [f"--{name}", str(options[name])]
    if options.get("class_names") is not None:
        args += ["--class-names-json", json.dumps([str(n) for n in options["class_names"]])]
    args += ["--mean", *map(repr, map(float, mean)), "--std", *map(repr, map(float, std))]
    calibration = options.get("calibration")
    with tempfile.TemporaryDirectory(prefix="keras_cnns-calibration-") as tmp:
        if calibration is not None:
            np.save(Path(tmp) / "calibration.npy", np.asarray(calibration, np.uint8))
            args += ["--calibration", str(Path(tmp) / "calibration.npy")]
        try:
            run_python("tensorflow", args, what="TensorFlow export")
        except BackendProcessError as error:
            raise ExportError(str(error)) from None
