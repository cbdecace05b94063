"""What every command shares: one argument parser, quiet start-up, one-sentence failures.

Light on purpose (the standard library only): `keras-cnns --help` and every usage error are
printed before TensorFlow is imported, so they carry none of its start-up lines.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

# TensorFlow's native libraries log before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
# cannot silence them: informational lines, and the warnings any start-up prints (CUDA probes
# on machines without a GPU, TensorRT's absence, the LiteRT converter's ignored options).
# Any other warning may be about this run, so it stays.
_NATIVE_NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog"
    rb"|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"
    rb"|[WE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?:cuda_\w+\.cc:\d+\] failed call to cuInit"
    rb"|\S+:\d+\] TF-TRT Warning: Could not find TensorRT"
    rb"|tf_tfl_flatbuffer_helpers\.cc:\d+\] Ignored \w+\.$))"
)


def is_native_noise(line: bytes) -> bool:
    """Whether quiet_tensorflow drops this line of native stderr."""
    return _NATIVE_NOISE.match(line) is not None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`PROG: error: Sentence.`) and exit 2."""

    def error(self, message):
        # A range error of `integer` or `number` reads "--seed must be ..." rather than
        # argparse's "argument --seed: must be ...".
        message = re.sub(r"^argument (\S+): must ", r"\1 must ", message)
        sentence = message[0].upper() + message[1:]
        self.exit(2, f"{self.prog}: error: {sentence.rstrip('.')}.\n")


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


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off stderr; call before TensorFlow is imported.

    Set KERAS_CNNS_NATIVE_LOGS=1 to see every native log line.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_CNNS_NATIVE_LOGS") == "1":
        return
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                if not is_native_noise(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(original, 2)  # drops the pipe's last writer, so the pump reads to the end
        thread.join(timeout=5)

    atexit.register(restore)


# By name, so that importing this module stays free of TensorFlow.
_USER_ERRORS = {"DataError", "ExportError", "StorageError", "TrainingDivergedError", "TuningError"}


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
