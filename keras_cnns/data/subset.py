"""A stratified fraction of a source's training split, for data-scale experiments.

    smaller = subset_training_split(source, 0.25, seed=0)   # a quarter of train, per class

Only the training split shrinks: validation and test stay whole, so runs on different
fractions are scored on the same images. The subset depends only on the labels, the fraction
and the run's seed, so re-running a config trains on the same images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_cnns.data.base import SPLITS, DataError, DataSource, fingerprint

# Mixed into the run's seed so that the subset's draw is not the same stream as the one that
# initialises weights or shuffles batches for that seed.
_SUBSET_SALT = 7_340_527


def subset_indices(labels, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified `fraction` of `labels`, at least one image per class.

    Each class keeps `round(count * fraction)` images (half up), drawn with a generator seeded
    by `seed`; a larger fraction keeps a superset of a smaller one for the same seed, so the
    data-scale axis adds images rather than swapping them.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"train_fraction must be in (0, 1], got {fraction}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng([_SUBSET_SALT, int(seed)])
    kept = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = max(1, int(np.floor(len(members) * fraction + 0.5)))
        kept.append(members[:count])
    return np.sort(np.concatenate(kept))


def subset_size(labels, fraction: float) -> int:
    """How many images `subset_indices` keeps (it does not depend on the seed)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(sum(max(1, int(np.floor(n * fraction + 0.5))) for n in counts))


def subset_training_split(source: DataSource, fraction: float, seed: int) -> DataSource:
    """`source` with its training split cut to a stratified `fraction`; other splits unchanged.

    Split sizes and the fingerprint describe the images the run trains on; the normalisation
    mean and std stay the whole training split's, so every fraction sees the same input scale
    and a run is scored (evaluate.py, the export) exactly as it was trained.
    """
    if fraction == 1.0:
        return source
    images, labels = source.arrays("train")
    kept = subset_indices(labels, fraction, seed)
    splits = {split: source.arrays(split) for split in SPLITS}
    train = (images[kept], labels[kept])
    for array in train:
        array.setflags(write=False)
    splits["train"] = train
    info = dataclasses.replace(
        source.info,
        split_sizes={**source.info.split_sizes, "train": int(len(kept))},
        fingerprint=fingerprint(splits),
    )
    return DataSource(info, splits)
