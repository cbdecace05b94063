"""The model registry: one `ModelEntry` per architecture, registered by the architecture's module.

After timm's registry: a model is built by name, and every entry carries what the tools need to
know about it without naming it: input sizes, a training recipe and search space, the PyTorch
reference module the converters and the parity report use, the Keras layers that set its width,
the inputs its parity tests must cover, and options small enough for quick generic tests.
Nothing outside `keras_cnns/models/` and `keras_cnns/reference/` names a model: the tools ask
`list_models()` and `get_model_entry(name)`, so an architecture is trained, tuned, converted,
measured and tested the day its module calls `register_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


def frozen(values: Mapping[str, Any] | None = None, **more: Any) -> Mapping[str, Any]:
    """A read-only mapping, for an entry's dictionaries."""
    return MappingProxyType({**(values or {}), **more})


@dataclasses.dataclass(frozen=True)
class ParityCase:
    """One input the Keras model and its PyTorch reference must agree on.

    Attributes:
        shape: `(height, width, channels)`.
        options: model options for this case.
        why: what the case exercises (the test id), e.g. "map1x1".
    """

    shape: tuple[int, int, int]
    options: Mapping[str, Any] = dataclasses.field(default_factory=frozen)
    why: str = ""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one architecture.

    Attributes:
        name: registry name (`--model NAME`).
        builder: `builder(input_shape=..., num_classes=..., **options)` -> `keras.Model`.
        default_image_size: the square input size its training recipe uses.
        min_image_size: the smallest square input the architecture accepts.
        options: the model options and their defaults (what `--model-kwargs`
            and the tuner may set).
        recipe: training defaults that meet the project's targets on the
            embedded `digits` data set (see docs/BENCHMARKS.md).
        dataset_recipes: data set name -> the recipe fields that differ on it (measured
            in docs/BENCHMARKS.md); `recipe_for(dataset)` merges them over `recipe`.
        reference: the paper or text the architecture follows.
        torch_reference: `"module:function"` of the PyTorch twin's builder, called like
            `builder` (channels-last `input_shape`); the module it returns carries
            `keras_layer_map` (Keras layer name -> submodule path), which the weight
            converters follow. The module is imported only when a converter needs it.
        layer_units: Keras layer name -> units (or filters) at `width=1`, for every layer that
            the `width` option scales; how a saved model's width is read back.
        read_options: `read_options(keras_model)` -> the options other than `width` that a
            built model shows in its layers (activation, dropout, ...).
        parity_cases: inputs the Keras model and the reference must agree on: the smallest,
            the feature-map sizes where pooling changes behaviour, odd and non-square ones.
        test_options: options that make a small instance of the architecture (for example a
            narrower `width`), used by generic tests that do not need the real size.
        search_space: the default hyperparameter search space (`keras_cnns.tuning.space`
            format).
    """

    name: str
    builder: Callable[..., Any]
    default_image_size: int
    min_image_size: int
    options: Mapping[str, Any]
    recipe: Mapping[str, Any]
    reference: str
    torch_reference: str = ""
    layer_units: Mapping[str, int] = dataclasses.field(default_factory=frozen)
    read_options: Callable[[Any], dict[str, Any]] | None = None
    parity_cases: tuple[ParityCase, ...] = ()
    test_options: Mapping[str, Any] = dataclasses.field(default_factory=frozen)
    search_space: Mapping[str, Any] = dataclasses.field(default_factory=frozen)
    dataset_recipes: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=frozen)

    def recipe_for(self, dataset: str | None) -> dict[str, Any]:
        """The training defaults on `dataset`: the recipe, with that data set's changes."""
        return {**self.recipe, **self.dataset_recipes.get(str(dataset).lower(), {})}

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ValueError, in one sentence, for options this architecture does not have."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"Model '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {', '.join(self.options)}."
            )


_REGISTRY: dict[str, ModelEntry] = {}
_DEFAULT: list[str] = []


def register_model(entry: ModelEntry, *, default: bool = False) -> ModelEntry:
    """Add `entry` to the registry; `default=True` makes it the model of `--model`'s default."""
    if entry.name in _REGISTRY:
        raise ValueError(f"A model named '{entry.name}' is already registered.")
    _REGISTRY[entry.name] = entry
    if default:
        _DEFAULT[:] = [entry.name]
    return entry


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def default_model() -> str:
    """The model the command lines use when none is named."""
    return _DEFAULT[0] if _DEFAULT else list_models()[0]


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for `name`; a ValueError naming the known models otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(list_models())
        raise ValueError(f"Unknown model '{name}'; known models are: {known}.") from None


def build_model(name: str, *, input_shape=None, num_classes: int | None = None, weights=None,
                **options):
    """Build the registered architecture `name` as a functional `keras.Model`.

    Args:
        name: a name from `list_models()`.
        input_shape: `(height, width, channels)`, channels last.
        num_classes: number of output logits (at least 2).
        weights: None (freshly initialised), or a preset: a preset directory or the name of a
            shipped one (`keras_cnns.models.preset.list_presets()`). The model then comes from
            the preset, hashes checked, and must be a `name`; its input shape and classes are
            the preset's, so `input_shape` and `num_classes` may be left out.
        **options: architecture options (see each entry's `options`), for
            example `width=0.5, dropout=0.3` or `activation="relu"`; none with `weights`.

    Returns:
        An uncompiled `keras.Model` that maps float images to logits.
    """
    entry = get_model_entry(name)
    entry.check_options(options)
    if weights is not None:
        return _from_preset(name, weights, input_shape, num_classes, options)
    if input_shape is None or num_classes is None:
        raise TypeError("build_model needs input_shape and num_classes, or weights=PRESET.")
    return entry.builder(input_shape=input_shape, num_classes=num_classes, **options)


def _from_preset(name: str, weights, input_shape, num_classes, options):
    from keras_cnns.models.preset import PresetError, load_preset

    if options:
        raise PresetError(f"A preset fixes the options of its model; pass none of "
                          f"{', '.join(sorted(options))} with weights={str(weights)!r}.")
    model = load_preset(weights, model=name)
    shape = tuple(int(d) for d in model.input_shape[1:])
    classes = int(model.output_shape[-1])
    if input_shape is not None and tuple(int(d) for d in input_shape) != shape:
        raise PresetError(f"Preset {str(weights)!r} takes input_shape {shape}, not "
                          f"{tuple(input_shape)}.")
    if num_classes is not None and num_classes != classes:
        raise PresetError(f"Preset {str(weights)!r} predicts {classes} classes, not {num_classes}.")
    return model
