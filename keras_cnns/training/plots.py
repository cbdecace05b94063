"""Pictures a person would rather look at than read: curves and confusion matrices."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def read_history(path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file, as floats."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else np.nan)
    return columns


def plot_curves(history: dict[str, list[float]], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = np.asarray(history.get("epoch", range(len(history.get("loss", []))))) + 1
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, class_names, path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with the raw counts written in each cell."""
    count = len(class_names)
    # Half an inch a class up to 20 inches (ImageNet's 1000 classes would ask for 50,000 px).
    size = min(max(4.0, 0.5 * count + 2), 20.0)
    figure, axis = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if count <= 50:  # beyond, the names would overlap: the axes count classes instead
        axis.set_xticks(range(count), labels=class_names, rotation=45, ha="right")
        axis.set_yticks(range(count), labels=class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if count <= 30:
        for i in range(count):
            for j in range(count):
                colour = "white" if shares[i, j] > 0.5 else "black"
                axis.text(
                    j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=8
                )
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
