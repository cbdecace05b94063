"""The SavedModel inside an export: its three signatures, and how each Keras backend writes them.

    serving_default(images: uint8 [batch, height, width, 1 or 3]) -> probabilities, classes,
        labels (the class names, when the export knows them)
    serving_bytes(image_bytes: string [batch], one encoded JPEG, PNG, GIF or BMP each) -> the
        same outputs; decoded in the graph (TF Serving's REST API sends `{"b64": ...}` to an
        input whose name ends in `_bytes`), then preprocessed by the very function that
        serving_default calls
    serve(inputs: float32 [batch, *model input]) -> logits

`keras_cnns.export.bundle` assembles the export directory around what this module writes; see
the package docstring for the layout and the guarantees. TensorFlow traces the model directly;
JAX goes through jax2tf; torch, whose Keras export needs torch_xla, through a TensorFlow-backend
subprocess (`keras_cnns.export.tensorflow_process`) that loads the saved `model.keras`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export.canonical_savedmodel import save_canonical
from keras_cnns.export.directory import EVAL_BATCH_SIZE, MODEL_FILE, ExportError
from keras_cnns.export.encoded_images import BYTES_FORMATS, BYTES_INPUT, decode_function, max_pixels
from keras_cnns.export.tensorflow_process import run_tensorflow_writers


def model_input_shape(model) -> tuple[int, int, int]:
    """`(height, width, channels)` of a single-input image model, all known."""
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ExportError(
            f"Only models with one fixed (height, width, 1 or 3) input export, not {shape}."
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def save_keras_file(model, path: str | Path) -> None:
    """`model` as a `.keras` file without optimizer state, the same bytes for the same model.

    The optimizer's slots tripled AlexNet's file (63.7 MB for 21 MB of weights) and are of no
    use to an export: resuming lives in the run directory. Keras stamps the save time into
    `metadata.json` and the weights' zip entry; both are dropped, so two identical models give
    byte-identical files.
    """
    import json
    import zipfile

    lean = model
    if getattr(model, "optimizer", None) is not None:
        # Rebuilt from its config, uncompiled: clone_model would compile its clone with the
        # very optimizer whose variables this leaves out, and saving the model's own layers
        # would record their shared dtype policy by its id(), different in every process.
        lean = type(model).from_config(model.get_config())
        lean.set_weights(model.get_weights())
    path = Path(path)
    raw = path.with_name(f".raw-{path.name}")
    lean.save(raw)
    try:
        with zipfile.ZipFile(raw) as source, zipfile.ZipFile(path, "w") as target:
            for name in sorted(source.namelist()):
                data = source.read(name)
                if name == "metadata.json":
                    metadata = json.loads(data)
                    metadata.pop("date_saved", None)
                    data = json.dumps(metadata, sort_keys=True).encode()
                entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                target.writestr(entry, data)
    finally:
        raw.unlink(missing_ok=True)


def preprocessing_record(height: int, width: int, channels: int, mean, std) -> dict[str, Any]:
    """The manifest's `preprocessing` section: what serving_default does to its uint8 input."""
    from keras_cnns.data.pipeline import match_stats

    norm_mean, norm_std = match_stats(mean, std, channels)
    return {
        "input": "uint8 [batch, height, width, 1 or 3 channels], any height and width",
        "steps": "x / 255; channels to the model's (ITU-R 601 luma or tiling); "
                 "tf.image.resize bilinear, half-pixel centres, no antialiasing; "
                 "(x - mean) / std per channel",
        "image_size": [height, width],
        "channels": channels,
        "mean": norm_mean,
        "std": norm_std,
    }


def preprocessing_function(input_shape, *, mean, std):
    """uint8 images `[batch, any height, any width, 1 or 3]` -> the model's float32 input
    `[batch, *input_shape]`: the training preprocessing (`keras_cnns.data.preprocess`). The
    SavedModel traces it once and both image signatures call it (`write_saved_model`)."""
    import tensorflow as tf

    from keras_cnns.data import preprocess

    height, width, channels = input_shape
    mean, std = [float(m) for m in mean], [float(s) for s in std]

    def preprocessing(images):
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
        return tf.ensure_shape(x, [None, height, width, channels])

    return preprocessing


def _outputs(out, class_names, logits: bool) -> dict:
    import tensorflow as tf

    result = {"probabilities": tf.nn.softmax(out, axis=-1),
              "classes": tf.argmax(out, axis=-1, output_type=tf.int64)}
    if class_names is not None:
        result["labels"] = class_labels(class_names, result["classes"])
    if logits:
        result["logits"] = out
    return result


def serving_function(model_call, input_shape, *, mean, std, class_names=None,
                     logits: bool = False, preprocessing=None):
    """`serving_default`'s body: uint8 images -> `{"probabilities", "classes"}`, plus "labels"
    (tf.string, each image's class name) when `class_names` are given, plus "logits".

    `model_call(x)` maps preprocessed float32 `[batch, *input_shape]` to float32 logits;
    `preprocessing` is `preprocessing_function(input_shape, mean=mean, std=std)` unless given
    (the SavedModel passes the traced one it shares with serving_bytes). The ONNX export
    (`keras_cnns.export.onnx_export`) converts this same function, with `logits=True`.
    """
    if preprocessing is None:
        preprocessing = preprocessing_function(input_shape, mean=mean, std=std)

    def serving_default(images):
        return _outputs(model_call(preprocessing(images)), class_names, logits)

    return serving_default


