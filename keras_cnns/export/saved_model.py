"""The SavedModel inside an export: its two signatures, and how each Keras backend writes them.

    serving_default(images: uint8 [batch, height, width, 1 or 3]) -> probabilities, classes,
        labels (the class names, when the export knows them)
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

from keras_cnns.export.directory import EVAL_BATCH_SIZE, MODEL_FILE, ExportError
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


def serving_function(model_call, input_shape, *, mean, std, class_names=None,
                     logits: bool = False):
    """`serving_default`'s body: uint8 images -> `{"probabilities", "classes"}`, plus "labels"
    (tf.string, each image's class name) when `class_names` are given, plus "logits".

    `model_call(x)` maps preprocessed float32 `[batch, *input_shape]` to float32 logits; the
    ONNX export (`keras_cnns.export.onnx_export`) converts this same function, with `logits=True`.
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
        if class_names is not None:
            result["labels"] = class_labels(class_names, result["classes"])
        if logits:
            result["logits"] = out
        return result

    return serving_default


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
    """Write `model` as a SavedModel with `serving_default` and `serve` (module docstring).

    `mean` and `std` are the source's per-channel constants on the [0, 1] scale, as training
    used them; `preprocess` maps them to the model's channels exactly as the pipeline does.
    `class_names` (one per output) give serving_default its `labels` output.

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
    backend = keras.backend.backend()
    serve_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")
    images_spec = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
    if backend == "tensorflow":
        def serve(inputs):
            return tf.cast(model(inputs, training=False), tf.float32)

        serving_default = serving_function(serve, (height, width, channels), mean=mean, std=std,
                                           class_names=class_names)
        _save_canonical(path, {
            "serving_default": tf.function(serving_default, input_signature=[images_spec],
                                           autograph=False),
            "serve": tf.function(serve, input_signature=[serve_spec], autograph=False),
        })
        return

    archive = keras.export.ExportArchive()

    def serve_jax(inputs):
        return keras.ops.cast(model(inputs, training=False), "float32")

    # JAX: the archive holds tf.Variable copies of the weights (track) and converts the
    # model call with jax2tf; serving_default's TensorFlow preprocessing then calls that
    # converted endpoint, so both signatures share one copy of the weights. jax2tf
    # serialises StableHLO for the listed platforms only (by default, the exporting one):
    # CPU and CUDA, so that an export made on either can serve on both (CPU serving is
    # tested; CUDA serving is not, for want of a TensorFlow GPU build here).
    archive.track(model)
    model_call = archive.add_endpoint(
        "serve", serve_jax, input_signature=[serve_spec],
        jax2tf_kwargs={"native_serialization_platforms": ("cpu", "cuda")},
    )
    serving_default = serving_function(model_call, (height, width, channels), mean=mean, std=std,
                                       class_names=class_names)
    # A traced tf.function is added as it is, not converted again.
    serving_default = tf.function(serving_default, input_signature=[images_spec],
                                  autograph=False)
    serving_default.get_concrete_function()
    archive.add_endpoint("serving_default", serving_default)
    archive.write_out(str(path), verbose=False)


def _save_canonical(path, endpoints: dict) -> None:
    """`tf.saved_model.save` of `endpoints` (tf.functions), the same bytes for the same model.

    Keras' ExportArchive tracks the variables the endpoints capture in an order that follows
    their id() hashes, so two identical models (two identical deterministic runs) wrote
    different `variables.*` and `saved_model.pb` bytes; here they are tracked sorted by name.
    No weight is stored twice: only the captured tf.Variables are tracked, not Keras's wrappers.
    fingerprint.pb's random `uuid` becomes one derived from the fingerprint's content hashes.
    """
    import tensorflow as tf

    concrete = {name: fn.get_concrete_function() for name, fn in endpoints.items()}
    captured = {}
    for function in concrete.values():
        for variable in function.variables:
            captured.setdefault(id(variable), variable)
    variables = sorted(captured.values(), key=lambda v: (v.name, tuple(v.shape)))
    if len({v.name for v in variables}) != len(variables):
        raise ExportError("The model has two variables of one name; name its layers uniquely.")
    module = tf.Module()
    module.captured_variables = variables
    for name, function in endpoints.items():
        setattr(module, name, function)
    tf.saved_model.save(module, str(path), signatures=concrete)
    _canonical_function_names(Path(path))
    _canonical_fingerprint(Path(path))


def _canonical_function_names(path: Path) -> None:
    """Number the graph's functions by their order, not by the process-wide trace counter.

    TensorFlow names a traced function `<name>_<uid>` with a counter shared by everything the
    process traced before (a training run traces hundreds), so the same export written after
    another history got other names; the names are rewritten to `<name>_<rank>`, everywhere
    they occur (function library, call attributes, the object graph's maps), and the library is
    sorted by name.
    """
    import re

    from google.protobuf.descriptor import FieldDescriptor
    from tensorflow.core.protobuf import saved_model_pb2

    file = path / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(file.read_bytes())
    names = [function.signature.name for meta in saved.meta_graphs
             for function in meta.graph_def.library.function]
    numbered = [(int(m.group(2)), m.group(1), name) for name in names
                if (m := re.fullmatch(r"(.*)_(\d+)", name))]
    renamed = {name: f"{stem}_{rank}" for rank, (_, stem, name) in enumerate(sorted(numbered))}
    # Captured variables' placeholders are also named by that counter ("_user_specified_name").
    from google.protobuf import text_format

    counters = re.findall(r'key: "_user_specified_name"\s+value \{\s+s: "(\d+)"',
                          text_format.MessageToString(saved))
    placeholders = {str(n).encode(): f"captured_{rank}".encode()
                    for rank, n in enumerate(sorted(set(map(int, counters))))}

    def repeated(field) -> bool:  # `label` is gone from newer protobuf runtimes
        if hasattr(field, "is_repeated"):
            return field.is_repeated
        return field.label == FieldDescriptor.LABEL_REPEATED

    def rewrite(message) -> None:
        for field, value in message.ListFields():
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                entries = dict(value)
                if field.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING:
                    value.clear()
                    for key, item in entries.items():
                        target = value[renamed.get(key, key)]
                        if hasattr(item, "CopyFrom"):
                            target.CopyFrom(item)
                            rewrite(target)
                            if key == "_user_specified_name" and target.s in placeholders:
                                target.s = placeholders[target.s]
                        else:
                            value[renamed.get(key, key)] = item
                else:
                    for item in value.values():
                        if hasattr(item, "ListFields"):
                            rewrite(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in (value if repeated(field) else [value]):
                    rewrite(item)
            elif field.type == FieldDescriptor.TYPE_STRING:
                if repeated(field):
                    value[:] = [renamed.get(v, v) for v in value]
                elif value in renamed:
                    setattr(message, field.name, renamed[value])

    rewrite(saved)
    for meta in saved.meta_graphs:  # and listed in name order, not in the order of tracing
        library = meta.graph_def.library
        functions = sorted((type(f).FromString(f.SerializeToString()) for f in library.function),
                           key=lambda function: function.signature.name)
        del library.function[:]
        library.function.extend(functions)
    file.write_bytes(saved.SerializeToString(deterministic=True))


def _canonical_fingerprint(path: Path) -> None:
    import hashlib

    from tensorflow.core.protobuf import fingerprint_pb2

    file = path / "fingerprint.pb"
    if not file.exists():
        return
    fingerprint = fingerprint_pb2.FingerprintDef()
    try:  # the checksums of the rewritten saved_model.pb, as TensorFlow computes them
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        fingerprint.ParseFromString(fingerprinting.CreateFingerprintDef(str(path)))
    except (ImportError, AttributeError):
        fingerprint.ParseFromString(file.read_bytes())
    fingerprint.ClearField("uuid")
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:16], "big"))
    file.write_bytes(fingerprint.SerializeToString(deterministic=True))


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
