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


# What serving_bytes decodes, by the file's first bytes (as predict, by content, not by name).
BYTES_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
BYTES_INPUT = "image_bytes"
# Header bytes read before decoding: PNG's IHDR ends at 24, BMP's height at 26.
_HEADER_BYTES = 32


def max_pixels() -> int:
    """The most pixels serving_bytes decodes: the predict command's default limit (Pillow's)."""
    from keras_cnns.serving.prediction import DEFAULT_MAX_PIXELS

    return int(DEFAULT_MAX_PIXELS)


def _header_size(tf, data, padded, is_jpeg, is_png, is_gif):
    """int64 `(height, width)` that the header of `data` declares, without decoding a pixel:
    JPEG by `tf.io.extract_jpeg_shape`; PNG (IHDR: big-endian uint32 width, height at 16),
    GIF (logical screen: little-endian uint16 at 6) and BMP (little-endian int32 at 18, the
    fields TensorFlow's BMP decoder reads; a negative height is a top-down image) from
    `padded`, `data` followed by zero bytes, so short input reads zeros, never out of range."""
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8),
                   tf.int64)

    def number(start, length, big_endian=False):
        order = range(length) if big_endian else reversed(range(length))
        value = tf.constant(0, tf.int64)
        for i in order:
            value = value * 256 + head[start + i]
        return value

    def signed32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    png = tf.stack([number(20, 4, True), number(16, 4, True)])
    gif = tf.stack([number(8, 2), number(6, 2)])
    bmp = tf.stack([signed32(number(22, 4)), signed32(number(18, 4))])
    other = tf.where(is_png, png, tf.where(is_gif, gif, bmp))
    return tf.cond(is_jpeg,
                   lambda: tf.io.extract_jpeg_shape(data, output_type=tf.int64)[:2],
                   lambda: other)


def decode_function(limit: int):
    """`(index, data)` -> uint8 `[height, width, 1 or 3]`: one encoded JPEG, PNG, GIF or BMP
    image, decoded only once its header declares at most `limit` pixels (checked again on the
    decoded shape). Anything else raises InvalidArgumentError naming `image_bytes[index]`:
    empty, not one of the formats, over the limit, or damaged (the decoder's own message).
    An alpha channel is dropped (grey + alpha -> grey, RGBA -> RGB), as predict's Pillow
    conversion does; serving_default's preprocessing then converts 1 or 3 channels alike."""
    import tensorflow as tf

    def refuse_unless(condition, *parts):
        return tf.debugging.Assert(condition, [tf.strings.join(
            [p if isinstance(p, str) else tf.strings.as_string(p) for p in parts])])

    def decode(index, data):
        name = tf.strings.join([f"{BYTES_INPUT}[", tf.strings.as_string(index), "]"])
        padded = tf.strings.join([data, tf.constant(b"\0" * _HEADER_BYTES)])
        first = tf.strings.substr(padded, 0, 8)
        is_png = tf.equal(first, b"\x89PNG\r\n\x1a\n")
        is_gif = tf.logical_or(tf.equal(tf.strings.substr(padded, 0, 6), b"GIF87a"),
                               tf.equal(tf.strings.substr(padded, 0, 6), b"GIF89a"))
        is_bmp = tf.equal(tf.strings.substr(padded, 0, 2), b"BM")
        is_jpeg = tf.equal(tf.strings.substr(padded, 0, 3), b"\xff\xd8\xff")
        known = tf.reduce_any(tf.stack([is_png, is_gif, is_bmp, is_jpeg]))
        size = tf.strings.length(data)
        check = refuse_unless(known, "serving_bytes: ", name, " (", size, " bytes) is not a ",
                              ", ".join(BYTES_FORMATS[:-1]), " or ", BYTES_FORMATS[-1],
                              " image")
        with tf.control_dependencies([check]):
            height, width = tf.unstack(_header_size(tf, data, padded, is_jpeg, is_png, is_gif))

        def within(height, width, what):
            pixels = height * width  # each below 2**32 here: no int64 overflow
            return refuse_unless(
                tf.logical_and(pixels <= limit, pixels > 0), "serving_bytes: ", name, what,
                height, "x", width, " pixels; it must have between 1 and ", f"{limit:,}",
                " (larger images are refused as possible decompression bombs)")

        with tf.control_dependencies([within(height, width, ": its header declares ")]):
            image = tf.io.decode_image(data, channels=0, dtype=tf.uint8,
                                       expand_animations=False)
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies([within(shape[0], shape[1], " decodes to ")]):
            keep = tf.where(shape[2] >= 3, 3, 1)
            return tf.ensure_shape(image[:, :, :keep], [None, None, None])

    return decode


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

        _save_canonical(path, {
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
    # And a while loop's unused inputs (tf.map_fn's, in serving_bytes) by its condition's
    # name before the library renamed it: "map_while_map_while_cond_936___redundant_...".
    unused = re.compile(r"_(\d+)(___redundant_placeholder\d+)")
    loops = sorted({int(n) for n, _ in unused.findall(text_format.MessageToString(saved))})
    loop_rank = {str(n): str(rank) for rank, n in enumerate(loops)}

    def renamed_string(value: str) -> str:
        value = renamed.get(value, value)
        return unused.sub(lambda m: f"_{loop_rank.get(m.group(1), m.group(1))}{m.group(2)}",
                          value)

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
                    value[:] = [renamed_string(v) for v in value]
                elif renamed_string(value) != value:
                    setattr(message, field.name, renamed_string(value))

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
