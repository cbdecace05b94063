"""Write an export's TensorFlow files from a saved `.keras` model, under the TensorFlow backend.

`write_in_tensorflow` loads the model and writes the SavedModel, `model.onnx` and/or
`model.tflite` in this process when it runs the TensorFlow backend, else in a TensorFlow-backend
child (`keras_cnns.export.tensorflow_process`), which runs this module:

    python -m keras_cnns.export.worker --keras M.keras [--saved-model DIR] [--onnx FILE]
        [--tflite FILE [--quantize int8 --calibration IMAGES.npy]] --mean M.. --std S..
        [--class-names-json '["a", ...]'] [--opset N]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_cnns.export import onnx_export, tflite_export
from keras_cnns.export.saved_model import write_saved_model
from keras_cnns.export.tensorflow_process import run_tensorflow_writers


def write_in_tensorflow(
    keras_file: str | Path, *, mean, std, class_names=None,
    saved_model: str | Path | None = None, onnx: str | Path | None = None,
    tflite: str | Path | None = None, opset: int | None = None, quantize: str | None = None,
    calibration: np.ndarray | None = None,
) -> None:
    """Write the SavedModel (`saved_model`), ONNX (`onnx`, at `opset`) and/or TFLite (`tflite`,
    `quantize` None or "int8" calibrated on the uint8 `calibration` images) files of a saved
    `.keras` model, with the preprocessing constants `mean` and `std` and the `class_names`."""
    import keras

    if keras.backend.backend() != "tensorflow":
        run_tensorflow_writers(keras_file, saved_model=saved_model, onnx=onnx, tflite=tflite,
                               mean=mean, std=std, class_names=class_names, opset=opset,
                               quantize=quantize, calibration=calibration)
        return
    model = keras.saving.load_model(keras_file, compile=False)
    if saved_model is not None:
        write_saved_model(model, saved_model, mean=mean, std=std, class_names=class_names)
    if onnx is not None:
        onnx_export.write_onnx(model, onnx, mean=mean, std=std, class_names=class_names,
                               opset=opset or onnx_export.OPSET)
    if tflite is not None:
        tflite_export.write_tflite(model, tflite, mean=mean, std=std, class_names=class_names,
                                   quantize=quantize, calibration=calibration)


def main(argv=None) -> int:
    import argparse
    import json

    # Only what the parent shows on failure reaches anyone; TensorFlow's info lines are noise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m keras_cnns.export.worker")
    parser.add_argument("--keras", required=True)
    parser.add_argument("--saved-model")
    parser.add_argument("--onnx")
    parser.add_argument("--tflite")
    parser.add_argument("--opset", type=int)
    parser.add_argument("--quantize", choices=tflite_export.QUANTIZE_CHOICES)
    parser.add_argument("--calibration")
    parser.add_argument("--class-names-json")
    parser.add_argument("--mean", type=float, nargs="+", required=True)
    parser.add_argument("--std", type=float, nargs="+", required=True)
    args = parser.parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        parser.error(f"needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}")
    class_names = json.loads(args.class_names_json) if args.class_names_json else None
    calibration = np.load(args.calibration) if args.calibration else None
    write_in_tensorflow(args.keras, saved_model=args.saved_model, onnx=args.onnx,
                        tflite=args.tflite, mean=args.mean, std=args.std,
                        class_names=class_names, opset=args.opset, quantize=args.quantize,
                        calibration=calibration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
