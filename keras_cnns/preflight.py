"""Up-front checks of a run: everything that can be refused before a file is written.

`check_run(config)` is the first thing `train()` and a tuning search do. It builds the model
once without allocating its weights (Keras' stateless scope), which both validates every model
option (an option value the model rejects becomes a `ConfigError`) and gives the parameter
count and every layer's output size for a memory estimate; it probes that the places the run
writes to can be written; and it checks that the optional packages a flag needs are installed.
Each failure is a `ConfigError` of one sentence, which the command lines turn into exit 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.machine import machine_memory, run_python

# Weights, their gradients and the two moments of Adam(W): four float32 copies of the
# parameters. Every layer's output is kept for the backward pass, which makes a gradient of
# the same size: two float32 copies of the activations per image.
PARAMETER_COPIES = 4
ACTIVATION_COPIES = 2
BYTES_PER_FLOAT = 4
# The estimate assumes colour input and ten classes: a data set is only read after the checks.
ESTIMATE_CHANNELS = 3
ESTIMATE_CLASSES = 10
ONNX_MODULES = ("onnxruntime", "onnx", "tf2onnx")


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    activations_per_image: int
    batch_size: int

    @property
    def bytes(self) -> int:
        weights = PARAMETER_COPIES * self.parameters
        activations = ACTIVATION_COPIES * self.activations_per_image * self.batch_size
        return BYTES_PER_FLOAT * (weights + activations)


def check_run(config: RunConfig, *, write_places: bool = True,
              own_export: bool = False) -> MemoryEstimate:
    """Refuse, in one sentence, a resolved `config` that cannot run here; return its estimate.

    `write_places=False` skips the probes of `run_dir` and `output` (for callers that write
    elsewhere, such as a tuning search). `own_export=True` says that the existing `output` is
    the export of the unfinished run this command continues (killed before it finished), which
    the trainer keeps.
    """
    if not config.is_resolved():
        raise ValueError("check_run takes a resolved RunConfig (config.resolve()).")
    from keras_cnns.data import list_augment_policies

    if config.augment not in list_augment_policies():
        raise ConfigError(
            f"augment must be one of {', '.join(list_augment_policies())}, "
            f"got {config.augment!r}."
        )
    check_extras(config)
    estimate = estimate_memory(config)
    limit = machine_memory()
    if limit is not None and estimate.bytes > limit:
        raise ConfigError(
            f"{config.model} with image_size {config.image_size}, width {config.width} and "
            f"batch_size {config.batch_size} needs about {human_bytes(estimate.bytes)} of memory "
            f"to train ({_count(estimate.parameters)} parameters, "
            f"{_count(estimate.activations_per_image)} activations per image), more than this "
            f"machine's {human_bytes(limit)}; lower image_size, width or batch_size."
        )
    if write_places and not config.resume:
        check_writable_dir(config.run_dir, "--run-dir")
        if config.output is not None:
            if Path(config.output).exists() and not own_export:
                raise ConfigError(
                    f"Export path {config.output} already exists; choose another --output."
                )
            check_writable_dir(Path(config.output).parent, "--output", shown=config.output)
        else:
            check_writable_dir("saved_models", "the default --output")
    return estimate


def check_extras(config: RunConfig) -> None:
    """The optional packages that `config`'s flags need are importable."""
    if config.onnx:
        missing = [name for name in ONNX_MODULES if not _importable(name)]
        if missing:
            raise ConfigError(
                f"--onnx needs {', '.join(missing)}; install the onnx extra "
                "(pip install -e '.[onnx]') or drop --onnx."
            )
    if config.tflite:
        missing = tflite_converter_missing()
        if missing:
            raise ConfigError(f"--tflite needs TensorFlow's TFLite converter, and {missing}; "
                              "drop --tflite or install a TensorFlow that has it.")


def tflite_converter_missing() -> str | None:
    """Why the TFLite converter cannot run here, or None when it can."""
    try:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter
    except (ImportError, AttributeError) as error:
        return f"it is not importable ({error})"
    if not hasattr(converter, "from_saved_model"):
        return f"TensorFlow {tf.__version__}'s tf.lite.TFLiteConverter has no from_saved_model"
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or no __spec__
        return False


