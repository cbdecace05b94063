"""Data sources by name: `load_source("digits")`, IDX folders, image folders, TFDS, synthetic.

Every source is loaded whole into memory as uint8 arrays (the datasets this project trains on
are at most a few hundred MB) and ends in `make_source`, which derives the fingerprint and
normalisation statistics the same way for all of them.

Splits (all deterministic, stratified, and independent of the run's seed by default):
  * digits, and folders without train/test subfolders: 70% train / 10% validation / 20% test
    of the whole set, rounded half up per class (digits: 1,259 / 179 / 359 images);
  * sources with a train and a test split but no validation split (IDX, most TFDS datasets,
    folders with train/ and test/): validation is 10% of train (`validation_fraction`);
  * a source with only a train split: test is 20% of it, then validation as above.
"""

from __future__ import annotations

import errno
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from keras_cnns.data import idx
from keras_cnns.data.base import SPLIT_SEED, DataError, carve, make_source, stratified_split

BUILTIN = ("digits", "synthetic", "folder", "idx")
KNOWN_TFDS = ("mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100")

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IDX_CLASS_NAMES = {
    "mnist": tuple("0123456789"),
    "fashion_mnist": FASHION_CLASSES,
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
# The data sets published as IDX files: only these read a --data-dir of IDX files.
IDX_DATASETS = frozenset({"idx", "emnist", *IDX_CLASS_NAMES})
# Mirroring changes what a character or digit means; clothes and photos survive it.
NO_FLIP = frozenset({"digits", "mnist", "kmnist", "emnist", "binarized_mnist", "svhn_cropped",
                     "omniglot", "idx"})
FLIP = frozenset({"fashion_mnist", "cifar10", "cifar100"})
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# A data set name, optionally with a TFDS config and version ("emnist/letters:3.0.0") or a
# namespace (which tfds_source refuses by name): never a path, so that a name cannot reach
# outside the data directory ("mnist/../../etc").
_PLAIN_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+(\.[a-z0-9_]+)*)?(:[a-z0-9_][a-z0-9_.*]*)?$")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def list_sources() -> list[str]:
    """Built-in source names plus the TFDS names this project documents (any TFDS name works)."""
    return [*BUILTIN, *KNOWN_TFDS]


def load_source(name: str = "digits", data_dir: str | None = None, *,
                seed_independent_split: bool = True, **options):
    """Load a source by name into memory; see the module docstring for the splits.

    `data_dir` holding IDX files (directly or in a `<name>` subfolder) is read as IDX whatever
    the name; otherwise a non-built-in name goes through TFDS with `data_dir` as its data dir.
    Options: `allow_horizontal_flip` (override the dataset's default), `validation_fraction`
    (0.1), `split_seed` (only with `seed_independent_split=False`), `download` (TFDS, False),
    `image_size` (folder/TFDS: resize on load), `channels` (folder), and the synthetic options.
    """
    key = check_source(name, data_dir)
    flip = options.pop("allow_horizontal_flip", None)
    val_frac = float(options.pop("validation_fraction", 0.1))
    if not 0.0 < val_frac < 1.0:
        raise DataError(f"validation_fraction must be in (0, 1), got {val_frac}.")
    if seed_independent_split:
        if "split_seed" in options:
            raise DataError("split_seed needs seed_independent_split=False.")
        split_seed = SPLIT_SEED
    else:
        split_seed = int(options.pop("split_seed", 0))

    if key == "digits":
        _check_options(key, options, ())
        splits, classes, label = _digits(split_seed), tuple("0123456789"), "digits"
    elif key == "synthetic":
        _check_options(key, options, ("num_classes", "image_size", "channels", "train_size",
                                      "validation_size", "test_size", "seed"))
        return _synthetic(flip=flip, **options)
    elif key == "folder":
        _check_options(key, options, ("image_size", "channels"))
        splits, classes = _folder(Path(data_dir), split_seed, **options)
        label = f"folder:{Path(data_dir).resolve().name}"
    else:
        idx_dir = _idx_dir(Path(data_dir), key) if data_dir is not None else None
        if idx_dir is not None:
            _check_options(key, options, ())
            splits = idx.load_idx_dir(idx_dir)
            classes = _idx_classes(key, idx_dir, splits)
            label = key if key != "idx" else f"idx:{idx_dir.resolve().name}"
        else:
            from keras_cnns.data.tfds_source import load_tfds

            _check_options(key, options, ("download", "image_size"))
            splits, classes = load_tfds(key, data_dir, **options)
            label = key
    splits = _complete(splits, val_frac, split_seed)
    channels = splits["train"][0].shape[-1] if splits["train"][0].ndim == 4 else 1
    if flip is None:
        base = key.split("/")[0]
        flip = False if base in NO_FLIP else (base in FLIP or channels == 3)
    return make_source(label, splits, classes, allow_horizontal_flip=flip)


