"""The import contracts of pyproject.toml ([tool.importlinter]) hold, checked by import-linter.

The layers (commands > tuning | ablation | measure > training > export | reference | serving >
preflight > config > data | models > machine | files), no import cycle inside any package, and
predict and verify reading an export with TensorFlow alone.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    # import-linter imports the root package from its working directory first, so a copy of
    # the package is analysed as itself; --no-cache writes nothing into the checkout.
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=where,
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_bad_import_breaks_its_contract(tmp_path):
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    package = tmp_path / "keras_cnns"
    shutil.copytree(ROOT / "keras_cnns", package, ignore=shutil.ignore_patterns("__pycache__"))
    bad_imports = {
        "data/idx.py": "import keras_cnns.models",  # data and models are independent
        "export/directory.py": "import keras_cnns.training",  # export is below training
        "reference/spec.py": "import keras_cnns.reference.conversion",  # which imports spec
        "serving/prediction.py": "import keras",  # predict runs without Keras
    }
    for module, line in bad_imports.items():
        with open(package / module, "a") as source:
            source.write(f"\n{line}  # noqa\n")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    report = " ".join(result.stdout.split())  # import-linter wraps long lines
    assert "0 kept, 3 broken" in report, report
    assert "keras_cnns.data is not allowed to import keras_cnns.models" in report
    assert "keras_cnns.export is not allowed to import keras_cnns.training" in report
    assert "No cycles are allowed in keras_cnns.reference" in report
    assert "keras_cnns.serving.prediction -> keras" in report
