"""Classify image files in batches with an export's `serving_default` signature.

    serving, class_names = load_export("saved_models/<model>-digits-<stamp>")
    items, problems = collect_images(["photos/", "extra/*.png"], class_names)
    predictions = classify(serving, items, batch_size=64, on_error=print)
    summary = evaluate(predictions, len(class_names))     # for items under class folders

It needs TensorFlow and the export only: no Keras and no keras_cnns module outside serving/, so
it starts fast and reads any export whose manifest meets verify.py's schema. Images are decoded
with Pillow exactly as the `folder` data source decodes them (grey modes to "L", everything
else to "RGB"), after their header has been checked against a pixel limit, and go uint8 into
the signature, which resizes and normalises as training did. One unreadable image costs that
image only: `classify` reports it through `on_error` and goes on.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from keras_cnns.serving.verify_export import read_manifest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
FORMATS = "PNG, JPEG, GIF or BMP"
# Pillow's decoders for FORMATS, by content rather than name; any other format (WebP, TIFF,
# ...) is refused like an unreadable file, and its decoder never sees the bytes.
_DECODERS = ("PNG", "JPEG", "GIF", "BMP")
# Pillow's own bound (89,478,485 pixels, about 0.25 GB as RGB); larger headers are refused.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# As the folder source (keras_cnns.data.sources): these modes become one channel, others RGB.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class PredictError(Exception):
    """Something that stops the whole run (the export), in one sentence."""


class ImageError(Exception):
    """One input that cannot be classified, in one sentence; the run goes on without it."""


@dataclasses.dataclass(frozen=True)
class Item:
    """An image to classify; `label` is its class index when it sits in a class folder."""

    path: Path
    label: int | None = None


@dataclasses.dataclass(frozen=True)
class Prediction:
    path: Path
    label: int | None
    probabilities: np.ndarray

    def top(self, k: int) -> list[tuple[int, float]]:
        """The `k` most probable `(class index, probability)`, best first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


def import_tensorflow():
    # TF 2.21 imports keras.src.optimizers when Keras is installed; the SavedModel needs no
    # Keras, and marking it absent halves the start-up time.
    if "tensorflow" not in sys.modules:
        for name in ("keras", "tf_keras"):
            sys.modules.setdefault(name, None)
    import tensorflow as tf

    return tf


def read_class_names(export: Path) -> list[str]:
    names = read_manifest(export, error=PredictError)["dataset"]["class_names"]
    if not (export / "saved_model.pb").is_file():
        raise PredictError(f"Export {export} has no SavedModel (saved_model.pb).")
    return names


def load_export(export: str | Path):
    """`(serving_default signature, class names)`; a broken export is a `PredictError`."""
    export = Path(export)
    names = read_class_names(export)
    tf = import_tensorflow()
    try:
        serving = tf.saved_model.load(str(export)).signatures["serving_default"]
    except Exception as error:  # any load failure means a broken export
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PredictError(f"The SavedModel in {export} cannot be loaded ({first}).") from None
    return serving, names


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _walk(folder: Path, problems: list[str]) -> list[Path]:
    """Image files under `folder`, recursively, sorted; symlinked folders are not followed,
    so a link loop cannot recurse forever. A subfolder that cannot be listed is a problem."""
    found = []

    def unreadable(error: OSError):
        problems.append(f"Folder {error.filename} cannot be read ({error.strerror}).")

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if _is_image(name))
    return found


def _folder_items(folder: Path, class_names: list[str], problems: list[str]) -> list[Item]:
    """A folder's images; labelled when every subfolder is named after a class (the `folder`
    source's layout), so a classified folder of known images gives an accuracy."""
    try:
        subfolders = [p.name for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".")]
    except OSError as error:
        problems.append(f"Folder {folder} cannot be read ({error.strerror}).")
        return []
    labelled = bool(subfolders) and set(subfolders) <= set(class_names)
    items = []
    for path in _walk(folder, problems):
        relative = path.relative_to(folder).parts
        label = class_names.index(relative[0]) if labelled and len(relative) > 1 else None
        items.append(Item(path, label))
    return items


