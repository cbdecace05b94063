"""The study behind `keras-cnns probe`: train, probe every layer, score the first layer's filters.

    plan = load_plan("default", dataset="fashion_mnist", data_dir=DIR,
                     output=Path("runs/probe-fashion_mnist"))
    results = run_study(plan)   # trains what is missing, measures, writes the results files

The plan (`probe_plan.load_plan`) names the cells: each model's recipe and one change at a
time, from a preset.

Every run goes through the project's trainer into `<output>/runs/`. A run whose config identity
has a finished run directory there is read back, an unfinished one is continued by the
trainer's own resume, as `keras_cnns.ablation.runs` does. Each measurement
is kept in `<output>/measurements.json` as soon as it is made and the results files are
rewritten after every step, so a killed study continues where it stopped and leaves an
up-to-date report behind.

The recipe cell's runs are probed layer by layer (`layer_probes`); so is the control, the same
architecture freshly initialised with each run's seed and never trained. Every cell's runs,
and the control, have their first-layer filters scored for edges.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import files
from keras_cnns.config import ConfigError, RunConfig, read_json_file
from keras_cnns.machine import describe_machine
from keras_cnns.measure.probe_plan import Plan
from keras_cnns.measure.probe_report import FIGURE_FILE, REPORT_FILE, RESULTS_FILE, write_report
from keras_cnns.training import run_dir as run_dirs

STUDY_FILE = "study.json"
MEASUREMENTS_FILE = "measurements.json"
# The images the probes read are the same for every run and model: drawn once with this seed.
PROBE_SEED = 0


# -- the probe's images ------------------------------------------------------------------------
class ProbeImages:
    """A fixed, stratified set of training and test images, preprocessed per input size."""

    def __init__(self, source, train: int, test: int):
        from keras_cnns.data.subset import subset_indices

        self.source = source
        self.splits = {}
        for split, count in (("train", train), ("test", test)):
            images, labels = source.arrays(split)
            kept = subset_indices(labels, min(1.0, count / len(labels)), PROBE_SEED)
            self.splits[split] = (images[kept], np.asarray(labels[kept], np.int64))
        self._inputs: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split][1]

    def count(self, split: str) -> int:
        return len(self.splits[split][1])

    def inputs(self, image_size: int, split: str) -> np.ndarray:
        """The split's images as the model sees them in training and at test time."""
        from keras_cnns.data import preprocess

        info = self.source.info
        key = (image_size, info.channels)
        if key not in self._inputs:
            self._inputs[key] = {
                name: np.asarray(preprocess(images, image_size=(image_size, image_size),
                                            mean=info.mean, std=info.std,
                                            channels=info.channels), np.float32)
                for name, (images, _) in self.splits.items()}
        return self._inputs[key][split]

    def pixels(self, split: str) -> np.ndarray:
        images = self.splits[split][0]
        return images.reshape(len(images), -1).astype(np.float32) / 255.0


# -- runs ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    model: str
    label: str
    config: RunConfig
    run_dir: Path | None = None
    test_accuracy: float | None = None
    train_seconds: float | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.run_dir is not None


def _read_run(run: Run, run_dir: Path) -> None:
    metrics = run_dirs.read_json(run_dir / run_dirs.DONE_FILE)
    run.run_dir = run_dir
    run.test_accuracy = float(metrics["test_accuracy"])
    run.train_seconds = metrics.get("train_seconds")


def _train(run: Run, verbose) -> None:
    import keras

    from keras_cnns.training import TrainingDivergedError, train

    try:
        result = train(run.config, verbose=verbose, export=False)
    except TrainingDivergedError as error:  # one diverged run must not end the study
        run.error = str(error)
        return
    finally:
        keras.backend.clear_session()
    _read_run(run, result.run_dir)


