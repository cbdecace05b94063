"""The wheel carries what an installed package needs outside the source tree."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_the_search_spaces(tmp_path):
    # Build from a copy holding only what a source distribution holds, so the build writes
    # nothing into the checkout (build/, egg-info) and cannot pick up the top-level tuning/.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "keras_cnns", source / "keras_cnns",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("keras_cnns-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every data file of the package (search spaces, ablation grids, ...) is in the wheel.
    package_data = sorted(path.relative_to(ROOT).as_posix()
                          for path in (ROOT / "keras_cnns").rglob("*")
                          if path.is_file() and path.suffix not in (".py", ".pyc")
                          and "__pycache__" not in path.parts)
    assert "keras_cnns/ablation/grids/default.json" in package_data
    assert [name for name in package_data if name not in names] == []
    assert "keras_cnns/tuning/space.py" in names
    assert not any(name.startswith(("tests/", "scripts/", "tuning/")) for name in names)

    # Installed (not editable) and run from elsewhere, the package finds its spaces in itself.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import keras_cnns; from keras_cnns import tuning; print(keras_cnns.__file__); "
             "print(tuning.default_space('lenet').names)")
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    path, names = result.stdout.splitlines()[-2:]
    assert Path(path) == site / "keras_cnns" / "__init__.py"
    assert "dropout" in names

    # The commands run from the installed copy, outside any checkout: train's help, and the
    # tune command's own search-space lookup (its first output line names the space).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "keras_cnns.train", "--help"],
                            capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert "--tflite" in result.stdout and "--model" in result.stdout
    lookup = ("import keras_cnns.commands.tune as t, keras_cnns; "
              "config, args = t.parse_args(['--model', 'lenet']); "
              "from keras_cnns import tuning; print(keras_cnns.__file__); "
              "print(tuning.default_space(config.model).names)")
    result = subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True,
                            timeout=120, cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    path, names = result.stdout.splitlines()[-2:]
    assert Path(path) == site / "keras_cnns" / "__init__.py" and "dropout" in names
    entry_points = next(name for name in names_in(wheel) if name.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "keras-cnns-train = keras_cnns.commands.train:run" in scripts
    assert "keras-cnns-tune = keras_cnns.commands.tune:run" in scripts


def names_in(wheel) -> list[str]:
    return zipfile.ZipFile(wheel).namelist()


def test_the_library_never_imports_the_command_line_helper():
    """keras_cnns.commands.cli (quiet start-up, one-sentence exits) is for commands: only
    keras_cnns/commands/ and scripts/ import it."""
    import ast

    offenders = []
    for path in (ROOT / "keras_cnns").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("keras_cnns/commands/") or relative == "keras_cnns/runner.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from keras_cnns import runner` names it as well as `from keras_cnns.commands.cli`
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            if "keras_cnns.commands.cli" in modules:
                offenders.append(relative)
    assert offenders == []


def test_default_spaces_come_from_the_model_registry_not_files():
    from keras_cnns import tuning
    from keras_cnns.models import list_models

    for model in list_models():
        assert tuning.default_space(model).names
    assert not list((ROOT / "tuning").glob("*.json"))
    assert not (ROOT / "keras_cnns" / "tuning" / "spaces").exists()
