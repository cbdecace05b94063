"""How a model is scored: accuracy and loss, top-5 accuracy, each class's precision and recall,
the confusion matrix, the test split's fingerprint, the golden probe.

The arithmetic is keras_cnns.serving.verify_export's (`score`, `content_sha256`), which must stand
alone: an export and its verification compute the same numbers by the same lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_cnns.serving import verify_export as verify
from keras_cnns.serving.verify_export import GOLDEN_TOLERANCE, content_sha256

__all__ = ["GOLDEN_SIZE", "GOLDEN_TOLERANCE", "LOSS_EPSILON", "TOP_K", "TOP_K_NAME",
           "class_scores", "content_sha256", "golden_indices", "per_class_precision",
           "relative_gap", "reports_top_k", "score", "top_k_accuracy"]

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


# Top-5 accuracy, as torchvision and timm report beside top-1, wherever there are more than 5
# classes (with 5 or fewer it is always 1). The metric's name in the logs; metrics.json and the
# manifest prefix it with test_ (val_ in the history).
TOP_K = 5
TOP_K_NAME = f"top{TOP_K}_accuracy"


def reports_top_k(num_classes: int) -> bool:
    return num_classes > TOP_K


def top_k_accuracy(scores, labels, k: int = TOP_K) -> float:
    """The share of rows whose label is among the `k` highest `scores` (logits or
    probabilities). A tie at the k-th place counts as in, as `tf.math.in_top_k` (Keras'
    TopKCategoricalAccuracy) counts it: the label is in when fewer than k classes score
    strictly higher."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    label_scores = np.take_along_axis(scores, labels[:, None], axis=1)
    return float(((scores > label_scores).sum(axis=1) < k).mean())


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


def per_class_precision(matrix: np.ndarray) -> list[float | None]:
    """Each class's share of right ones among the images predicted as it (a column of the
    confusion matrix); None for a class never predicted. Recall is `per_class_accuracy`."""
    totals = matrix.sum(axis=0)
    return [float(matrix[i, i] / totals[i]) if totals[i] else None for i in range(len(matrix))]


def class_scores(scores, labels, class_names, predictions=None) -> dict:
    """What a model is scored by, from the scores (logits or probabilities) of the test images
    and their labels: top-1 and (more than 5 classes) top-5 accuracy, each class's accuracy,
    precision and recall (recall is the class's accuracy; None where undefined), and the
    confusion matrix (rows: true classes). `predictions`, the predicted classes, default to
    the scores' argmax (an export passes its own `classes` output)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    predictions = scores.argmax(-1) if predictions is None else np.asarray(predictions)
    matrix = confusion_matrix(labels, predictions, len(class_names))
    recall = per_class_accuracy(matrix)
    metrics = {"test_accuracy": float((predictions == labels).mean())}
    if reports_top_k(len(class_names)):
        metrics[f"test_{TOP_K_NAME}"] = top_k_accuracy(scores, labels, TOP_K)
    return {
        **metrics,
        "test_examples": int(len(labels)),
        "per_class_accuracy": dict(zip(class_names, recall, strict=True)),
        "per_class_precision": dict(zip(class_names, per_class_precision(matrix), strict=True)),
        "per_class_recall": dict(zip(class_names, recall, strict=True)),
        "confusion_matrix": matrix.tolist(),
    }


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