def check_source(name: str | None, data_dir: str | None = None) -> str:
    """Refuse, in one DataError sentence, a source name and data directory that cannot load
    together, reading no data (a benchmark asks before its cases start); the name's key."""
    key = (name or "digits").strip().lower().replace("-", "_")
    if not _PLAIN_NAME.match(key):
        raise DataError(
            f"Dataset name {name!r} is not a plain name (letters, digits and underscores, "
            "optionally /config and :version or namespace:name)."
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        if Path(data_dir).exists():
            raise DataError(f"The data directory {data_dir} is a file, not a directory.")
        raise DataError(f"The data directory {data_dir} does not exist.")
    if key in ("folder", "idx") and data_dir is None:
        what = "class subfolders" if key == "folder" else "IDX files"
        raise DataError(f"The {key} source needs --data-dir pointing at {what}.")
    if key == "idx" and _idx_dir(Path(data_dir), key) is None:
        raise DataError("The idx source needs --data-dir pointing at IDX files.")
    base = re.split(r"[/:]", key)[0]
    if (data_dir is not None and key not in BUILTIN and base not in IDX_DATASETS
            and _idx_dir(Path(data_dir), key) is not None):
        # Read as IDX, the files would train under a name they are not.
        raise DataError(
            f"--dataset {name} is not an IDX data set, but --data-dir {data_dir} holds IDX "
            f"files; name the set they hold ({', '.join(sorted(IDX_DATASETS))})."
        )
    return key


def _check_options(key, options, allowed):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"Source {key!r} does not take option(s) {', '.join(unknown)}.")


def _idx_classes(key: str, idx_dir: Path, splits: dict) -> tuple[str, ...]:
    """Class names of an IDX set: the named data set's, or "0".."N-1" for `idx`.

    Labels must number the classes: one stray label 200 in a ten-class set would otherwise
    make a 201-class model with 191 classes that never occur.
    """
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    lowest, highest = int(labels.min()), int(labels.max())
    if lowest < 0:
        raise DataError(f"The IDX files in {idx_dir} have label {lowest}; labels start at 0.")
    if key in IDX_CLASS_NAMES:
        classes = IDX_CLASS_NAMES[key]
        if highest >= len(classes):
            raise DataError(
                f"The IDX files in {idx_dir} have label {highest}, beyond {key}'s "
                f"{len(classes)} classes (0-{len(classes) - 1})."
            )
        return classes
    present = set(np.unique(splits["train"][1]).tolist())
    absent = [c for c in range(highest + 1) if c not in present]
    if absent:
        raise DataError(
            f"The IDX files in {idx_dir} have label {highest} but no training image of "
            f"{len(absent)} class(es) below it (first {absent[0]}); labels must number the "
            f"classes 0 to N-1."
        )
    return tuple(str(i) for i in range(highest + 1))


def _idx_dir(data_dir: Path, key: str) -> Path | None:
    """The folder holding IDX files: `data_dir` itself, or its `<name>`/`<name-with-dashes>`."""
    for candidate in (data_dir, data_dir / key, data_dir / key.replace("_", "-")):
        if idx.has_idx_files(candidate):
            return candidate
    return None


def _complete(splits: dict, val_frac: float, seed: int) -> dict:
    """Carve a missing test (20%) then a missing validation split from train."""
    splits = dict(splits)
    if "test" not in splits:
        splits["train"], splits["test"] = carve(*splits["train"], 0.2, seed)
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve(*splits["train"], val_frac, seed)
    return splits


def _digits(seed: int) -> dict:
    """scikit-learn's bundled 8x8 digits (values 0..16), rescaled to uint8 0..255, 70/10/20."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    parts = stratified_split(labels, {"test": 0.2, "validation": 0.1}, seed)
    return {"train" if k == "rest" else k: (images[v], labels[v]) for k, v in parts.items()}


def _synthetic(*, flip=None, num_classes=10, image_size=28, channels=1, train_size=1000,
               validation_size=200, test_size=200, seed=0):
    """Deterministic learnable images: a fixed random template per class plus pixel noise.

    Content depends only on the arguments, so tests and benchmarks are reproducible.
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    if num_classes < 2 or channels not in (1, 3) or min(height, width) < 1:
        raise DataError("synthetic needs num_classes >= 2, channels 1 or 3 and a positive size.")
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (num_classes, 4, 4, channels))
    rows = np.arange(height) * 4 // height
    cols = np.arange(width) * 4 // width
    templates = coarse[:, rows][:, :, cols]  # [classes, H, W, C], blocky so it survives resizing
    splits = {}
    for split, size in (("train", train_size), ("validation", validation_size),
                        ("test", test_size)):
        if size < 1:
            raise DataError(f"synthetic needs {split}_size >= 1, got {size}.")
        labels = rng.permutation(np.arange(size) % num_classes).astype(np.int64)
        noise = rng.uniform(0, 1, (size, height, width, channels)).astype(np.float32)
        pixels = 255 * (0.75 * templates[labels] + 0.25 * noise)
        splits[split] = (pixels.astype(np.uint8), labels)
    return make_source("synthetic", splits, [f"class_{i}" for i in range(num_classes)],
                       allow_horizontal_flip=bool(flip))


