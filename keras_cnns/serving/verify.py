"""Verify an export with TensorFlow and numpy alone: `python scripts/verify.py EXPORT`.

Checks, in order, and stops at the first failure with one sentence on stderr (exit 1):
  1. every file's sha256 against the manifest (none missing, none added);
  2. the golden probabilities of the probe images, through `serving_default`;
  3. the test accuracy (exactly) and loss, through `serving_default` on the stored test split,
     or on `--data FILE.npz` (arrays `images`, `labels`) when the export could not store it;
  4. model.tflite, if any: its test accuracy (exactly, as its manifest section records) and
     labels, by tf.lite.Interpreter on the split resized as tflite_export.at_size does.

It deliberately imports neither keras_cnns nor Keras, so it proves the export is usable
wherever TensorFlow is; it repeats `keras_cnns.export.score` to do so, and must agree with it.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import sys
import threading
from pathlib import Path

FORMAT_VERSION = 2
# Fixed here, not read from the manifest, which is what a tamperer would edit.
GOLDEN_TOLERANCE = 1e-6
LOSS_TOLERANCE = 1e-6
PROG = "verify.py"


class VerifyError(Exception):
    """What differs, in one sentence."""


def quiet_native_logs() -> None:
    """Drop TensorFlow's native start-up lines (they precede absl, so TF_CPP_MIN_LOG_LEVEL
    misses them); a stand-alone copy of keras_cnns.commands.cli.quiet_tensorflow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    noise = re.compile(rb"^(WARNING: All log messages before absl|[IW]\d{4} |E\d{4} .*cuInit)")
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                if not noise.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()

    def restore():  # let the pump pass on the last lines (our own error among them)
        sys.stderr.flush()
        os.dup2(original, 2)
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
    """keras_cnns.export.score, repeated: (correct, loss)."""
    import numpy as np

    labels = np.asarray(labels, dtype=np.int64)
    targets = np.full(probabilities.shape, label_smoothing / probabilities.shape[-1])
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    clipped = np.clip(probabilities.astype(np.float64), epsilon, 1.0)
    return int(np.sum(classes == labels)), float(np.mean(-np.sum(targets * np.log(clipped), -1)))


def content_sha256(images, labels) -> str:
    """keras_cnns.export.content_sha256, repeated."""
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
            first = str(error).strip().splitlines()[0] if str(error).strip() else "no reason"
            raise VerifyError(f"serving_default rejects images {images.dtype} "
                              f"{list(images.shape)} ({first}).") from None
        probabilities.append(out["probabilities"].numpy())
        classes.append(out["classes"].numpy())
    return np.concatenate(probabilities), np.concatenate(classes)


