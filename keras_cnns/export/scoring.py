"""How an export is scored: accuracy and loss, the test split's fingerprint, the golden probe.

scripts/verify.py repeats `score` and `content_sha256` (it may not import keras_cnns): keep
them equal.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

GOLDEN_SIZE = 16
GOLDEN_TOLERANCE = 1e-6
# Probabilities are clipped like Keras's cross-entropy on probabilities, so log(0) never occurs.
LOSS_EPSILON = 1e-7


def score(probabilities, classes, labels, label_smoothing: float = 0.0) -> dict[str, Any]:
    """Accuracy of `classes` and mean cross-entropy of `probabilities` against `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[-1]
    targets = np.full(probabilities.shape, label_smoothing / num_classes, dtype=np.float64)
    targets[np.arange(len(labels)), labels] += 1.0 - label_smoothing
    clipped = np.clip(probabilities.astype(np.float64), LOSS_EPSILON, 1.0)
    correct = int(np.sum(classes == labels))
    return {
        "test_accuracy": correct / len(labels),
        "test_loss": float(np.mean(-np.sum(targets * np.log(clipped), axis=-1))),
        "test_correct": correct,
        "test_examples": len(labels),
    }


def content_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of a split's shapes, pixels and labels (verify.py checks `--data` against it)."""
    digest = hashlib.sha256(f"{images.shape}:{labels.shape};".encode())
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def golden_indices(labels, count: int = GOLDEN_SIZE) -> np.ndarray:
    """A fixed stratified probe: each class's first test image, then each one's second, ...

    Depends only on the labels, so every export of a dataset probes the same images.
    """
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        rank[where] = np.arange(len(where))
    return np.sort(np.lexsort((labels, rank))[:count])