def _folder(root: Path, seed: int, image_size=None, channels=None):
    """One subfolder per class, or `train/`, `test/` (and `validation/` or `val/`) above them."""
    layout = {"train": root / "train", "test": root / "test"}
    if not (layout["train"].is_dir() and layout["test"].is_dir()):
        layout = {"train": root}
    for name in ("validation", "val"):
        if "test" in layout and (root / name).is_dir():
            layout["validation"] = root / name
            break
    classes = sorted(p.name for p in _entries(layout["train"])
                     if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{layout['train']} needs at least two class subfolders of images.")
    files = {split: _scan(path, classes, split == "train") for split, path in layout.items()}
    everything = [path for listing in files.values() for path, _ in listing]
    channels, size = _folder_format(everything, image_size, channels)
    splits = {}
    for split, listing in files.items():
        images = np.stack([_read_image(p, channels, size) for p, _ in listing])
        splits[split] = (images, np.array([c for _, c in listing], np.int64))
    if len(layout) == 1:
        parts = stratified_split(splits["train"][1], {"test": 0.2, "validation": 0.1}, seed)
        x, y = splits["train"]
        splits = {"train" if k == "rest" else k: (x[v], y[v]) for k, v in parts.items()}
    return splits, classes


def _scan(root: Path, classes, require_all: bool) -> list:
    """Sorted `(path, class index)` pairs under `root/<class>/`; train needs every class."""
    extra = sorted(p.name for p in _entries(root) if p.is_dir() and p.name not in classes
                   and not p.name.startswith("."))
    if extra:
        raise DataError(f"{root} has class folder(s) {', '.join(extra)} missing from train.")
    listing = []
    for index, name in enumerate(classes):
        folder = root / name
        paths = sorted(p for p in _entries(folder) if p.suffix.lower() in IMAGE_EXTENSIONS) \
            if folder.is_dir() else []
        if not paths and require_all:
            raise DataError(f"The class folder {folder} holds no PNG or JPEG images.")
        listing.extend((p, index) for p in paths)
    return listing


def _folder_format(paths, image_size, channels):
    """Pick the channel count (3 if any image is colour) and the common (height, width)."""
    from PIL import Image, UnidentifiedImageError

    modes, sizes = set(), Counter()
    for path in paths:
        try:
            with Image.open(path) as img:
                _check_pixels(path, img.width, img.height)
                modes.add(img.mode)
                sizes[img.height, img.width] += 1
        except Image.DecompressionBombError as error:  # not an OSError
            raise _bomb(path, error) from None
        except (OSError, UnidentifiedImageError):
            raise DataError(f"{path} is not a readable PNG or JPEG image.") from None
    if channels is None:
        channels = 1 if modes <= set(_GREY_MODES) else 3
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}.")
    if image_size is not None:
        size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    else:
        # Mixed sizes are resized to the most common one (the larger on a tie); the pipeline
        # resizes to the model's input afterwards anyway.
        size = max(sizes, key=lambda hw: (sizes[hw], hw))
    return channels, size


def _check_pixels(path, width: int, height: int) -> None:
    """PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse those images too."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise DataError(
            f"{path} declares {width}x{height} = {width * height} pixels, more than the {limit} "
            "PIL decodes safely (a decompression bomb?)."
        )


def _bomb(path, error) -> DataError:
    from PIL import Image

    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{found.group(1)} pixels" if found else "more pixels than PIL allows"
    return DataError(
        f"{path} declares {pixels}, more than the {Image.MAX_IMAGE_PIXELS} PIL decodes "
        "safely (a decompression bomb?)."
    )


def _entries(folder: Path) -> list[Path]:
    """The entries of `folder`; an unreadable folder or a symlink loop or dangling link in it
    is a DataError naming it, where `is_dir()` would silently skip it."""
    try:
        entries = list(folder.iterdir())
    except OSError as error:
        raise DataError(f"Cannot read the folder {folder} ({error.strerror or error}).") from None
    for entry in entries:
        if entry.is_symlink():
            try:
                os.stat(entry)
            except OSError as error:
                what = "a symlink loop" if error.errno == errno.ELOOP else "a dangling symlink"
                raise DataError(f"{entry} is {what}; remove it or fix its target.") from None
    return entries


def _read_image(path, channels, size):
    from PIL import Image

    try:
        with Image.open(path) as img:
            _check_pixels(path, img.width, img.height)
            img = img.convert("L" if channels == 1 else "RGB")
            if (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, np.uint8)
    except Image.DecompressionBombError as error:  # not an OSError
        raise _bomb(path, error) from None
    except OSError:
        raise DataError(f"{path} is not a readable PNG or JPEG image.") from None
    return array[..., None] if channels == 1 else array
