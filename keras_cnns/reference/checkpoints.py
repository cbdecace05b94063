"""Files in, files out: a `.keras` model or an export <-> a PyTorch `state_dict` file.

`keras_to_torch_file` writes the `state_dict` of the model's PyTorch reference module
(`torch.save`, loadable with `torch.load(path, weights_only=True)` and `load_state_dict`) and,
beside it, `<name>.json`: the `build_reference` arguments that rebuild the module. The way back,
`torch_file_to_keras`, reads those arguments (or takes them, for a checkpoint from elsewhere,
e.g. d2l's LeNet or torchvision's AlexNet, whose channels and classes it reads from the
weights) and writes a `.keras` model. Each direction checks itself: both models'
logits on the same random batch, `max|a - b| / max|keras|` at most `TOLERANCE`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from keras_cnns.reference.conversion import keras_weights_to_state_dict, load_state_dict_into_keras
from keras_cnns.reference.spec import reference_spec
from keras_cnns.reference.twins import build_reference

TOLERANCE = 1e-5
CHECK_BATCH = 8
SPEC_FORMAT = "keras_cnns reference state_dict 1"


class ConversionError(RuntimeError):
    """A conversion that cannot be done or does not reproduce the logits; one sentence."""


def load_keras_model(path: str | Path):
    """A `.keras` file, or an export directory's `model.keras`, loaded without its optimizer."""
    import keras

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file() or path.suffix != ".keras":
        raise ConversionError(f"{path} is neither a .keras file nor an export with model.keras.")
    return keras.saving.load_model(path, compile=False)


def logits_gap(keras_model, module, *, batch: int = CHECK_BATCH, seed: int = 0) -> float:
    """The parity metric between `keras_model` and the reference `module` on a random batch."""
    import keras

    shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)
    want = keras.ops.convert_to_numpy(keras_model(x, training=False)).astype(np.float64)
    with torch.inference_mode():
        got = module.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    return float(np.abs(got - want).max() / (np.abs(want).max() or 1.0))


def spec_path(state_dict_path: str | Path) -> Path:
    return Path(state_dict_path).with_suffix(".json")


