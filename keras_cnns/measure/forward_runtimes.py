"""One forward pass, four runtimes: uint8 images -> class probabilities through the Keras model,
or through an export's SavedModel (`serving_default`), `model.tflite` or `model.onnx`.

Occlusion sensitivity needs forward passes only, so `layer_views.occlusion` takes any of these
and the same picture can be drawn from the file a deployment serves (`visualize --runtime`).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keras_cnns.config import ConfigError
from keras_cnns.export import ExportError
from keras_cnns.measure.layer_subject import Subject, model_inputs

RUNTIMES = {"keras": "the Keras model", "savedmodel": "the SavedModel's serving_default",
            "tflite": "model.tflite (LiteRT)", "onnx": "model.onnx (onnxruntime)"}
RUNTIME_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}
BATCH = 128


def batched(function, x):
    """`function` over `x` in slices of BATCH, its outputs (an array or a list of arrays)
    concatenated as numpy."""
    parts = [function(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]
    return np.concatenate([np.asarray(p) for p in parts])


def probabilities(model, x) -> np.ndarray:
    """Class probabilities of `x`: the softmax of the logits (or the output itself, when the
    model ends in a softmax)."""
    out = batched(lambda b: keras.ops.convert_to_numpy(model(b, training=False)), x)
    if getattr(model.layers[-1], "activation", None) is keras.activations.softmax:
        return out.astype(np.float64)
    out = out.astype(np.float64) - out.max(-1, keepdims=True)
    return np.exp(out) / np.exp(out).sum(-1, keepdims=True)


def check_runtime(subject: Subject, runtime: str) -> None:
    """A ConfigError, one sentence, unless `subject` can be run by `runtime`."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}.")
    if runtime != "keras" and subject.export is None:
        raise ConfigError(f"--runtime {runtime} needs an export directory; {subject.name} is "
                          "a bare .keras file.")
    name = RUNTIME_FILES.get(runtime)
    if name and not (subject.export / name).is_file():
        raise ConfigError(f"--runtime {runtime}: export {subject.export} has no {name}; add "
                          f"it with keras-cnns convert {subject.export} --to {runtime}.")


def runtime_probabilities(subject: Subject, runtime: str = "keras") -> Callable:
    """A function from uint8 images [N, H, W, C] at the model's input size to probabilities
    [N, classes], run by `runtime` (one of RUNTIMES). All but "keras" need an export, and
    "tflite" and "onnx" the file of that name in it (`keras-cnns convert EXPORT --to ...`)."""
    check_runtime(subject, runtime)
    if runtime == "keras":
        return lambda images: probabilities(subject.model, model_inputs(subject, images))
    name = RUNTIME_FILES.get(runtime)
    if runtime == "savedmodel":
        from keras_cnns.export.saved_model import load_serving, run_serving

        try:
            signature = load_serving(subject.export)
        except Exception as error:  # a SavedModel TensorFlow cannot load: say which
            raise ExportError(f"The SavedModel in {subject.export} cannot be loaded "
                              f"({_first_line(error)}).") from None
        return lambda images: run_serving(signature, np.asarray(images, np.uint8))[0]
    if runtime == "tflite":
        from keras_cnns.export.tflite_export import run_tflite

        return lambda images: run_tflite(subject.export / name, images)["probabilities"]
    from keras_cnns.export.onnx_export import run_onnx, session

    onnx = session(subject.export / name)
    return lambda images: run_onnx(onnx, np.asarray(images, np.uint8))["probabilities"]


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
