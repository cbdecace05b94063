"""Add `model.onnx` or `model.tflite` to an existing export (`scripts/convert.py EXPORT --to`).

Each converts the export's `model.keras` with its dataset's mean, std and class names, checks
the file against the export's own `serving_default` on its stored images, then moves it into
place and rewrites `manifest.json` (its `files` hashes and the file's section). A failure
before that leaves the export as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_cnns import files
from keras_cnns.export import directory, onnx_export, tflite_export
from keras_cnns.export.saved_model import load_serving, run_serving
from keras_cnns.export.worker import write_in_tensorflow
from keras_cnns.serving.verify_export import INTEGERS, UINT8, load_arrays


def export_images(export_dir: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    """The export's stored test split, or else its golden probe: `(images, labels)`."""
    evaluation = manifest.get("evaluation") or {}
    name = evaluation.get("test_set") or (manifest.get("golden") or {}).get("images_file")
    for candidate in filter(None, (name, directory.TEST_SET_FILE, directory.GOLDEN_FILE)):
        if (export_dir / candidate).is_file():
            arrays = load_arrays(export_dir / candidate, {"images": UINT8, "labels": INTEGERS},
                                 "The export's", error=directory.ExportError)
            return arrays["images"], arrays["labels"]
    raise directory.ExportError(f"Export {export_dir} has neither {directory.TEST_SET_FILE} "
                                f"nor {directory.GOLDEN_FILE}.")


def _prepare(export_dir: Path, name: str, replace: bool):
    manifest = directory.read_manifest(export_dir)
    if (export_dir / name).exists() and not replace:
        raise directory.ExportError(
            f"Export {export_dir} already has {name}; pass replace to redo it.")
    if not (export_dir / directory.MODEL_FILE).is_file():
        raise directory.ExportError(
            f"Export {export_dir} has no {directory.MODEL_FILE} to convert.")
    dataset = manifest.get("dataset") or {}
    if not dataset.get("mean") or not dataset.get("std"):
        raise directory.ExportError(
            f"The manifest of export {export_dir} has no dataset mean and std.")
    return manifest, dataset


def add_onnx(export_dir: str | Path, *, opset: int = onnx_export.OPSET,
             replace: bool = False) -> dict:
    """Add `model.onnx` (module docstring); return its manifest section. `replace=True`
    replaces an existing one."""
    export_dir = Path(export_dir)
    manifest, dataset = _prepare(export_dir, directory.ONNX_FILE, replace)
    images, _ = export_images(export_dir, manifest)
    class_names = dataset.get("class_names")
    written = files.temporary_sibling(export_dir / directory.ONNX_FILE)
    try:
        write_in_tensorflow(export_dir / directory.MODEL_FILE, onnx=written, mean=dataset["mean"],
                            std=dataset["std"], class_names=class_names, opset=opset)
        probabilities, _ = run_serving(load_serving(export_dir), images)
        section = onnx_export.check_onnx(written, images, probabilities, class_names)
        section["file"] = directory.ONNX_FILE
        directory.add_file(export_dir, written, directory.ONNX_FILE, section)
    finally:
        written.unlink(missing_ok=True)
    return section


def training_images(manifest: dict) -> np.ndarray:
    """The export's training split (int8 calibration), reloaded from its config's source and
    checked against the manifest's fingerprint, so calibration sees the very training images."""
    from keras_cnns import data as data_lib

    config, dataset = manifest.get("config") or {}, manifest.get("dataset") or {}
    if not config.get("dataset") or not dataset.get("fingerprint"):
        raise directory.ExportError(
            "int8 quantisation calibrates on the training split, and this export "
            "records no training data set (a converted model).")
    source = data_lib.load_source(config["dataset"], config.get("data_dir"))
    source = data_lib.subset_training_split(source, float(config.get("train_fraction") or 1.0),
                                            int(config.get("seed") or 0))
    if source.info.fingerprint != dataset["fingerprint"]:
        raise directory.ExportError(
            f"The data set {config['dataset']} now differs from the one the "
            "export was trained on (fingerprint); cannot calibrate int8 on it.")
    return source.arrays("train")[0]


def add_tflite(export_dir: str | Path, *, quantize: str | None = None,
               replace: bool = False) -> dict:
    """Add `model.tflite` (module docstring; int8 calibrated on the reloaded training split);
    return its manifest section. `replace=True` replaces an existing one."""
    export_dir = Path(export_dir)
    manifest, dataset = _prepare(export_dir, directory.TFLITE_FILE, replace)
    calibration = (tflite_export.calibration_sample(training_images(manifest)) if quantize
                   else None)
    images, labels = export_images(export_dir, manifest)
    class_names = dataset.get("class_names")
    written = files.temporary_sibling(export_dir / directory.TFLITE_FILE)
    try:
        write_in_tensorflow(export_dir / directory.MODEL_FILE, tflite=written, mean=dataset["mean"],
                            std=dataset["std"], class_names=class_names, quantize=quantize,
                            calibration=calibration)
        section = tflite_export.check_tflite(
            written, images, labels, load_serving(export_dir), class_names=class_names,
            quantize=quantize,
            calibration_images=None if calibration is None else len(calibration))
        section["file"] = directory.TFLITE_FILE
        if not (manifest.get("evaluation") or {}).get("test_set"):  # probe images, no labels
            section.update(test_images="the golden probe images", test_accuracy=None,
                           serving_default_test_accuracy=None)
        directory.add_file(export_dir, written, directory.TFLITE_FILE, section)
    finally:
        written.unlink(missing_ok=True)
    return section
