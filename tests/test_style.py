"""The code base stays ruff clean (configuration in pyproject.toml), and scripts import safely."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the [test] extra")
def test_ruff_check_is_clean():
    result = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_script_shadows_a_standard_library_module():
    # Python puts scripts/ first on sys.path, so scripts/profile.py once broke every script
    # whose imports reach cProfile ("module 'profile' has no attribute 'run'").
    import sys

    names = {path.stem for path in (ROOT / "scripts").glob("*.py")}
    assert not names & set(sys.stdlib_module_names)