def collect_images(inputs: Iterable[str | Path], class_names: list[str]):
    """`(items, problems)`: the images that files, folders (recursively) and glob patterns
    name, in order and without repeats, and one sentence per input that names none."""
    items, problems, seen = [], [], set()

    def add(found: list[Item]):
        for item in found:
            if item.path not in seen:
                seen.add(item.path)
                items.append(item)

    for given in map(str, inputs):
        path = Path(given)
        if path.is_dir():
            known = len(problems)
            found = _folder_items(path, class_names, problems)
            if not found and len(problems) == known:
                problems.append(f"Folder {path} holds no {FORMATS} images.")
            add(found)
        elif path.exists() or path.is_symlink():
            add([Item(path)])
        elif glob.has_magic(given):
            matches = sorted(glob.glob(given, recursive=True))
            files = [Item(Path(m)) for m in matches if Path(m).is_file() and _is_image(m)]
            folders = [item for m in matches if Path(m).is_dir()
                       for item in _folder_items(Path(m), class_names, problems)]
            if not files and not folders:
                problems.append(f"Pattern {given} matches no {FORMATS} images.")
            add(files + folders)
        else:
            problems.append(f"Image {path} does not exist.")
    return items, problems


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 `[H, W, 1 or 3]`, decoded only after the header's size passed `max_pixels`."""
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit and raises above twice it, without the size;
            # the check below replaces both, before any pixel is decoded, with a message
            # that names the file, its size and the limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path, formats=_DECODERS) as image:  # reads the header
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"Image {path} is {width}x{height} pixels, over the limit of "
                        f"{max_pixels:,}: refused as a possible decompression bomb "
                        "(--max-pixels raises the limit).")
                image = image.convert("L" if image.mode in _GREY_MODES else "RGB")
                pixels = np.asarray(image, np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # not an OSError; a frame of a GIF, say, over it
        raise ImageError(f"Image {path} is over Pillow's pixel limit: refused as a possible "
                         "decompression bomb.") from None
    except FileNotFoundError:
        raise ImageError(f"Image {path} does not exist.") from None
    except IsADirectoryError:
        raise ImageError(f"Image {path} is a folder, not an image file.") from None
    except Exception as error:  # a damaged file must cost that file only, whatever Pillow says
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ImageError(f"Image {path} is not a {FORMATS} file that can be decoded "
                         f"({reason}).") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    if pixels.size == 0:
        raise ImageError(f"Image {path} has no pixels ({width}x{height}).")
    return pixels[..., None] if pixels.ndim == 2 else pixels


def classify(serving, items: list[Item], *, batch_size: int = 64,
             max_pixels: int = DEFAULT_MAX_PIXELS,
             on_error: Callable[[str], None] | None = None) -> list[Prediction]:
    """Predictions for the items that could be read, in the items' order.

    Images of one shape share a batch (the signature takes any size, but a batch is one
    tensor); at most `batch_size` decoded images are held at a time. Each failure goes to
    `on_error` as one sentence.
    """
    tf = import_tensorflow()
    report = on_error or (lambda message: None)
    results: dict[int, Prediction] = {}
    pending: dict[tuple, list[tuple[int, np.ndarray]]] = {}

    def run(batch: list[tuple[int, np.ndarray]]):
        try:
            stacked = np.stack([pixels for _, pixels in batch])
            probabilities = serving(images=tf.constant(stacked))["probabilities"].numpy()
        except Exception as error:
            if len(batch) > 1:  # find the image that broke the batch; keep the others
                for one in batch:
                    run([one])
                return
            index = batch[0][0]
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            report(f"Image {items[index].path} cannot be classified ({first}).")
            return
        for (index, _), row in zip(batch, probabilities, strict=True):
            results[index] = Prediction(items[index].path, items[index].label, row)

    for index, item in enumerate(items):
        try:
            pixels = read_image(item.path, max_pixels)
        except ImageError as error:
            report(str(error))
            continue
        pending.setdefault(pixels.shape, []).append((index, pixels))
        if sum(len(batch) for batch in pending.values()) >= batch_size:
            for batch in pending.values():
                run(batch)
            pending.clear()
    for batch in pending.values():
        run(batch)
    return [results[index] for index in sorted(results)]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Accuracy and confusion matrix (rows: true class, columns: predicted class)."""

    correct: int
    total: int
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


def evaluate(predictions: list[Prediction], num_classes: int) -> Evaluation | None:
    """Over the predictions with a known label; None when there are none."""
    labelled = [p for p in predictions if p.label is not None]
    if not labelled:
        return None
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for prediction in labelled:
        confusion[prediction.label, int(np.argmax(prediction.probabilities))] += 1
    return Evaluation(int(np.trace(confusion)), len(labelled), confusion)
