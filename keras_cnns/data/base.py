"""What every data source hands the rest of the project: in-memory splits plus metadata.

A source is a `DataSource` holding three uint8 `[N, H, W, C]` image arrays with int64 labels
(train, validation, test) and a frozen `SourceInfo` describing them. The helpers here are the
pieces every source shares: the deterministic stratified split, the content fingerprint and the
per-channel mean/std, so that every source computes them the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

SPLITS = ("train", "validation", "test")

# Splits never depend on the run's seed: every run of every model is scored on the same test
# images. Changing this constant changes every split, so it is part of the data contract.
SPLIT_SEED = 20_240_607


class DataError(ValueError):
    """A data problem the user can fix (missing files, bad format, ...); one-sentence message."""


@dataclass(frozen=True)
class SourceInfo:
    """Metadata of a loaded source; `to_dict()` is what the export manifest records."""

    name: str
    class_names: tuple[str, ...]
    channels: int
    native_size: tuple[int, int]
    fingerprint: str
    split_sizes: dict
    allow_horizontal_flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("class_names", "native_size", "mean", "std"):
            out[key] = list(out[key])
        out["split_sizes"] = {k: int(v) for k, v in self.split_sizes.items()}
        return out


class DataSource:
    """Three in-memory splits of `(uint8 [N, H, W, C], int64 [N])` plus their `SourceInfo`."""

    def __init__(self, info: SourceInfo, splits: dict):
        self.info = info
        self._splits = splits

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's images and labels (read-only arrays shared with the source)."""
        if split not in self._splits:
            raise DataError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
        return self._splits[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.info.split_sizes.items())
        return f"DataSource({self.info.name!r}, {sizes})"


def make_source(name, splits, class_names, *, allow_horizontal_flip) -> DataSource:
    """Check the three splits, then derive fingerprint, stats and sizes into a `DataSource`."""
    clean = {}
    for split in SPLITS:
        images, labels = splits[split]
        images = np.asarray(images)
        if images.ndim == 3:  # IDX and digits store greyscale without a channel axis
            images = images[..., None]
        images = np.ascontiguousarray(images, dtype=np.uint8)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if len(images) == 0:
            raise DataError(f"The {split} split of {name!r} is empty; add more images.")
        if len(labels) != len(images):
            raise DataError(
                f"The {split} split of {name!r} has {len(labels)} labels for {len(images)} images."
            )
        outside = labels[(labels < 0) | (labels >= len(class_names))]
        if len(outside):
            raise DataError(
                f"The {split} split of {name!r} has label {int(outside[0])}, outside its "
                f"{len(class_names)} classes (0-{len(class_names) - 1})."
            )
        images.setflags(write=False)
        labels.setflags(write=False)
        clean[split] = (images, labels)
    present = np.unique(clean["train"][1])
    if len(class_names) < 2 or len(present) < 2:
        only = ", ".join(str(class_names[i]) for i in present)
        raise DataError(
            f"The train split of {name!r} holds only class {only}; a classifier needs images "
            "of at least two classes."
        )
    train = clean["train"][0]
    mean, std = channel_stats(train)
    info = SourceInfo(
        name=name,
        class_names=tuple(str(c) for c in class_names),
        channels=int(train.shape[-1]),
        native_size=(int(train.shape[1]), int(train.shape[2])),
        fingerprint=fingerprint(clean),
        split_sizes={k: int(len(v[1])) for k, v in clean.items()},
        allow_horizontal_flip=bool(allow_horizontal_flip),
        mean=mean,
        std=std,
    )
    return DataSource(info, clean)


def stratified_split(labels, fractions: dict, seed: int = SPLIT_SEED) -> dict:
    """Split indices per class: `{name: fraction}` parts, the rest under `"rest"`.

    Each class is permuted with a generator seeded by `seed` and cut at rounded per-class counts,
    so every part keeps the class balance and the result depends only on labels and seed.
    Indices come back sorted so the parts keep the source's original order.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in (*fractions, "rest")}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for name, frac in fractions.items():
            count = int(np.floor(len(idx) * frac + 0.5))  # half up, not banker's rounding
            parts[name].append(idx[start:start + count])
            start += count
        parts["rest"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def carve(images, labels, fraction: float, seed: int = SPLIT_SEED):
    """Split `(images, labels)` into `(kept, carved)` pairs, `fraction` stratified to `carved`."""
    parts = stratified_split(labels, {"carved": fraction}, seed)
    rest, cut = parts["rest"], parts["carved"]
    return (images[rest], labels[rest]), (images[cut], labels[cut])


def fingerprint(splits: dict) -> str:
    """sha256 over every split's shapes, pixels and labels, in split order.

    It hashes decoded content, not files, so a gzipped and a raw copy of the same IDX data, or
    the same images reached through TFDS or a folder in the same order, agree.
    """
    digest = hashlib.sha256()
    for split in SPLITS:
        images, labels = splits[split]
        digest.update(f"{split}:{images.shape}:{labels.shape};".encode())
        digest.update(np.ascontiguousarray(images, dtype=np.uint8).data)
        digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale, exact, from a 256-bin histogram.

    A histogram avoids a float copy of the whole split (MNIST's train split would need 340 MB).
    A (near-)constant channel gets std 1/255 so normalisation never divides by zero.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[-1]):
        counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float((counts * levels).sum() / total)
        var = float((counts * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(max(var ** 0.5, 1.0 / 255.0))
    return tuple(means), tuple(stds)
