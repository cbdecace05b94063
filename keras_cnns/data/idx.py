"""IDX files, the format of MNIST, Fashion-MNIST and KMNIST, gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the data in C order. Gzip is recognised by its magic
bytes, not the file name, so renamed files still load.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from keras_cnns import machine
from keras_cnns.data.base import DataError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# train-images-idx3-ubyte(.gz), t10k-labels.idx1-ubyte (Kaggle's spelling), test-images-...
_PATTERN = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array; a damaged file is a DataError.

    A gzipped file is inflated as a stream and never beyond the size its header promises, so
    a small `.gz` that inflates to gigabytes (a gzip bomb) is refused after reading one byte
    too many, and a header that promises more than this machine's memory is refused unread.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
            handle.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=handle) as stream:
                    return _read_stream(path, stream, stored=None)
            return _read_stream(path, handle, stored=os.fstat(handle.fileno()).st_size)
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise DataError(f"{path} is a damaged or truncated gzip file.") from None
    except OSError as err:
        raise DataError(f"Cannot read IDX file {path}: {err.strerror or err}.") from None


def _read_stream(path: Path, stream, stored: int | None) -> np.ndarray:
    """The array in `stream`; `stored` is the file's size on disk when it is not compressed."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (its magic number is wrong).")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise DataError(f"{path} is not an IDX file (its header is incomplete).")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    dtype = np.dtype(_DTYPES[magic[2]])
    expected = math.prod(shape) * dtype.itemsize
    header = 4 + 4 * ndim
    if stored is not None and stored - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {expected} bytes of data "
            f"but it holds {stored - header}."
        )
    limit = machine.machine_memory()
    if limit is not None and expected > limit // 2:
        raise DataError(
            f"{path} promises {expected} bytes of data in its header ({' x '.join(map(str, shape))}"
            f"), more than half of this machine's {limit} bytes of memory."
        )
    data = stream.read(expected)
    if len(data) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {expected} bytes of data "
            f"but it holds {len(data)}."
        )
    if stream.read(1):
        raise DataError(
            f"{path} holds more data than the {expected} bytes its header promises "
            "(corrupt, or a gzip bomb); it was not read further."
        )
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(directory) -> dict:
    """Map `("train"|"test", "images"|"labels")` to the IDX files found in `directory`."""
    found = {}
    directory = Path(directory)
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        match = _PATTERN.match(path.name.lower())
        if match and path.is_file():
            split = "train" if match.group(1) == "train" else "test"
            # Prefer the raw file when both it and the .gz are present: it is faster to read.
            key = (split, match.group(2))
            if key not in found or not match.group(4):
                found[key] = path
    return found


def has_idx_files(directory) -> bool:
    return bool(find_idx_files(directory))


def load_idx_dir(directory) -> dict:
    """Read the four IDX files of `directory` into `{"train": (x, y), "test": (x, y)}`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"The data directory {directory} does not exist.")
    files = find_idx_files(directory)
    missing = [
        f"{'train' if s == 'train' else 't10k'}-{k}-idx{3 if k == 'images' else 1}-ubyte"
        for s in ("train", "test") for k in ("images", "labels") if (s, k) not in files
    ]
    if missing:
        raise DataError(
            f"{directory} lacks the IDX file(s) {', '.join(missing)} (gzipped or raw)."
        )
    splits = {}
    for split in ("train", "test"):
        images = read_idx(files[split, "images"])
        labels = read_idx(files[split, "labels"])
        if len(images) == 0:
            raise DataError(f"{files[split, 'images']} holds no images.")
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(
                f"{files[split, 'images']} must hold uint8 images of shape [N, H, W] or "
                f"[N, H, W, C], got {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{files[split, 'labels']} must hold one label per image ({len(images)}), "
                f"got shape {labels.shape}."
            )
        splits[split] = (images, labels.astype(np.int64))
    return splits


def write_idx(path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file (gzipped when `compress` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}.get(array.dtype)
    if code is None:
        raise DataError(f"IDX cannot store arrays of dtype {array.dtype}.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6)
    path.write_bytes(payload)
    return path
