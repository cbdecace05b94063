"""Ablation grids as data: one JSON file per grid, read, checked and expanded into run configs.

A grid file (the built-in ones are in `keras_cnns/ablation/grids/`):

    {
      "name": "default",
      "description": "one line on what the grid measures",
      "seeds": 3,                     # most seeds per cell (default 3)
      "seed_budget_minutes": 10,      # extra seeds only for cells whose first run took less
      "defaults": {"epochs": 8},      # RunConfig fields for every cell
      "cells": [
        {"name": "lenet-classic", "note": "LeNet-5 as published", "model": "lenet",
         "model_kwargs": {"activation": "sigmoid", "pooling": "avg"}, "augment": "none"},
        {"name": "alexnet-5pct", "data_scale_of": "alexnet", "model": "alexnet",
         "train_fraction": 0.05, "epochs": 32}
      ]
    }

A cell is a name plus RunConfig overrides; `note` says what it tests, `seeds` overrides the
grid's, and `data_scale_of` names the full-data cell it is a smaller-data copy of. A grid may
also declare what its report judges, instead of the seed's claims:

        {"name": "alexnet-ema", "model": "alexnet", "ema_decay": 0.999,
         "compare_to": "alexnet"},            # or a list: each baseline gets a verdict
        {"name": "lenet", "model": "lenet", "seeds": 5,
         "goal": {"test_accuracy": 0.97, "over_seeds": "min", "max_epochs": 40}}

`compare_to` names the cells this one is measured against (helps, hurts or within the seeds'
noise); `goal` is a test accuracy the cell's seeds must reach together (`over_seeds`: min,
median or mean; `max_epochs`: the longest training the goal allows). Anything that cannot run
(an unknown key, a bad value) is a `ConfigError` of one sentence naming the file and the cell,
raised before anything is trained or written.
"""

from __future__ import annotations

import dataclasses
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from keras_cnns.config import ConfigError, RunConfig, read_json_file
from keras_cnns.data.augment import list_augment_policies

# The built-in grids ship inside the package (package data in pyproject.toml), so an installed
# copy finds them; keras_cnns.ablation is a regular package on disk, so this is a real path.
GRID_DIR = Path(str(resources.files("keras_cnns.ablation") / "grids"))
PRESETS = ("default", "quick", "decade", "recipes-digits", "recipes-fashion",
           "alexnet-digits-tries", "alexnet-fashion-tries")

_GRID_KEYS = ("name", "description", "seeds", "seed_budget_minutes", "defaults", "cells")
_CELL_KEYS = ("name", "note", "seeds", "data_scale_of", "compare_to", "goal")
_GOAL_KEYS = ("test_accuracy", "over_seeds", "max_epochs")
GOAL_STATISTICS = ("min", "median", "mean")
# Where runs live is the ablation's business: a cell that set these would escape its directory.
_PLACEMENT = ("run_dir", "resume", "output")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(RunConfig))


@dataclasses.dataclass(frozen=True)
class Goal:
    """A test accuracy that a cell's seeds must reach together: their `over_seeds` statistic
    (min: every seed) at least `test_accuracy`, trained for at most `max_epochs` (if given)."""

    test_accuracy: float
    over_seeds: str = "median"
    max_epochs: int | None = None


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row of the ablation table: a name, what it tests, and its first seed's config."""

    name: str
    note: str
    config: RunConfig  # resolved; `seed` is the cell's first seed
    seeds: int
    data_scale_of: str | None = None
    compare_to: tuple[str, ...] = ()  # the cells it is judged against, in the report
    goal: Goal | None = None

    def seed_config(self, index: int, run_dir: str) -> RunConfig:
        """The config of this cell's `index`-th seed, its runs kept under `run_dir`."""
        return dataclasses.replace(self.config, seed=self.config.seed + index, run_dir=run_dir)


