"""LiteRT (TFLite): an export's serving function as `model.tflite`, checked by the interpreter.

    input   images         uint8   [1, height, width, channels]  the model's input shape
    output  probabilities  float32 [1, classes]
            classes        int64   [1]
            labels         string  [1]    the class name (a GATHER on a string table; the
                                          interpreter returns bytes)

The graph holds the training preprocessing (x / 255, channels, (x - mean) / std) and only
TFLite builtin ops. `serving_default`'s own function cannot be converted: its `tf.EnsureShape`
and `tf.debugging.assert_equal` are not builtins, and its unknown height, width and channels
would leave dynamic shapes. So this module traces a TFLite-specific function with every shape
static: one image of the model's input size. Other sizes are not resized inside (a dynamic
input would start at 1x1 in the interpreter, and string outputs fail once a dynamic batch is
resized); resize them first, bilinear with half-pixel centres (`tf.image.resize`, as the check
below does and as `serving_default` does inside), or serve the SavedModel.

`quantize="int8"`: full-integer post-training quantisation, calibrated on `calibration`, uint8
training images (never test images; `calibration_sample` picks them from the split). Weights
and activations are int8; the uint8 input is cast and quantised at the graph's entrance, and
the probabilities are dequantised to float32.

`check_tflite` runs the file with the LiteRT interpreter (`ai_edge_litert` when importable,
else `tf.lite.Interpreter`) on the stored test images, resized to the model's input size as
above: a float file must match `serving_default`'s probabilities of the same images within
FLOAT_TOLERANCE, an int8 file must keep its test accuracy within INT8_ACCURACY_DROP of
`serving_default`'s; its section of the manifest records both accuracies, size and sha256.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export.directory import ExportError, sha256_file
from keras_cnns.export.saved_model import (
    class_labels,
    model_input_shape,
    wrote_in_tensorflow_child,
)

QUANTIZE_CHOICES = ("int8",)
# Max |interpreter - serving_default| over the float file's probabilities.
FLOAT_TOLERANCE = 1e-5
# Largest test-accuracy loss (a fraction) that int8 quantisation may cost.
INT8_ACCURACY_DROP = 0.01
# Training images the int8 ranges are calibrated on (evenly spread over the split).
CALIBRATION_IMAGES = 256
SIGNATURE = "serving_default"


def tflite_function(model_call, input_shape, *, mean, std, class_names=None):
    """A `tf.function` uint8 `[1, H, W, C]` -> probabilities, classes (, labels), for the
    model's `input_shape` `(H, W, C)`."""
    import tensorflow as tf

    from keras_cnns.data import preprocess

    height, width, channels = input_shape
    spec = tf.TensorSpec([1, height, width, channels], tf.uint8, name="images")

    def serving(images):
        x = preprocess(images, image_size=(height, width), mean=[float(m) for m in mean],
                       std=[float(s) for s in std], channels=channels)
        logits = model_call(x)
        result = {"probabilities": tf.nn.softmax(logits, axis=-1),
                  "classes": tf.argmax(logits, axis=-1, output_type=tf.int64)}
        if class_names is not None:
            result["labels"] = class_labels(class_names, result["classes"])
        return result

    return tf.function(serving, input_signature=[spec], autograph=False)


