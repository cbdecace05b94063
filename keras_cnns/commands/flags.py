"""Command-line flags generated from RunConfig, so every flag carries its field's name.

`--batch-size` sets `batch_size`, `--model-kwargs activation=relu` sets
`model_kwargs`, and `--config run.json` loads a whole config that the flags
given beside it override. Usage errors print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from typing import Any

from keras_cnns import config as config_module
from keras_cnns.commands.cli import OneLineParser, note_writer
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.data.augment import list_augment_policies
from keras_cnns.models import get_model_entry, list_models

HELP = {
    "model": f"architecture, one of: {', '.join(list_models())}",
    "dataset": "digits (embedded), synthetic, folder, fashion_mnist, mnist or any TFDS name",
    "data_dir": "TFDS data dir, a folder of IDX files, or an image folder",
    "image_size": "square input size the images are resized to",
    "epochs": "training epochs",
    "batch_size": "global batch size, summed over all replicas",
    "optimizer": f"one of: {', '.join(config_module.OPTIMIZERS)}",
    "lr": "peak learning rate for the global batch",
    "schedule": f"learning-rate decay after warmup, one of: {', '.join(config_module.SCHEDULES)}",
    "warmup_epochs": "linear warmup length in epochs (the recipe's is scaled down with a "
    "shorter --epochs)",
    "weight_decay": "decoupled weight decay (AdamW and SGD; Adam has none)",
    "momentum": "SGD momentum",
    "label_smoothing": "label smoothing of the one-hot targets, in [0, 1)",
    "ema_decay": "keep an exponential moving average of the weights with this decay, in [0, 1) "
    "(0: none; default: the recipe's, else none), e.g. 0.99; validation, the best checkpoint, "
    "the test scores and the export use it",
    "clip_norm": "clip each step's gradient to this global norm, in (0, inf)",
    "dropout": "dropout rate of the model's classifier",
    "width": "multiplier on every layer's channels and units",
    "model_kwargs": "other model options as KEY=VALUE, e.g. activation=relu pooling=max",
    "augment": f"augmentation policy, one of: {', '.join(list_augment_policies())}",
    "erase_prob": "random erasing of one box per training image with this probability, in "
    "[0, 1], after the --augment policy's ops (timm's --reprob; 0.25 is a common choice); "
    "default: the policy's own (erase, strong: 0.5; else none)",
    "mixup_alpha": "MixUp of the training batches: Beta(alpha, alpha) mixing weights; 0 is off "
    "(0.2 is a common choice)",
    "cutmix_alpha": "CutMix of the training batches: Beta(alpha, alpha) kept shares; 0 is off "
    "(1.0 is a common choice); with --mixup-alpha too, each mixed batch gets one of the two",
    "mix_prob": "probability that a training batch is mixed (MixUp or CutMix)",
    "train_fraction": "share of the training split to train on, stratified by class and "
    "drawn with --seed (validation and test stay whole)",
    "seed": "seed of weights, shuffling and augmentation",
    "deterministic": "bit-reproducible run (op determinism, deterministic input pipeline)",
    "mixed_precision": "off, auto (float16 on a GPU, bfloat16 on a CPU with it), float16, bfloat16",
    "jit_compile": "compile the train step with XLA",
    "steps_per_execution": "train steps per compiled call; 0 chooses from the model",
    "batch_shards": "split each batch into this many shards trained side by side, one per CPU "
    "core with single-threaded kernels; 0 chooses (one per core, at least 16 images each, on a "
    "CPU-only TensorFlow run); 1 turns it off",
    "early_stopping": "stop after this many epochs without val_accuracy gain; 0 never stops",
    "filter_images": "write the first layer's filters to TensorBoard as images each epoch "
    "(RUN/logs/filters)",
    "strategy": "auto, default, mirrored (all local GPUs) or multi_worker (TF_CONFIG)",
    "output": "export directory; default saved_models/<model>-<dataset>-<stamp>",
    "onnx": "also write model.onnx into the export (needs the onnx extra)",
    "tflite": "also write model.tflite (LiteRT, builtin ops, uint8 images of the model's input "
    "size in), checked by the interpreter on the test split",
    "tflite_quantize": "none (float32) or int8: full-integer quantisation of model.tflite, "
    "calibrated on training images",
    "run_dir": "parent folder of run directories",
    "resume": "continue the unfinished run in this run directory",
}

_RECIPE_FIELDS = (
    "image_size",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "warmup_epochs",
    "weight_decay",
    "augment",
    "label_smoothing",
    "mixed_precision",
    "dropout",
    "width",
)


def _recipe_default(name: str) -> str:
    parts = []
    for model in list_models():
        entry = get_model_entry(model)
        off = config_module.OFF_UNLESS_RECIPE.get(name)
        value = entry.recipe.get(name, entry.options.get(name, off))
        changes = [f"{dataset}: {recipe[name]}" for dataset, recipe in
                   entry.dataset_recipes.items() if name in recipe]
        parts.append(f"{model}: {value}" + (f" ({', '.join(changes)})" if changes else ""))
    return "from the model's recipe (" + ", ".join(parts) + ")"


def _parse_model_kwargs(items: list[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-kwargs takes KEY=VALUE pairs, got {item!r}.")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


def build_parser(
    prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config",
        metavar="JSON",
        help="load a RunConfig (config.json, an export's manifest.json, a tuner's best.json); "
        "flags given beside it override it (default: none)",
    )
    defaults = RunConfig()
    for field in dataclasses.fields(RunConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        shown = _recipe_default(field.name) if field.name in _RECIPE_FIELDS else default
        help_text = f"{HELP[field.name]} (default: {shown})"
        if field.name == "model_kwargs":
            parser.add_argument(flag, nargs="+", metavar="KEY=VALUE", help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif field.name == "mixed_precision":
            parser.add_argument(flag, nargs="?", const="auto", help=help_text + "; alone: auto")
        else:
            kind = {int: int, float: float}.get(type(default)) if default is not None else None
            if field.type in ("int | None", "int"):
                kind = int
            elif field.type in ("float | None", "float"):
                kind = float
            parser.add_argument(flag, type=kind or str, help=help_text)
    # ArgumentDefaultsHelpFormatter would print "(default: ==SUPPRESS==)"; the text above says it.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _write_note(message: str) -> None:
    sys.stderr.write(f"note: {message}\n")


def config_from_args(args: argparse.Namespace, note=_write_note) -> RunConfig:
    """Merge `--config` (if any) with the flags given; raises ConfigError.

    A `--model` other than the config file's drops the file's recipe values and model options
    (they were chosen for the other model); `note` gets one sentence naming what was dropped.
    Values the file's recipe derived (`RunConfig.derived_fields`) are derived again.
    """
    given = {key: value for key, value in vars(args).items() if key in _field_names()}
    if "model_kwargs" in given:
        given["model_kwargs"] = _parse_model_kwargs(given["model_kwargs"])
    config_file = getattr(args, "config", None)
    base = RunConfig.from_json(config_file) if config_file else RunConfig()
    values = base.to_dict()
    # Where the recorded run lived is not part of what it computed: a re-run from its config
    # (or its export's manifest) gets its own run directory and export path.
    values.update(output=None, resume=None)
    # What the file's recipe derived (its warmup) follows the flags given now, as with --model.
    values.update(dict.fromkeys(base.derived_fields()))
    if config_file and "dataset" in given and given["dataset"] != base.dataset:
        # The file's data directory held the file's data set, not the one named now.
        values["data_dir"] = None
    if config_file and "model" in given and given["model"] != base.model:
        dropped = _dropped_recipe(base, given["model"])
        for name in _RECIPE_FIELDS:
            values[name] = None
        values["model_kwargs"] = {}
        if dropped:
            note(
                f"--model {given['model']} replaces {config_file}'s {base.model} values "
                f"{', '.join(dropped)} with {given['model']}'s recipe."
            )
    values.update(given)
    return RunConfig.from_dict(values)


def _dropped_recipe(base: RunConfig, model: str) -> list[str]:
    """`name=value` of the recipe fields and options of `base` that `model`'s recipe changes."""
    if model not in list_models():
        return []  # validation names the unknown model
    entry = get_model_entry(model)
    recipe = entry.recipe_for(base.dataset)
    dropped = []
    for name in _RECIPE_FIELDS:
        value = getattr(base, name)
        if value is not None and value != recipe.get(name, entry.options.get(name)):
            dropped.append(f"{name}={value}")
    kwargs = base.model_kwargs if isinstance(base.model_kwargs, dict) else {}
    dropped.extend(f"{name}={value}" for name, value in sorted(kwargs.items()))
    return dropped


def parse_config(argv=None, prog=None, description=None) -> tuple[RunConfig, argparse.Namespace]:
    """Parse argv into a resolved RunConfig; a bad value exits 2 with one line."""
    parser = build_parser(prog, description)
    args = parser.parse_args(argv)
    try:
        return config_from_args(args, note=note_writer(parser.prog)).resolve(), args
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def _field_names():
    return {field.name for field in dataclasses.fields(RunConfig)}