@dataclasses.dataclass(frozen=True)
class Grid:
    name: str
    description: str
    cells: tuple[Cell, ...]
    seed_budget_minutes: float
    # Whether the grid file declares comparisons or goals (its report gives their verdicts, not
    # the seed's claims), kept when --cells selects cells that declare none.
    declares_verdicts: bool = False

    def cell(self, name: str) -> Cell | None:
        return next((cell for cell in self.cells if cell.name == name), None)

    @property
    def datasets(self) -> list[str]:
        return sorted({cell.config.dataset for cell in self.cells})


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; the presets are: {', '.join(PRESETS)}.")
    return GRID_DIR / f"{name}.json"


def load_grid(
    path: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    seeds: int | None = None,
    seed_budget_minutes: float | None = None,
    cells: list[str] | None = None,
) -> Grid:
    """Read and check the grid in `path`, with command-line choices applied to every cell.

    `overrides` are RunConfig fields that replace every cell's (an `epochs` override also
    scales each cell's warmup in proportion, so a short run keeps its schedule's shape);
    `seeds` replaces every cell's seed count; `cells` keeps only the cells named, in grid order.
    """
    where = f"Grid file {path}"
    raw = read_json_file(path, "Grid file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} does not hold a JSON object.")
    _no_unknown(raw, _GRID_KEYS, where)
    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name must be lower-case letters, digits, '.', '_' or '-'.")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string, got {description!r}.")
    grid_seeds = _positive_int(raw.get("seeds", 3), "seeds", where)
    budget = raw.get("seed_budget_minutes", 10)
    if seed_budget_minutes is not None:
        budget = seed_budget_minutes
    if not _is_number(budget) or budget < 0:
        raise ConfigError(
            f"{where}: seed_budget_minutes must be a finite number >= 0, got {budget!r}.")
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: defaults must be an object of RunConfig fields.")
    _check_fields(defaults, f"{where}, defaults")
    entries = raw.get("cells")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where} needs a non-empty list of cells.")

    built: list[Cell] = []
    for position, entry in enumerate(entries, 1):
        built.append(_build_cell(entry, position, defaults, overrides or {}, grid_seeds, where))
    names = [cell.name for cell in built]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"{where}: the cell name {duplicate!r} appears twice.")
    for cell in built:
        if cell.data_scale_of is not None:
            _check_data_scale(cell, dict(zip(names, built, strict=True)), where)
        for baseline in cell.compare_to:
            if baseline not in names or baseline == cell.name:
                raise ConfigError(f"{where}, cell {cell.name!r}: compare_to must name other "
                                  f"cells of this grid, got {baseline!r}.")
    declares_verdicts = any(cell.compare_to or cell.goal for cell in built)
    if seeds is not None:
        _positive_int(seeds, "--seeds", "The command line")
        built = [dataclasses.replace(cell, seeds=seeds) for cell in built]
    if cells:
        unknown = [n for n in cells if n not in names]
        if unknown:
            raise ConfigError(
                f"{where} has no cell {unknown[0]!r}; its cells are: {', '.join(names)}."
            )
        built = [cell for cell in built if cell.name in cells]
    return Grid(name, _with_overrides(description, overrides or {}), tuple(built),
                float(budget), declares_verdicts)


def _with_overrides(description: str, overrides: dict[str, Any]) -> str:
    """The grid's description plus what the command changed in every cell: a description that
    says "2 epochs each" must not head a table of 10-epoch runs unremarked. The data set is
    named in the report's title, so it is not repeated."""
    changed = [f"{key}={value}" for key, value in overrides.items()
               if key not in ("dataset", "data_dir")]
    if not changed:
        return description
    note = f"This command set, in every cell: {', '.join(changed)}."
    return f"{description} {note}" if description else note


