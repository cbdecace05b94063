"""Classify images with an export: `python scripts/predict.py EXPORT IMAGE... [--top-k 3]`.

PNG, JPEG, GIF or BMP files of any size, grey or colour (an alpha channel is dropped), go
uint8 into the SavedModel's `serving_default`, which resizes and normalises them as training
did. For each image it prints the file name, then one `probability  class` line per class.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.runner import quiet_tensorflow  # noqa: E402  (stdlib only; no Keras)

PROG = "predict.py"


class PredictError(Exception):
    """A missing or unreadable export or image, in one sentence."""


def class_names(export: Path) -> list[str]:
    if not export.is_dir():
        raise PredictError(f"Export {export} does not exist.")
    try:
        names = json.loads((export / "manifest.json").read_text())["dataset"]["class_names"]
    except FileNotFoundError:
        raise PredictError(f"Export {export} has no manifest.json.") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise PredictError(f"The manifest of export {export} has no readable class names.") \
            from None
    if not (export / "saved_model.pb").is_file():
        raise PredictError(f"Export {export} has no SavedModel (saved_model.pb).")
    return [str(name) for name in names]


def import_tensorflow():
    # TF 2.21 imports keras.src.optimizers when Keras is installed; the SavedModel needs no
    # Keras, and marking it absent halves the start-up time.
    if "tensorflow" not in sys.modules:
        for name in ("keras", "tf_keras"):
            sys.modules.setdefault(name, None)
    import tensorflow as tf

    return tf


def read_image(tf, path: Path):
    """uint8 `[1, H, W, 1 or 3]`."""
    try:
        data = tf.io.read_file(str(path))
        image = tf.io.decode_image(data, expand_animations=False, dtype=tf.uint8)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
        if not path.is_file():
            raise PredictError(f"Image {path} does not exist.") from None
        raise PredictError(f"Image {path} is not a PNG, JPEG, GIF or BMP file that TensorFlow "
                           "can decode.") from None
    keep = 1 if image.shape[-1] in (1, 2) else 3  # drop alpha
    return image[None, ..., :keep]


def predict(export: Path, images: list[Path], top_k: int) -> list[tuple[Path, list]]:
    """`[(image, [(probability, class name), ...]), ...]`, best first."""
    names = class_names(export)
    for path in images:
        if not path.is_file():
            raise PredictError(f"Image {path} does not exist.")
    tf = import_tensorflow()
    try:
        signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    except Exception as error:  # any load failure means a broken export
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PredictError(f"The SavedModel in {export} cannot be loaded ({first}).") from None
    results = []
    for path in images:
        probabilities = signature(images=read_image(tf, path))["probabilities"].numpy()[0]
        best = probabilities.argsort()[::-1][:top_k]
        results.append((path, [(float(probabilities[i]), names[i]) for i in best]))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="the export directory")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--top-k", type=int, default=3, help="classes to print (default 3)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}.")
    try:
        results = predict(args.export, args.images, args.top_k)
    except PredictError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return 1
    for path, top in results:
        print(path)
        for probability, name in top:
            print(f"  {probability:.4f}  {name}")
    return 0


if __name__ == "__main__":
    quiet_tensorflow()
    sys.exit(main())
