"""`export_model`: a trained model, its test split and its manifest as one export directory.

The layout and the guarantees are in the package docstring (`keras_cnns.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export import directory, onnx_export, saved_model, tflite_export
from keras_cnns.export.scoring import (
    GOLDEN_TOLERANCE,
    LOSS_EPSILON,
    TOP_K_NAME,
    class_scores,
    content_sha256,
    golden_indices,
    score,
)
from keras_cnns.export.worker import write_in_tensorflow

# The stored test split's cap (MNIST's is 7.9 MB, CIFAR-10's 31 MB): an export should stay
# copyable, and a bigger split is better re-read from its source.
TEST_SET_LIMIT_BYTES = 64 << 20


def export_model(
    model, output: str | Path, *, config: dict, source, metrics: dict,
    extra: dict | None = None, onnx: bool = False, tflite: bool = False,
    tflite_quantize: str | None = None,
) -> Path:
    """Export a trained model, its test split and its manifest to `output` (which must not exist).

    `source` is the `DataSource` the model was trained on: its info goes into the manifest and
    its test split is scored through the written SavedModel (module docstring). `metrics` are the
    trainer's Keras-side figures; `extra` adds top-level manifest keys (the standard keys win).
    `onnx=True` adds `model.onnx` (`keras_cnns.export.onnx_export`), checked against
    `serving_default` on the whole stored test split, and the manifest's `onnx` section.
    `tflite=True` adds `model.tflite` (`keras_cnns.export.tflite_export`; `tflite_quantize`
    None or "int8", calibrated on `source`'s training split), checked by the interpreter on the
    test split, and the manifest's `tflite` section.
    """

    info = source.info
    height, width, channels = saved_model.model_input_shape(model)
    size = config.get("image_size")
    if size is not None and (height, width) != (size, size):
        raise directory.ExportError(
            f"The model takes {height}x{width} images but the config says image_size {size}."
        )
    images, labels = source.arrays("test")
    label_smoothing = float(config.get("label_smoothing") or 0.0)
    store_test_set = images.nbytes + labels.nbytes <= TEST_SET_LIMIT_BYTES
    probe = golden_indices(labels)
    calibration = None
    if tflite and tflite_quantize:  # training images only: the test split stays unseen
        calibration = tflite_export.calibration_sample(source.arrays("train")[0])

    def contents(tmp_dir: Path) -> dict[str, Any]:
        import keras

        onnx_file = tmp_dir / directory.ONNX_FILE if onnx else None
        names = list(info.class_names)
        if keras.backend.backend() in ("tensorflow", "jax"):
            saved_model.write_saved_model(model, tmp_dir, mean=info.mean, std=info.std,
                                          class_names=names)
            saved_model.save_keras_file(model, tmp_dir / directory.MODEL_FILE)
        else:  # one TensorFlow subprocess writes both from model.keras
            saved_model.save_keras_file(model, tmp_dir / directory.MODEL_FILE)
            write_in_tensorflow(tmp_dir / directory.MODEL_FILE, saved_model=tmp_dir, onnx=onnx_file,
                                mean=info.mean, std=info.std, class_names=names)
        if onnx_file is not None and not onnx_file.exists():
            write_in_tensorflow(tmp_dir / directory.MODEL_FILE, onnx=onnx_file, mean=info.mean,
                                std=info.std, class_names=names)
        if tflite:
            write_in_tensorflow(tmp_dir / directory.MODEL_FILE,
                                tflite=tmp_dir / directory.TFLITE_FILE,
                                mean=info.mean, std=info.std, class_names=names,
                                quantize=tflite_quantize, calibration=calibration)
        # Scored by the files just written, as verify.py will score them.
        signature = saved_model.load_serving(tmp_dir)
        golden, _ = saved_model.run_serving(signature, images[probe], batch_size=len(probe))
        probabilities, classes = saved_model.run_serving(signature, images)
        scores = score(probabilities, classes, labels, label_smoothing)
        sections = {}
        if onnx_file is not None:
            sections["onnx"] = onnx_export.check_onnx(onnx_file, images, probabilities, names)
        if tflite:
            sections["tflite"] = tflite_export.check_tflite(
                tmp_dir / directory.TFLITE_FILE, images, labels, signature, class_names=names,
                quantize=tflite_quantize,
                calibration_images=None if calibration is None else len(calibration))
        if store_test_set:
            np.savez_compressed(tmp_dir / directory.TEST_SET_FILE, images=images, labels=labels)
        else:
            np.savez_compressed(tmp_dir / directory.GOLDEN_FILE, images=images[probe],
                                labels=labels[probe])
        served = class_scores(probabilities, labels, list(info.class_names), classes)
        served.pop("confusion_matrix")
        evaluated = dict(metrics)
        for key in ("test_accuracy", f"test_{TOP_K_NAME}", "test_loss"):
            if key in metrics:
                evaluated[f"keras_{key}"] = metrics[key]
        evaluated.update(served, **scores)
        megabytes = (images.nbytes + labels.nbytes) / 2**20
        return {
            **(extra or {}),
            **sections,
            "format_version": directory.FORMAT_VERSION,
            "config": config,
            "dataset": info.to_dict(),
            "preprocessing": saved_model.preprocessing_record(height, width, channels, info.mean,
                                                              info.std),
            "signatures": saved_model.signatures_record(),
            "metrics": evaluated,
            "evaluation": {
                "endpoint": "serving_default",
                "batch_size": directory.EVAL_BATCH_SIZE,
                "test_set": directory.TEST_SET_FILE if store_test_set else None,
                "content_sha256": content_sha256(images, labels),
                "examples": int(len(labels)),
                "label_smoothing": label_smoothing,
                "loss_epsilon": LOSS_EPSILON,
                "loss": "mean cross-entropy of the probabilities clipped to [loss_epsilon, 1] "
                        "against label-smoothed one-hot targets",
                "note": None if store_test_set else (
                    f"The {megabytes:.0f} MB test split is not stored (limit "
                    f"{TEST_SET_LIMIT_BYTES >> 20} MB); verify.py needs --data to recompute "
                    "the accuracy."),
            },
            "golden": {
                "indices": probe.tolist(),
                "images_file": None if store_test_set else directory.GOLDEN_FILE,
                "probabilities": golden.tolist(),
                "tolerance": GOLDEN_TOLERANCE,
            },
            "versions": directory.versions(),
            "hardware": directory.hardware(),
        }

    return directory.write_export(output, contents)
