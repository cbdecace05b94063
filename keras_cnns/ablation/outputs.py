"""The results directory's files: results.csv, results.json, report.md and ablation.png.

Each is rewritten after every run (a killed grid leaves them up to date) through the durable
write (`keras_cnns.files`), so a kill never leaves half a file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from keras_cnns import files
from keras_cnns.ablation import verdicts
from keras_cnns.ablation.figure import plot_ablation
from keras_cnns.ablation.grid import Grid
from keras_cnns.ablation.report import render_report
from keras_cnns.ablation.results import CellSummary, RunRow, summarize

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
REPORT = "report.md"
PLOT = "ablation.png"


def write_outputs(results_dir: Path, grid: Grid, rows: dict[str, list[RunRow]]) -> None:
    ordered = [row for cell in grid.cells for row in rows.get(cell.name, [])]
    summaries = [summarize(cell, rows.get(cell.name, [])) for cell in grid.cells]
    finished = [row for row in ordered if row.status == "finished"]
    devices = sorted({row.device for row in finished if row.device})
    machines = sorted({row.machine for row in finished if row.machine})

    flat = [row.flat() for row in ordered]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else ["cell"])
    writer.writeheader()
    writer.writerows(flat)
    files.write_text(results_dir / RESULTS_CSV, buffer.getvalue())
    payload = {
        "grid": grid.name,
        "description": grid.description,
        "datasets": grid.datasets,
        "seed_budget_minutes": grid.seed_budget_minutes,
        "devices": devices,
        "machines": machines,
        "cells": [_summary_json(summary) for summary in summaries],
        "comparisons": [dataclasses.asdict(c) for c in verdicts.comparisons(summaries)],
        "goals": [dataclasses.asdict(check) for check in verdicts.goal_checks(summaries)],
        "runs": [row.to_json() for row in ordered],
    }
    files.write_text(results_dir / RESULTS_JSON, json.dumps(payload, indent=2) + "\n")
    report = render_report(
        grid.name, grid.description, grid.datasets, summaries, devices, machines,
        grid.seed_budget_minutes, grid.declares_verdicts,
    )
    files.write_text(results_dir / REPORT, report)
    with files.replacing(results_dir / PLOT) as temporary:
        plot_ablation(summaries, temporary,
                      f"ablation '{grid.name}' on {', '.join(grid.datasets)}",
                      grid.declares_verdicts)


def _summary_json(summary: CellSummary) -> dict:
    def pair(value):
        return None if value is None else {"mean": value[0], "std": value[1]}

    return {
        "cell": summary.name,
        "note": summary.note,
        "model": summary.model,
        "train_fraction": summary.train_fraction,
        "data_scale_of": summary.data_scale_of,
        "seeds_planned": summary.planned_seeds,
        "runs": summary.runs,
        "failed": summary.failed,
        "test_accuracy": pair(summary.test_accuracy),
        "test_accuracy_per_seed": summary.test_accuracies,
        "compare_to": list(summary.compare_to),
        "goal": dataclasses.asdict(summary.goal) if summary.goal else None,
        "train_test_gap": pair(summary.gap),
        "epochs_to_95pct_best_val": summary.epochs_to_best_share,
        "best_val_accuracy": summary.best_val_accuracy,
        "train_images_per_s": summary.images_per_second,
        "wall_seconds": summary.wall_seconds,
        "train_images": summary.train_images,
        "epochs": summary.epochs,
        "params": summary.params,
    }
