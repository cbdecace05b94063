"""Run an ablation grid through the project's trainer, skipping what is already finished.

    grid = load_grid(preset_path("quick"))
    rows = run_grid(grid, Path("runs/ablation-digits-20250101-000000"))

Each (cell, seed) is one `keras_cnns.training.train(config)` call, its run directory under
`<results>/runs/`. A run whose config identity already has a finished run directory there is
read back, not trained; an unfinished one is continued by the trainer's own resume; a failed
one is recorded in `failures.json` and reported, and the grid goes on. Seeds beyond the first
are run only for cells whose first run took less than the grid's seed budget, after every
cell's first run, so a partial grid already has every row of the table; a further seed that
has already finished is read back whatever the budget.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from keras_cnns.ablation.grid import Cell, Grid
from keras_cnns.ablation.results import (
    METRICS_SCHEMA,
    SIDECAR,
    STORED_RUN_SCHEMA,
    STRING,
    RunRow,
    describe_device,
    fill_from_run_dir,
    fill_from_stored,
    read_checked,
)
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.machine import describe_machine
from keras_cnns.serving.verify_export import OBJECT, TEXT, EachEntry, EachItem, check_schema
from keras_cnns.training import run_dir as run_dirs

FAILURES_FILE = "failures.json"
GRID_FILE = "grid.json"
# What is read back of failures.json (config identity -> the failure) and of grid.json.
FAILURES_SCHEMA = EachEntry(TEXT, {"error": STRING})
GRID_RECORD_SCHEMA = {"name": TEXT, "datasets": EachItem(TEXT)}


def default_output(
    grid: Grid, root: str | Path = "runs", *, fresh: bool = False
) -> tuple[Path, bool]:
    """`(directory, continuing)`: the newest results directory of this grid and data set under
    `root`, so that re-running a command continues it, or (none, or `fresh`) a new
    `ablation-<data>-<stamp>`."""
    slug = grid.datasets[0] if len(grid.datasets) == 1 else "mixed"
    slug = "".join(c if c.isalnum() or c in "_-" else "_" for c in slug)
    key = _grid_key(grid)
    candidates = []
    for marker in [] if fresh else Path(root).glob(f"ablation-{slug}-*/{GRID_FILE}"):
        try:
            if _grid_key_of(read_checked(marker, GRID_RECORD_SCHEMA)) == key:
                candidates.append(marker.parent)
        except ConfigError:  # not a results directory this version wrote: leave it alone
            continue
    if candidates:
        return max(candidates, key=lambda path: path.name), True
    fresh_dir = Path(root) / f"ablation-{slug}-{run_dirs.utc_stamp()}"
    suffix = 1
    while fresh_dir.exists():  # two grids started in the same second
        fresh_dir = fresh_dir.with_name(f"{fresh_dir.name.rsplit('+', 1)[0]}+{suffix}")
        suffix += 1
    return fresh_dir, False


def _grid_key(grid: Grid) -> list:
    return [grid.name, grid.datasets]


def _grid_key_of(saved: dict) -> list:
    return [saved["name"], saved["datasets"]]


@dataclasses.dataclass
class _Sources:
    """Each data set of the grid, loaded once: sizes, parameter counts and train accuracy."""

    loaded: dict = dataclasses.field(default_factory=dict)

    def get(self, config):
        from keras_cnns import data as data_lib

        key = (config.dataset, config.data_dir)
        if key not in self.loaded:
            self.loaded[key] = data_lib.load_source(config.dataset, config.data_dir)
        return self.loaded[key]


def plan_rows(grid: Grid, results_dir: Path, sources: _Sources) -> dict[str, list[RunRow]]:
    """Every cell's rows (one per seed it may run), with image and parameter counts.

    Builds each cell's model once to count its parameters, which also checks the model
    options (a bad `activation`) before anything is trained; raises `ConfigError`.
    """
    import keras

    from keras_cnns.data.subset import subset_size
    from keras_cnns.training.factories import make_model

    runs_root = str(results_dir / "runs")
    rows: dict[str, list[RunRow]] = {}
    for cell in grid.cells:
        config = cell.config
        source = sources.get(config)
        info = source.info
        train_images = subset_size(source.arrays("train")[1], config.train_fraction)
        try:
            model = make_model(config, info)
        except ValueError as error:
            raise ConfigError(f"Cell {cell.name!r}: {error}") from None
        params = int(model.count_params())
        keras.backend.clear_session()
        rows[cell.name] = [
            RunRow(cell.name, config.seed + index, cell.seed_config(index, runs_root),
                   train_images, params, info.num_classes)
            for index in range(cell.seeds)
        ]
    return rows


def finished_runs(results_dir: Path) -> dict[str, Path]:
    """Config identity -> the newest finished run directory under `<results>/runs/`."""
    found: dict[str, Path] = {}
    for marker in sorted((results_dir / "runs").glob(f"*/{run_dirs.IDENTITY_FILE}")):
        if run_dirs.is_finished(marker.parent):
            found[marker.read_text().strip()] = marker.parent
    return found


def stored_runs(path: Path) -> dict[str, dict]:
    """Config identity -> each finished run of another results.json (another machine's, or
    one stored in docs/), so that a grid can be finished across machines and checkouts."""
    runs = read_checked(path, {"runs": EachItem(OBJECT)})["runs"]
    found = {}
    for index, run in enumerate(runs):
        if run.get("status") == "finished":
            where = f"{path}'s runs[{index}]"
            check_schema(run, STORED_RUN_SCHEMA, where, ConfigError)
            try:
                found[RunConfig.from_dict(run["config"]).identity()] = run
            except (ConfigError, TypeError) as error:
                raise ConfigError(f"{where}.config: {error}") from None
    return found


def read_failures(results_dir: Path) -> dict[str, dict]:
    path = results_dir / FAILURES_FILE
    return read_checked(path, FAILURES_SCHEMA) if path.exists() else {}


def seeds_allowed(cell: Cell, first: RunRow, budget_minutes: float) -> int:
    """How many seeds `cell` runs: all of them when its first run finished within the budget
    (0 = no budget), else only the first."""
    if first.status != "finished":
        return 1
    if budget_minutes and (first.wall_seconds or 0.0) >= budget_minutes * 60:
        return 1
    return cell.seeds


def rows_to_visit(cell: Cell, rows: list[RunRow], budget_minutes: float) -> list[RunRow]:
    """`cell`'s rows the grid visits: the seeds it may run, and any further seed that has
    already finished (trained under another budget, or on another machine), which is read
    back rather than dropped."""
    allowed = seeds_allowed(cell, rows[0], budget_minutes)
    return rows[:allowed] + [row for row in rows[allowed:] if row.status == "finished"]


def run_grid(
    grid: Grid,
    results_dir: Path,
    *,
    verbose: int | str = 0,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    on_progress: Callable[[dict[str, list[RunRow]]], None] | None = None,
    stored: dict[str, dict] | None = None,
) -> dict[str, list[RunRow]]:
    """Run (or read back) every row of `grid` into `results_dir`; returns the rows per cell.
    A row that has no finished run there but is in `stored` (`stored_runs`) is read from it.

    `on_progress(rows)` is called after every row, to rewrite the results files as the grid
    goes (a killed grid leaves an up-to-date report).
    """
    sources = _Sources()
    rows = plan_rows(grid, results_dir, sources)  # may raise: nothing is written before this
    results_dir.mkdir(parents=True, exist_ok=True)
    grid_file = results_dir / GRID_FILE
    if not grid_file.exists():
        run_dirs.write_json(grid_file, {
            "name": grid.name,
            "datasets": grid.datasets,
            "description": grid.description,
            "cells": {cell.name: cell.config.to_dict() for cell in grid.cells},
        })
    done = finished_runs(results_dir)
    failures = read_failures(results_dir)
    if retry_failed:
        failures = {}
    clock = _Clock(grid, rows, log)
    # Read every finished run first, so that the time left counts only what is left to train.
    for row in (row for cell_rows in rows.values() for row in cell_rows):
        identity = row.config.identity()
        if identity in done:
            if not (done[identity] / SIDECAR).exists():  # killed between the two writes
                _write_sidecar_afresh(row, done[identity], sources.get(row.config))
            fill_from_run_dir(row, done[identity], results_dir)
        elif identity in (stored or {}):
            fill_from_stored(row, stored[identity])

    def visit(row: RunRow) -> None:
        identity = row.config.identity()
        if row.status == "finished":
            clock.report(row, earlier=True)
        elif identity in failures:
            row.status, row.error = "failed", failures[identity]["error"]
            clock.report(row, earlier=True)
        else:
            _train_row(row, identity, sources.get(row.config), results_dir, verbose, failures)
            clock.report(row, earlier=False)
        if on_progress:
            on_progress(rows)

    for cell in grid.cells:  # every cell's first seed, then the extra seeds
        visit(rows[cell.name][0])
    for cell in grid.cells:
        rows[cell.name] = rows_to_visit(cell, rows[cell.name], grid.seed_budget_minutes)
        for row in rows[cell.name][1:]:
            visit(row)
    if on_progress:
        on_progress(rows)
    return rows


def _train_row(row: RunRow, identity: str, source, results_dir: Path, verbose,
               failures: dict) -> None:
    import keras

    from keras_cnns.training import train

    start = time.perf_counter()
    try:
        result = train(row.config, verbose=verbose, export=False)
        train_accuracy = measure_train_accuracy(result.model, row.config, source)
    except Exception as error:  # one failed cell must not end the grid
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        failures[identity] = {
            "cell": row.cell,
            "seed": row.seed,
            "error": message,
            "traceback": traceback.format_exc(),
        }
        run_dirs.write_json(results_dir / FAILURES_FILE, failures)
        row.status, row.error = "failed", message
        keras.backend.clear_session()
        return
    sidecar = {
        "train_accuracy": train_accuracy,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "device": describe_device(result.metrics["strategy"], result.metrics["replicas"]),
        "machine": describe_machine(),
    }
    run_dirs.write_json(result.run_dir / SIDECAR, sidecar)
    fill_from_run_dir(row, result.run_dir, results_dir)
    keras.backend.clear_session()


def _write_sidecar_afresh(row: RunRow, run_dir: Path, source) -> None:
    """The sidecar of a run that finished without one: its train accuracy from the best
    checkpoint (the weights the test accuracy was scored with), its time from metrics.json."""
    import keras

    from keras_cnns.training.factories import best_model

    config = row.config
    model = best_model(run_dir, config, source.info)
    metrics = read_checked(run_dir / run_dirs.DONE_FILE, METRICS_SCHEMA)
    sidecar = {
        "train_accuracy": measure_train_accuracy(model, config, source),
        "wall_seconds": metrics.get("train_seconds"),
        "device": describe_device(metrics.get("strategy", ""), metrics.get("replicas", 1)),
        "machine": describe_machine(),
    }
    run_dirs.write_json(run_dir / SIDECAR, sidecar)
    keras.backend.clear_session()


def measure_train_accuracy(model, config, source) -> float:
    """Accuracy of `model` on the images it trained on, in inference mode, unaugmented.

    fit's own train accuracy is measured with dropout and augmentation on, which would make
    dropout look like it closes the train-test gap by itself.
    """
    from keras_cnns import data as data_lib
    from keras_cnns.training.evaluation import evaluate

    subset = data_lib.subset_training_split(source, config.train_fraction, config.seed)
    dataset = data_lib.build_pipeline(
        subset, "train", image_size=config.image_size, batch_size=config.batch_size,
        augment="none", shuffle=False, cache=False, one_hot=subset.info.num_classes,
    )
    return round(evaluate(model, dataset, subset.info.class_names, config)["test_accuracy"], 6)


class _Clock:
    """One progress line per row, with the time left estimated from finished runs."""

    def __init__(self, grid: Grid, rows: dict[str, list[RunRow]], log):
        self.grid, self.rows, self.log = grid, rows, log
        self.count = 0

    def report(self, row: RunRow, *, earlier: bool) -> None:
        self.count += 1
        total = len(self._planned())
        if row.status == "finished":
            result = (
                f"test {row.test_accuracy:.4f}, gap {_points(row.gap)}, "
                f"95% of best val at epoch {row.epochs_to_best_share}, "
                f"{_duration(row.wall_seconds)}"
            )
        else:
            result = f"FAILED ({row.error})"
        outcome = "finished" if row.status == "finished" else "failed"
        when = f" ({outcome} earlier)" if earlier else ""
        self.log(
            f"[{self.count}/{total}] {row.cell} seed {row.seed}{when}: {result}; "
            f"{self._time_left()}"
        )

    def _planned(self) -> list[RunRow]:
        """Every row the grid will visit: first seeds, the extra seeds of the cells whose first
        run fit the budget, and of pending cells those that probably will."""
        planned = []
        for cell in self.grid.cells:
            first, *extra = self.rows[cell.name]
            planned.append(first)
            if first.status == "pending":
                guess = self._estimate(first)
                budget = self.grid.seed_budget_minutes * 60
                if guess is not None and (not budget or guess < budget):
                    planned.extend(extra)
            else:
                planned.extend(rows_to_visit(cell, self.rows[cell.name],
                                             self.grid.seed_budget_minutes)[1:])
        return planned

    def _remaining(self) -> list[RunRow]:
        return [row for row in self._planned() if row.status == "pending"]

    def _estimate(self, row: RunRow) -> float | None:
        """Seconds for `row`, from finished runs of the same model, input size and batch."""
        def key(r):
            return (r.config.model, r.config.image_size, r.config.batch_size)

        seconds = work = 0.0
        for cell_rows in self.rows.values():
            for other in cell_rows:
                if other.status == "finished" and other.wall_seconds and key(other) == key(row):
                    seconds += other.wall_seconds
                    work += other.train_images * other.config.epochs
        if not work:
            return None
        return seconds / work * row.train_images * row.config.epochs

    def _time_left(self) -> str:
        remaining = self._remaining()
        if not remaining:
            return "done"
        guesses = [self._estimate(row) for row in remaining]
        unknown = sorted(
            {row.config.model for row, g in zip(remaining, guesses, strict=True) if g is None}
        )
        if all(guess is None for guess in guesses):
            return f"time left unknown until a first {' and '.join(unknown)} run has finished"
        text = f"about {_duration(sum(g for g in guesses if g is not None))} left"
        if unknown:
            text += f" plus the {' and '.join(unknown)} runs (no timing yet)"
        return text


def _points(gap: float | None) -> str:
    return "n/a" if gap is None else f"{gap * 100:+.1f} pts"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.1f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"
