"""The model card (a preset's README.md), written from its metadata.json and the model's layers.

Its sections follow Hugging Face's model-card template as keras-hub's presets fill it:
architecture, data (origin, split, licence), results with the command that measured each
figure, training recipe, time, hardware and software, intended use and limitations.
"""

from __future__ import annotations

import json

from keras_cnns.export.scoring import TOP_K_NAME
from keras_cnns.models import get_model_entry

# What the card says of the data sets this project documents; any other gets "not recorded".
DATASET_FACTS = {
    "digits": {
        "title": "scikit-learn digits (`sklearn.datasets.load_digits`)",
        "origin": "a copy of the test set of the UCI Optical Recognition of Handwritten Digits "
                  "data set (E. Alpaydin and C. Kaynak, 1998): 1,797 digits of 13 writers, "
                  "8x8 pixels of 17 grey levels, upscaled to the model's input",
        "licence": "CC BY 4.0, as the UCI Machine Learning Repository lists data set 80 "
                   "(cite Alpaydin and Kaynak, 1998)",
        "split": "this project's fixed stratified 70/10/20 split of the 1,797 images "
                 "(independent of the seed)",
        "limitations": "13 writers, digits centred and size-normalised by NIST's tools and "
                       "reduced to 8x8: scans, photos or MNIST's 28x28 strokes look different "
                       "to the model and are not what these scores describe",
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST (Zalando Research)",
        "origin": "70,000 28x28 greyscale photos of Zalando's articles in 10 classes "
                  "(H. Xiao, K. Rasul and R. Vollgraf, 2017, arXiv:1708.07747)",
        "licence": "MIT licence, copyright Zalando SE",
        "split": "the official 60,000 / 10,000 train and test split; validation is 10% of "
                 "train",
        "limitations": "product photos on a plain background, centred and greyscale: worn "
                       "clothes, photos of scenes or colour images are outside what it saw; "
                       "Shirt, T-shirt/top, Pullover and Coat are its most confused classes",
    },
}
UNKNOWN_FACTS = {
    "title": "{name}",
    "origin": "not recorded by keras_cnns",
    "licence": "not recorded by keras_cnns: see the data's publisher before sharing this model",
    "split": "as the export's manifest records it",
    "limitations": "only the test split below was measured",
}
# The manifest's top-5 (exports since top-5 was added, more than 5 classes); make_preset
# measures it for older exports.
TOP5_KEY = f"test_{TOP_K_NAME}"


