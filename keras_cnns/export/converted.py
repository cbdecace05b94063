"""Export a converted model (no training run, no test split) for serving and `predict.py`.

A checkpoint from elsewhere, such as torchvision's ImageNet AlexNet converted to Keras by
`keras_cnns.reference.checkpoints.torch_file_to_keras`, has no `DataSource` behind it: its
preprocessing constants and class names come from its publisher. `export_converted` writes the
same directory layout as a training export (`directory.write_export`, atomic):

- the SavedModel with `serving_default` (uint8 images of any size, resized to the model's
  input and normalised with `mean` and `std` on the [0, 1] scale), `serving_bytes` (encoded
  images) and `serve`,
- `model.keras`,
- `golden.npz`: a fixed batch of random probe images, whose probabilities the manifest holds,
- `manifest.json`: `dataset` (class names, mean, std), `preprocessing`, `golden`,
  `conversion` (where the weights came from), versions and file hashes. `metrics` and
  `evaluation` are null: there was no test split to score.

`scripts/predict.py EXPORT photo.jpg` reads the class names from it and prints them. For
torchvision's weights: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), 224x224 RGB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export import directory, saved_model

PROBE_IMAGES = 4
PROBE_SEED = 0


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (blank lines at the end ignored)."""
    lines = Path(path).read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


def export_converted(
    model,
    output: str | Path,
    *,
    mean,
    std,
    class_names,
    conversion: dict[str, Any] | None = None,
) -> Path:
    """Write `model` as an export at `output` (which must not exist) and return its path.

    Args:
        model: a Keras model with one `(height, width, 1 or 3)` input, returning logits.
        output: the export directory.
        mean, std: per-channel normalisation on the [0, 1] pixel scale (1 or 3 values each).
        class_names: one name per logit.
        conversion: what to record about the weights' origin (source file, logits gap, ...).
    """
    height, width, channels = saved_model.model_input_shape(model)
    class_names = [str(name) for name in class_names]
    classes = int(model.outputs[0].shape[-1])
    if len(class_names) != classes:
        raise directory.ExportError(
            f"The model has {classes} outputs but {len(class_names)} class names were given."
        )
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or len(mean) not in (1, 3) or min(std) <= 0:
        raise directory.ExportError(
            f"mean and std need 1 or 3 values each, std positive; got {mean} and {std}."
        )
    probe = np.random.default_rng(PROBE_SEED).integers(
        0, 256, (PROBE_IMAGES, height, width, channels), dtype=np.uint8
    )

    def contents(tmp_dir: Path) -> dict[str, Any]:
        saved_model.write_saved_model(model, tmp_dir, mean=mean, std=std, class_names=class_names)
        saved_model.save_keras_file(model, tmp_dir / directory.MODEL_FILE)
        serving = saved_model.load_serving(tmp_dir)
        golden, _ = saved_model.run_serving(serving, probe, batch_size=len(probe))
        np.savez_compressed(tmp_dir / directory.GOLDEN_FILE, images=probe,
                            labels=np.zeros(len(probe), np.int64))
        return {
            "format_version": directory.FORMAT_VERSION,
            "kind": "converted",
            "config": {"model": model.name, "image_size": height if height == width else None},
            "conversion": dict(conversion or {}),
            "dataset": {"name": "converted", "class_names": class_names, "mean": mean,
                        "std": std, "channels": channels, "num_classes": classes},
            "preprocessing": saved_model.preprocessing_record(height, width, channels, mean, std),
            "signatures": saved_model.signatures_record(),
            "metrics": None,
            "evaluation": None,
            "golden": {
                "indices": list(range(len(probe))),
                "images_file": directory.GOLDEN_FILE,
                "probabilities": golden.tolist(),
                "tolerance": 1e-6,
            },
            "versions": directory.versions(),
            "hardware": directory.hardware(),
        }

    return directory.write_export(output, contents)
