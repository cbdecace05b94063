"""Optional extras in tests: skipped where a package is missing, except in CI.

`.ci/run` checks the skipping: it runs the tests that call `require` once more with the extras
blocked from import (`.ci/no_extras` on PYTHONPATH) and CI unset, and expects only skips.
"""

import importlib.util
import os

import pytest

# The pyproject extra that installs each module.
EXTRA_OF = {"torch": "torch", "jax": "jax", "onnxruntime": "onnx", "onnx": "onnx",
            "tf2onnx": "onnx"}


def require(*modules: str) -> None:
    """Skip without `modules`, except in CI, which installs every extra: there it fails.

    Works in a test and at module level (it then skips the whole file).
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        extras = ",".join(dict.fromkeys(EXTRA_OF.get(m, m) for m in missing))
        message = f"{', '.join(missing)} not installed (pip install -e '.[{extras}]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