def _row(cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _layer_table(model) -> list[str]:
    lines = [_row(("layer", "type", "output shape", "parameters")), _row(("---",) * 4)]
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else ""
        lines.append(_row((f"`{layer.name}`", type(layer).__name__, shape,
                           f"{layer.count_params():,}")))
    return lines


def _commit(versions: dict) -> str:
    if not versions.get("git_commit"):
        return "not from a git checkout"
    dirty = " with uncommitted changes" if versions.get("git_dirty") else ""
    return f"git commit {versions['git_commit'][:12]}{dirty}"


def _split_sizes(dataset: dict) -> str:
    sizes = dataset.get("split_sizes") or {}
    return " / ".join(f"{sizes[split]:,} {split}" for split in ("train", "validation", "test")
                      if split in sizes) or "sizes not recorded"


def model_card(model, metadata: dict, name: str) -> str:
    """README.md: the model card, from metadata.json and the model's layers."""
    model_name, dataset = metadata["model"], metadata["dataset"]["name"]
    facts = {key: value.format(name=dataset) for key, value in
             DATASET_FACTS.get(dataset, UNKNOWN_FACTS).items()}
    metrics, config, training = metadata["metrics"], metadata["config"], metadata["training"]
    hardware = training.get("hardware") or {}
    versions = training.get("versions") or {}
    flops = metadata["flops_per_image"]
    height, width, channels = metadata["input_shape"]
    classes = metadata["class_names"]
    lines = [
        "---",
        "library_name: keras",
        "pipeline_tag: image-classification",
        f"tags: [keras-cnns, {model_name}, {dataset}]",
        "---",
        "",
        f"# {name}: {model_name} on {facts['title']}",
        "",
        f"A keras_cnns preset in keras-hub's layout (config.json, model.weights.h5, "
        f"metadata.json). Load it with `keras_cnns.models.build_model(\"{model_name}\", "
        f"weights=PRESET)`, which checks every file's sha256 first; the model takes "
        f"{height}x{width}x{channels} images preprocessed as below and returns "
        f"{len(classes)} logits.",
        "",
        "## Architecture",
        "",
        f"`{model_name}`: {get_model_entry(model_name).reference}",
        "",
        f"- parameters: {metadata['parameter_count']:,}",
        "- FLOPs per image (2 x multiply-adds of the convolutions and dense layers): "
        + (f"{flops:,}" if flops else "not counted"),
        f"- input: {height}x{width}x{channels}; classes: {', '.join(classes)}",
        "",
        *_layer_table(model),
        "",
        "## Data",
        "",
        f"- data set: `{dataset}`, {facts['origin']}",
        f"- split: {facts['split']}; {_split_sizes(metadata['dataset'])}",
        f"- licence of the data: {facts['licence']}",
        f"- preprocessing: {metadata['preprocessing'].get('steps', '')}; mean "
        f"{metadata['preprocessing']['mean']}, std {metadata['preprocessing']['std']}",
        "",
        "## Results",
        "",
    ]
    if metrics:
        lines += [
            _row(("metric", "test split", "measured by")), _row(("---",) * 3),
            _row(("top-1 accuracy", f"{metrics['test_accuracy']:.4f} "
                  f"({metrics['test_correct']}/{metrics['test_examples']})",
                  metrics["measured_by"]["test_accuracy"])),
            _row(("top-5 accuracy", f"{metrics[TOP5_KEY]:.4f}", metrics["measured_by"][TOP5_KEY])
                 if TOP5_KEY in metrics else ("top-5 accuracy", "n/a", "5 or fewer classes")),
            _row(("loss", f"{metrics['test_loss']:.4f}", "as top-1")),
            "",
            f"One training run (seed {config.get('seed') if config else 'n/a'}) on one fixed "
            "test split: no spread over seeds is implied.",
        ]
    else:
        lines.append("Not scored: the export had no stored test split (converted weights, or a "
                     "split too large to store).")
    lines += ["", "## Training", ""]
    if config:
        recipe = ", ".join(f"{key} {value}" for key, value in sorted(config.items())
                           if value not in (None, {}, []))
        seconds = training.get("train_seconds")
        lines += [
            f"- recipe (the RunConfig): {recipe}",
            "- retrain: `keras-cnns train --config PRESET/metadata.json` (metadata.json's "
            "`config` is the RunConfig above)",
            f"- training time: {seconds:.1f} s of fitting" if seconds is not None
            else "- training time: not recorded",
        ]
    else:
        lines.append(f"- converted weights, not trained by keras_cnns: "
                     f"{json.dumps(metadata.get('conversion') or {}, sort_keys=True)}")
    gpus = ", ".join(hardware.get("gpus") or []) or "no GPU"
    lines += [
        f"- hardware: {hardware.get('cpu_model', 'not recorded')}, "
        f"{hardware.get('usable_cpu_count', '?')} usable CPU cores, {gpus}",
        f"- software: TensorFlow {versions.get('tensorflow', '?')}, Keras "
        f"{versions.get('keras', '?')} ({versions.get('keras_backend', '?')} backend), "
        f"keras_cnns {versions.get('keras_cnns', '?')}, {_commit(versions)}",
        "",
        "## Intended use",
        "",
        f"A reference {model_name} for learning, testing and benchmarking: classifying "
        f"single {'greyscale' if channels == 1 else 'colour'} images like those of "
        f"`{dataset}` into its {len(classes)} classes, and a known-good starting point for "
        "fine-tuning. Not for decisions about people.",
        "",
        "## Limitations",
        "",
        f"- The data: {facts['limitations']}.",
        "- Scores are of one run on one test split; inputs unlike the training data get "
        "confident wrong answers (the probabilities are not calibrated), and no robustness "
        "or fairness evaluation was done.",
        "",
    ]
    return "\n".join(lines)