def read_manifest(export: Path) -> dict:
    if not export.is_dir():
        raise VerifyError(f"Export {export} does not exist.")
    try:
        manifest = json.loads((export / "manifest.json").read_text())
    except FileNotFoundError:
        raise VerifyError(f"Export {export} has no manifest.json.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise VerifyError(f"The manifest of export {export} is not valid JSON.") from None
    if not isinstance(manifest, dict):
        raise VerifyError(f"The manifest of export {export} does not hold a JSON object.")
    missing = [key for key in ("files", "golden", "evaluation", "metrics") if key not in manifest]
    version = manifest.get("format_version", 0)
    if not _is_number(version) or version < FORMAT_VERSION or missing:
        raise VerifyError(f"The manifest of export {export} predates verifiable exports "
                          f"(format_version {manifest.get('format_version')}).")
    check_fields(manifest)
    return manifest


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _inside(name) -> bool:
    """A relative path that stays inside the export: no absolute path, drive or `..`."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and ".." not in parts and ":" not in parts[0]


def check_fields(manifest: dict) -> None:
    """The fields the checks read have the types they need; a tampered or hand-edited
    manifest is refused here, naming the field, instead of failing inside a check."""
    def bad(field, value, want):
        raise VerifyError(f"The manifest's {field} must be {want}, got {value!r}.")

    files, golden = manifest["files"], manifest["golden"]
    # Converted weights (convert.py --to export) come with no test split: nothing to score.
    scored = manifest.get("kind") != "converted"
    evaluation, metrics = manifest["evaluation"] or {}, manifest["metrics"] or {}
    sections = [("files", files), ("golden", golden)]
    if scored:
        sections += [("evaluation", manifest["evaluation"]), ("metrics", manifest["metrics"])]
    for field, value in sections:
        if not isinstance(value, dict):
            bad(field, value, "an object")
    for name, digest in files.items():
        if not _inside(name):
            raise VerifyError(f"The manifest lists file {name!r}, which is outside the export.")
        if not isinstance(digest, str):
            bad(f"sha256 of {name}", digest, "a string")
    for field in ("test_set", "images_file"):
        section = evaluation if field == "test_set" else golden
        if section.get(field) and not _inside(section[field]):
            bad(field, section[field], "a file inside the export")
    indices = golden.get("indices")
    if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
        bad("golden.indices", indices, "a list of test indices")
    if not isinstance(golden.get("probabilities"), list):
        bad("golden.probabilities", golden.get("probabilities"), "a list")
    if not scored:
        if not golden.get("images_file"):
            bad("golden.images_file", golden.get("images_file"), "the probe images' file")
        return
    batch_size = evaluation.get("batch_size")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        bad("evaluation.batch_size", batch_size, "a positive integer")
    smoothing = evaluation.get("label_smoothing")
    if not _is_number(smoothing) or not 0 <= smoothing < 1:
        bad("evaluation.label_smoothing", smoothing, "a number in [0, 1)")
    epsilon = evaluation.get("loss_epsilon")
    if not _is_number(epsilon) or not 0 < epsilon < 1:
        bad("evaluation.loss_epsilon", epsilon, "a number in (0, 1)")
    if not isinstance(evaluation.get("content_sha256"), str):
        bad("evaluation.content_sha256", evaluation.get("content_sha256"), "a string")
    for field in ("test_accuracy", "test_loss"):
        if not _is_number(metrics.get(field)):
            bad(f"metrics.{field}", metrics.get(field), "a number")


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


def load_split(path: Path, what: str):
    """uint8 images `[N, H, W, 1 or 3]` and one integer label each, from an .npz file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (OSError, KeyError, ValueError, EOFError) as error:
        raise VerifyError(f"{what} {path} is not an .npz with images and labels ({error}).") \
            from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise VerifyError(f"{what} {path} must hold uint8 images [N, H, W, 1 or 3], got "
                          f"{images.dtype} {list(images.shape)}.")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise VerifyError(f"{what} {path} must hold one integer label per image "
                          f"({len(images)}), got {labels.dtype} {list(labels.shape)}.")
    return images, labels


def check_golden(tf, signature, export: Path, manifest: dict, test_set) -> str:
    import numpy as np

    golden = manifest["golden"]
    indices = np.asarray(golden["indices"], dtype=np.int64)
    if golden.get("images_file"):
        images, _ = load_split(export / golden["images_file"], "Golden file")
    elif test_set is None:
        raise VerifyError("The export stores no test split for its golden images; pass it "
                          "with --data.")
    elif len(indices) and indices.max() >= len(test_set[0]):
        raise VerifyError(f"The test split holds {len(test_set[0])} images, but the golden "
                          f"probe images include test index {indices.max()}.")
    else:
        images = test_set[0][indices]
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
    class_names = (manifest.get("dataset") or {}).get("class_names")
    if names and isinstance(class_names, list) and names != [class_names[c] for c in classes]:
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
    config, dataset = manifest.get("config"), manifest.get("dataset")
    model = config.get("model") if isinstance(config, dict) else None
    name = dataset.get("name") if isinstance(dataset, dict) else None
    report("manifest", f"format {manifest['format_version']}, {model} on {name}")
    report("files", check_files(export, manifest["files"]))
    tf = import_tensorflow()
    try:
        signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    except Exception as error:  # any load failure is a verification failure
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VerifyError(f"The SavedModel in {export} cannot be loaded ({first}).") from None
    evaluation = manifest["evaluation"] or {}
    test_set = None
    if data is not None:
        test_set = load_split(data, "--data")
    elif evaluation.get("test_set"):
        test_set = load_split(export / evaluation["test_set"], "Test set")
    report("golden", check_golden(tf, signature, export, manifest, test_set))
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
    """A usage error is one line and exit 2 (commands/cli.py's, repeated: this file stands
    alone)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message[0].upper()}{message[1:].rstrip('.')}.\n")


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
