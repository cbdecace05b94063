"""What a finished search leaves behind: a table, `best.json`, `results.csv` and a plot.

`best.json` is a RunConfig under a "config" key (so `RunConfig.from_json` and
`train.py --config` read it): the training run that was tuned, with the best trial's values
under their RunConfig names, beside a "tuning" record of where they came from. Its `epochs`
are the training run's, not the search's shorter trials' (`tuning.search_epochs`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write PNG files; never open a window
import matplotlib.pyplot as plt  # noqa: E402

from keras_cnns import files  # noqa: E402
from keras_cnns.tuning.hypermodel import OBJECTIVE  # noqa: E402
from keras_cnns.tuning.search import SearchResult, TrialRecord  # noqa: E402

BEST_FILE = "best.json"
CSV_FILE = "results.csv"
PLOT_FILE = "results.png"


def _columns(result: SearchResult) -> list[str]:
    return [*result.space.names, "epochs", OBJECTIVE, "val_loss", "seconds", "status"]


def _cell(trial: TrialRecord, column: str):
    if column in trial.values:
        value = trial.values[column]
        return f"{value:g}" if isinstance(value, float) else value
    if column == "status":
        return trial.status
    if column == "epochs":
        return int(trial.metrics["epochs"]) if "epochs" in trial.metrics else trial.config.epochs
    return trial.metrics.get(column)


def _text(value, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value)


def format_table(result: SearchResult) -> str:
    """The trials as a fixed-width table, best marked with '*'."""
    headers = ["trial", *_columns(result)]
    headers = [{"seconds": "time (s)"}.get(h, h) for h in headers]
    rows = []
    for trial in result.trials:
        mark = "*" if result.best is not None and trial.trial_id == result.best.trial_id else " "
        rows.append([trial.trial_id + mark,
                     *(_text(_cell(trial, c), c) for c in _columns(result))])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def summary(result: SearchResult) -> str:
    done = sum(t.status == "COMPLETED" for t in result.trials)
    if result.best is None:
        return f"{done} of {len(result.trials)} trials completed; none has a result."
    best = result.best
    return (
        f"best: trial {best.trial_id}, {OBJECTIVE} {best.score:.4f} "
        f"({', '.join(f'{k}={v}' for k, v in best.values.items())}); "
        f"{done} of {len(result.trials)} trials completed"
    )


def write_best(result: SearchResult, path: str | Path | None = None) -> Path:
    """Write best.json: the best trial's RunConfig and the search it came from."""
    if result.best is None:
        raise ValueError("The search has no completed trial to write.")
    path = Path(path or result.directory / BEST_FILE)
    best = result.best
    payload = {
        "config": result.best_config().to_dict(),
        "tuning": {
            "trial": best.trial_id,
            "hyperparameters": best.values,
            OBJECTIVE: best.score,
            "metrics": best.metrics,
            "search_epochs": result.base.epochs,
            "tuner": result.tuner,
            "space": result.space.to_dict(),
            "space_file": result.space.path,
            "trials": len(result.trials),
            "completed": sum(t.status == "COMPLETED" for t in result.trials),
            "directory": str(result.directory),
            "retrain": f"python scripts/train.py --config {path}",
        },
    }
    files.write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def write_csv(result: SearchResult, path: str | Path | None = None) -> Path:
    path = Path(path or result.directory / CSV_FILE)
    columns = _columns(result)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["trial", *columns])
    for trial in result.trials:
        writer.writerow([trial.trial_id, *(_cell(trial, c) for c in columns)])
    files.write_text(path, table.getvalue())
    return path


def plot_results(result: SearchResult, path: str | Path | None = None) -> Path:
    """Validation accuracy against dropout (one colour per width) and against width."""
    path = Path(path or result.directory / PLOT_FILE)
    done = [t for t in result.trials if t.score is not None]
    widths = sorted({t.config.width for t in done})
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = plt.get_cmap("viridis")
    for index, width in enumerate(widths):
        group = [t for t in done if t.config.width == width]
        colour = colours(index / max(1, len(widths) - 1))
        left.scatter([t.config.dropout for t in group], [t.score for t in group],
                     color=colour, label=f"width {width:g}", s=36)
        right.scatter([width] * len(group), [t.score for t in group], color=colour, s=36)
    if result.best is not None:
        best = result.best
        left.scatter([best.config.dropout], [best.score], s=160, facecolors="none",
                     edgecolors="red", label=f"best (trial {best.trial_id})")
        right.scatter([best.config.width], [best.score], s=160, facecolors="none",
                      edgecolors="red")
    left.set_xlabel("dropout")
    left.set_ylabel(f"validation accuracy ({OBJECTIVE})")
    right.set_xlabel("width multiplier")
    right.set_xticks(widths or [1.0])
    for axis in (left, right):
        axis.grid(alpha=0.3)
    if done:
        left.legend(fontsize="small")
    config = result.base
    budget = f"up to {config.epochs}" if result.tuner == "hyperband" else str(config.epochs)
    figure.suptitle(f"{config.model} on {config.dataset}: {result.tuner} search, "
                    f"{len(done)} trials, {budget} epochs each")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_reports(result: SearchResult) -> dict[str, Path]:
    """Every file a finished search writes next to its trials."""
    files = {"csv": write_csv(result), "plot": plot_results(result)}
    if result.best is not None:
        files["best"] = write_best(result)
    return files
