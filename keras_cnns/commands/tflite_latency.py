"""Size, accuracy and batch-1 latency of an export: SavedModel vs float TFLite vs int8 TFLite.

    python scripts/tflite_latency.py EXPORT [--repeats 200] [--threads 1]

Converts the export's model.keras to a float and an int8 (calibrated on its training split,
reloaded and checked against the manifest's fingerprint) model.tflite in a temporary folder,
checks both against serving_default on the stored test split as an export does, and times one
image per call: serving_default (a loaded SavedModel signature) and each file in the LiteRT
interpreter, median of --repeats calls after a warm-up. The export itself is not changed.
Prints a Markdown table (docs/BENCHMARKS.md, "LiteRT (TFLite)").
"""

import tempfile
from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, user_errors

PROG = "tflite_latency.py"


def measure(export: Path, repeats: int, threads: int) -> list[dict]:
    import warnings

    import tensorflow as tf

    from keras_cnns.export import amend, load_serving, read_manifest, tflite_export
    from keras_cnns.export.worker import write_in_tensorflow

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


def main(argv=None, prog: str = PROG) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    with user_errors(prog):
        rows = measure(args.export, args.repeats, args.threads)
    # TFLite is scored on the test images resized to the model's input size and rounded to
    # uint8 (its input); serving_default's score on those same images stands in brackets.
    print("| format | size | test accuracy | batch-1 latency (median) |")
    print("|---|---|---|---|")
    for row in rows:
        same = f" ({row['reference']:.4f})" if "reference" in row else ""
        print(f"| {row['format']} | {row['bytes'] / 2**20:.2f} MB | {row['accuracy']:.4f}{same} "
              f"| {row['ms']:.3f} ms |")
    return 0