# -- measurements --------------------------------------------------------------------------------
class Measurements:
    """What has been measured, by key, kept in one JSON file rewritten after each entry."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, Any] = {}
        if path.exists():
            values = read_json_file(path, "Measurements file")
            if not isinstance(values, dict):
                raise ConfigError(f"Measurements file {path} does not hold a JSON object; "
                                  "pass --overwrite to start the study over.")
            self.values = values

    def get(self, key: str, measure: Callable[[], dict]) -> dict:
        """The measurement under `key`, made (and timed: its "seconds") if it is missing."""
        if key not in self.values:
            start = time.perf_counter()
            found = measure()
            self.values[key] = {**found, "seconds": round(time.perf_counter() - start, 2)}
            files.write_text(self.path, json.dumps(self.values, indent=1) + "\n")
        return self.values[key]

    def seconds(self) -> float:
        return sum(value.get("seconds", 0.0) for value in self.values.values())


def _untrained_model(config: RunConfig, info):
    import keras

    from keras_cnns.training.factories import make_model

    keras.utils.set_random_seed(config.seed)
    return make_model(config, info)


def _measure(model, images: ProbeImages | None, image_size: int) -> dict:
    """The first layer's edge scores and, given `images`, every probed layer's accuracy."""
    import keras

    from keras_cnns.measure import layer_probes

    kernel = keras.ops.convert_to_numpy(layer_probes.first_conv(model).kernel)
    found: dict[str, Any] = {"edges": layer_probes.orientation_selectivity(kernel).tolist()}
    if images is not None:
        layers = layer_probes.probed_layers(model)
        train = layer_probes.pooled_features(model, layers, images.inputs(image_size, "train"))
        test = layer_probes.pooled_features(model, layers, images.inputs(image_size, "test"))
        found["probes"] = {
            layer: round(layer_probes.probe_accuracy(train[layer], images.labels("train"),
                                                     test[layer], images.labels("test")), 6)
            for layer in layers}
    return found


def _architecture(config: RunConfig, info) -> dict:
    """The model's probed layers with their receptive fields, and its first layer's random bar."""
    import keras

    from keras_cnns.measure import layer_probes

    model = _untrained_model(config, info)
    fields = layer_probes.receptive_fields(model)
    layers = []
    for name in layer_probes.probed_layers(model):
        shape = [int(d) for d in model.get_layer(name).output.shape[1:]]
        field = fields[name]
        layers.append({"name": name, "kind": type(model.get_layer(name)).__name__,
                       "features": shape[-1], "map": shape[:-1] or None,
                       "receptive_field": field.size,
                       "jump": None if field.jump is None else round(field.jump, 4)})
    first = layer_probes.first_conv(model)
    random = layer_probes.random_filter_scores(first)
    described = {
        "params": int(model.count_params()),
        "input": [config.image_size, config.image_size, info.channels],
        "layers": layers,
        "first_layer": {"name": first.name, "kernel": [int(d) for d in first.kernel.shape]},
        "random_edge_95th": round(float(np.percentile(random, 95)), 6),
        "random_edge_median": round(float(np.median(random)), 6),
    }
    keras.backend.clear_session()
    return described


# -- the study -----------------------------------------------------------------------------------
def check_output(output: Path, *, overwrite: bool) -> bool:
    """Whether `output` holds an earlier study that this one continues (False with
    `overwrite`, which starts over). A non-empty folder that holds no study is refused
    (ConfigError) unless `overwrite` allows writing into it."""
    study = (output / STUDY_FILE).exists()
    if output.is_dir() and not study and any(output.iterdir()) and not overwrite:
        raise ConfigError(f"--output {output} is not empty and holds no probe study; choose "
                          "another folder or pass --overwrite to write into it.")
    return study and not overwrite


def _prepare_output(output: Path, *, overwrite: bool) -> None:
    """With `overwrite`, an earlier study's own files in `output` are deleted (nothing else)."""
    if overwrite and (output / STUDY_FILE).exists():
        shutil.rmtree(output / "runs", ignore_errors=True)
        for name in (MEASUREMENTS_FILE, RESULTS_FILE, REPORT_FILE, FIGURE_FILE, STUDY_FILE):
            (output / name).unlink(missing_ok=True)
    output.mkdir(parents=True, exist_ok=True)


def run_study(plan: Plan, *, overwrite: bool = False, verbose: int | str = 0,
              log: Callable[[str], None] = print) -> dict:
    """Train what is missing, measure what is not measured yet, write the results files after
    every step; returns the results (`probes.json`'s content). `overwrite` starts over (see
    `check_output`). Nothing is written before the data set has loaded."""
    from keras_cnns import data as data_lib

    check_output(plan.output, overwrite=overwrite)
    source = data_lib.load_source(plan.dataset, plan.data_dir)
    info = source.info
    images = ProbeImages(source, plan.probe_train, plan.probe_test)
    _prepare_output(plan.output, overwrite=overwrite)
    files.write_text(plan.output / STUDY_FILE, json.dumps(plan.record(), indent=2) + "\n")
    measurements = Measurements(plan.output / MEASUREMENTS_FILE)
    runs = {(cell.model, cell.label): [Run(cell.model, cell.label, config)
                                       for config in cell.configs] for cell in plan.cells}
    for cell_runs in runs.values():
        for run in cell_runs:
            done = run_dirs.find_finished(run.config, run.config.identity())
            if done is not None:
                _read_run(run, done)
    probe_key = f"{images.count('train')}x{images.count('test')}@{info.fingerprint}"
    architectures = {cell.model: measurements.get(
        f"architecture:{cell.configs[0].identity()}",
        lambda config=cell.configs[0]: _architecture(config, info))
        for cell in plan.cells if cell.is_recipe}
    measurements.get(f"pixels:{probe_key}", lambda: _pixel_probe(images))
    total = sum(len(cell.configs) for cell in plan.cells)
    step = 0

    def write() -> dict:
        results = collect(plan, runs, measurements, architectures, probe_key, source)
        write_report(results, plan.output)
        return results

    # Every recipe run (probed, with its control) before any variant, so a study stopped
    # early already answers the probe question for every model.
    ordered = sorted(plan.cells, key=lambda cell: not cell.is_recipe)
    for cell in ordered:
        for run in runs[(cell.model, cell.label)]:
            step += 1
            where = f"[{step}/{total}] {cell.model} {cell.label} seed {run.config.seed}"
            if not run.finished:
                _train(run, verbose)
                if run.error:
                    log(f"{where}: FAILED ({run.error})")
                    write()
                    continue
                log(f"{where}: trained in {run.train_seconds:.0f} s, test accuracy "
                    f"{run.test_accuracy:.4f}")
            config = run.config
            probed = images if cell.is_recipe else None
            key = f"trained:{config.identity()}" + (f":{probe_key}" if probed else "")
            found = measurements.get(key, lambda run=run, probed=probed: _measure_trained(
                run, probed, info))
            if cell.is_recipe:
                control = measurements.get(
                    f"control:{config.identity()}:{probe_key}",
                    lambda config=config: _measure_control(config, images, info))
                log(f"{where}: probes {_brief(found['probes'])}; untrained "
                    f"{_brief(control['probes'])}")
            else:
                log(f"{where}: mean edge score {np.mean(found['edges']):.3f}")
            write()
    return write()