def estimate_memory(config: RunConfig) -> MemoryEstimate:
    """Build `config`'s model without weights: its options are valid, and what it costs."""
    registry = _pending_variables()
    if registry is None:
        print("note: this Keras keeps its not-yet-created weights where preflight cannot clear "
              "them, so the model is sized in a child process.", file=sys.stderr, flush=True)
        return _estimate_in_child(config)
    known = len(registry)
    try:
        return _estimate_without_weights(config)
    finally:
        # The weights were never created; nothing may initialise them later.
        del registry[known:]


def _pending_variables() -> list | None:
    """Keras' list of variables made in a stateless scope, which the next scope to close
    creates; None when this Keras has no such list (it is private: keras.src, 3.13-3.15)."""
    import keras

    try:
        from keras.src.backend.common import global_state

        registry = global_state.get_global_attribute("uninitialized_variables", [], True)
    except (ImportError, AttributeError, TypeError):
        return None
    with keras.StatelessScope(initialize_variables=False):
        probe = keras.Variable(keras.initializers.Zeros(), shape=(1,))
    if not (isinstance(registry, list) and registry and registry[-1] is probe):
        return None
    registry.pop()
    return registry


def _estimate_without_weights(config: RunConfig) -> MemoryEstimate:
    import keras

    from keras_cnns.models import build_model

    size = config.image_size
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = build_model(
                config.model,
                input_shape=(size, size, ESTIMATE_CHANNELS),
                num_classes=ESTIMATE_CLASSES,
                **config.model_options(),
            )
    except (ValueError, TypeError, OverflowError) as error:
        # The models' own errors are sentences naming the option and its value.
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if not message:
            message = f"{config.model} cannot be built with {config.model_options()}."
        raise ConfigError(message) from None
    activations = sum(
        math.prod(int(d) for d in output.shape[1:])
        for layer in model.layers
        for output in _outputs(layer)
    )
    parameters = sum(math.prod(int(d) for d in w.shape) for w in model.weights)
    return MemoryEstimate(parameters, activations, config.batch_size)


_CHILD = """
import json, sys
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.preflight import _estimate_without_weights
try:
    estimate = _estimate_without_weights(RunConfig.from_dict(json.load(sys.stdin)))
    print(json.dumps({"estimate": [estimate.parameters, estimate.activations_per_image]}))
except ConfigError as error:
    print(json.dumps({"error": str(error)}))
"""


def _estimate_in_child(config: RunConfig) -> MemoryEstimate:
    """The weight-free build in a process of its own, whose exit drops the pending weights."""
    import json

    import keras

    answer = json.loads(run_python(keras.backend.backend(), ["-c", _CHILD],
                                   stdin=json.dumps(config.to_dict()),
                                   what="weight-free model build").stdout.splitlines()[-1])
    if "error" in answer:
        raise ConfigError(answer["error"])
    return MemoryEstimate(*answer["estimate"], config.batch_size)


def _outputs(layer):
    output = layer.output
    return output if isinstance(output, (list, tuple)) else [output]


def _count(number: int) -> str:
    return f"{number:,}" if number < 10**15 else f"10^{len(str(number)) - 1}"


def human_bytes(count: int) -> str:
    """`count` bytes for a person: "6.5 MB", "103.7 TB", "10^290 bytes"."""
    count = int(count)
    if count >= 10**18:
        return f"10^{len(str(count)) - 1} bytes"
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000:
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def check_writable_dir(directory, flag: str, *, shown=None) -> None:
    """`directory` exists and takes new files, or can be created: probe its nearest ancestor.

    The probe creates and removes a temporary file, so a read-only place or a path under a
    regular file is refused here instead of after training.
    """
    shown = directory if shown is None else shown
    path = Path(directory)
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(
            f"{flag} {shown} cannot be created: {ancestor} is a file, not a directory."
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".keras_cnns-probe-", dir=ancestor)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"{flag} {shown} is not writable: no file can be created in {ancestor} "
            f"({error.strerror or error})."
        ) from None
