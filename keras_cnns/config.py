"""RunConfig: the one object that drives a run, from flags or JSON to the manifest.

Fields left as None take the model's recipe from the registry (`resolve()`), so
each registered model (`--model NAME`) gets a recipe that meets the
project's targets on the embedded `digits` data set. A resolved config is what
`config.json` and the export manifest record, and what `--config` reads back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from keras_cnns.models import default_model, get_model_entry, list_models

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_PRECISION = ("off", "auto", "float16", "bfloat16")
TFLITE_QUANTIZE = ("none", "int8")
# Fields that say where a run writes and which extra files its export holds, not what it
# computes: no run identity, search identity or reproduction verdict depends on them.
PLACEMENT_FIELDS = ("run_dir", "resume", "output", "onnx", "tflite", "tflite_quantize")
# Fields added after runs were first identified, with the value that means "as before": an
# identity leaves them out at that value, so the unfinished runs of before still resume.
LATER_FIELDS_OFF = {"ema_decay": None, "clip_norm": None, "filter_images": False,
                    "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mix_prob": 1.0, "erase_prob": None}
# Fields that a model's recipe may set and that are off where it does not: `resolve()` fills
# them with these values, so a resolved config (and its identity) is what it was before a
# recipe could set them.
OFF_UNLESS_RECIPE = {"label_smoothing": 0.0, "mixed_precision": "off"}
# A cap that no real run reaches (LeNet's recipe is 40, AlexNet's 20) but that stops a typo such
# as 1000000000000 from running for ever.
MAX_EPOCHS = 100_000
# What NumPy and TensorFlow accept as a seed.
MAX_SEED = 2**32 - 1
# Sources that read no files: a --data-dir beside them would be ignored, yet recorded.
SOURCES_WITHOUT_FILES = ("digits", "synthetic")


class ConfigError(ValueError):
    """A run configuration a user gave that cannot run; the message is one sentence."""


def read_json_file(path: str | Path, what: str) -> Any:
    """The JSON in `path`; a missing or unreadable file is a one-sentence `ConfigError`
    that starts with `what` ("Config file", "Search space file")."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{what} {path} is not valid JSON ({error}).") from None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run depends on.

    The learning rate is for the global batch (`batch_size`, summed over every
    replica and worker). It is not rescaled when replicas are added: to keep a
    recipe's dynamics at k times the batch, multiply `lr` by k (the linear
    scaling rule of Goyal et al., 2017) and keep the warmup.
    """

    model: str = dataclasses.field(default_factory=default_model)
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    schedule: str = "cosine"
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    label_smoothing: float | None = None  # None: the recipe's, else 0 (`OFF_UNLESS_RECIPE`)
    # The decay of an exponential moving average of the weights (Keras' optimizer `use_ema`):
    # validation, the best checkpoint, test scores and the export use the average. 0: off;
    # None: the recipe's (LeNet-5 on digits: 0.99), else off.
    ema_decay: float | None = None
    # The largest global norm of a step's gradient (Keras' `global_clipnorm`). None: no clipping.
    clip_norm: float | None = None
    dropout: float | None = None
    width: float | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    augment: str | None = None
    # The probability of random erasing on top of `augment`'s ops (data/augment.py); None: the
    # policy's own (0.5 in `erase` and `strong`, else none).
    erase_prob: float | None = None
    # MixUp and CutMix of the training batches (data/mixing.py): each image's mixing weight is
    # drawn from Beta(alpha, alpha); an alpha of 0 turns its method off.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # the probability that a training batch is mixed
    # A stratified share of the training split (validation and test stay whole).
    train_fraction: float = 1.0
    seed: int = 0
    deterministic: bool = False
    mixed_precision: str | None = None  # None: the recipe's, else "off" (`OFF_UNLESS_RECIPE`)
    # XLA made fit 1.4x (AlexNet@96) to 1.7x (LeNet@28) slower on the CPU (docs/BENCHMARKS.md).
    jit_compile: bool = False
    steps_per_execution: int = 0
    # Shards of each batch computed side by side, one per CPU core (training/sharding.py);
    # 0: one per core on a CPU-only single-replica TensorFlow run, else 1.
    batch_shards: int = 0
    early_stopping: int = 0
    # TensorBoard image summaries of the first layer's filters each epoch (logs/filters).
    filter_images: bool = False
    strategy: str = "auto"
    output: str | None = None
    onnx: bool = False
    tflite: bool = False
    tflite_quantize: str = "none"
    run_dir: str = "runs"
    resume: str | None = None

    def __post_init__(self):
        _validate(self)

    # -- recipe ---------------------------------------------------------------
    def resolve(self) -> RunConfig:
        """Fill every None field from the model's registry recipe (for this data set) and options.

        A recipe's warmup that would not fit a shorter `epochs` the user chose (AlexNet's 2
        warmup epochs with `--epochs 1`) is scaled with it: recipe warmup x epochs / recipe
        epochs (0.1 there). A warmup the user gave is never changed.
        """
        entry = get_model_entry(self.model)
        recipe = entry.recipe_for(self.dataset)
        filled = {}
        for field in dataclasses.fields(self):
            if getattr(self, field.name) is not None:
                continue
            if field.name in recipe:
                filled[field.name] = recipe[field.name]
            elif field.name in entry.options:
                filled[field.name] = entry.options[field.name]
        for name, off in OFF_UNLESS_RECIPE.items():
            if getattr(self, name) is None:
                filled.setdefault(name, off)
        warmup, epochs = filled.get("warmup_epochs"), self.epochs
        if warmup is not None and epochs is not None and warmup >= epochs:
            filled["warmup_epochs"] = warmup * epochs / recipe.get("epochs", epochs + warmup)
        return dataclasses.replace(self, **filled)

    def derived_fields(self) -> tuple[str, ...]:
        """The fields holding what `resolve()` derives from the others (a recipe's warmup,
        scaled to fit `epochs`): a config read back from a file re-derives them when a flag
        changes what they follow, as `--config best.json --epochs 1` shortens the warmup."""
        if self.warmup_epochs is None:
            return ()
        derived = dataclasses.replace(self, warmup_epochs=None).resolve().warmup_epochs
        return ("warmup_epochs",) if derived == self.warmup_epochs else ()

    def is_resolved(self) -> bool:
        """Whether `resolve()` has nothing left to fill (it would return this config).

        An entry point (`train`, `run_search`) resolves once; what it calls takes the resolved
        config and checks this instead of resolving again.
        """
        entry = get_model_entry(self.model)
        fillable = {*entry.recipe_for(self.dataset), *entry.options}
        return all(getattr(self, field.name) is not None
                   for field in dataclasses.fields(self) if field.name in fillable)

    def model_options(self) -> dict[str, Any]:
        """Options for `build_model`: dropout and width, then `model_kwargs`."""
        options = {"dropout": self.dropout, "width": self.width, **self.model_kwargs}
        return {key: value for key, value in options.items() if value is not None}

    # -- identity and serialisation -------------------------------------------
    def identity(self) -> str:
        """A short hash of what the run computes, to find an unfinished run of the same command."""
        payload = {k: v for k, v in self.to_dict().items() if k not in PLACEMENT_FIELDS}
        if payload.get("train_fraction") == 1.0:
            # The whole split is what every run did before this field existed:
            # leaving it out keeps their identities, so they still resume.
            del payload["train_fraction"]
        for name, off in LATER_FIELDS_OFF.items():
            if name in payload and payload[name] == off:
                del payload[name]
        if payload.get("batch_shards") == 0:
            # Likewise for the automatic choice, which the metrics record as a number (as
            # `mixed_precision: auto` records its dtype policy).
            del payload["batch_shards"]
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown config field {', '.join(map(repr, unknown))}.")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        """Read a config file, an export's `manifest.json` or a tuner's `best.json`."""
        path = Path(path)
        values = read_json_file(path, "Config file")
        if not isinstance(values, dict):
            raise ConfigError(f"Config file {path} does not hold a JSON object.")
        # A manifest (or a tuner's best.json) nests the run config under "config".
        if isinstance(values.get("config"), dict):
            values = values["config"]
        return cls.from_dict(values)


def with_later_fields(recorded: dict[str, Any]) -> dict[str, Any]:
    """A config recorded as a dict, with the fields it predates at their "as before" values
    (`LATER_FIELDS_OFF`), so that a manifest or search record written before a field existed
    compares equal to the same config today."""
    return {**LATER_FIELDS_OFF, **recorded}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(config: RunConfig) -> None:
    def fail(message):
        raise ConfigError(message)

    def check_choice(name, choices):
        value = getattr(config, name)
        if value is not None and value not in choices:
            fail(f"{name} must be one of {', '.join(choices)}, got {value!r}.")

    def check_int(name, low, high=None):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            fail(f"{name} must be an integer, got {value!r}.")
        if value is not None and value < low:
            fail(f"{name} must be at least {low}, got {value}.")
        if value is not None and high is not None and value > high:
            fail(f"{name} must be at most {high}, got {value}.")

    def check_float(name, low, high, *, low_open=False, high_open=True):
        value = getattr(config, name)
        if value is None:
            return
        if not _is_number(value) or not math.isfinite(value):
            fail(f"{name} must be a finite number, got {value!r}.")
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            upper = "inf" if high is None else high
            fail(f"{name} must be in {left}{low}, {upper}{right}, got {value}.")

    def check_path(name, *, optional=True):
        value = getattr(config, name)
        if value is None and optional:
            return
        if not isinstance(value, str) or not value.strip():
            flag = "--" + name.replace("_", "-")
            fail(f"{name} ({flag}) must be a non-empty path, got {value!r}.")

    if not isinstance(config.model, str) or config.model not in list_models():
        fail(f"Unknown model '{config.model}'; known models are: {', '.join(list_models())}.")
    entry = get_model_entry(config.model)
    if not isinstance(config.dataset, str) or not config.dataset:
        fail(f"dataset must be a non-empty name, got {config.dataset!r}.")
    check_path("data_dir")
    check_path("run_dir", optional=False)
    check_path("output")
    check_path("resume")
    if config.data_dir is not None and config.dataset.lower() in SOURCES_WITHOUT_FILES:
        fail(
            f"The {config.dataset} source reads no files, so --data-dir {config.data_dir} "
            "would be ignored; drop it, or name the data set that is in it (--dataset)."
        )
    check_int("image_size", 1)
    if config.image_size is not None and config.image_size < entry.min_image_size:
        fail(f"{config.model} needs image_size >= {entry.min_image_size}, got {config.image_size}.")
    check_int("epochs", 1, MAX_EPOCHS)
    check_int("batch_size", 1)
    check_int("seed", 0, MAX_SEED)
    check_int("steps_per_execution", 0)
    check_int("batch_shards", 0)
    check_int("early_stopping", 0)
    check_choice("optimizer", OPTIMIZERS)
    check_choice("schedule", SCHEDULES)
    check_choice("strategy", STRATEGIES)
    check_choice("mixed_precision", MIXED_PRECISION)
    check_choice("tflite_quantize", TFLITE_QUANTIZE)
    check_float("lr", 0.0, None, low_open=True)
    check_float("warmup_epochs", 0.0, None)
    check_float("weight_decay", 0.0, None)
    check_float("momentum", 0.0, 1.0)
    check_float("label_smoothing", 0.0, 1.0)
    check_float("ema_decay", 0.0, 1.0)
    check_float("clip_norm", 0.0, None, low_open=True)
    check_float("dropout", 0.0, 1.0)
    check_float("width", 0.0, None, low_open=True)
    check_float("train_fraction", 0.0, 1.0, low_open=True, high_open=False)
    check_float("erase_prob", 0.0, 1.0, high_open=False)
    check_float("mixup_alpha", 0.0, None)
    check_float("cutmix_alpha", 0.0, None)
    check_float("mix_prob", 0.0, 1.0, high_open=False)
    if config.mix_prob != 1.0 and not (config.mixup_alpha or config.cutmix_alpha):
        fail(f"--mix-prob {config.mix_prob} is the probability of mixing a batch, but nothing "
             "is mixed; add --mixup-alpha or --cutmix-alpha, or drop --mix-prob.")
    if (
        config.epochs is not None
        and config.warmup_epochs is not None
        and config.warmup_epochs >= config.epochs
    ):
        fail(f"warmup_epochs ({config.warmup_epochs}) must be below epochs ({config.epochs}); "
             "lower --warmup-epochs.")
    if not isinstance(config.model_kwargs, dict):
        fail(f"model_kwargs must be a mapping, got {config.model_kwargs!r}.")
    misplaced = sorted(set(config.model_kwargs) & {"dropout", "width"})
    if misplaced:
        fail(f"Set {misplaced[0]} with its own flag (--{misplaced[0]}), not in model_kwargs.")
    unknown = sorted(set(config.model_kwargs) - set(entry.options))
    if unknown:
        fail(
            f"Model '{config.model}' has no option {unknown[0]!r}; "
            f"its options are: {', '.join(entry.options)}."
        )
    for name in ("deterministic", "jit_compile", "onnx", "tflite", "filter_images"):
        if not isinstance(getattr(config, name), bool):
            fail(f"{name} must be true or false, got {getattr(config, name)!r}.")
    if config.tflite_quantize != "none" and not config.tflite:
        fail(f"--tflite-quantize {config.tflite_quantize} quantises model.tflite; add --tflite.")
