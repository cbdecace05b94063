"""Every command of the project, run as `keras-cnns COMMAND [flags]` (one console script).

Each command is one module here whose `main(argv, prog)` turns flags into one library call;
`scripts/<name>.py` are shims over the same modules, so `python scripts/train.py --model NAME`
and `keras-cnns train --model NAME` are the same run. This package imports nothing heavy:
`keras-cnns --help` and usage errors print before TensorFlow starts.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

from keras_cnns.commands.cli import quiet_tensorflow

# The order of `keras-cnns --help`; each is the module of its name (`-` as `_`), whose
# docstring's first sentence, up to its colon, is what `--help` says of it.
COMMANDS = ("train", "tune", "evaluate", "predict", "verify", "convert", "ablate", "parity",
            "benchmark", "profile", "tflite-latency", "preview", "visualize", "preset",
            "probe")
# scripts/<file>.py -> command, where the file's name is not the command's.
SCRIPT_NAMES = {"preview_data": "preview", "profile_step": "profile",
                "tflite_latency": "tflite-latency"}


def run(command: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run one command as its console form or its scripts/ shim does."""
    module_name = command.replace("-", "_")
    prog = prog or f"keras-cnns {command}"
    quiet_tensorflow()
    module = importlib.import_module(f"keras_cnns.commands.{module_name}")
    return module.main(argv, prog=prog)


def script(path: str) -> int:
    """The body of every scripts/<name>.py shim."""
    name = Path(path).stem
    return run(SCRIPT_NAMES.get(name, name), sys.argv[1:], prog=f"{name}.py")


def summary(command: str) -> str:
    """What `command` does: its module's docstring up to the first colon or full stop, read
    without importing the module (so `keras-cnns --help` starts no TensorFlow)."""
    path = Path(__file__).with_name(command.replace("-", "_") + ".py")
    first = ast.get_docstring(ast.parse(path.read_text())).splitlines()[0]
    return first.split(": ", 1)[0].split(". ", 1)[0].rstrip(".")


def main(argv: list[str] | None = None) -> int:
    """The `keras-cnns` console script and `python -m keras_cnns`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {summary(name)}" for name in COMMANDS)
    usage = ("usage: keras-cnns COMMAND [flags]   (keras-cnns COMMAND --help)\n\n"
             f"commands:\n{listing}\n")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        sys.stderr.write(f"keras-cnns: error: Unknown command {argv[0]!r}; the commands are: "
                         f"{', '.join(COMMANDS)}.\n")
        return 2
    return run(argv[0], argv[1:])
