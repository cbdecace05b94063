"""How an export is scored: accuracy and loss, the test split's fingerprint, the golden probe.

The arithmetic is keras_cnns.serving.verify_export's (`score`, `content_sha256`), which must stand
alone: an export and its verification compute the same numbers by the same lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnns.serving import verify_export as verify
from keras_cnns.serving.verify_export import GOLDEN_TOLERANCE, content_sha256

__all__ = ["GOLDEN_SIZE", "GOLDEN_TOLERANCE", "LOSS_EPSILON", "content_sha256", "golden_indices",
           "relative_gap", "score"]

GOLDEN_SIZE = 16
# Probabilities are clipped like Keras's cross-entropy on probabilities, so log(0) never occurs.
LOSS_EPSILON = 1e-7


def score(probabilities, classes, labels, label_smoothing: float = 0.0) -> dict[str, Any]:
    """Accuracy of `classes` and mean cross-entropy of `probabilities` against `labels`."""
    correct, loss = verify.score(probabilities, classes, labels, label_smoothing, LOSS_EPSILON)
    return {
        "test_accuracy": correct / len(labels),
        "test_loss": loss,
        "test_correct": correct,
        "test_examples": len(labels),
    }


def relative_gap(values, reference) -> float:
    """`max|values - reference| / max|reference|`: the project's parity metric."""
    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(values - reference).max() / (np.abs(reference).max() or 1.0))


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): rows are true classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """Each true class's share predicted right; None for a class with no examples."""
    totals = matrix.sum(axis=1)
    return [float(matrix[i, i] / totals[i]) if totals[i] else None for i in range(len(matrix))]


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
