"""Size, accuracy and batch-1 latency of an export: SavedModel vs float TFLite vs int8 TFLite.

    rows = measure(Path("saved_models/<model>-<dataset>-<stamp>"), repeats=200, threads=1)
    print(format_table(rows))

Converts the export's model.keras to a float and an int8 (calibrated on its training split,
reloaded and checked against the manifest's fingerprint) model.tflite in a temporary folder,
checks both against serving_default on the stored test split as an export does, and times one
image per call: serving_default (a loaded SavedModel signature) and each file in the LiteRT
interpreter, median of `repeats` calls after a warm-up. The export itself is not changed.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from keras_cnns.export import amend, load_serving, read_manifest, tflite_export
from keras_cnns.export.worker import write_in_tensorflow


def measure(export: Path, repeats: int, threads: int) -> list[dict]:
    """One row per format: `format`, `bytes`, test `accuracy`, median `ms` per image, and for
    the TFLite files serving_default's accuracy on the same uint8 images (`reference`)."""
    import tensorflow as tf

    manifest = read_manifest(export)
    dataset = manifest["dataset"]
    images, labels = amend.export_images(export, manifest)
    signature = load_serving(export)
    height, width = manifest["preprocessing"]["image_size"]
    image = tflite_export.at_size(images[:1], (height, width))
    one = tf.constant(image)
    saved_model_bytes = sum(p.stat().st_size for p in [export / "saved_model.pb",
                                                       *(export / "variables").glob("*")])
    rows = [{"format": "SavedModel serving_default", "bytes": saved_model_bytes,
             "accuracy": manifest["metrics"]["test_accuracy"],
             "ms": tflite_export.latency_ms(lambda: signature(images=one), repeats)}]
    calibration = tflite_export.calibration_sample(amend.training_images(manifest))
    with tempfile.TemporaryDirectory(prefix="keras_cnns-latency-") as tmp:
        for quantize in (None, "int8"):
            path = Path(tmp) / f"{quantize or 'float'}.tflite"
            write_in_tensorflow(export / "model.keras", tflite=path, mean=dataset["mean"],
                                std=dataset["std"], class_names=dataset["class_names"],
                                quantize=quantize, calibration=calibration)
            section = tflite_export.check_tflite(path, images, labels, signature,
                                                 class_names=dataset["class_names"],
                                                 quantize=quantize)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lite = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
            runner = lite.get_signature_runner("serving_default")
            rows.append({"format": f"TFLite {quantize or 'float32'}",
                         "bytes": section["size_bytes"],
                         "accuracy": section["test_accuracy"],
                         "reference": section["serving_default_test_accuracy"],
                         "ms": tflite_export.latency_ms(lambda r=runner, x=image: r(images=x),
                                                        repeats)})
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as docs/BENCHMARKS.md's Markdown table ("LiteRT (TFLite)")."""
    # TFLite is scored on the test images resized to the model's input size and rounded to
    # uint8 (its input); serving_default's score on those same images stands in brackets.
    lines = ["| format | size | test accuracy | batch-1 latency (median) |", "|---|---|---|---|"]
    for row in rows:
        same = f" ({row['reference']:.4f})" if "reference" in row else ""
        lines.append(f"| {row['format']} | {row['bytes'] / 2**20:.2f} MB "
                     f"| {row['accuracy']:.4f}{same} | {row['ms']:.3f} ms |")
    return "\n".join(lines)
