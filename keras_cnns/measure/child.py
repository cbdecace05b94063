"""The one way measure/ runs a measurement in a process of its own, and that process's entry.

A benchmark case, a profiled side, a parity worker and a oneDNN probe each run in a fresh
child: nothing warm (caches, thread pools, compiled graphs) carries over from one measurement
to the next, and the child may run another Keras backend (Keras picks one per process) or an
ISA cap. `run` starts

    python -m keras_cnns.measure.child MODULE.FUNCTION     (keyword arguments as JSON on stdin)

which calls `keras_cnns.measure.MODULE.FUNCTION(**kwargs)` and prints `{"result": ...}` on a
line of its own; `run` returns that result and everything else the child printed on stdout.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from typing import Any

from keras_cnns.machine import BackendProcessError, run_python

_RESULT = '{"result": '


def run(function: str, kwargs: Mapping[str, Any], *, backend: str = "tensorflow",
        env: Mapping[str, str] | None = None, timeout: float | None = None,
        what: str = "measurement") -> tuple[Any, str]:
    """Run `function` (`MODULE.FUNCTION` of keras_cnns.measure) in a child under `backend`,
    with `env` added to this process's environment: its result, and the child's stdout.

    A BackendProcessError when the child fails or prints no result.
    """
    proc = run_python(backend, ["-m", __name__, function], stdin=json.dumps(kwargs),
                      extra_env=env, timeout=timeout, what=what)
    results = [line for line in proc.stdout.splitlines() if line.startswith(_RESULT)]
    if not results:
        raise BackendProcessError(f"The {what} printed no result.", "no result")
    return json.loads(results[-1])["result"], proc.stdout


def main(argv: list[str] | None = None) -> int:
    (function,) = sys.argv[1:] if argv is None else argv
    module, name = function.rsplit(".", 1)
    call = getattr(importlib.import_module(f"keras_cnns.measure.{module}"), name)
    result = call(**json.loads(sys.stdin.read()))
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
