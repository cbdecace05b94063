"""A stratified fraction of a source's training split, for data-scale experiments.

    smaller = subset_training_split(source, 0.25, seed=0)   # a quarter of train, per class

Only the training split shrinks: validation and test stay whole, so runs on different
fractions are scored on the same images. The subset depends only on the labels, the fraction
and the run's seed, so re-running a config trains on the same images.
"""

from __future__ import annotations

import numpy as np

from keras_cnns.data.base import DataError, DataSource, make_source

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

    The result goes through `make_source` again, so its fingerprint, split sizes and the
    normalisation mean/std describe the images the run actually trains on.
    """
    if fraction == 1.0:
        return source
    info = source.info
    images, labels = source.arrays("train")
    kept = subset_indices(labels, fraction, seed)
    splits = {split: source.arrays(split) for split in ("validation", "test")}
    splits["train"] = (images[kept], labels[kept])
    return make_source(
        info.name, splits, info.class_names, allow_horizontal_flip=info.allow_horizontal_flip
    )
