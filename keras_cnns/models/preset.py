"""Presets: a trained model in keras-hub's preset layout, read back with its hashes checked.

A preset is a directory that keras-hub's `upload_preset` accepts and `from_preset`-style
loaders read:

    config.json        `keras.saving.serialize_keras_object(model)` (no compile or build config)
    model.weights.h5   `model.save_weights`
    metadata.json      keras-hub's `keras_version`, `parameter_count` and `date_saved`, and
                       ours: `model` (the registry name), `files` (the sha256 of every other
                       file), the class names, input shape, preprocessing, data set, metrics,
                       FLOPs and the RunConfig that trained it (`config`)
    README.md          the model card

`keras_cnns.export.preset.make_preset` writes one from an export; the package ships a few
under `keras_cnns/presets/` (`list_presets()`). Reading lives here, below the export layer, so
that `build_model(name, weights=PRESET)` can load one.

Example:
    >>> from keras_cnns.models import build_model
    >>> model = build_model("lenet", weights="lenet_digits")   # a shipped preset, or a path
    >>> model.input_shape
    (None, 28, 28, 1)
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
README_FILE = "README.md"
# What every preset holds besides metadata.json (which lists their hashes).
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, README_FILE)
PRESET_FORMAT = 1
SHIPPED_DIR = Path(str(resources.files("keras_cnns") / "presets"))


class PresetError(ValueError):
    """A preset that cannot be read or is not the model asked for; the message is one sentence."""


def list_presets() -> list[str]:
    """Names of the presets shipped with the package, sorted."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(path.name for path in SHIPPED_DIR.iterdir()
                  if (path / METADATA_FILE).is_file())


def preset_path(preset: str | Path) -> Path:
    """The directory of `preset`: a directory path, or else the name of a shipped preset."""
    path = Path(preset)
    if path.is_dir():
        return path
    if str(preset) in list_presets():
        return SHIPPED_DIR / str(preset)
    shipped = ", ".join(list_presets()) or "none"
    raise PresetError(f"Preset {str(preset)!r} is neither a directory nor a shipped preset "
                      f"(shipped: {shipped}).")


def sha256_of(path: Path) -> str:
    """The file's sha256 (a preset is read below the export layer, which has its own)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(preset: str | Path) -> dict[str, Any]:
    """The preset's metadata.json, after checking that every file it lists is there with its
    sha256 (config.json, model.weights.h5 and README.md among them); else PresetError."""
    folder = preset_path(preset)
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except FileNotFoundError:
        raise PresetError(f"Preset {folder} has no {METADATA_FILE}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PresetError(f"The {METADATA_FILE} of preset {folder} is not valid JSON.") from None
    hashes = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(hashes, dict) or not isinstance(metadata.get("model"), str):
        raise PresetError(f"The {METADATA_FILE} of preset {folder} has no files table or no "
                          "model name; it is not a keras_cnns preset.")
    for name in REQUIRED_FILES:
        if name not in hashes:
            raise PresetError(f"The {METADATA_FILE} of preset {folder} lists no sha256 for {name}.")
    for name, expected in sorted(hashes.items()):
        path = folder / name
        if name not in REQUIRED_FILES:
            raise PresetError(f"The {METADATA_FILE} of preset {folder} lists {name!r}, which a "
                              "preset does not hold.")
        if not path.is_file():
            raise PresetError(f"Preset {folder} has no {name}, which its {METADATA_FILE} lists.")
        if sha256_of(path) != expected:
            raise PresetError(f"Preset {folder}'s {name} does not match its sha256 in "
                              f"{METADATA_FILE}.")
    return metadata


def load_preset(preset: str | Path, *, model: str | None = None):
    """The Keras model of `preset` (a directory or a shipped name), with its weights.

    Every file's sha256 is checked before anything is deserialized, config.json is read with
    `safe_mode=True` (no Lambda layers), and a preset of another architecture than `model`
    (metadata.json's model, or the name config.json gives the model) is refused. Any failure
    is a PresetError of one sentence.
    """
    folder = preset_path(preset)
    metadata = read_metadata(folder)
    recorded = metadata["model"]
    if model is not None and recorded != model:
        raise PresetError(f"Preset {folder} holds a {recorded} model, not {model}.")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise PresetError(f"The {CONFIG_FILE} of preset {folder} is not valid JSON.") from None
    inner = config.get("config") if isinstance(config, dict) else None
    described = inner.get("name") if isinstance(inner, dict) else None
    if described != recorded:
        raise PresetError(f"Preset {folder}'s {CONFIG_FILE} describes the model {described!r}, "
                          f"not the {recorded} its {METADATA_FILE} records.")
    import keras

    try:
        net = keras.saving.deserialize_keras_object(config, safe_mode=True)
        net.load_weights(folder / WEIGHTS_FILE)
    except Exception as error:  # a foreign config or weights: say which preset, not how
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PresetError(f"Preset {folder} cannot be loaded as a Keras model "
                          f"({reason[:200]}).") from None
    return net


def from_preset(preset: str | Path):
    """The model of `preset`, whatever its architecture (keras-hub's `from_preset`)."""
    return load_preset(preset)