def _build_cell(entry, position, defaults, overrides, grid_seeds, where) -> Cell:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: cell {position} is not an object.")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}: cell {position} needs a name of lower-case letters, digits, '.', '_' "
            f"or '-', got {name!r}."
        )
    where = f"{where}, cell {name!r}"
    fields = {key: value for key, value in entry.items() if key not in _CELL_KEYS}
    _check_fields(fields, where)
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ConfigError(f"{where}: note must be a string.")
    seeds = _positive_int(entry.get("seeds", grid_seeds), "seeds", where)
    scale_of = entry.get("data_scale_of")
    if scale_of is not None and not isinstance(scale_of, str):
        raise ConfigError(f"{where}: data_scale_of must be a cell name.")
    try:
        values = {**defaults, **fields}
        config = RunConfig.from_dict(values).resolve()
        if "epochs" in overrides and config.warmup_epochs:
            # Keep the warmup's share of the schedule: 2 of 20 epochs becomes 0.2 of 2.
            scaled = config.warmup_epochs * overrides["epochs"] / config.epochs
            values["warmup_epochs"] = round(scaled, 4)
        config = RunConfig.from_dict({**values, **overrides}).resolve()
    except (ConfigError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    if config.augment not in list_augment_policies():
        raise ConfigError(
            f"{where}: augment must be one of {', '.join(list_augment_policies())}, "
            f"got {config.augment!r}."
        )
    return Cell(name, note, config, seeds, scale_of, _compare_to(entry, where),
                _goal(entry.get("goal"), where))


def _compare_to(entry: dict, where: str) -> tuple[str, ...]:
    baselines = entry.get("compare_to", [])
    if isinstance(baselines, str):
        baselines = [baselines]
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        raise ConfigError(f"{where}: compare_to must be a cell name or a list of them, "
                          f"got {baselines!r}.")
    return tuple(baselines)


def _goal(goal, where: str) -> Goal | None:
    if goal is None:
        return None
    where = f"{where}, goal"
    if not isinstance(goal, dict):
        raise ConfigError(f"{where} must be an object such as {{\"test_accuracy\": 0.97}}, "
                          f"got {goal!r}.")
    _no_unknown(goal, _GOAL_KEYS, where)
    accuracy = goal.get("test_accuracy")
    if not _is_number(accuracy) or not 0 < accuracy <= 1:
        raise ConfigError(f"{where}: test_accuracy must be a number in (0, 1], got {accuracy!r}.")
    statistic = goal.get("over_seeds", "median")
    if statistic not in GOAL_STATISTICS:
        raise ConfigError(f"{where}: over_seeds must be one of {', '.join(GOAL_STATISTICS)}, "
                          f"got {statistic!r}.")
    max_epochs = goal.get("max_epochs")
    if max_epochs is not None:
        _positive_int(max_epochs, "max_epochs", where)
    return Goal(float(accuracy), statistic, max_epochs)


def _check_data_scale(cell: Cell, cells: dict[str, Cell], where: str) -> None:
    """The report reads a data-scale cell as a smaller-data copy of its base, which it plots at
    the whole split: so the base must be another cell, on the whole split, and this one on less."""
    where, base = f"{where}, cell {cell.name!r}", cells.get(cell.data_scale_of)
    if base is None:
        raise ConfigError(f"{where}: data_scale_of names {cell.data_scale_of!r}, which is not a "
                          "cell of this grid.")
    if base.data_scale_of is not None or base.config.train_fraction != 1.0:
        raise ConfigError(f"{where}: data_scale_of must name another cell that trains on the "
                          f"whole split, got {cell.data_scale_of!r}.")
    if cell.config.train_fraction == 1.0:
        raise ConfigError(f"{where}: a data_scale_of cell needs a train_fraction below 1.")


def _check_fields(fields: dict, where: str) -> None:
    unknown = sorted(set(fields) - set(_CONFIG_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where}: {unknown[0]!r} is not a RunConfig field (train.py --help lists them; "
            "model options such as activation go in model_kwargs)."
        )
    placed = sorted(set(fields) & set(_PLACEMENT))
    if placed:
        raise ConfigError(f"{where}: {placed[0]} is chosen by ablate.py (use --output).")


def _no_unknown(values: dict, known, where: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{where} has an unknown key {unknown[0]!r}; the keys are: {', '.join(known)}."
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {name} must be a whole number >= 1, got {value!r}.")
    return value
