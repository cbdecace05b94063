"""Optional extras in tests: skipped where a package is missing, except in CI."""

import importlib.util
import os

import pytest


def require(*modules: str) -> None:
    """Skip without `modules`, except in CI, which installs every extra: there it fails.

    Works in a test and at module level (it then skips the whole file).
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[torch,jax,onnx]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
