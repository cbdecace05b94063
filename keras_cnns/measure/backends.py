"""Keras backends: the one this process runs, and Python subprocesses that run another.

Keras picks its backend once per process, from `KERAS_BACKEND` (tensorflow, jax or torch), so
work that needs a different backend runs in a child process: the SavedModel and ONNX writers
when the model was trained under torch (`keras_cnns.export`), and every backend column of the
parity report (`parity.py` beside it). TensorFlow stays importable under every backend: the
tf.data pipeline and the SavedModel use it whatever Keras computes with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch")
REPO_ROOT = Path(__file__).resolve().parents[2]


def keras_backend() -> str:
    """The Keras backend of this process (imports Keras)."""
    import keras

    return keras.backend.backend()


def backend_env(backend: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `KERAS_BACKEND=backend`, quiet TF logs, and the package
    importable (PYTHONPATH gains the source tree, for checkouts that are not installed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}.")
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    env.update(extra or {})
    return env


class BackendProcessError(RuntimeError):
    """A child process under another Keras backend failed; the message ends with its stderr."""


def run_python(
    backend: str,
    args: Sequence[str],
    *,
    timeout: float | None = 900,
    extra_env: Mapping[str, str] | None = None,
    what: str = "subprocess",
) -> subprocess.CompletedProcess:
    """Run `python ARGS...` under `backend` and return it; a BackendProcessError if it fails."""
    try:
        proc = subprocess.run(
            [sys.executable, *args],
            env=backend_env(backend, extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackendProcessError(
            f"The {what} under KERAS_BACKEND={backend} did not finish in {timeout:.0f} s."
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-3000:]
        raise BackendProcessError(
            f"The {what} under KERAS_BACKEND={backend} exited with {proc.returncode}:\n{tail}"
        )
    return proc
