"""The SavedModel inside an export: its two signatures, and how each Keras backend writes them.

    serving_default(images: uint8 [batch, height, width, 1 or 3]) -> probabilities, classes
    serve(inputs: float32 [batch, *model input]) -> logits

`keras_cnns.export` assembles the export directory around what this module writes; see its
docstring for the layout and the guarantees. TensorFlow traces the model directly; JAX goes
through jax2tf; torch, whose Keras export needs torch_xla, through a TensorFlow-backend
subprocess (`python -m keras_cnns.saved_model`) that loads the saved `model.keras`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_FILE = "model.keras"
# Fixed, recorded batch size: the same images in another batching may differ in the last bit.
EVAL_BATCH_SIZE = 256


class ExportError(RuntimeError):
    """An export that cannot be written or read; the message is one sentence."""


def model_input_shape(model) -> tuple[int, int, int]:
    """`(height, width, channels)` of a single-input image model, all known."""
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ExportError(
            f"Only models with one fixed (height, width, 1 or 3) input export, not {shape}."
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def serving_function(model_call, input_shape, *, mean, std, logits: bool = False):
    """`serving_default`'s body: uint8 images -> `{"probabilities", "classes"}` (+ "logits").

    `model_call(x)` maps preprocessed float32 `[batch, *input_shape]` to float32 logits; the
    ONNX export (`keras_cnns.onnx_export`) converts this same function, with `logits=True`.
    """
    import tensorflow as tf

    from keras_cnns.data import preprocess

    height, width, channels = input_shape
    mean, std = [float(m) for m in mean], [float(s) for s in std]

    def serving_default(images):
        depth = tf.shape(images)[-1]
        # Without this, _to_channels would quietly read 2 or 4 channels as 1 or 3.
        check = tf.debugging.assert_equal(
            tf.logical_or(depth == 1, depth == 3), True,
            message="serving_default: images must have 1 or 3 channels",
        )
        with tf.control_dependencies([check]):
            x = preprocess(images, image_size=(height, width), mean=mean, std=std,
                           channels=channels)
        # The channel branch leaves the last dimension unknown; the model needs it static.
        x = tf.ensure_shape(x, [None, height, width, channels])
        out = model_call(x)
        result = {"probabilities": tf.nn.softmax(out, axis=-1),
                  "classes": tf.argmax(out, axis=-1, output_type=tf.int64)}
        if logits:
            result["logits"] = out
        return result

    return serving_default


def write_saved_model(model, path: str | Path, *, mean, std) -> None:
    """Write `model` as a SavedModel with `serving_default` and `serve` (module docstring).

    `mean` and `std` are the source's per-channel constants on the [0, 1] scale, as training
    used them; `preprocess` maps them to the model's channels exactly as the pipeline does.

    Under the TensorFlow and JAX Keras backends the SavedModel is written here (JAX's model
    call through jax2tf); under torch, whose Keras export needs torch_xla, a TensorFlow-backend
    subprocess writes it from the model saved as `.keras`. The signatures are the same.
    """
    import keras
    import tensorflow as tf

    height, width, channels = model_input_shape(model)
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="keras_cnns-export-") as tmp:
            keras_file = Path(tmp) / MODEL_FILE
            model.save(keras_file)
            write_in_tensorflow(keras_file, saved_model=path, mean=mean, std=std)
        return

    archive = keras.export.ExportArchive()
    serve_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")
    if backend == "tensorflow":
        def serve(inputs):
            return tf.cast(model(inputs, training=False), tf.float32)

        # No archive.track(model): the endpoints capture the variables already, and tracking
        # them too would store every weight twice (Keras's variables and the tf.Variables
        # inside them).
        model_call = serve
    else:
        def serve(inputs):
            return keras.ops.cast(model(inputs, training=False), "float32")

        # JAX: the archive holds tf.Variable copies of the weights (track) and converts the
        # model call with jax2tf; serving_default's TensorFlow preprocessing then calls that
        # converted endpoint, so both signatures share one copy of the weights. jax2tf
        # serialises StableHLO for the listed platforms only (by default, the exporting one):
        # CPU and CUDA, so that an export made on either can serve on both (CPU serving is
        # tested; CUDA serving is not, for want of a TensorFlow GPU build here).
        archive.track(model)
        model_call = archive.add_endpoint(
            "serve", serve, input_signature=[serve_spec],
            jax2tf_kwargs={"native_serialization_platforms": ("cpu", "cuda")},
        )
    serving_default = serving_function(model_call, (height, width, channels), mean=mean, std=std)
    images_spec = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
    if backend == "tensorflow":
        archive.add_endpoint("serving_default", serving_default, input_signature=[images_spec])
        archive.add_endpoint("serve", serve, input_signature=[serve_spec])
    else:
        # A traced tf.function is added as it is, not converted again.
        serving_default = tf.function(serving_default, input_signature=[images_spec],
                                      autograph=False)
        serving_default.get_concrete_function()
        archive.add_endpoint("serving_default", serving_default)
    archive.write_out(str(path), verbose=False)


def write_in_tensorflow(keras_file: str | Path, *, saved_model: str | Path | None = None,
                        onnx: str | Path | None = None, mean, std,
                        opset: int | None = None) -> None:
    """Write the SavedModel and/or ONNX file of a saved `.keras` model under the TensorFlow
    backend, in a subprocess when this process runs another one."""
    import keras

    if keras.backend.backend() == "tensorflow":
        model = keras.saving.load_model(keras_file, compile=False)
        if saved_model is not None:
            write_saved_model(model, saved_model, mean=mean, std=std)
        if onnx is not None:
            from keras_cnns import onnx_export

            onnx_export.write_onnx(model, onnx, mean=mean, std=std,
                                   opset=opset or onnx_export.OPSET)
        return
    from keras_cnns.backends import BackendProcessError, run_python

    args = ["-m", "keras_cnns.saved_model", "--keras", str(Path(keras_file).resolve())]
    if saved_model is not None:
        args += ["--saved-model", str(Path(saved_model).resolve())]
    if onnx is not None:
        args += ["--onnx", str(Path(onnx).resolve())]
    if opset is not None:
        args += ["--opset", str(opset)]
    args += ["--mean", *map(repr, map(float, mean)), "--std", *map(repr, map(float, std))]
    try:
        run_python("tensorflow", args, what="TensorFlow export")
    except BackendProcessError as error:
        raise ExportError(str(error)) from None


class _DropGradientWarnings:
    """A logging filter for the warning that every jax2tf SavedModel gets on loading (its
    functions keep no custom gradients; serving asks for none)."""

    @staticmethod
    def filter(record) -> bool:
        return "with ops with unsaved custom gradients" not in record.getMessage()


def load_serving(path: str | Path):
    """The `serving_default` signature of the SavedModel at `path`."""
    import logging

    import tensorflow as tf

    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    for logger in loggers:
        logger.addFilter(_DropGradientWarnings)
    try:
        return tf.saved_model.load(str(path)).signatures["serving_default"]
    finally:
        for logger in loggers:
            logger.removeFilter(_DropGradientWarnings)


def run_serving(signature, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE):
    """`(probabilities float32 [N, K], classes int64 [N])` of a loaded `serving_default`."""
    import tensorflow as tf

    probabilities, classes = [], []
    for start in range(0, len(images), batch_size):
        out = signature(images=tf.constant(images[start:start + batch_size]))
        probabilities.append(out["probabilities"].numpy())
        classes.append(out["classes"].numpy())
    return np.concatenate(probabilities), np.concatenate(classes)


def _tensorflow_worker(argv=None) -> int:
    """`python -m keras_cnns.saved_model --keras M.keras [--saved-model DIR] [--onnx FILE] ...`:
    `write_in_tensorflow`'s child process (KERAS_BACKEND=tensorflow)."""
    import argparse

    from keras_cnns.runner import quiet_tensorflow

    quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="python -m keras_cnns.saved_model")
    parser.add_argument("--keras", required=True)
    parser.add_argument("--saved-model")
    parser.add_argument("--onnx")
    parser.add_argument("--opset", type=int)
    parser.add_argument("--mean", type=float, nargs="+", required=True)
    parser.add_argument("--std", type=float, nargs="+", required=True)
    args = parser.parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        parser.error(f"needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}")
    write_in_tensorflow(args.keras, saved_model=args.saved_model, onnx=args.onnx,
                        mean=args.mean, std=args.std, opset=args.opset)
    return 0


if __name__ == "__main__":
    raise SystemExit(_tensorflow_worker())
