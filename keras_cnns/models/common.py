"""Argument checks shared by every architecture (one-sentence ValueErrors)."""

from __future__ import annotations

import math


def check_common_args(name, input_shape, num_classes, width, dropout, min_size):
    """Validate builder arguments and return `(height, width, channels)` as ints."""
    try:
        height, width_px, channels = (int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} needs input_shape=(height, width, channels), got {input_shape!r}."
        ) from None
    if channels < 1:
        raise ValueError(f"{name} needs at least 1 input channel, got {channels}.")
    if height < min_size or width_px < min_size:
        raise ValueError(
            f"{name} needs inputs of at least {min_size}x{min_size} pixels, "
            f"got {height}x{width_px}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{name} needs num_classes >= 2, got {num_classes!r}.")
    if not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"{name} needs width > 0, got {width!r}.")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name} needs dropout in [0, 1), got {dropout!r}.")
    return height, width_px, channels


def scaled(units: int, width: float) -> int:
    """`units` times the width multiplier, rounded, and never below 1."""
    return max(1, int(round(units * width)))


def check_choice(name, option, value, choices):
    if value not in choices:
        raise ValueError(
            f"{name} option {option} must be one of {', '.join(map(repr, choices))}, got {value!r}."
        )


def read_activation(keras_model, layer: str = "conv1") -> str:
    """The activation name of `layer`, as the builders' `activation` option spells it."""
    activation = keras_model.get_layer(layer).get_config().get("activation")
    if not isinstance(activation, str):
        raise ValueError(f"Layer '{layer}' has a custom activation {activation!r}.")
    return activation


def read_dropout(keras_model) -> float:
    """The rate of the model's first Dropout layer, 0.0 when it has none."""
    rates = [layer.rate for layer in keras_model.layers if type(layer).__name__ == "Dropout"]
    return float(rates[0]) if rates else 0.0
