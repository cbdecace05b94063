"""Make a preset from an export (`keras-cnns preset EXPORT --output DIR`) and check one.

A preset (layout in `keras_cnns.models.preset`) is what keras-hub's `upload_preset` takes to
Kaggle or the Hugging Face Hub: the export's Keras model as `config.json` and
`model.weights.h5`, `metadata.json`, and a README model card written from the manifest:
architecture, parameters, FLOPs, data set and split, top-1 and top-5 with the command that
measured each, the training recipe, time and hardware, intended use, limitations and the
data's licence.

`make_preset` checks the export's files against its manifest first, scores the export's
`serving_default` on its stored test split for top-5 (top-1 is the manifest's, reproduced by
`keras-cnns verify`), then writes the preset into a temporary sibling, loads it back through
`build_model`'s own reader (hashes checked) and requires it to score the manifest's top-1 on
the same images before renaming it into place. `check_preset` (`keras-cnns preset --check`)
does the same scoring for any preset, on its data set reloaded and matched to its fingerprint.
"""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import files
from keras_cnns.config import PLACEMENT_FIELDS, ConfigError, RunConfig
from keras_cnns.export import directory
from keras_cnns.export.amend import export_images
from keras_cnns.export.model_card import TOP5_KEY, model_card
from keras_cnns.export.saved_model import load_serving, run_serving
from keras_cnns.export.scoring import (
    class_scores,
    content_sha256,
    reports_top_k,
    top_k_accuracy,
)
from keras_cnns.models import preset as preset_files
from keras_cnns.models.preset import PresetError, load_preset, read_metadata
from keras_cnns.serving import verify_export as verify

TOP1_COMMAND = ("`keras-cnns train`, through the export's serving_default on the stored test "
                "split (`keras-cnns verify EXPORT` repeats it; `keras-cnns preset --check "
                "PRESET` scores this preset)")
TOP5_MADE_HERE = ("`keras-cnns preset EXPORT --output DIR`, through the export's "
                  "serving_default on the same test split")


def _strings(value) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)


def _shape(value) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(map(verify.POSITIVE_INTEGER.holds,
                                                                   value))


# The fields of metadata.json that listing and checking a preset read (loading reads only
# `model` and `files`, in keras_cnns.models.preset).
METADATA_SCHEMA = {
    "model": verify.TEXT,
    "class_names": verify.Rule("a list of class names (strings)", _strings),
    "input_shape": verify.Rule("[height, width, channels], positive integers", _shape),
    "preprocessing": {key: verify.MANIFEST_SCHEMA["preprocessing"][key]
                      for key in ("image_size", "channels", "mean", "std")},
    "dataset": {"name": verify.TEXT},
    "metrics": verify.or_null(verify.OBJECT),
}


def export_of(path: str | Path) -> Path:
    """The export at `path`, or the one the run directory `path` exported (its config's
    `output`); else an ExportError of one sentence."""
    path = Path(path)
    if (path / directory.MANIFEST_FILE).is_file():
        return path
    if (path / "config.json").is_file() and not (path / preset_files.METADATA_FILE).is_file():
        try:
            output = RunConfig.from_json(path / "config.json").output
        except ConfigError as error:
            raise directory.ExportError(str(error)) from None
        if not output:
            raise directory.ExportError(f"Run {path} records no export (its config has no "
                                        "output).")
        if not (Path(output) / directory.MANIFEST_FILE).is_file():
            raise directory.ExportError(f"Run {path} has no export yet: {output} holds no "
                                        f"{directory.MANIFEST_FILE}.")
        return Path(output)
    if not path.exists():
        raise directory.ExportError(f"{path} does not exist.")
    raise directory.ExportError(f"{path} is neither an export nor a run directory.")


def predict_logits(model, preprocessing: dict, images: np.ndarray,
                   batch_size: int = directory.EVAL_BATCH_SIZE) -> np.ndarray:
    """The model's logits for uint8 `images`, preprocessed as training and serving_default do
    (`keras_cnns.data.preprocess` with the preset's size, channels, mean and std)."""
    import keras

    from keras_cnns.data import preprocess

    parts = []
    for start in range(0, len(images), batch_size):
        batch = preprocess(images[start:start + batch_size],
                           image_size=tuple(preprocessing["image_size"]),
                           mean=preprocessing["mean"], std=preprocessing["std"],
                           channels=preprocessing["channels"])
        # As numpy, so that a JAX or torch backend's model takes it too.
        parts.append(keras.ops.convert_to_numpy(model(np.asarray(batch), training=False)))
    return np.concatenate(parts).astype(np.float64)


