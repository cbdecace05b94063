"""One result row per finished run, read back from the files the trainer and the runner wrote.

Every number in results.csv, results.json and report.md comes from files on disk (the run's
`metrics.json` and `history.csv`, plus `ablation.json`, which the runner writes beside them), never
from memory, so a second pass over the same directory writes the same report.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_cnns.ablation.grid import Cell, Goal
from keras_cnns.config import ConfigError, RunConfig, read_json_file
from keras_cnns.serving.verify_export import (
    ACCURACY,
    NUMBER,
    OBJECT,
    POSITIVE_INTEGER,
    TEXT,
    EachItem,
    Maybe,
    Rule,
    check_schema,
    or_null,
)

SIDECAR = "ablation.json"  # per run: what the trainer does not record (clean train accuracy, ...)
BEST_SHARE = 0.95  # "epochs to 95% of the best validation accuracy"


@dataclass
class RunRow:
    """One (cell, seed) of the grid: finished, failed or not run yet."""

    cell: str
    seed: int
    config: RunConfig
    train_images: int
    params: int
    num_classes: int = 0
    status: str = "pending"  # "finished", "failed" or "pending"
    error: str = ""
    run_dir: str = ""  # relative to the results directory
    test_accuracy: float | None = None
    train_accuracy: float | None = None  # scored weights, inference mode, no augmentation
    fit_train_accuracy: float | None = None  # fit's last epoch: dropout and augmentation on
    best_val_accuracy: float | None = None
    epochs_to_best_share: int | None = None
    epochs_run: int | None = None
    train_seconds: float | None = None
    wall_seconds: float | None = None
    device: str = ""
    machine: str = ""
    val_curve: list[float] = field(default_factory=list)

    @property
    def gap(self) -> float | None:
        """Train minus test accuracy, in accuracy units (0.012 is 1.2 points)."""
        if self.train_accuracy is None or self.test_accuracy is None:
            return None
        return self.train_accuracy - self.test_accuracy

    @property
    def images_per_second(self) -> float | None:
        """Training images per second of fit (its per-epoch validation included)."""
        if not self.train_seconds or not self.epochs_run:
            return None
        return self.train_images * self.epochs_run / self.train_seconds

    def flat(self) -> dict[str, Any]:
        """The row for results.csv: scalars only, the config's main fields spelled out."""
        config = self.config
        return {
            "cell": self.cell,
            "seed": self.seed,
            "status": self.status,
            "test_accuracy": _round(self.test_accuracy, 4),
            "train_accuracy": _round(self.train_accuracy, 4),
            "train_test_gap": _round(self.gap, 4),
            "fit_train_accuracy": _round(self.fit_train_accuracy, 4),
            "best_val_accuracy": _round(self.best_val_accuracy, 4),
            "epochs_to_95pct_best_val": self.epochs_to_best_share,
            "epochs_run": self.epochs_run,
            "train_seconds": _round(self.train_seconds, 1),
            "wall_seconds": _round(self.wall_seconds, 1),
            "train_images_per_s": _round(self.images_per_second, 1),
            "train_images": self.train_images,
            "params": self.params,
            "model": config.model,
            "activation": config.model_kwargs.get("activation", _option(config, "activation")),
            "pooling": config.model_kwargs.get("pooling", _option(config, "pooling")),
            "dropout": config.dropout,
            "augment": config.augment,
            "train_fraction": config.train_fraction,
            "epochs": config.epochs,
            "image_size": config.image_size,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "dataset": config.dataset,
            "identity": config.identity(),
            "device": self.device,
            "run_dir": self.run_dir,
            "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.flat()
        out["config"] = {k: v for k, v in self.config.to_dict().items() if k != "run_dir"}
        out["machine"] = self.machine
        out["val_accuracy_per_epoch"] = [round(v, 4) for v in self.val_curve]
        return out


def _option(config: RunConfig, name: str):
    from keras_cnns.models import get_model_entry

    return get_model_entry(config.model).options.get(name)


def _round(value, digits):
    return None if value is None else round(float(value), digits)


# What the ablation reads back from a finished run's metrics.json and from its sidecar.
METRICS_SCHEMA = {
    "test_accuracy": ACCURACY,
    "train_seconds": Maybe(NUMBER),
    "strategy": Maybe(TEXT),
    "replicas": Maybe(POSITIVE_INTEGER),
}
STRING = Rule("a string", lambda v: isinstance(v, str))
SIDECAR_SCHEMA = {
    "train_accuracy": Maybe(or_null(ACCURACY)),
    "wall_seconds": Maybe(or_null(NUMBER)),
    "device": Maybe(STRING),
    "machine": Maybe(STRING),
}


def read_checked(path: Path, schema) -> Any:
    """The JSON in `path`, checked against `schema`; else a ConfigError, one sentence naming
    the file and the field."""
    document = read_json_file(path, "File")
    check_schema(document, schema, str(path), ConfigError)
    return document


def fill_from_run_dir(row: RunRow, run_dir: Path, results_dir: Path) -> RunRow:
    """Fill a finished run's numbers from its `metrics.json`, `history.csv` and sidecar."""
    metrics = read_checked(run_dir / "metrics.json", METRICS_SCHEMA)
    sidecar_path = run_dir / SIDECAR
    sidecar = read_checked(sidecar_path, SIDECAR_SCHEMA) if sidecar_path.exists() else {}
    history = read_val_history(run_dir / "history.csv")
    train_seconds = float(metrics.get("train_seconds", 0.0)) or None
    return fill_from_stored(row, {
        "run_dir": os.path.relpath(run_dir, results_dir),
        "test_accuracy": float(metrics["test_accuracy"]),
        "train_accuracy": sidecar.get("train_accuracy"),
        "fit_train_accuracy": history["accuracy"][-1] if history["accuracy"] else None,
        "train_seconds": train_seconds,
        "wall_seconds": sidecar.get("wall_seconds", train_seconds),
        "device": sidecar.get("device", ""),
        "machine": sidecar.get("machine", ""),
        "val_accuracy_per_epoch": history["val_accuracy"],
    })


# A finished run as a results.json stores it (`RunRow.to_json`), to be read back from there.
STORED_RUN_SCHEMA = {
    "config": OBJECT,
    "test_accuracy": ACCURACY,
    "train_accuracy": or_null(ACCURACY),
    "fit_train_accuracy": or_null(ACCURACY),
    "train_seconds": or_null(NUMBER),
    "wall_seconds": or_null(NUMBER),
    "device": STRING,
    "machine": STRING,
    "run_dir": STRING,
    "val_accuracy_per_epoch": EachItem(ACCURACY),
}


def fill_from_stored(row: RunRow, stored: dict) -> RunRow:
    """Fill a finished run's numbers from `stored`: its row in a results.json (checked against
    STORED_RUN_SCHEMA), or what `fill_from_run_dir` read from its files."""
    row.status = "finished"
    row.run_dir, row.device, row.machine = stored["run_dir"], stored["device"], stored["machine"]
    row.test_accuracy = stored["test_accuracy"]
    row.train_accuracy = stored["train_accuracy"]
    row.fit_train_accuracy = stored["fit_train_accuracy"]
    row.train_seconds, row.wall_seconds = stored["train_seconds"], stored["wall_seconds"]
    row.val_curve = stored["val_accuracy_per_epoch"]
    row.epochs_run = len(row.val_curve) or None
    row.best_val_accuracy = max(row.val_curve) if row.val_curve else None
    row.epochs_to_best_share = epochs_to_share(row.val_curve)
    return row


def read_val_history(path: Path) -> dict[str, list[float]]:
    """`accuracy` and `val_accuracy` per epoch from a CSVLogger file, one value per epoch.

    A resumed run appends to the file; when an epoch appears twice the later line wins.
    """
    by_epoch: dict[int, tuple[float, float]] = {}
    if path.exists():
        with open(path, newline="") as handle:
            for line in csv.DictReader(handle):
                try:
                    epoch = int(float(line["epoch"]))
                    by_epoch[epoch] = (float(line["accuracy"]), float(line["val_accuracy"]))
                except (KeyError, TypeError, ValueError):
                    continue  # a line cut short by a kill
    epochs = sorted(by_epoch)
    return {
        "accuracy": [by_epoch[e][0] for e in epochs],
        "val_accuracy": [by_epoch[e][1] for e in epochs],
    }


def epochs_to_share(curve: list[float], share: float = BEST_SHARE) -> int | None:
    """The first epoch (1-based) whose value reached `share` of the curve's best."""
    if not curve:
        return None
    target = share * max(curve)
    return next(epoch for epoch, value in enumerate(curve, 1) if value >= target)


# -- per cell -------------------------------------------------------------------------------
@dataclass
class CellSummary:
    """Mean and standard deviation over a cell's finished seeds (std is None for one seed)."""

    name: str
    note: str
    model: str
    train_fraction: float
    data_scale_of: str | None
    planned_seeds: int
    runs: int
    failed: list[str]
    test_accuracy: tuple[float, float | None] | None = None
    gap: tuple[float, float | None] | None = None
    epochs_to_best_share: float | None = None
    best_val_accuracy: float | None = None
    images_per_second: float | None = None
    wall_seconds: float | None = None
    train_images: int = 0
    epochs: int = 0
    params: int = 0
    num_classes: int = 0
    val_curves: list[list[float]] = field(default_factory=list)
    test_accuracies: list[float] = field(default_factory=list)  # per finished seed, in order
    compare_to: tuple[str, ...] = ()  # the grid's declared baselines of this cell
    goal: Goal | None = None  # the grid's goal for this cell

    @property
    def measured(self) -> bool:
        return self.test_accuracy is not None


def summarize(cell: Cell, rows: list[RunRow]) -> CellSummary:
    """`cell`'s summary over `rows` (that cell's rows, any status)."""
    done = [row for row in rows if row.status == "finished"]
    config = cell.config
    summary = CellSummary(
        name=cell.name,
        note=cell.note,
        model=config.model,
        train_fraction=config.train_fraction,
        data_scale_of=cell.data_scale_of,
        planned_seeds=cell.seeds,
        runs=len(done),
        failed=[row.error for row in rows if row.status == "failed"],
        train_images=rows[0].train_images if rows else 0,
        epochs=config.epochs,
        params=rows[0].params if rows else 0,
        num_classes=rows[0].num_classes if rows else 0,
        compare_to=cell.compare_to,
        goal=cell.goal,
    )
    if not done:
        return summary
    summary.test_accuracies = [row.test_accuracy for row in done]
    summary.test_accuracy = mean_std(summary.test_accuracies)
    gaps = [row.gap for row in done if row.gap is not None]
    summary.gap = mean_std(gaps) if gaps else None
    summary.epochs_to_best_share = _mean([row.epochs_to_best_share for row in done])
    summary.best_val_accuracy = _mean([row.best_val_accuracy for row in done])
    summary.images_per_second = _mean([row.images_per_second for row in done])
    summary.wall_seconds = _mean([row.wall_seconds for row in done])
    summary.val_curves = [row.val_curve for row in done]
    return summary


def mean_std(values: list[float]) -> tuple[float, float | None]:
    values = [float(v) for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), spread


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(values) if values else None


# -- where it ran ---------------------------------------------------------------------------
def describe_device(strategy: str, replicas: int) -> str:
    """"CPU" or "GPU: <name> x<count>", with the strategy when it spans replicas."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = sorted(
            {tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus}
        )
        text = f"GPU: {', '.join(names)} x{len(gpus)}"
    else:
        text = "CPU"
    if replicas > 1:
        text += f" ({strategy}, {replicas} replicas)"
    return text