def _measure_trained(run: Run, images, info) -> dict:
    import keras

    from keras_cnns.training.factories import best_model

    model = best_model(run.run_dir, run.config, info)
    found = _measure(model, images, run.config.image_size)
    keras.backend.clear_session()
    return found


def _measure_control(config: RunConfig, images: ProbeImages, info) -> dict:
    import keras

    found = _measure(_untrained_model(config, info), images, config.image_size)
    keras.backend.clear_session()
    return found


def _pixel_probe(images: ProbeImages) -> dict:
    """The probe on the raw pixels, flattened: what a linear classifier gets with no network."""
    from keras_cnns.measure.layer_probes import probe_accuracy

    accuracy = probe_accuracy(images.pixels("train"), images.labels("train"),
                              images.pixels("test"), images.labels("test"))
    return {"accuracy": round(accuracy, 6), "features": int(images.pixels("train").shape[1])}


def _brief(probes: dict) -> str:
    return ", ".join(f"{layer} {accuracy:.3f}" for layer, accuracy in probes.items())


def collect(plan: Plan, runs: dict, measurements: Measurements, architectures: dict,
            probe_key: str, source) -> dict:
    """The results (`probes.json`): every number the report reads, from the files on disk (so
    a study run again over finished work writes the same files)."""
    from keras_cnns.data.subset import subset_size

    info = source.info
    models = []
    for model in plan.models:
        cells = []
        for cell in (cell for cell in plan.cells if cell.model == model):
            rows = []
            for run in runs[(model, cell.label)]:
                identity = run.config.identity()
                key = f"trained:{identity}" + (f":{probe_key}" if cell.is_recipe else "")
                found = measurements.values.get(key) or {}
                control = measurements.values.get(f"control:{identity}:{probe_key}") or {}
                rows.append({
                    "seed": run.config.seed,
                    "status": "finished" if run.finished else ("failed" if run.error
                                                               else "pending"),
                    "error": run.error or None,
                    "run_dir": run.run_dir.relative_to(plan.output).as_posix()
                    if run.run_dir else None,
                    "test_accuracy": run.test_accuracy,
                    "train_seconds": run.train_seconds,
                    "edges": found.get("edges"),
                    "probes": found.get("probes"),
                    "control_edges": control.get("edges") if cell.is_recipe else None,
                    "control_probes": control.get("probes") if cell.is_recipe else None,
                })
            config = cell.configs[0]
            cells.append({
                "label": cell.label,
                "augment": config.augment,
                "model_options": config.model_options(),
                "epochs": config.epochs,
                "train_fraction": config.train_fraction,
                "train_images": subset_size(source.arrays("train")[1], config.train_fraction),
                "runs": rows,
            })
        described = {key: value for key, value in architectures[model].items()
                     if key != "seconds"}
        models.append({"model": model, **described, "cells": cells})
    pixels = measurements.values.get(f"pixels:{probe_key}", {})
    count, _ = probe_key.split("@")
    train_count, test_count = (int(n) for n in count.split("x"))
    return {
        "study": "probe",
        "preset": plan.preset,
        "description": plan.description,
        "dataset": plan.dataset,
        "num_classes": info.num_classes,
        "native_size": list(info.native_size),
        "probe": {"train_images": train_count, "test_images": test_count,
                  "pooling": "global average over each convolution's map",
                  "classifier": "scikit-learn LogisticRegression (C=1, lbfgs) on standardised "
                                "features",
                  "pixels": pixels},
        "machine": describe_machine(),
        "train_seconds": round(sum(run.train_seconds or 0.0 for cell_runs in runs.values()
                                   for run in cell_runs), 1),
        "measure_seconds": round(measurements.seconds(), 1),
        "models": models,
    }