def preset_scores(model, metadata: dict, images: np.ndarray, labels: np.ndarray) -> dict:
    """`test_accuracy`, `test_correct`, `test_examples` and (more than 5 classes) top-5 of a
    preset's model on uint8 `images`, scored by the probabilities as serving_default gives them
    (`keras_cnns.export.scoring.class_scores`)."""
    import keras

    logits = predict_logits(model, metadata["preprocessing"], images)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype(np.float32)))
    scores = class_scores(probabilities, labels, metadata["class_names"])
    return {key: scores[key] for key in ("test_accuracy", TOP5_KEY, "test_examples")
            if key in scores} | {"test_correct": int(np.sum(probabilities.argmax(-1) == labels))}


def _scored_metrics(export_dir: Path, manifest: dict) -> dict[str, Any] | None:
    """The card's figures: the manifest's top-1 and loss, top-5 from it or measured here."""
    metrics, evaluation = manifest.get("metrics"), manifest.get("evaluation") or {}
    if not metrics or not evaluation.get("test_set"):
        return None  # converted weights, or a test split too large to store: nothing to score
    images, labels = export_images(export_dir, manifest)
    figures = {key: metrics[key] for key in ("test_accuracy", "test_loss")}
    measured_by = {"test_accuracy": TOP1_COMMAND}
    if TOP5_KEY in metrics:
        figures[TOP5_KEY], measured_by[TOP5_KEY] = metrics[TOP5_KEY], "`keras-cnns train`, as top-1"
    elif reports_top_k(len(manifest["dataset"]["class_names"])):
        probabilities, _ = run_serving(load_serving(export_dir), images)
        figures[TOP5_KEY] = top_k_accuracy(probabilities, labels)
        measured_by[TOP5_KEY] = TOP5_MADE_HERE
    return {
        **figures,
        "test_correct": int(metrics.get("test_correct")
                            or round(metrics["test_accuracy"] * len(labels))),
        "test_examples": int(len(labels)),
        "content_sha256": evaluation["content_sha256"],
        "measured_by": measured_by,
    }


def _recipe(manifest: dict) -> dict[str, Any] | None:
    """The RunConfig that trained the export, less where it was written: `keras-cnns train
    --config PRESET/metadata.json` reads it back. None for converted weights."""
    if manifest.get("kind") == "converted":
        return None
    return {key: value for key, value in manifest["config"].items()
            if key not in PLACEMENT_FIELDS}


def preset_metadata(model, manifest: dict, metrics: dict | None, flops: int | None) -> dict:
    """metadata.json, less its `files` table (keras-hub's keys first)."""
    import keras

    import keras_cnns

    dataset = manifest["dataset"]
    training = manifest.get("metrics") or {}
    return {
        "keras_version": keras.version(),
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "preset_format": preset_files.PRESET_FORMAT,
        "keras_cnns_version": keras_cnns.__version__,
        "model": manifest["config"]["model"],
        "class_names": list(dataset["class_names"]),
        "input_shape": [int(d) for d in model.input_shape[1:]],
        "preprocessing": manifest["preprocessing"],
        "dataset": {key: dataset[key] for key in ("name", "fingerprint", "split_sizes")
                    if key in dataset},
        "flops_per_image": flops,
        "metrics": metrics,
        "training": {"train_seconds": training.get("train_seconds"),
                     "best_epoch": training.get("best_epoch"),
                     "dtype_policy": training.get("dtype_policy"),
                     "hardware": manifest.get("hardware"), "versions": manifest.get("versions")},
        "config": _recipe(manifest),
        "conversion": manifest.get("conversion"),
    }




def _write_preset(model, folder: Path, metadata: dict, name: str) -> None:
    import keras

    config = keras.saving.serialize_keras_object(model)
    for key in ("compile_config", "build_config"):  # keras-hub leaves these out too
        config.pop(key, None)
    (folder / preset_files.CONFIG_FILE).write_text(json.dumps(config, indent=4) + "\n")
    model.save_weights(folder / preset_files.WEIGHTS_FILE)
    (folder / preset_files.README_FILE).write_text(model_card(model, metadata, name))
    metadata = {**metadata, "files": {
        file: preset_files.sha256_of(folder / file) for file in preset_files.REQUIRED_FILES}}
    (folder / preset_files.METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, default=directory.json_default) + "\n")


