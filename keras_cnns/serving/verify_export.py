"""Verify an export with TensorFlow and numpy alone: `python scripts/verify.py EXPORT`.

Checks, in order, and stops at the first failure with one sentence on stderr (exit 1):
  0. the manifest against MANIFEST_SCHEMA (each field the checks read: its type, shape, range);
  1. every file's sha256 against the manifest (none missing, none added);
  2. the golden probabilities of the probe images, through `serving_default`;
  3. the test accuracy (exactly) and loss, through `serving_default` on the stored test split,
     or on `--data FILE.npz` (arrays `images`, `labels`) when the export could not store it;
  4. serving_bytes, when the manifest records it: there, taking a string input named
     `*_bytes`, and giving serving_default's classes and probabilities (to GOLDEN_TOLERANCE) and
     labels for the golden images encoded as PNG (tf.io.encode_png), and refusing a PNG header
     one pixel over its recorded max_pixels;
  5. model.tflite, if any: its test accuracy (exactly, as its manifest section records) and
     labels, by tf.lite.Interpreter on the split resized as tflite_export.at_size does.

It deliberately imports neither keras_cnns nor Keras, so it proves the export is usable
wherever TensorFlow is: `python keras_cnns/serving/verify_export.py EXPORT` runs this one
file, and so does a copy of it. The library reads exports through the same pieces (the
manifest schema, the array-header check, `score` and `content_sha256`), imported from here:
one of each.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import math
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

FORMAT_VERSION = 2
# Fixed here, not read from the manifest, which is what a tamperer would edit.
GOLDEN_TOLERANCE = 1e-6
LOSS_TOLERANCE = 1e-6
PROG = "verify.py"


class VerifyError(Exception):
    """What differs, in one sentence."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# TensorFlow's native libraries log before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
# cannot silence them: informational lines, and the warnings any start-up prints (CUDA probes
# on machines without a GPU, TensorRT's absence, the LiteRT converter's ignored options).
# Any other warning may be about this run, so it stays.
_NATIVE_NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog"
    rb"|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
    rb"|[WE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?:cuda_\w+\.cc:\d+\] failed call to cuInit"
    rb"|\S+:\d+\] TF-TRT Warning: Could not find TensorRT"
    rb"|tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored \w+\.$))"
)

def is_native_noise(line: bytes) -> bool:
    """Whether quiet_tensorflow drops this line of native stderr."""
    return _NATIVE_NOISE.match(line) is not None


