"""Scoring: `evaluate` (a model on a data set) for the trainer, and `evaluate_path` (a finished
run or an export) for `scripts/evaluate.py RUN_OR_EXPORT`.

A run directory is scored with its best checkpoint (`checkpoints/best.weights.h5`), an
export with its `model.keras`; both bring the RunConfig they were trained with, so the
test split is preprocessed exactly as in training unless `--dataset` names another source.
Scoring only reads: an export's files are checked against their sha256 in its manifest
first (a damaged export is refused, not scored), and the confusion matrix never goes into an
export, whose manifest lists every file it holds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from keras_cnns import data as data_lib
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.export.scoring import class_scores
from keras_cnns.preflight import check_writable_dir
from keras_cnns.training import plots, run_state, sharding
from keras_cnns.training.factories import best_model


def evaluate(model: keras.Model, dataset, class_names, config: RunConfig | None = None) -> dict:
    """Accuracy (and top-5 accuracy with more than 5 classes), loss, per-class accuracy,
    precision and recall, and the confusion matrix of `model` on `dataset`."""
    labels, logits = [], []
    forward = sharding.inference(model)
    for images, targets in dataset:
        logits.append(keras.ops.convert_to_numpy(forward(images)).astype(np.float32))
        targets = np.asarray(targets)
        labels.append(targets.argmax(-1) if targets.ndim == 2 else targets)
    labels = np.concatenate(labels)
    logits = np.concatenate(logits)
    smoothing = config.label_smoothing if config else 0.0
    one_hot = keras.ops.one_hot(labels, len(class_names))
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)(
        one_hot, logits
    )
    return {**class_scores(logits, labels, class_names), "test_loss": float(loss)}


def _load(path: Path) -> tuple[RunConfig, keras.Model]:
    if is_export(path):
        check_export_files(path)  # the manifest's schema first: its config is read back next
        config = RunConfig.from_json(path / "manifest.json")
        try:
            model = keras.saving.load_model(path / "model.keras", safe_mode=True)
        except Exception as error:  # a truncated or foreign file: say which, not how it broke
            raise ConfigError(
                f"{path / 'model.keras'} is not a loadable Keras model ({error})."
            ) from None
        return config, model
    if (path / "config.json").is_file():
        config = RunConfig.from_json(path / "config.json")
        weights = path / run_state.BEST_FILE
        if not weights.is_file():
            raise ConfigError(f"Run {path} has no checkpoint yet ({weights} is missing).")
        source = data_lib.load_source(config.dataset, config.data_dir)
        return config, best_model(path, config, source.info)
    raise ConfigError(f"{path} is neither a run directory nor an export.")


def is_export(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "model.keras").is_file()


def is_converted(path: Path) -> bool:
    """Whether `path` is an export of converted weights (`convert.py --to export`)."""
    from keras_cnns.export import read_manifest

    return is_export(path) and read_manifest(path).get("kind") == "converted"


def _evaluate_converted(path: Path, dataset, data_dir, split, batch_size, confusion_png) -> dict:
    """Score converted weights through their export's `serving_default`, as torchvision's
    reference scripts score ImageNet: top-1 and top-5 accuracy (plus the loss, per class
    scores and the confusion matrix) on `dataset`'s uint8 images of `split`.

    Such an export knows no data set of its own, and its preprocessing (the publisher's mean
    and std) is in its graph, so the images go in as they are. The source's class indices
    (an image folder's subfolders in sorted order, as torchvision's ImageFolder orders
    ImageNet's synsets) must be the export's logit order; only their count is checked.
    """
    from keras_cnns.export import load_serving, read_manifest, run_serving, score

    check_export_files(path)
    names = [str(name) for name in read_manifest(path)["dataset"]["class_names"]]
    if dataset is None:
        raise ConfigError(
            f"{path} holds converted weights with no test split of their own; name the images "
            "to score with --dataset (and --data-dir), e.g. --dataset folder --data-dir DIR.")
    source = data_lib.load_source(dataset, data_dir)
    if source.info.num_classes != len(names):
        raise data_lib.DataError(
            f"{dataset} has {source.info.num_classes} classes, but the converted weights in "
            f"{path} predict {len(names)}.")
    images, labels = source.arrays(split)
    probabilities, classes = run_serving(load_serving(path), images, batch_size=batch_size)
    metrics = class_scores(probabilities, labels, names, classes)
    metrics.update(test_loss=score(probabilities, classes, labels)["test_loss"], split=split,
                   dataset=dataset)
    if confusion_png is not None:
        plots.plot_confusion(
            np.asarray(metrics["confusion_matrix"]), names, confusion_png,
            f"{path.name} on {dataset} ({split}): accuracy {metrics['test_accuracy']:.4f}")
    return metrics


def check_export_files(export: Path) -> None:
    """Every file the manifest lists is there with its sha256, so what is scored is what was
    exported (a truncated variables file would leave model.keras loadable but the export not)."""
    from keras_cnns.export import ExportError, read_manifest, sha256_file

    for name, expected in sorted(read_manifest(export)["files"].items()):
        target = export / str(name)
        if not target.resolve().is_relative_to(export.resolve()):
            raise ExportError(f"The manifest of export {export} lists {name}, outside the export.")
        if not target.is_file():
            raise ExportError(f"Export {export} is damaged: {name} is missing.")
        if sha256_file(target) != expected:
            raise ExportError(
                f"Export {export} is damaged: {name} does not match its sha256 in the manifest."
            )


def confusion_path(path: str | Path, split: str, chosen: str | Path | None = None) -> Path:
    """Where the confusion matrix of scoring `path` goes: `chosen`, else inside a run
    directory, else (an export, which must stay as verified) the current directory.

    Refuses a place inside an export or one that cannot be written, before any scoring.
    """
    path = Path(path)
    if not is_export(path) and not (path / "config.json").is_file():
        raise ConfigError(f"{path} is neither a run directory nor an export.")
    if chosen is not None:
        png = Path(chosen)
        if str(chosen).strip() == "" or png.is_dir() or png.suffix.lower() != ".png":
            raise ConfigError(f"--confusion {str(chosen)!r} must name a PNG file (*.png).")
    elif is_export(path):
        png = Path(f"confusion-{path.resolve().name}-{split}.png")
    else:
        png = path / f"confusion-{split}.png"
    for parent in png.resolve().parents:
        if is_export(parent):
            raise ConfigError(
                f"--confusion {png} is inside the export {parent}, which must stay as it was "
                "verified; choose a place outside it."
            )
    check_writable_dir(png.parent, "--confusion", shown=png)
    return png


def evaluate_path(
    path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    confusion_png: str | Path | None = None,
) -> dict:
    """Accuracy, loss and per-class accuracy of a run or export; optionally a confusion PNG."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist.")
    if is_converted(path):
        return _evaluate_converted(path, dataset, data_dir, split, batch_size, confusion_png)
    config, model = _load(path)
    if dataset is not None:
        config = dataclasses.replace(config, dataset=dataset, data_dir=data_dir)
    source = data_lib.load_source(config.dataset, config.data_dir)
    info = source.info
    expected = model.input_shape[-1], model.output_shape[-1]
    if (info.channels, info.num_classes) != expected:
        raise data_lib.DataError(
            f"{config.dataset} has {info.channels} channel(s) and {info.num_classes} classes, "
            f"but the model takes {expected[0]} and predicts {expected[1]}."
        )
    pipeline = data_lib.build_pipeline(
        source,
        split,
        image_size=config.image_size,
        batch_size=batch_size,
        one_hot=info.num_classes,
    )
    metrics = evaluate(model, pipeline, info.class_names, config)
    metrics["split"], metrics["dataset"] = split, config.dataset
    if confusion_png is not None:
        plots.plot_confusion(
            np.asarray(metrics["confusion_matrix"]),
            list(info.class_names),
            confusion_png,
            f"{config.model} on {config.dataset} ({split}): accuracy "
            f"{metrics['test_accuracy']:.4f}",
        )
    return metrics
