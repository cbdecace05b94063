"""What `keras-cnns probe` will run: a preset's models and variant cells, resolved to configs.

A preset (`keras_cnns/measure/probe_presets/<name>.json`: data, like the ablation's grids, so
that no code here names a model) lists the models with their seed counts, the shortened schedule
every run shares, the variant axes, and how many images the probes train and test on. Each
model gets its recipe cell (its registry recipe on the data set, on the preset's schedule) and,
for every variant axis that is a RunConfig field (`augment`) or one of the model's options
(`activation`), one cell per listed value other than the recipe's: one change at a time.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

from keras_cnns.config import ConfigError, RunConfig, read_json_file
from keras_cnns.models import get_model_entry

PRESET_DIR = Path(str(resources.files("keras_cnns.measure") / "probe_presets"))
PRESETS = ("default", "quick")
RECIPE = "recipe"
_PRESET_KEYS = ("description", "models", "schedule", "variants", "probe_images")
# Besides its seeds and schedule, a model may pin recipe fields: the recipe the stored study
# measured, where the data set's recipe has moved since (AlexNet's on Fashion-MNIST).
_MODEL_KEYS = ("seeds", "epochs", "train_fraction", "image_size", "augment", "mixed_precision")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One model's recipe, or the recipe with one change; a resolved config per seed."""

    model: str
    label: str  # RECIPE, or "axis=value"
    configs: tuple[RunConfig, ...]

    @property
    def is_recipe(self) -> bool:
        return self.label == RECIPE


@dataclasses.dataclass(frozen=True)
class Plan:
    preset: str
    description: str
    dataset: str
    data_dir: str | None
    output: Path
    cells: tuple[Cell, ...]
    probe_train: int
    probe_test: int

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(cell.model for cell in self.cells))

    def record(self) -> dict:
        return {
            "preset": self.preset,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "models": self.models,
            "cells": {f"{cell.model} {cell.label}": [c.identity() for c in cell.configs]
                      for cell in self.cells},
            "probe_images": {"train": self.probe_train, "test": self.probe_test},
        }


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; the presets are: {', '.join(PRESETS)}.")
    return PRESET_DIR / f"{name}.json"


def load_plan(
    preset: str,
    *,
    dataset: str,
    data_dir: str | None,
    output: Path,
    models: list[str] | None = None,
    seeds: int | None = None,
    epochs: int | None = None,
    train_fraction: float | None = None,
) -> Plan:
    """The preset's cells on `dataset`, with the command line's choices applied.

    `models` replaces the preset's list (a model the preset does not list gets 2 seeds and
    the shared schedule); `seeds`, `epochs` and `train_fraction` replace every model's. Raises
    a one-sentence ConfigError for an unknown model or a value a run would refuse.
    """
    raw = read_json_file(preset_path(preset), "Preset file")
    unknown = sorted(set(raw) - set(_PRESET_KEYS))
    if unknown:
        raise ConfigError(f"Preset {preset} has an unknown key {unknown[0]!r}.")
    listed: dict[str, dict] = raw["models"]
    chosen = models or list(listed)
    schedule = dict(raw.get("schedule", {}))
    cells: list[Cell] = []
    for model in chosen:
        settings = {"seeds": 2, **schedule, **listed.get(model, {})}
        stray = sorted(set(settings) - set(_MODEL_KEYS))
        if stray:
            raise ConfigError(f"Preset {preset}, model {model}: unknown key {stray[0]!r}.")
        if seeds is not None:
            settings["seeds"] = seeds
        if epochs is not None:
            settings["epochs"] = epochs
        if train_fraction is not None:
            settings["train_fraction"] = train_fraction
        cells.extend(_model_cells(model, settings, raw.get("variants", {}), dataset, data_dir,
                                  output / "runs"))
    probe = raw["probe_images"]
    return Plan(preset, raw.get("description", ""), dataset, data_dir, output, tuple(cells),
                int(probe["train"]), int(probe["test"]))


def _model_cells(model, settings, variants, dataset, data_dir, runs_dir) -> list[Cell]:
    count = settings.pop("seeds")
    try:
        base = RunConfig(model=model, dataset=dataset, data_dir=data_dir, run_dir=str(runs_dir),
                         **settings).resolve()
    except (TypeError, ValueError) as error:  # ConfigError is a ValueError
        raise ConfigError(str(error)) from None
    entry = get_model_entry(model)
    changes: list[tuple[str, dict]] = [(RECIPE, {})]
    fields = {field.name for field in dataclasses.fields(RunConfig)}
    for axis, values in variants.items():
        if axis in fields:
            current = getattr(base, axis)
            changes += [(f"{axis}={value}", {axis: value}) for value in values
                        if value != current]
        elif axis in entry.options:
            current = {**entry.options, **base.model_kwargs}[axis]
            changes += [(f"{axis}={value}",
                         {"model_kwargs": {**base.model_kwargs, axis: value}})
                        for value in values if value != current]
    return [Cell(model, label, tuple(dataclasses.replace(base, seed=base.seed + index, **change)
                                     for index in range(count)))
            for label, change in changes]
