"""ablation.png: test accuracy per cell with error bars, and learning curves: the ReLU/sigmoid
pair of the seed's claims, or every cell of a grid that declares its own comparisons."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_cnns.ablation.results import CellSummary  # noqa: E402

# Claim 2 is seen best in learning curves: the ReLU/sigmoid pair of AlexNet.
CURVE_CELLS = (("alexnet", "ReLU", "tab:blue"), ("alexnet-sigmoid", "sigmoid", "tab:red"))


def plot_ablation(summaries: list[CellSummary], path: str | Path, title: str,
                  own_verdicts: bool) -> None:
    figure, (bars, curves) = plt.subplots(
        1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]}
    )
    names = [cell.name for cell in summaries]
    positions = np.arange(len(summaries))
    means = [cell.test_accuracy[0] if cell.measured else 0.0 for cell in summaries]
    errors = [
        (cell.test_accuracy[1] or 0.0) if cell.measured else 0.0 for cell in summaries
    ]
    if own_verdicts:  # one colour per cell, the same in both panels
        palette = plt.get_cmap("tab10")
        colours = [palette(index % 10) for index in range(len(summaries))]
        bars_title = "test accuracy per cell"
    else:
        colours = ["tab:orange" if cell.model == "lenet" else "tab:blue" for cell in summaries]
        bars_title = "test accuracy per cell (orange: LeNet-5, blue: AlexNet)"
    bars.bar(positions, means, yerr=errors, capsize=4, color=colours)
    for x, cell in zip(positions, summaries, strict=True):
        label = f"{cell.test_accuracy[0]:.3f}" if cell.measured else (
            "failed" if cell.failed else "not run"
        )
        bars.text(x, (means[x] if cell.measured else 0.0) + 0.01, label, ha="center",
                  va="bottom", fontsize=8, rotation=90)
    bars.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
    bars.set_ylim(0.0, 1.1)
    bars.set_ylabel("test accuracy (mean ± std over seeds)")
    bars.set_title(bars_title)
    bars.grid(axis="y", alpha=0.3)

    if own_verdicts:  # the grid's own comparisons: every cell's curves
        shown = [(cell.name, cell.name, colour) for cell, colour in zip(summaries, colours,
                                                                         strict=True)]
        curves_title = "validation accuracy per cell (one line per seed)"
        empty = "no finished run yet"
    else:
        shown = CURVE_CELLS
        curves_title = "claim 2: AlexNet, ReLU against sigmoid (one line per seed)"
        empty = "no finished alexnet / alexnet-sigmoid run yet"
    by_name = {cell.name: cell for cell in summaries}
    drawn = False
    for name, label, colour in shown:
        cell = by_name.get(name)
        for index, curve in enumerate(cell.val_curves if cell else []):
            epochs = np.arange(1, len(curve) + 1)
            curves.plot(epochs, curve, color=colour, alpha=0.8, marker="o", markersize=3,
                        label=(label if label == name else f"{label} ({name})")
                        if index == 0 else None)
            drawn = True
    if drawn:
        curves.legend(loc="lower right", fontsize=8 if len(shown) > 2 else None)
    else:
        curves.text(0.5, 0.5, empty, ha="center", va="center", transform=curves.transAxes)
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy")
    curves.set_ylim(0.0, 1.05)
    curves.set_title(curves_title)
    curves.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
