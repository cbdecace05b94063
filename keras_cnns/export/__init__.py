"""Exports: one self-verifying directory, written atomically.

An export is written into a hidden temporary sibling directory and renamed into place only when
complete, so a failed or interrupted export never leaves a half-written directory and never
replaces an earlier one. (A process killed outright leaves only its `.<name>.tmp-*` sibling.)

Layout of `saved_models/<model>-<dataset>-<stamp>/`, itself the SavedModel's root:
    saved_model.pb, variables/, assets/, fingerprint.pb    the TF SavedModel (see below)
    model.keras       the trained Keras model
    test_set.npz      the test split the metrics were computed on (`images` uint8 [N, H, W, C],
                      `labels` int64 [N]) when at most TEST_SET_LIMIT_BYTES; else golden.npz,
                      the probe images only, and verifying the accuracy needs the split itself
    manifest.json     config, dataset, preprocessing, metrics, evaluation, golden, versions,
                      hardware, and `files`: the sha256 of every other file
    model.onnx        only with `export_model(..., onnx=True)` or `scripts/convert.py EXPORT --to
                      onnx`: serving_default as ONNX (onnx_export), checked by onnxruntime
                      against the SavedModel; the manifest's `onnx` section
    model.tflite      only with `export_model(..., tflite=True)` or `scripts/convert.py EXPORT
                      --to tflite`: a LiteRT file (tflite_export), float or int8, checked by
                      the interpreter against the SavedModel; the manifest's `tflite` section

SavedModel signatures (plain `tf.saved_model.load(export_dir)`, no Keras needed):
    serving_default(images: uint8 [batch, height, width, channels]) ->
        {"probabilities": float32 [batch, classes], "classes": int64 [batch],
         "labels": string [batch] (each image's class name)}
        Any height and width; channels 1 or 3 (converted to the model's, anything else fails).
        The training preprocessing (`keras_cnns.data.preprocess`: scale, resize, normalise, with
        the source's constants) is traced into the graph.
    serving_bytes(image_bytes: string [batch]) -> the same outputs, from encoded JPEG, PNG, GIF
        or BMP files decoded in the graph (TF Serving's REST `{"b64": ...}` convention).
    serve(inputs: float32 [batch, *model input]) -> logits, for already-preprocessed inputs.
One signature per name (as TF Serving needs), so the channel count is handled inside the graph.
Any Keras backend exports: TensorFlow traces the model directly; JAX through jax2tf (StableHLO
lowered for CPU and CUDA inside the graph; serving needs TensorFlow only); torch, whose Keras export
needs torch_xla, through a TensorFlow-backend subprocess that loads the saved `model.keras`.

`metrics.test_accuracy` and `test_loss` are computed through `serving_default` on the stored
uint8 test images, so `scripts/verify.py` (TensorFlow and numpy only) reproduces them; the
trainer's own Keras-side figures are kept beside them as `keras_test_accuracy` and
`keras_test_loss`.

The modules, each one idea, import one another without a cycle (import-linter checks):
    directory         file names, atomic writing and amending, the manifest, provenance
    scoring           accuracy and loss, the test split's fingerprint, the golden probe
    saved_model       the SavedModel's signatures, per Keras backend
    encoded_images    serving_bytes' in-graph decoding, its header size checked first
    canonical_savedmodel   the same model, the same SavedModel bytes
    onnx_export       model.onnx;  tflite_export  model.tflite
    tensorflow_process, worker   the TensorFlow-backend child that converts a `.keras` file
    bundle            export_model: the whole export of a training run
    amend             add model.onnx or model.tflite to an existing export
    converted         export_converted: an export of weights from elsewhere (no training run)
    preset            make_preset: a keras-hub preset and model card of an export
"""

from keras_cnns.export.amend import add_onnx, add_tflite
from keras_cnns.export.bundle import TEST_SET_LIMIT_BYTES, export_model
from keras_cnns.export.directory import (
    EVAL_BATCH_SIZE,
    FORMAT_VERSION,
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ONNX_FILE,
    TEST_SET_FILE,
    TFLITE_FILE,
    ExportError,
    hardware,
    read_manifest,
    remove_stale_exports,
    sha256_file,
    versions,
    write_export,
)
from keras_cnns.export.saved_model import (
    load_serving,
    model_input_shape,
    preprocessing_record,
    run_serving,
    save_keras_file,
    serving_function,
    write_saved_model,
)
from keras_cnns.export.scoring import (
    GOLDEN_SIZE,
    GOLDEN_TOLERANCE,
    LOSS_EPSILON,
    content_sha256,
    golden_indices,
    score,
)
from keras_cnns.export.worker import write_in_tensorflow

__all__ = [
    "EVAL_BATCH_SIZE", "FORMAT_VERSION", "GOLDEN_FILE", "GOLDEN_SIZE", "GOLDEN_TOLERANCE",
    "LOSS_EPSILON", "MANIFEST_FILE", "MODEL_FILE", "ONNX_FILE", "TEST_SET_FILE",
    "TEST_SET_LIMIT_BYTES", "TFLITE_FILE", "ExportError", "add_onnx", "add_tflite",
    "content_sha256", "export_model", "golden_indices", "hardware", "load_serving",
    "model_input_shape", "preprocessing_record", "read_manifest", "remove_stale_exports",
    "run_serving",
    "save_keras_file", "score", "serving_function", "sha256_file", "versions",
    "write_export", "write_in_tensorflow", "write_saved_model",
]
