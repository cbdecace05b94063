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