def quiet_native_logs() -> None:
    """Keep TensorFlow's start-up chatter off stderr; call before TensorFlow is imported.

    Set KERAS_CNNS_NATIVE_LOGS=1 to see every native log line.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_CNNS_NATIVE_LOGS") == "1":
        return
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                if not is_native_noise(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(original, 2)  # drops the pipe's last writer, so the pump reads to the end
        thread.join(timeout=5)

    atexit.register(restore)


def import_tensorflow():
    """TensorFlow, without Keras: TF 2.21 imports keras.src.optimizers eagerly when it is
    installed; marking it absent proves the SavedModel needs no Keras (and starts 2x faster)."""
    if "tensorflow" not in sys.modules:
        for name in ("keras", "tf_keras", "keras_cnns"):
            sys.modules.setdefault(name, None)
    import tensorflow as tf

    return tf


def score(probabilities, classes, labels, label_smoothing, epsilon):
    """`(correct, mean loss)`: how many `classes` equal `labels`, and the cross-entropy of
    `probabilities`, clipped to [epsilon, 1], against label-smoothed one-hot targets."""
    import numpy as np

    labels = np.asarray(labels, dtype=np.int64)
    targets = np.full(probabilities.shape, label_smoothing / probabilities.shape[-1])
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    clipped = np.clip(probabilities.astype(np.float64), epsilon, 1.0)
    return int(np.sum(classes == labels)), float(np.mean(-np.sum(targets * np.log(clipped), -1)))


def content_sha256(images, labels) -> str:
    """sha256 of a split's shapes, pixels and labels (`--data` is checked against it)."""
    import numpy as np

    digest = hashlib.sha256(f"{images.shape}:{labels.shape};".encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def run_serving(tf, signature, images, batch_size):
    import numpy as np

    probabilities, classes = [], []
    for start in range(0, len(images), batch_size):
        try:
            out = signature(images=tf.constant(images[start:start + batch_size]))
        except (tf.errors.OpError, TypeError, ValueError) as error:
            raise VerifyError(f"serving_default rejects images {images.dtype} "
                              f"{list(images.shape)} ({_first_line(error)}).") from None
        probabilities.append(out["probabilities"].numpy())
        classes.append(out["classes"].numpy())
    return np.concatenate(probabilities), np.concatenate(classes)


def read_manifest(export: Path, error: type[Exception] = VerifyError) -> dict:
    """The manifest of `export`, checked against the schema; else `error`, one sentence."""
    if not export.is_dir():
        raise error(f"Export {export} does not exist.")
    try:
        manifest = json.loads((export / "manifest.json").read_text())
    except FileNotFoundError:
        raise error(f"Export {export} has no manifest.json.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise error(f"The manifest of export {export} is not valid JSON.") from None
    if not isinstance(manifest, dict):
        raise error(f"The manifest of export {export} does not hold a JSON object.")
    check_manifest(manifest, error)
    return manifest


# -- the manifest schema: every field a reader of an export relies on ---------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _list_of(test, value, at_least: int = 0) -> bool:
    return isinstance(value, list) and len(value) >= at_least and all(map(test, value))


def _probability_row(row) -> bool:
    return _list_of(lambda p: _is_number(p) and 0 <= p <= 1, row, 1)


def _inside(name) -> bool:
    """A relative path that stays inside the export: no absolute path, drive or `..`."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and ".." not in parts and ":" not in parts[0]


class Rule(NamedTuple):
    """A leaf of the schema: what the value must be, in words, and the test of it."""

    want: str
    holds: Callable[[Any], bool]


class EachEntry(NamedTuple):
    """An object of any keys (the files table), each key meeting `key`, each value `value`."""

    key: Rule
    value: Any


class EachItem(NamedTuple):
    """A list, each item meeting `item` (a history's rows)."""

    item: Any


class Maybe(NamedTuple):
    """A key an object may lack; where it is there, its value meets `part`."""

    part: Any


def or_null(rule: Rule) -> Rule:
    return Rule(f"null or {rule.want}", lambda v: v is None or rule.holds(v))


TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
OBJECT = Rule("an object", lambda v: isinstance(v, dict))
NUMBER = Rule("a finite number", _is_number)
NUMBERS = Rule("a non-empty list of numbers", lambda v: _list_of(_is_number, v, 1))
COUNT = Rule("a whole number >= 0", lambda v: _is_int(v) and v >= 0)
POSITIVE_INTEGER = Rule("a positive integer", lambda v: _is_int(v) and v >= 1)
ACCURACY = Rule("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
SHA256 = Rule("a sha256 (64 hex digits)",
              lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None)
FILE_IN_EXPORT = Rule("a file name inside the export", _inside)
NULL_OR_FILE = or_null(FILE_IN_EXPORT)
# The signature for encoded images; TF Serving's REST API decodes {"b64": ...} into an input
# whose name ends in _bytes.
BYTES_SIGNATURE = "serving_bytes"
BYTES_INPUT_NAME = Rule("a signature input name ending in _bytes",
                        lambda v: isinstance(v, str) and re.fullmatch(r"\w+_bytes", v) is not None)

# A dict is an object that must hold its keys but those under Maybe (others may be there
# too); a Rule is a value. Other files the project reads back write their schemas this way.
MANIFEST_SCHEMA = {
    "format_version": Rule(f"{FORMAT_VERSION}, the format this reader knows",
                           lambda v: _is_int(v) and v == FORMAT_VERSION),
    "config": {"model": TEXT},
    "dataset": {
        "name": TEXT,
        "class_names": Rule("a list of class names (strings)",
                            lambda v: _list_of(lambda n: isinstance(n, str), v, 2)),
        "mean": NUMBERS,
        "std": NUMBERS,
    },
    "preprocessing": {
        "image_size": Rule("[height, width], two positive integers",
                           lambda v: _list_of(POSITIVE_INTEGER.holds, v, 2) and len(v) == 2),
        "channels": Rule("1 or 3", lambda v: _is_int(v) and v in (1, 3)),
        "mean": NUMBERS,
        "std": NUMBERS,
    },
    # Exports written before serving_bytes have no signatures section.
    "signatures": Maybe({BYTES_SIGNATURE: {"input": BYTES_INPUT_NAME,
                                           "max_pixels": POSITIVE_INTEGER}}),
    "files": EachEntry(FILE_IN_EXPORT, SHA256),
    "golden": {
        "indices": Rule("a list of test indices",
                        lambda v: _list_of(lambda i: _is_int(i) and i >= 0, v, 1)),
        "probabilities": Rule("a table of probabilities (lists of numbers in [0, 1])",
                              lambda v: _list_of(_probability_row, v, 1)),
        "images_file": NULL_OR_FILE,
    },
    "evaluation": {
        "batch_size": POSITIVE_INTEGER,
        "label_smoothing": Rule("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
        "loss_epsilon": Rule("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1),
        "content_sha256": SHA256,
        "test_set": NULL_OR_FILE,
    },
    "metrics": {
        "test_accuracy": ACCURACY,
        "test_loss": Rule("a number >= 0", lambda v: _is_number(v) and v >= 0),
    },
}
# Converted weights (convert.py --to export) come with no test split: nothing is scored, and
# the golden probe's images are a file of their own.
NOT_SCORED = Rule("null (converted weights are not scored)", lambda v: v is None)
CONVERTED_SCHEMA = {
    **MANIFEST_SCHEMA,
    "evaluation": NOT_SCORED,
    "metrics": NOT_SCORED,
    "golden": {**MANIFEST_SCHEMA["golden"], "images_file": FILE_IN_EXPORT},
}


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(schema, value, field: str, subject: str, error: type[Exception]) -> None:
    named = f"{subject}'s {field}" if field else subject
    if isinstance(schema, Rule):
        if not schema.holds(value):
            raise error(f"{named} must be {schema.want}, got {_shown(value)}.")
        return
    if isinstance(schema, EachItem):
        if not isinstance(value, list):
            raise error(f"{named} must be a list, got {_shown(value)}.")
        for index, item in enumerate(value):
            _check(schema.item, item, f"{field}[{index}]", subject, error)
        return
    if not isinstance(value, dict):
        raise error(f"{named} must be an object, got {_shown(value)}.")
    if isinstance(schema, EachEntry):
        for key, item in value.items():
            if not schema.key.holds(key):
                raise error(f"{named} lists {key!r}, which is not {schema.key.want}.")
            _check(schema.value, item, f"{field}[{key!r}]", subject, error)
        return
    for key, part in schema.items():
        where = f"{field}.{key}" if field else key
        if isinstance(part, Maybe):
            part = part.part
            if key not in value:
                continue
        if key not in value:
            want = (part.want if isinstance(part, Rule)
                    else "a list" if isinstance(part, EachItem) else "an object")
            raise error(f"{subject} has no {where}; it must be {want}.")
        _check(part, value[key], where, subject, error)


def check_schema(document, schema, subject: str, error: type[Exception] = VerifyError) -> None:
    """Raise `error`, one sentence naming the field ("{subject}'s a.b must be ..."), unless
    `document` meets `schema` (see MANIFEST_SCHEMA). The one checker of every file the project
    reads back: each reader writes its file's schema as data beside it."""
    _check(schema, document, "", subject, error)


def check_manifest(manifest, error: type[Exception] = VerifyError) -> None:
    """Raise `error`, one sentence naming the field, unless `manifest` meets MANIFEST_SCHEMA
    (CONVERTED_SCHEMA for converted weights) and gives one probability per class name to each
    golden index. Every reader of an export checks its manifest here before anything else."""
    schema = CONVERTED_SCHEMA if manifest.get("kind") == "converted" else MANIFEST_SCHEMA
    check_schema(manifest, schema, "The manifest", error)
    golden, classes = manifest["golden"], len(manifest["dataset"]["class_names"])
    if len(golden["probabilities"]) != len(golden["indices"]):
        raise error(f"The manifest's golden.probabilities has {len(golden['probabilities'])} "
                    f"rows for {len(golden['indices'])} golden.indices.")
    widths = {len(row) for row in golden["probabilities"]}
    if widths != {classes}:
        raise error(f"The manifest's dataset.class_names names {classes} classes, but its "
                    f"golden.probabilities give {max(widths - {classes})} per image.")


def check_files(export: Path, recorded: dict) -> str:
    for name, expected in sorted(recorded.items()):
        path = export / name
        if not path.is_file():
            raise VerifyError(f"File {name} listed in the manifest is missing.")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise VerifyError(f"File {name} does not match its sha256 in the manifest.")
    present = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()}
    extra = sorted(present - set(recorded) - {"manifest.json"})
    if extra:
        raise VerifyError(f"File {extra[0]} is in the export but not in its manifest.")
    return f"{len(recorded)} files match their sha256"


# -- arrays, sized from their headers before numpy allocates them --------------------------------
# The most bytes one array may claim even where its file holds them: a zip member may inflate to
# far more than it takes on disk. A test split this project stores is a few megabytes.
ARRAY_LIMIT_BYTES = 4 << 30
UINT8 = Rule("uint8", lambda dtype: dtype.name == "uint8")
INTEGERS = Rule("an integer type", lambda dtype: dtype.kind in "iu")


def _header_problem(handle, name: str, file_bytes: int, dtype_rule: Rule) -> str | None:
    """Why the array of the .npy stream at `handle` may not be loaded, or None: its header must
    give a dtype `dtype_rule` accepts and need no more bytes than follow it in `file_bytes`."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(handle)
    except (ValueError, EOFError) as error:
        return f"{name} has no readable .npy header: {_first_line(error)}"
    if not dtype_rule.holds(dtype):
        return f"{name} is {dtype}, not {dtype_rule.want}"
    claimed = math.prod(shape) * dtype.itemsize
    held = file_bytes - handle.tell()
    if claimed > min(held, ARRAY_LIMIT_BYTES):
        bound = (f"the {held:,} its file holds" if held < ARRAY_LIMIT_BYTES
                 else f"the limit of {ARRAY_LIMIT_BYTES:,}")
        return f"the header of {name} claims {list(shape)} {dtype}, {claimed:,} bytes, over {bound}"
    return None


def _npz_problem(path: Path, expected: dict[str, Rule]) -> str | None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        for name, dtype_rule in expected.items():
            member = members.get(f"{name}.npy")
            if member is None:
                return f"it has no {name}"
            with archive.open(member) as handle:  # file_size: the member's bytes, inflated
                problem = _header_problem(handle, name, member.file_size, dtype_rule)
            if problem:
                return problem
    return None


def _npy_problem(path: Path, expected: dict[str, Rule]) -> str | None:
    if len(expected) != 1:
        return "it is not a zip archive"
    [(name, dtype_rule)] = expected.items()
    with open(path, "rb") as handle:
        return _header_problem(handle, name, os.fstat(handle.fileno()).st_size, dtype_rule)


def load_arrays(path: str | Path, expected: dict[str, Rule], what: str,
                error: type[Exception] = VerifyError) -> dict:
    """The arrays `expected` names, from the .npz at `path` (or the one array of an .npy).

    Each is loaded only after its header passed: a dtype its rule in `expected` accepts, and
    no more bytes than its file holds (a zip member's inflated size) nor ARRAY_LIMIT_BYTES, so
    a forged header is refused, not allocated. Anything else wrong is `error` too, one sentence.
    """
    import zipfile

    import numpy as np

    archive = zipfile.is_zipfile(path)
    kind = "an .npz" if archive or len(expected) > 1 else "an .npy"
    try:
        problem = (_npz_problem if archive else _npy_problem)(Path(path), expected)
        if problem is None and archive:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in expected}
        if problem is None:
            return {next(iter(expected)): np.load(path, allow_pickle=False)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as failure:
        problem = _first_line(failure)
    except MemoryError:
        problem = "there is not enough memory to load it"
    raise error(f"{what} {path} is not {kind} with {' and '.join(expected)} ({problem}).")


def load_split(path: Path, what: str):
    """uint8 images `[N, H, W, 1 or 3]` and one integer label each, from an .npz file."""
    arrays = load_arrays(path, {"images": UINT8, "labels": INTEGERS}, what)
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise VerifyError(f"{what} {path} must hold uint8 images [N, H, W, 1 or 3], got "
                          f"{images.dtype} {list(images.shape)}.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise VerifyError(f"{what} {path} must hold one integer label per image "
                          f"({len(images)}), got {labels.dtype} {list(labels.shape)}.")
    return images, labels


def golden_images(export: Path, manifest: dict, test_set):
    """The golden probe images: the golden file's, or the test split's at golden.indices."""
    import numpy as np

    golden = manifest["golden"]
    indices = np.asarray(golden["indices"], dtype=np.int64)
    if golden.get("images_file"):
        return load_split(export / golden["images_file"], "Golden file")[0]
    if test_set is None:
        raise VerifyError("The export stores no test split for its golden images; pass it "
                          "with --data.")
    if len(indices) and indices.max() >= len(test_set[0]):
        raise VerifyError(f"The test split holds {len(test_set[0])} images, but the golden "
                          f"probe images include test index {indices.max()}.")
    return test_set[0][indices]


def check_golden(tf, signature, export: Path, manifest: dict, test_set) -> str:
    import numpy as np

    golden = manifest["golden"]
    indices = np.asarray(golden["indices"], dtype=np.int64)
    images = golden_images(export, manifest, test_set)
    try:
        expected = np.asarray(golden["probabilities"], dtype=np.float64)
    except (TypeError, ValueError):
        raise VerifyError("The manifest's golden.probabilities is not a table of numbers.") \
            from None
    got, _ = run_serving(tf, signature, images, max(1, len(images)))
    if got.shape != expected.shape:
        raise VerifyError(f"The golden probabilities have shape {expected.shape} in the manifest "
                          f"but the SavedModel gives {got.shape}.")
    diff = np.abs(got - expected)
    if diff.max(initial=0.0) > GOLDEN_TOLERANCE:
        row, col = np.unravel_index(diff.argmax(), diff.shape)
        raise VerifyError(
            f"Golden probability {col} of probe image {row} (test index {indices[row]}) is "
            f"{expected[row, col]:.8g} in the manifest but the SavedModel gives "
            f"{got[row, col]:.8g}.")
    return f"{len(indices)} probe images within {GOLDEN_TOLERANCE:g} (max diff {diff.max():.2g})"


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk (8-bit grey) declaring `width` x `height`, no pixels."""
    import struct
    import zlib

    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body) - 4) + body
            + struct.pack(">I", zlib.crc32(body)))


def check_bytes(tf, loaded, export: Path, manifest: dict, test_set) -> str:
    """serving_bytes on the golden images encoded as PNG against serving_default on them."""
    import numpy as np

    record = manifest["signatures"][BYTES_SIGNATURE]
    name, limit = record["input"], record["max_pixels"]
    signature = loaded.signatures.get(BYTES_SIGNATURE)
    if signature is None:
        raise VerifyError(f"The SavedModel has no {BYTES_SIGNATURE} signature, which its "
                          "manifest records.")
    inputs = signature.structured_input_signature[1]
    if set(inputs) != {name} or inputs[name].dtype != tf.string:
        shown = ", ".join(f"{key} {spec.dtype.name}" for key, spec in sorted(inputs.items()))
        raise VerifyError(f"{BYTES_SIGNATURE} takes {shown or 'no input'}, not the string "
                          f"input {name} its manifest records.")
    images = golden_images(export, manifest, test_set)
    encoded = [tf.io.encode_png(image).numpy() for image in images]
    try:
        out = signature(**{name: tf.constant(encoded, tf.string)})
    except (tf.errors.OpError, TypeError, ValueError) as error:
        raise VerifyError(f"{BYTES_SIGNATURE} rejects the golden images as PNG "
                          f"({_first_line(error)}).") from None
    default = loaded.signatures["serving_default"](images=tf.constant(images))
    expected, got = default["probabilities"].numpy(), out["probabilities"].numpy()
    if got.shape != expected.shape or not np.array_equal(out["classes"].numpy(),
                                                         default["classes"].numpy()):
        raise VerifyError(f"{BYTES_SIGNATURE} gives other classes than serving_default for "
                          "the golden images as PNG.")
    diff = float(np.abs(got - expected).max(initial=0.0))
    if diff > GOLDEN_TOLERANCE:
        raise VerifyError(f"{BYTES_SIGNATURE}'s probabilities for the golden images as PNG "
                          f"differ from serving_default's by {diff:.2g}, over "
                          f"{GOLDEN_TOLERANCE:g}.")
    if "labels" in default and not np.array_equal(out["labels"].numpy(),
                                                   default["labels"].numpy()):
        raise VerifyError(f"{BYTES_SIGNATURE} gives other labels than serving_default.")
    try:
        signature(**{name: tf.constant([png_header(limit + 1, 1)])})
    except tf.errors.InvalidArgumentError:
        pass
    else:
        raise VerifyError(f"{BYTES_SIGNATURE} accepts a PNG header of {limit + 1:,} pixels, "
                          f"over the max_pixels of {limit:,} its manifest records.")
    return (f"{len(encoded)} golden images as PNG as through serving_default (max diff "
            f"{diff:.2g}); over {limit:,} pixels refused")


def check_accuracy(tf, signature, manifest: dict, test_set) -> str:
    evaluation, metrics = manifest["evaluation"], manifest["metrics"]
    images, labels = test_set
    if content_sha256(images, labels) != evaluation["content_sha256"]:
        raise VerifyError("The test images are not the ones the export was scored on.")
    probabilities, classes = run_serving(tf, signature, images, evaluation["batch_size"])
    correct, loss = score(probabilities, classes, labels, evaluation["label_smoothing"],
                          evaluation["loss_epsilon"])
    accuracy = correct / len(labels)
    if accuracy != metrics["test_accuracy"]:
        raise VerifyError(f"The test accuracy is {metrics['test_accuracy']} in the manifest "
                          f"but the SavedModel scores {accuracy} ({correct}/{len(labels)}).")
    if abs(loss - metrics["test_loss"]) > LOSS_TOLERANCE * max(1.0, abs(loss)):
        raise VerifyError(f"The test loss is {metrics['test_loss']} in the manifest but the "
                          f"SavedModel gives {loss}.")
    return f"{accuracy:.4f} ({correct}/{len(labels)}), loss {loss:.4f}, as in the manifest"


def tflite_at_size(tf, images, size):
    """keras_cnns.export.tflite_export.at_size, repeated: bilinear resize, rounded to uint8."""
    import numpy as np

    if images.shape[1:3] == tuple(size):
        return images
    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear").numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def check_tflite(tf, export: Path, manifest: dict, test_set) -> str:
    import warnings

    import numpy as np

    section = manifest.get("tflite")
    if not isinstance(section, dict) or not _is_number(section.get("test_accuracy")):
        raise VerifyError("The export has model.tflite but its manifest no tflite section "
                          "with a test_accuracy.")
    with warnings.catch_warnings():  # TF 2.21 says its interpreter moved to ai_edge_litert
        warnings.simplefilter("ignore")
        try:
            runner = tf.lite.Interpreter(model_path=str(export / "model.tflite")) \
                .get_signature_runner("serving_default")
        except (ValueError, RuntimeError) as error:
            raise VerifyError(f"model.tflite cannot be loaded ({error}).") from None
    shape = runner.get_input_details()["images"]["shape"]
    images, labels = test_set
    if images.shape[-1] != shape[-1]:
        raise VerifyError(f"model.tflite takes {shape[-1]} channels, the test images have "
                          f"{images.shape[-1]}.")
    images = tflite_at_size(tf, images, (int(shape[1]), int(shape[2])))
    classes, names = [], []
    for image in images:
        out = runner(images=image[None])
        classes.append(int(out["classes"][0]))
        if "labels" in out:
            names.append(out["labels"][0].decode())
    correct = int(np.sum(np.asarray(classes) == np.asarray(labels)))
    accuracy = correct / len(labels)
    if accuracy != section["test_accuracy"]:
        raise VerifyError(f"The TFLite test accuracy is {section['test_accuracy']} in the "
                          f"manifest but model.tflite scores {accuracy} ({correct}/{len(labels)}).")
    class_names = manifest["dataset"]["class_names"]
    if names and names != [class_names[c] for c in classes]:
        raise VerifyError("model.tflite's labels are not the class names of its classes.")
    kind = section.get("quantize") or "float32"
    return f"{kind} {accuracy:.4f} ({correct}/{len(labels)}), as in the manifest"


def verify(export: Path, data: Path | None = None) -> list[str]:
    """Run every check; return the report lines, or raise VerifyError at the first failure."""
    lines = []

    def report(what, detail, status="ok"):
        lines.append(f"  {status:<5} {what:<9} {detail}")
        print(lines[-1], flush=True)

    manifest = read_manifest(export)
    report("manifest", f"format {manifest['format_version']}, {manifest['config']['model']} "
                       f"on {manifest['dataset']['name']}")
    report("files", check_files(export, manifest["files"]))
    tf = import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(export))
        signature = loaded.signatures["serving_default"]
    except Exception as error:  # any load failure is a verification failure
        raise VerifyError(f"The SavedModel in {export} cannot be loaded "
                          f"({_first_line(error)}).") from None
    evaluation = manifest["evaluation"] or {}
    test_set = None
    if data is not None:
        test_set = load_split(data, "--data")
    elif evaluation.get("test_set"):
        test_set = load_split(export / evaluation["test_set"], "Test set")
    report("golden", check_golden(tf, signature, export, manifest, test_set))
    if BYTES_SIGNATURE in (manifest.get("signatures") or {}):
        report("bytes", check_bytes(tf, loaded, export, manifest, test_set))
    else:
        report("bytes", f"the manifest records no {BYTES_SIGNATURE} (an older export)", "skip")
    if test_set is None:
        report("accuracy", evaluation.get("note") or ("no test split stored" if evaluation
                                                      else "converted weights, no test split"),
               "skip")
    else:
        report("accuracy", check_accuracy(tf, signature, manifest, test_set))
    if "model.tflite" in manifest["files"] and test_set is None:
        report("tflite", "no test split to score model.tflite on", "skip")
    elif "model.tflite" in manifest["files"]:
        report("tflite", check_tflite(tf, export, manifest, test_set))
    return lines


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`PROG: error: Sentence.`) and exit 2."""

    def error(self, message):
        # A range error of `integer` or `number` reads "--seed must be ..." rather than
        # argparse's "argument --seed: must be ...".
        message = re.sub(r"^argument (\S+): must ", r"\1 must ", message)
        sentence = message[0].upper() + message[1:]
        self.exit(2, f"{self.prog}: error: {sentence.rstrip('.')}.\n")


def main(argv=None, prog: str = PROG) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="the export directory")
    parser.add_argument("--data", type=Path, help="the test split as .npz (images, labels), "
                        "for exports too large to store it")
    args = parser.parse_args(argv)
    print(f"{prog}: {args.export}")
    try:
        verify(args.export, args.data)
    except VerifyError as error:
        print("FAIL")
        sys.stdout.flush()
        sys.stderr.write(f"{prog}: error: {error}\n")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    quiet_native_logs()
    sys.exit(main())
