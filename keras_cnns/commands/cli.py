"""What every command shares: one argument parser, quiet start-up, one-sentence failures.

Light on purpose (the standard library only): `keras-cnns --help` and every usage error are
printed before TensorFlow is imported, so they carry none of its start-up lines.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

# verify.py must run as a lone file, so the console helpers every command shares live there
# and are used from there, not copied.
from keras_cnns.serving.verify_export import (  # noqa: F401  (used by every command)
    OneLineParser,
    is_native_noise,
    quiet_native_logs,
)

quiet_tensorflow = quiet_native_logs



SEEDS = (0, 2**32 - 1)  # what NumPy and TensorFlow accept as a seed


def integer(low: int | None = None, high: int | None = None):
    """An argparse `type=` for a whole number within `[low, high]` (None: unbounded).

    A value outside is a usage error of one sentence naming the flag, e.g.
    `--seed must be a whole number from 0 to 4294967295, got -1.`
    """
    wanted = "a whole number" + _bounds(low, high)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return parse


def number(low: float | None = None, high: float | None = None, *, above: float | None = None,
           finite: bool = True):
    """An argparse `type=` for a float within `[low, high]`, and `> above` when given.

    NaN is refused whatever the bounds (it compares false with all of them), and so are
    infinities unless `finite=False`.
    """
    wanted = ("a finite number" if finite else "a number") + _bounds(low, high, above)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        inside = not math.isnan(value) and (math.isfinite(value) or not finite)
        inside = inside and (low is None or value >= low) and (high is None or value <= high)
        if not inside or (above is not None and not value > above):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text.strip()}")
        return value

    return parse


def clashing_input(output, inputs) -> Path | None:
    """The first of `inputs` that `output` is, or lies inside, once links are resolved: a
    command must not write over what it reads. None when there is none."""
    target = Path(os.path.realpath(output))
    for given in filter(None, inputs):
        source = Path(os.path.realpath(given))
        if target == source or source in target.parents or (
                target.exists() and source.exists() and os.path.samefile(target, source)):
            return Path(given)
    return None


def comma_names(what: str):
    """An argparse type: "a,b" -> ["a", "b"] (spaces stripped, repeats dropped), refusing an
    empty name; `what` names them in the message ("model names")."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",")]
        if not all(names):
            raise argparse.ArgumentTypeError(f"must be {what} separated by commas, got {text!r}")
        return list(dict.fromkeys(names))

    return parse


def check_output_folder(parser, output: Path, what: str = "folder") -> None:
    """Refuse an --output that cannot become `what` (a file on its path, a folder that cannot
    be written), before anything runs."""
    existing = next(path for path in (output, *output.parents) if path.exists())
    if not existing.is_dir():
        parser.error(f"--output {output} must be a {what}, but {existing} is a file")
    if not os.access(existing, os.W_OK):
        parser.error(f"--output {output} cannot be written: {existing} is not writable")


def _bounds(low, high, above=None) -> str:
    if above is not None:
        return f" above {above}" + (f" and at most {high}" if high is not None else "")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def note_writer(prog: str):
    """One `PROG: note: ...` line on stderr per call."""
    return lambda message: sys.stderr.write(f"{prog}: note: {message}\n")


# By name, so that importing this module stays free of TensorFlow.
_USER_ERRORS = {"DataError", "ExportError", "PresetError", "StorageError", "TrainingDivergedError",
                "TuningError"}


@contextmanager
def user_errors(prog: str):
    """Turn the errors a user can cause into one sentence on stderr and a non-zero exit.

    Configuration errors exit with 2 (like argparse), data, export and
    divergence errors with 1. Anything else is a bug and keeps its traceback.
    """
    from keras_cnns.config import ConfigError

    try:
        yield
    except ConfigError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; re-run the same command to resume.\n")
        raise SystemExit(130) from None
    except Exception as error:
        if type(error).__name__ in _USER_ERRORS:
            sys.stderr.write(f"{prog}: error: {error}\n")
            raise SystemExit(1) from None
        raise