def write_tflite(model, path: str | Path, *, mean, std, class_names=None,
                 quantize: str | None = None, calibration: np.ndarray | None = None) -> None:
    """Convert `model` with its preprocessing (module docstring) and write `path`.

    Under a non-TensorFlow Keras backend the model is saved to a temporary `.keras` file and
    converted in a TensorFlow-backend subprocess (the converter takes TensorFlow graphs only).
    """
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ExportError(f"Unknown TFLite quantisation {quantize!r}; choose int8 or none.")
    if quantize and (calibration is None or not len(calibration)):
        raise ExportError("int8 quantisation needs training images to calibrate on.")
    if wrote_in_tensorflow_child(model, tflite=path, mean=mean, std=std,
                                 class_names=class_names, quantize=quantize,
                                 calibration=calibration):
        return
    import tensorflow as tf

    shape = model_input_shape(model)

    def model_call(x):
        return tf.cast(model(x, training=False), tf.float32)

    function = tflite_function(model_call, shape, mean=mean, std=std, class_names=class_names)
    frozen = _frozen(function)
    # Through a SavedModel of the frozen function: the converter keeps the output names then
    # (from a concrete function it loses them), and no variable is left to keep as a resource
    # variable (READ_VARIABLE ops, and batched matmuls instead of FULLY_CONNECTED).
    with tempfile.TemporaryDirectory(prefix="keras_cnns-tflite-") as tmp:
        module = tf.Module()
        module.serving = frozen
        tf.saved_model.save(module, tmp, signatures={SIGNATURE: frozen.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if calibration.shape[-1] != shape[-1]:
                raise ExportError(f"The calibration images have {calibration.shape[-1]} "
                                  f"channels, the model takes {shape[-1]}.")
            samples = at_size(calibration, shape[:2])

            def representative():
                for image in samples:
                    yield {"images": image[None]}

            converter.representative_dataset = representative
        try:
            with warnings.catch_warnings():  # int8 calibration runs the deprecated interpreter
                warnings.simplefilter("ignore")
                data = converter.convert()
        except Exception as error:  # the converter's errors are many and unrelated classes
            raise ExportError(f"The TFLite converter failed: {str(error).splitlines()[0]}") \
                from None
    Path(path).write_bytes(data)


def _frozen(function):
    """`function` with its variables folded into constants, and its named outputs."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = function.get_concrete_function()
    constants = convert_variables_to_constants_v2(concrete)
    names = sorted(concrete.structured_outputs)  # the flat order of a dict's values

    def serving(images):
        return dict(zip(names, constants(images), strict=True))

    return tf.function(serving, input_signature=function.input_signature, autograph=False)


def calibration_sample(images: np.ndarray, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """`count` images spread evenly over the split (every class, by the splits' shuffling)."""
    index = np.linspace(0, len(images) - 1, num=min(count, len(images))).round().astype(int)
    return np.asarray(images)[np.unique(index)]


def at_size(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 images resized to `size` (bilinear, half-pixel centres), rounded; unchanged when
    they have it. scripts/verify.py repeats this: keep them equal."""
    images = np.asarray(images, np.uint8)
    if images.shape[1:3] == tuple(size):
        return images
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear").numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def interpreter(path: str | Path):
    """The LiteRT interpreter of `path` (ai_edge_litert's, else TensorFlow's) and its name."""
    try:
        from ai_edge_litert import interpreter as litert

        make, name = litert.Interpreter, "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        make, name = tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__})"
    with warnings.catch_warnings():  # TF 2.21 warns that its interpreter moved to LiteRT
        warnings.simplefilter("ignore")
        return make(model_path=str(path)), name


def ops_details(lite) -> list[dict] | None:
    """Each op's name and operand and result types, read through the interpreter's private
    `_get_ops_details` (TensorFlow and ai_edge_litert alike have no public one); None when this
    interpreter lacks it or answers in another form."""
    try:
        details = [dict(op) for op in lite._get_ops_details()]
    except (AttributeError, TypeError, ValueError):
        return None
    wanted = {"op_name", "operand_types", "result_types"}
    return details if all(wanted <= set(op) for op in details) else None


def op_names(details: list[dict]) -> list[str]:
    return sorted({str(op["op_name"]) for op in details})


def float_ops(details: list[dict]) -> list[str]:
    """The ops that compute on float32 (in an int8 file: the entrance cast and the exits)."""
    return sorted({str(op["op_name"]) for op in details
                   if np.float32 in list(op["operand_types"]) + list(op["result_types"])})


def run_tflite(path: str | Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The file's outputs for uint8 `images` of its input size, one image per call."""
    lite, _ = interpreter(path)
    runner = lite.get_signature_runner(SIGNATURE)
    parts: dict[str, list] = {}
    for image in np.asarray(images, np.uint8):
        for name, value in runner(images=image[None]).items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


def input_size(path: str | Path) -> tuple[int, int, int]:
    lite, _ = interpreter(path)
    shape = lite.get_signature_runner(SIGNATURE).get_input_details()["images"]["shape"]
    return int(shape[1]), int(shape[2]), int(shape[3])


def check_tflite(path: str | Path, images: np.ndarray, labels: np.ndarray, signature, *,
                 class_names=None, quantize: str | None = None,
                 calibration_images: int | None = None) -> dict[str, Any]:
    """Run `path` on the test `images` (resized to its input size) and compare it with the
    loaded `serving_default` `signature` on the same images; the manifest's `tflite` section.

    Raises ExportError when a float file's probabilities differ by more than FLOAT_TOLERANCE,
    an int8 file loses more than INT8_ACCURACY_DROP of accuracy, an op is not a builtin or the
    labels are not the classes' names.
    """
    from keras_cnns.export.saved_model import run_serving

    lite, interpreter_name = interpreter(path)
    details = ops_details(lite)
    if details is None:
        # write_tflite's converter was told builtin ops only, and refuses anything else itself.
        print(f"note: {interpreter_name} lists no ops, so {Path(path).name}'s ops go unrecorded "
              "(the converter allowed TFLite builtins only).", file=sys.stderr, flush=True)
    ops = None if details is None else op_names(details)
    foreign = [op for op in ops or () if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
    if foreign:
        raise ExportError(f"{Path(path).name} has ops that are not TFLite builtins: {foreign}.")
    height, width, channels = input_size(path)
    if images.shape[-1] != channels:
        raise ExportError(f"{Path(path).name} takes {channels} channels, the test images have "
                          f"{images.shape[-1]}.")
    resized = at_size(images, (height, width))
    reference, _ = run_serving(signature, resized)
    out = run_tflite(path, resized)
    labels = np.asarray(labels, np.int64)
    accuracy = float(np.mean(out["classes"] == labels))
    reference_accuracy = float(np.mean(np.argmax(reference, axis=-1) == labels))
    worst = float(np.abs(out["probabilities"].astype(np.float64) - reference).max())
    name = Path(path).name
    if quantize is None and not worst <= FLOAT_TOLERANCE:
        raise ExportError(f"The TFLite interpreter's probabilities differ from serving_default's "
                          f"by {worst:.2e} on {len(images)} images, more than "
                          f"{FLOAT_TOLERANCE:.0e}.")
    if quantize and reference_accuracy - accuracy > INT8_ACCURACY_DROP:
        raise ExportError(f"int8 quantisation cost {100 * (reference_accuracy - accuracy):.2f} "
                          f"points of test accuracy ({accuracy:.4f} against "
                          f"{reference_accuracy:.4f}), more than {100 * INT8_ACCURACY_DROP:g}.")
    if class_names is not None:
        expected = [str(class_names[c]) for c in out["classes"]]
        if [label.decode() for label in out["labels"]] != expected:
            raise ExportError(f"{name}'s labels are not the class names of its classes.")
    import tensorflow as tf

    return {
        "file": name,
        "quantize": quantize,
        "size_bytes": Path(path).stat().st_size,
        "sha256": sha256_file(path),
        "inputs": {"images": f"uint8 [1, {height}, {width}, {channels}]; other sizes: resize "
                             "first (bilinear, half-pixel centres)"},
        "outputs": {"probabilities": "float32 [1, classes]", "classes": "int64 [1]",
                    **({"labels": "string [1], the class name"} if class_names is not None
                       else {})},
        "ops": ops,
        "float_ops": None if details is None else float_ops(details),
        "converter": f"tf.lite.TFLiteConverter (TensorFlow {tf.__version__}), builtin ops only"
                     + (", full-integer int8" if quantize else ""),
        "calibration": ({"split": "train", "images": int(calibration_images or 0)}
                        if quantize else None),
        "interpreter": interpreter_name,
        "checked_against": SIGNATURE,
        "checked_images": int(len(images)),
        "test_images": f"the stored test split resized to {height}x{width} (bilinear, "
                       "half-pixel centres, rounded to uint8)",
        "test_accuracy": accuracy,
        "serving_default_test_accuracy": reference_accuracy,
        "max_probability_gap": worst,
        "tolerance": FLOAT_TOLERANCE if quantize is None else None,
        "max_accuracy_drop": INT8_ACCURACY_DROP if quantize else None,
    }


def latency_ms(call, repeats: int = 200, warmup: int = 20) -> float:
    """Median wall time of `call()` in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)
