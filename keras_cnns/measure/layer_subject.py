"""What `layer_views` looks at: a model from an export, a `.keras` file or a run directory, with
its preprocessing, stored test images and class names, and image files made into its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_cnns.data import DataError
from keras_cnns.export import GOLDEN_FILE, MODEL_FILE, ExportError, read_manifest
from keras_cnns.serving.verify_export import (
    INTEGERS,
    UINT8,
    VerifyError,
    check_files,
    load_arrays,
)
from keras_cnns.tile_grids import rgb


@dataclass
class Subject:
    """A model and what it is looked at with: its preprocessing, stored images and classes."""

    model: keras.Model
    name: str
    mean: list[float]
    std: list[float]
    class_names: list[str]
    images: np.ndarray | None = None  # stored test images, uint8 [N, H, W, 1 or 3]
    labels: np.ndarray | None = None
    export: Path | None = None  # the export directory, if the model came from one
    stored: str = "test image"  # what `images` are, in captions
    reads: list[Path] = field(default_factory=list)  # the paths this reads (never written)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.model.inputs[0].shape[1:])


def load_subject(path: str | Path) -> Subject:
    """An export directory, a `.keras` file, or a run directory (its export), loaded.

    An export brings its preprocessing, class names and stored test images (test_set.npz, or
    golden.npz where the split was too large; a converted export's golden.npz holds random
    probe images without labels); a bare `.keras` file brings none of these: its inputs are
    scaled to [0, 1] only and its classes are numbered. An export is read only once every file
    matches its sha256 in the manifest, none missing and none added (verify's own check).
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path} does not exist.")
    if not os.access(path, os.R_OK):
        raise ExportError(f"{path} cannot be read.")
    if path.is_file():
        model = _load_model(path)
        channels = _check_model(model, path)[-1]
        classes = int(model.outputs[0].shape[-1])
        return Subject(model, path.stem, [0.0] * channels, [1.0] * channels,
                       [str(i) for i in range(classes)], reads=[path])
    if (path / "config.json").is_file() and not (path / "manifest.json").is_file():
        from keras_cnns.training.run_dir import load_run_config

        export = load_run_config(path).output
        if not export or not (Path(export) / "manifest.json").is_file():
            raise ExportError(f"Run {path} has no export yet ({export or 'no output'} is not "
                              "an export directory).")
        subject = load_subject(export)
        subject.reads.append(path)
        return subject
    if not (path / "manifest.json").is_file():
        raise ExportError(f"{path} is neither an export, a run directory nor a .keras file.")
    manifest = read_manifest(path)
    try:
        check_files(path, manifest["files"])
    except VerifyError as error:
        said = str(error)
        raise ExportError(f"Export {path} does not verify: {said[0].lower()}{said[1:]}") from None
    model = _load_model(path / MODEL_FILE)
    _check_model(model, path / MODEL_FILE)
    stored = (manifest.get("evaluation") or {}).get("test_set") or \
        manifest["golden"].get("images_file") or GOLDEN_FILE
    arrays = load_arrays(path / stored, {"images": UINT8, "labels": INTEGERS},
                         "Test images", error=ExportError)
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(labels) != len(images):
        raise ExportError(f"Test images {path / stored} must be uint8 [N, H, W, 1 or 3] with "
                          f"one label each, got {list(images.shape)} and {len(labels)} labels.")
    pre = manifest["preprocessing"]
    labelled = manifest.get("kind") != "converted"  # a converted export's golden labels are 0s
    return Subject(model, path.resolve().name, [float(m) for m in pre["mean"]],
                   [float(s) for s in pre["std"]], list(manifest["dataset"]["class_names"]),
                   images, labels.astype(np.int64) if labelled else None, export=path,
                   stored="test image" if labelled else "random probe image", reads=[path])


def _load_model(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # a truncated or foreign file: say which, not how it broke
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{path} is not a loadable Keras model ({first}).") from None


def _check_model(model, path) -> tuple[int, int, int]:
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ExportError(f"{path} is not an image model with one fixed (height, width, 1 or "
                          f"3) input, it takes {shape}.")
    if not conv_layers(model):
        raise ExportError(f"{path} has no Conv2D layer, so there is nothing to visualize.")
    return tuple(int(d) for d in shape)


def load_image_files(paths, input_shape) -> np.ndarray:
    """Image files decoded as predict decodes them (`serving.prediction.read_image`: PNG, JPEG,
    GIF or BMP, the header's size checked before decoding, alpha dropped), then given the
    model's channels and size (`to_input_shape`): uint8 [N, H, W, C]. A file that cannot be
    read is a DataError naming it."""
    from keras_cnns.serving.prediction import ImageError, read_image

    out = []
    for path in map(Path, paths):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise DataError(f"Image {path} does not exist or cannot be read.")
        try:
            out.append(to_input_shape(read_image(path)[None], input_shape)[0])
        except ImageError as error:
            raise DataError(str(error)) from None
    return np.stack(out)


def check_images(images, what: str = "images") -> np.ndarray:
    """`images` as uint8 [N, H, W, 1 or 3], N >= 1; anything else is a DataError naming its
    dtype and shape (the arrays a notebook passes; files go through `load_image_files`)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or \
            0 in images.shape:
        raise DataError(f"The {what} must be uint8 [N, H, W, 1 or 3] with N, H and W at least "
                        f"1, got {images.dtype} {list(images.shape)}.")
    return images


def to_input_shape(images: np.ndarray, input_shape) -> np.ndarray:
    """uint8 images given the channels and size of `input_shape` (H, W, C) as training does
    (`keras_cnns.data.pipeline.scale_resize`: bilinear, half-pixel centres), rounded back to
    uint8."""
    from keras_cnns.data.pipeline import scale_resize

    height, width, channels = input_shape
    images = check_images(images)
    if images.shape[1:] == (height, width, channels):
        return images
    scaled = np.asarray(scale_resize(images, (height, width), channels))
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def at_model_size(subject: Subject, images: np.ndarray) -> np.ndarray:
    """uint8 images at the model's input shape: the one picture that every view and every
    runtime is shown."""
    return to_input_shape(images, subject.input_shape)


def model_inputs(subject: Subject, images: np.ndarray) -> np.ndarray:
    """uint8 images, any size, 1 or 3 channels -> the model's float32 input, as training and
    the export's serving_default preprocess them (`keras_cnns.data.preprocess`)."""
    from keras_cnns.data import preprocess

    height, width, channels = subject.input_shape
    x = preprocess(np.asarray(images), image_size=(height, width), mean=subject.mean,
                   std=subject.std, channels=channels)
    return np.asarray(x, dtype=np.float32)


def displayable(subject: Subject, x: np.ndarray) -> np.ndarray:
    """Model inputs back to [0, 1] RGB for drawing (the normalisation undone)."""
    mean = np.asarray(subject.mean, np.float32)
    std = np.asarray(subject.std, np.float32)
    if mean.size != x.shape[-1]:
        mean, std = np.full(x.shape[-1], mean.mean()), np.full(x.shape[-1], std.mean())
    return rgb(np.clip(x * std + mean, 0.0, 1.0))


def conv_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
