"""Search spaces as data: each model's default space is part of its registry entry (its own
file in `keras_cnns/models/`), and `--space FILE` reads a user's JSON file; both are checked here.

A space maps hyperparameter names, which are RunConfig field names, to a domain:

    {
      "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
      "width":   {"choices": [0.5, 1.0, 1.5, 2.0]},
      "lr":      {"min": 0.002, "max": 0.05, "sampling": "log"},
      "augment": {"choices": ["none", "light"]}
    }

`dropout` and `lr` are ranges (`min` < `max`, optional `step`, `sampling` "linear" or "log";
`lr` defaults to log), `width` and `augment` are lists of choices. Anything else, or a domain
that cannot be sampled, is a `ConfigError` of one sentence naming the file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from keras_cnns.config import ConfigError, RunConfig, read_json_file
from keras_cnns.models import get_model_entry

# name -> (kind, default sampling for ranges); the names are RunConfig fields.
HYPERPARAMETERS = {
    "dropout": ("range", "linear"),
    "width": ("choices", None),
    "lr": ("range", "log"),
    "augment": ("choices", None),
}
_RANGE_KEYS = ("min", "max", "step", "sampling")
# Trial values are rounded so that the table, best.json and the trial's own config agree
# exactly, and read like numbers a person would type.
_SIGNIFICANT_DIGITS = 4


@dataclasses.dataclass(frozen=True)
class Range:
    """A float range; `step` makes it a grid, `sampling="log"` samples it log-uniformly."""

    name: str
    min: float
    max: float
    step: float | None = None
    sampling: str = "linear"

    def declare(self, hp):
        return hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling)

    def to_dict(self) -> dict[str, Any]:
        spec = {"min": self.min, "max": self.max, "sampling": self.sampling}
        if self.step is not None:
            spec["step"] = self.step
        return spec


@dataclasses.dataclass(frozen=True)
class Choices:
    """A list of values, tried as given."""

    name: str
    values: tuple

    def declare(self, hp):
        return hp.Choice(self.name, list(self.values))

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.values)}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters one search tunes, each with its domain."""

    params: tuple[Range | Choices, ...]
    path: str = "<dict>"

    @property
    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def declare(self, hp) -> dict[str, Any]:
        """Register every hyperparameter with keras-tuner's `hp`; return this trial's values."""
        return {param.name: param.declare(hp) for param in self.params}

    def trial_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The tuned values of a trial (keras-tuner's own `tuner/...` keys dropped), rounded."""
        return {name: _round(values[name]) for name in self.names if name in values}

    def apply(self, config: RunConfig, values: dict[str, Any]) -> RunConfig:
        """`config` with a trial's values in place; the one definition of a trial's config."""
        return dataclasses.replace(config, **self.trial_values(values))

    def to_dict(self) -> dict[str, Any]:
        return {param.name: param.to_dict() for param in self.params}


def default_space(model: str) -> SearchSpace:
    """The search space `model`'s registry entry declares (a model with none cannot be tuned
    without `--space FILE`)."""
    values = dict(get_model_entry(model).search_space)
    if not values:
        raise ConfigError(f"Model '{model}' declares no search space; pass one with --space FILE.")
    return space_from_dict(values, f"the search space of model '{model}'")


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a space file; every problem is a one-sentence `ConfigError`."""
    values = read_json_file(path, "Search space file")
    return space_from_dict(values, str(path))


def space_from_dict(values: Any, where: str = "<dict>") -> SearchSpace:
    """Check a space given as a mapping (what a space file holds)."""
    if not isinstance(values, dict):
        raise ConfigError(f"Search space {where} must hold a JSON object, got {values!r}.")
    known = ", ".join(HYPERPARAMETERS)
    unknown = sorted(set(values) - set(HYPERPARAMETERS))
    if unknown:
        raise ConfigError(
            f"Search space {where} names unknown hyperparameter {unknown[0]!r}; "
            f"the tunable ones are: {known}."
        )
    if not values:
        raise ConfigError(f"Search space {where} tunes nothing; give at least one of: {known}.")
    params = []
    for name in HYPERPARAMETERS:  # a fixed order, whatever the file's
        if name in values:
            kind, sampling = HYPERPARAMETERS[name]
            check = _check_range if kind == "range" else _check_choices
            params.append(check(name, values[name], where, sampling))
    return SearchSpace(tuple(params), where)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(name: str, spec: Any, where: str, default_sampling: str) -> Range:
    def fail(message):
        raise ConfigError(f"In search space {where}, {name} {message}.")

    example = '{"min": 0.0, "max": 0.5}' if name == "dropout" else '{"min": 1e-3, "max": 1e-1}'
    if not isinstance(spec, dict):
        fail(f"must be a range like {example}, got {spec!r}")
    extra = sorted(set(spec) - set(_RANGE_KEYS))
    if extra:
        fail(f"has unknown key {extra[0]!r}; a range takes {', '.join(_RANGE_KEYS)}")
    for key in ("min", "max"):
        if key not in spec:
            fail(f"needs {key!r}; a range looks like {example}")
        if not _is_number(spec[key]):
            fail(f"{key} must be a finite number, got {spec[key]!r}")
    low, high = float(spec["min"]), float(spec["max"])
    if low >= high:
        fail(f"range [{low}, {high}] is empty: min must be below max")
    sampling = spec.get("sampling", default_sampling)
    if sampling not in ("linear", "log"):
        fail(f"sampling must be 'linear' or 'log', got {sampling!r}")
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or step <= 0:
            fail(f"step must be a positive number, got {step!r}")
        if sampling == "log":
            fail("cannot have a step with log sampling")
        if step > high - low:
            fail(f"step {step} is wider than the range [{low}, {high}]")
        step = float(step)
    if name == "dropout" and (low < 0 or high >= 1):
        fail(f"must lie in [0, 1), got [{low}, {high}]")
    if name == "lr" and low <= 0:
        fail(f"must be above 0, got min {low}")
    if sampling == "log" and low <= 0:
        fail(f"is sampled on a log scale, so its min must be above 0, got {low}")
    return Range(name, low, high, step, sampling)


def _check_choices(name: str, spec: Any, where: str, _sampling=None) -> Choices:
    def fail(message):
        raise ConfigError(f"In search space {where}, {name} {message}.")

    example = '{"choices": [0.5, 1.0]}' if name == "width" else '{"choices": ["none", "light"]}'
    if not isinstance(spec, dict) or set(spec) != {"choices"}:
        fail(f"must be a list of choices like {example}, got {spec!r}")
    choices = spec["choices"]
    if not isinstance(choices, list) or not choices:
        fail(f"needs a non-empty list of choices, got {choices!r}")
    if len(set(map(repr, choices))) != len(choices):
        fail(f"lists a choice twice in {choices!r}")
    if name == "width":
        for value in choices:
            if not _is_number(value) or value <= 0:
                fail(f"choices must be positive numbers, got {value!r}")
        # keras-tuner wants one type per Choice: 1 and 0.5 are both floats here.
        return Choices(name, tuple(float(value) for value in choices))
    from keras_cnns.data import list_augment_policies

    policies = list_augment_policies()
    for value in choices:
        if value not in policies:
            fail(f"choice {value!r} is not an augmentation policy; they are: {', '.join(policies)}")
    return Choices(name, tuple(choices))


def _round(value):
    if isinstance(value, float):
        return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    return value