def bytes_serving_function(model_call, input_shape, *, preprocessing, class_names=None,
                           limit: int | None = None):
    """`serving_bytes`'s body: string `[batch]` of encoded images -> serving_default's outputs.

    Each element is decoded (`decode_function`, at most `limit` pixels, default `max_pixels()`)
    and preprocessed on its own by `preprocessing`, the function serving_default calls, so an
    image and its lossless encoding give identical outputs. One at a time (`tf.map_fn`,
    `parallel_iterations=1`): a full-size image is a few GB as float32, and a batch is bounded
    by one of them, not by the batch.
    """
    import tensorflow as tf

    height, width, channels = input_shape
    decode = decode_function(max_pixels() if limit is None else int(limit))

    def one(element):
        index, data = element
        return preprocessing(decode(index, data)[None])[0]

    def serving_bytes(image_bytes):
        indices = tf.range(tf.size(image_bytes, out_type=tf.int64), dtype=tf.int64)
        x = tf.map_fn(one, (indices, image_bytes), parallel_iterations=1,
                      fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32))
        return _outputs(model_call(x), class_names, False)

    return serving_bytes


def signatures_record(limit: int | None = None) -> dict[str, Any]:
    """The manifest's `signatures` section: the SavedModel's signatures and their inputs
    (`keras_cnns/serving/verify_export.py` checks serving_bytes against serving_default)."""
    outputs = ["probabilities", "classes", "labels"]
    return {
        "serving_default": {"input": "images", "dtype": "uint8",
                            "shape": "[batch, height, width, 1 or 3]", "outputs": outputs},
        "serving_bytes": {"input": BYTES_INPUT, "dtype": "string", "shape": "[batch]",
                          "formats": list(BYTES_FORMATS),
                          "max_pixels": max_pixels() if limit is None else int(limit),
                          "outputs": outputs},
        "serve": {"input": "inputs", "dtype": "float32",
                  "shape": "[batch, *image_size, channels], preprocessed",
                  "outputs": ["logits"]},
    }


def class_labels(class_names, classes):
    """tf.string names of int64 `classes`: a gather from a constant table, which the SavedModel,
    tf2onnx and the TFLite converter all take."""
    import tensorflow as tf

    return tf.gather(tf.constant([str(name) for name in class_names], tf.string), classes)


def wrote_in_tensorflow_child(model, *, native=("tensorflow",), **files) -> bool:
    """Unless this process's Keras backend is one of `native`, write `files` (the keyword
    arguments of `run_tensorflow_writers`) from `model` in a TensorFlow-backend child and
    return True; else return False, and the caller writes them here."""
    import tempfile

    import keras

    if keras.backend.backend() in native:
        return False
    with tempfile.TemporaryDirectory(prefix="keras_cnns-export-") as tmp:
        keras_file = Path(tmp) / MODEL_FILE
        save_keras_file(model, keras_file)
        run_tensorflow_writers(keras_file, **files)
    return True


def write_saved_model(model, path: str | Path, *, mean, std, class_names=None) -> None:
    """Write `model` as a SavedModel with `serving_default`, `serving_bytes` and `serve`
    (module docstring).

    `mean` and `std` are the source's per-channel constants on the [0, 1] scale, as training
    used them; `preprocess` maps them to the model's channels exactly as the pipeline does.
    `class_names` (one per output) give the image signatures their `labels` output. The
    preprocessing is one traced function, which serving_default calls on its batch and
    serving_bytes on each decoded image.

    Under the TensorFlow and JAX Keras backends the SavedModel is written here (JAX's model
    call through jax2tf); under torch, whose Keras export needs torch_xla, a TensorFlow-backend
    subprocess writes it from the model saved as `.keras`. The signatures are the same.
    """
    import keras
    import tensorflow as tf

    if wrote_in_tensorflow_child(model, native=("tensorflow", "jax"), saved_model=path,
                                 mean=mean, std=std, class_names=class_names):
        return
    height, width, channels = model_input_shape(model)
    input_shape = (height, width, channels)
    backend = keras.backend.backend()
    serve_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")
    images_spec = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
    bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT)
    preprocessing = tf.function(preprocessing_function(input_shape, mean=mean, std=std),
                                input_signature=[images_spec], autograph=False)

    def image_signatures(model_call) -> dict:
        return {
            "serving_default": tf.function(
                serving_function(model_call, input_shape, mean=mean, std=std,
                                 class_names=class_names, preprocessing=preprocessing),
                input_signature=[images_spec], autograph=False),
            "serving_bytes": tf.function(
                bytes_serving_function(model_call, input_shape, preprocessing=preprocessing,
                                       class_names=class_names),
                input_signature=[bytes_spec], autograph=False),
        }

    if backend == "tensorflow":
        def serve(inputs):
            return tf.cast(model(inputs, training=False), tf.float32)

        save_canonical(path, {
            **image_signatures(serve),
            "serve": tf.function(serve, input_signature=[serve_spec], autograph=False),
        })
        return

    archive = keras.export.ExportArchive()

    def serve_jax(inputs):
        return keras.ops.cast(model(inputs, training=False), "float32")

    # JAX: the archive holds tf.Variable copies of the weights (track) and converts the
    # model call with jax2tf; the image signatures' TensorFlow preprocessing then calls that
    # converted endpoint, so all signatures share one copy of the weights. jax2tf
    # serialises StableHLO for the listed platforms only (by default, the exporting one):
    # CPU and CUDA, so that an export made on either can serve on both (CPU serving is
    # tested; CUDA serving is not, for want of a TensorFlow GPU build here).
    archive.track(model)
    model_call = archive.add_endpoint(
        "serve", serve_jax, input_signature=[serve_spec],
        jax2tf_kwargs={"native_serialization_platforms": ("cpu", "cuda")},
    )
    # A traced tf.function is added as it is, not converted again.
    for name, function in image_signatures(model_call).items():
        function.get_concrete_function()
        archive.add_endpoint(name, function)
    archive.write_out(str(path), verbose=False)


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
