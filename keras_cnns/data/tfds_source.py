"""TFDS image-classification datasets, read offline from a prepared data directory.

`tfds.load` on a dataset that is not prepared tries to download it, and offline it retries for
minutes. So this module never calls it: it builds the builder (local, fast), checks
`is_prepared()`, and raises a `DataError` saying how to prepare the data when it is not.
Downloading happens only when asked (`download=True`) and after a short network probe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_cnns.data.base import DataError

_PROBE_HOST = "storage.googleapis.com"


@contextlib.contextmanager
def _quiet_absl():
    """Silence absl warnings such as "Variant folder ... has no dataset_info.json"."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def network_available(host: str = _PROBE_HOST, timeout: float = 3.0) -> bool:
    """True when `host:443` accepts a TCP connection within `timeout` seconds (DNS included).

    DNS lookups ignore socket timeouts, so the probe runs in a daemon thread that is abandoned
    when it takes too long: the caller waits at most `timeout` seconds.
    """
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or str(Path("~/tensorflow_datasets").expanduser())


def _builder(name: str, data_dir: str | None):
    """The TFDS builder for `name`, or a DataError when TFDS does not know the name."""
    if ":" in name:
        # Community namespaces are resolved over the network; refuse rather than hang.
        raise DataError(f"Namespaced TFDS datasets such as {name!r} are not supported.")
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            f"Dataset {name!r} needs tensorflow-datasets, which is not installed."
        ) from None
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown dataset {name!r}: use digits, synthetic, folder, idx or a TFDS "
            f"image-classification name such as mnist, fashion_mnist, kmnist or cifar10."
        ) from None


def load_tfds(name: str, data_dir: str | None, *, download: bool = False, image_size=None):
    """Read a prepared TFDS dataset into `({split: (images, labels)}, class_names)`.

    Splits other than train/validation/test are ignored; the caller carves missing ones.
    Datasets with images of varying size need `image_size` (resized on load, bilinear).
    """
    with _quiet_absl():
        return _load(name, data_dir, download, image_size)


def _load(name, data_dir, download, image_size):
    builder = _builder(name, data_dir)
    where = data_dir or default_data_dir()
    features = builder.info.features
    if "image" not in features or "label" not in features or not hasattr(
        features["label"], "names"
    ):
        raise DataError(
            f"TFDS dataset {name!r} is not image classification (no 'image' and class 'label')."
        )
    if not builder.is_prepared():
        if not download:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where} and downloads are off; "
                f"prepare it where there is network (`tfds build {name} --data_dir {where}`) "
                f"and copy that folder here, or point --data-dir at a folder of IDX files."
            )
        if not network_available():
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {where} and there is no network to "
                f"download it; run `tfds build {name} --data_dir {where}` on a machine with "
                f"network and copy that folder here, or point --data-dir at a folder of IDX files."
            )
        try:
            builder.download_and_prepare()
        except Exception as err:  # any failure here is the user's to fix: report, don't trace
            raise DataError(f"Downloading TFDS dataset {name!r} failed: {_first_line(err)}.") \
                from None
    shape = features["image"].shape
    if image_size is None and None in shape[:2]:
        raise DataError(
            f"TFDS dataset {name!r} has images of varying size; pass image_size to resize them."
        )
    splits = {}
    for split in ("train", "validation", "test"):
        if split in builder.info.splits:
            try:
                splits[split] = _read_split(builder, split, image_size)
            except (OSError, tf.errors.OpError) as err:
                raise DataError(
                    f"TFDS dataset {name!r} in {where} could not be read ({_first_line(err)}); "
                    f"prepare it again."
                ) from None
    if "train" not in splits:
        raise DataError(f"TFDS dataset {name!r} has no train split.")
    return splits, list(features["label"].names)


def _first_line(err: Exception) -> str:
    """A short, traceback-free reason: TF wraps op errors in `{{function_node ...}}` noise."""
    text = getattr(err, "message", None) or str(err)
    text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$|\s*name:\s*$", "", text.strip())
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(err).__name__).strip().rstrip(".")


def _read_split(builder, split: str, image_size):
    """Decode a whole split into memory, in the stored order (no file shuffling)."""
    ds = builder.as_dataset(split=split, shuffle_files=False)
    ds = ds.map(lambda ex: (ex["image"], ex["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

        def resize(image, label):
            image = tf.image.resize(image, size, method="bilinear")
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

        ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    images, labels = [], []
    for x, y in ds.batch(4096).prefetch(1).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)