def make_preset(source: str | Path, output: str | Path, *,
                count_flops: Callable[[Any], int] | None = None) -> Path:
    """Write the preset of the export (or run directory) `source` to `output`, which must not
    exist; return `output`. `count_flops(model)` gives the card's FLOPs per image (the
    command passes `keras_cnns.measure.throughput.forward_flops`, which this layer may not
    import); without it the card says "not counted"."""
    export_dir, output = export_of(source), Path(output)
    manifest = directory.read_manifest(export_dir)
    try:
        verify.check_files(export_dir, manifest["files"])
    except verify.VerifyError as error:
        raise directory.ExportError(f"Export {export_dir}: {error}") from None
    if output.exists():
        raise directory.ExportError(f"Preset path {output} already exists; choose another "
                                    "--output.")
    import keras

    try:
        model = keras.saving.load_model(export_dir / directory.MODEL_FILE, safe_mode=True)
    except Exception as error:  # a foreign model.keras: say which, not how it broke
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise directory.ExportError(f"{export_dir / directory.MODEL_FILE} is not a loadable "
                                    f"Keras model ({reason[:200]}).") from None
    metrics = _scored_metrics(export_dir, manifest)
    metadata = preset_metadata(model, manifest, metrics,
                               count_flops(model) if count_flops else None)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise directory.ExportError(f"Cannot create the preset's folder {output.parent}: "
                                    f"{error.strerror or error}.") from None
    temporary = files.temporary_sibling(output)
    temporary.mkdir()
    try:
        _write_preset(model, temporary, metadata, output.name)
        if metrics is not None:  # the preset, read back as a user reads it, scores the same
            images, labels = export_images(export_dir, manifest)
            reloaded = load_preset(temporary, model=metadata["model"])
            got = preset_scores(reloaded, metadata, images, labels)
            if got["test_correct"] != metrics["test_correct"]:
                raise directory.ExportError(
                    f"The preset of {export_dir} scores {got['test_correct']}/{len(labels)} "
                    f"on its test split, not the manifest's {metrics['test_correct']}.")
        files.commit(temporary, output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return output


def describe_preset(preset: str | Path) -> dict[str, Any]:
    """metadata.json of `preset` (hashes checked), its fields checked against METADATA_SCHEMA,
    with `path` and `bytes` (every file together) added."""
    folder = preset_files.preset_path(preset)
    metadata = read_metadata(folder)
    verify.check_schema(metadata, METADATA_SCHEMA, f"The {preset_files.METADATA_FILE} of "
                        f"preset {folder}", PresetError)
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    return {**metadata, "path": str(folder), "bytes": size}


def check_preset(preset: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """Load `preset` as `build_model` does and score it on its data set's test split, reloaded
    (`data_dir`: where the data set's files are, else where training found them) and checked
    against the recorded fingerprint; the scores, or PresetError when they differ from
    metadata.json's. A preset with no metrics is only loaded."""
    from keras_cnns.data import load_source

    metadata = describe_preset(preset)
    model = load_preset(metadata["path"], model=metadata["model"])
    recorded = metadata.get("metrics")
    if not recorded:
        return {"path": metadata["path"], "model": metadata["model"], "scored": False}
    config = metadata.get("config") or {}
    source = load_source(config.get("dataset") or metadata["dataset"]["name"],
                         data_dir or config.get("data_dir"))
    images, labels = source.arrays("test")
    if content_sha256(images, labels) != recorded.get("content_sha256"):
        raise PresetError(f"The test split of {source.info.name} differs from the one preset "
                          f"{metadata['path']} was scored on (content sha256).")
    got = preset_scores(model, metadata, images, labels)
    if got["test_correct"] != recorded.get("test_correct"):
        raise PresetError(f"Preset {metadata['path']} scores {got['test_correct']}/"
                          f"{len(labels)} on its test split, not the {recorded.get('test_correct')}"
                          f" its {preset_files.METADATA_FILE} records.")
    return {"path": metadata["path"], "model": metadata["model"], "scored": True, **got}