def _fresh(path: Path, what: str) -> Path:
    if path.exists():
        raise ConversionError(f"{what} {path} already exists; choose another --output.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check(gap: float, direction: str) -> float:
    if not gap <= TOLERANCE:
        raise ConversionError(
            f"The {direction} conversion changes the logits by {gap:.2e} (relative), "
            f"more than {TOLERANCE:.0e}."
        )
    return gap


def keras_to_torch_file(source: str | Path, output: str | Path) -> dict[str, Any]:
    """Write `source`'s weights as a reference `state_dict` to `output`, and its spec beside.

    Returns the spec written (`reference`: the `build_reference` arguments, `logits_gap`).
    """
    model = load_keras_model(source)
    spec = reference_spec(model)
    output = _fresh(Path(output), "Output")
    sidecar = _fresh(spec_path(output), "Output")
    state = keras_weights_to_state_dict(model)
    module = build_reference(spec["name"], input_shape=spec["input_shape"],
                             num_classes=spec["num_classes"], **spec["options"])
    module.load_state_dict(state, strict=True)
    gap = _check(logits_gap(model, module), "Keras -> PyTorch")
    record = {"format": SPEC_FORMAT, "reference": spec, "source": str(source),
              "logits_gap": gap, "torch": torch.__version__}
    torch.save(state, output)
    sidecar.write_text(json.dumps(record, indent=2) + "\n")
    return record


# A checkpoint from elsewhere fixes channels and classes but, for most models, not the input
# size; then it is ImageNet's, the size such checkpoints are trained at.
CHECKPOINT_IMAGE_SIZE = 224


def read_state_dict(path: str | Path) -> dict:
    """A PyTorch `state_dict` file (also one wrapped as `{"state_dict": ...}`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is one sentence
        raise ConversionError(f"{path} is not a PyTorch state_dict: {error}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a checkpoint that wraps it
    if not isinstance(state, dict):
        raise ConversionError(f"{path} holds a {type(state).__name__}, not a state_dict.")
    return state


def spec_from_state_dict(
    name: str, state: dict, *, input_shape=None, num_classes: int | None = None,
    options: dict | None = None,
) -> dict[str, Any]:
    """The `build_reference` arguments of a registry model that `state` fits: the input
    channels from the first convolution's weight, the classes from the last layer's bias, and
    `input_shape` `(H, W)` or `(H, W, C)` (default: 224x224, or the model's smallest input).
    A `num_classes` or channel count given that the weights do not hold is a ConversionError."""
    from keras_cnns.models import get_model_entry

    entry = get_model_entry(name)
    options = dict(options or {})
    size = max(CHECKPOINT_IMAGE_SIZE, entry.min_image_size)
    height, width = (input_shape or (size, size))[:2]
    probe = build_reference(name, input_shape=(height, width, 1), num_classes=2, **options)
    paths = list(probe.keras_layer_map.values())
    try:
        channels = int(state[f"{paths[0]}.weight"].shape[1])
        classes = int(state[f"{paths[-1]}.bias"].shape[0])
    except (KeyError, IndexError, AttributeError):
        raise ConversionError(
            f"The state_dict has no {paths[0]}.weight and {paths[-1]}.bias, so it is not a "
            f"{name} checkpoint."
        ) from None
    if input_shape is not None and len(input_shape) == 3 and int(input_shape[2]) != channels:
        raise ConversionError(
            f"--input-shape says {input_shape[2]} channels; the checkpoint's first layer "
            f"takes {channels}."
        )
    if num_classes is not None and int(num_classes) != classes:
        raise ConversionError(
            f"--num-classes says {num_classes}; the checkpoint's last layer has {classes} "
            "classes."
        )
    return {"name": name, "input_shape": [int(height), int(width), channels],
            "num_classes": classes, "options": options}


def read_spec(sidecar: Path) -> dict[str, Any]:
    """The `reference` of a sidecar that `keras_to_torch_file` wrote, its schema checked."""
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConversionError(f"{sidecar} is not readable JSON ({error}).") from None
    spec = record.get("reference") if isinstance(record, dict) else None
    shape = spec.get("input_shape") if isinstance(spec, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(shape, list) and len(shape) == 3
            and all(_whole(side) for side in shape) and _whole(spec.get("num_classes"))
            and isinstance(spec.get("options", {}), dict)):
        raise ConversionError(
            f"{sidecar} does not hold a reference spec ({{\"reference\": {{\"name\", "
            "\"input_shape\": [H, W, C], \"num_classes\", \"options\"}}), as convert.py "
            "writes it."
        )
    return spec


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def torch_file_to_keras(
    state_dict_file: str | Path, output: str | Path, *, spec: dict | None = None
) -> dict[str, Any]:
    """Build the Keras model of a reference `state_dict` file and write it to `output`.

    `spec` (`name`, `input_shape`, `num_classes`, `options`) defaults to the `.json` that
    `keras_to_torch_file` wrote beside the file; without `input_shape` or `num_classes` they
    come from the checkpoint (`spec_from_state_dict`), so a torchvision checkpoint needs only
    the name. Returns `{"reference": spec, "logits_gap"}`.
    """
    from keras_cnns.models import build_model

    state_dict_file = Path(state_dict_file)
    if spec is None:
        sidecar = spec_path(state_dict_file)
        if not sidecar.is_file():
            raise ConversionError(
                f"{state_dict_file} has no {sidecar.name} beside it; say which model it is "
                "(--like, or --model with --input-shape and --num-classes)."
            )
        spec = read_spec(sidecar)
    output = _fresh(Path(output), "Output")
    if output.suffix != ".keras":
        raise ConversionError(f"Keras models are saved as .keras files, not {output.name}.")
    state = read_state_dict(state_dict_file)
    if spec.get("input_shape") is None or spec.get("num_classes") is None:
        spec = spec_from_state_dict(spec["name"], state, input_shape=spec.get("input_shape"),
                                    num_classes=spec.get("num_classes"),
                                    options=spec.get("options"))
    options = dict(spec.get("options") or {})
    shape, classes = tuple(spec["input_shape"]), int(spec["num_classes"])
    model = build_model(spec["name"], input_shape=shape, num_classes=classes, **options)
    module = build_reference(spec["name"], input_shape=shape, num_classes=classes, **options)
    try:
        load_state_dict_into_keras(state, model)
        module.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as error:
        raise ConversionError(str(error).splitlines()[0]) from None
    gap = _check(logits_gap(model, module), "PyTorch -> Keras")
    model.save(output)
    return {"reference": spec, "logits_gap": gap}
