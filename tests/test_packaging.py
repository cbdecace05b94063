"""The wheel installs into a fresh virtual environment and its commands run from there."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
HELP_PROBE = """
import contextlib, io, json
from keras_cnns.commands import COMMANDS, main
found = {}
for command in COMMANDS:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main([command, "--help"])
        except SystemExit as stop:
            code = stop.code
    usage = out.getvalue().split("[")[0].split("\\n")[0].strip()
    found[command] = [code, usage]
print(json.dumps(found))
"""

PRESET_PROBE = """
import json
from keras_cnns.export.preset import check_preset
from keras_cnns.models import build_model, list_presets
from keras_cnns.models.preset import preset_path
loaded = [[name, str(preset_path(name)), build_model("lenet", weights=name).count_params()]
          for name in list_presets()]
print(json.dumps({"loaded": loaded, "checked": check_preset("lenet_digits")}))
"""


def build_wheel(tmp_path) -> Path:
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
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv that sees the system's TensorFlow, Keras, ... (tests never download), with the
    wheel installed; its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(path)], check=True, timeout=120)
    bin_dir = path / "bin"
    # The system's pip, run by the venv's Python, installs into the venv.
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return bin_dir


@pytest.mark.slow
def test_the_wheel_installs_and_its_commands_run_outside_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every data file of the package (ablation grids, ...) is in the wheel.
    package_data = sorted(path.relative_to(ROOT).as_posix()
                          for path in (ROOT / "keras_cnns").rglob("*")
                          if path.is_file() and path.suffix not in (".py", ".pyc")
                          and "__pycache__" not in path.parts)
    assert "keras_cnns/ablation/grids/default.json" in package_data
    assert "keras_cnns/presets/lenet_digits/model.weights.h5" in package_data
    assert [name for name in package_data if name not in names] == []
    assert "keras_cnns/tuning/space.py" in names
    assert not any(name.startswith(("tests/", "scripts/", "tuning/")) for name in names)

    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The checkout is installed editable in the system site; the venv's own copy must win.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"

    def run(*args, timeout=300):
        return subprocess.run([*map(str, args)], capture_output=True, text=True,
                              timeout=timeout, cwd=elsewhere, env=env)

    probe = ("import keras_cnns; from keras_cnns import tuning; print(keras_cnns.__file__); "
             "print(tuning.default_space('lenet').names)")
    result = run(bin_dir / "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    path, space = result.stdout.splitlines()[-2:]
    assert Path(path).is_relative_to(tmp_path / "venv"), path
    assert "dropout" in space

    # The shipped presets load from the installed package (build_model checks their hashes),
    # and the digits one scores the accuracy its metadata.json records.
    result = run(bin_dir / "python", "-c", PRESET_PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    presets = json.loads(result.stdout.splitlines()[-1])
    assert [name for name, _, _ in presets["loaded"]] == ["lenet_digits", "lenet_fashion_mnist"]
    assert all(Path(path).is_relative_to(tmp_path / "venv") for _, path, _ in presets["loaded"])
    assert all(parameters == 61706 for _, _, parameters in presets["loaded"])
    assert presets["checked"]["scored"] and presets["checked"]["test_accuracy"] > 0.9

    # Every command's --help through the installed dispatcher (`keras-cnns COMMAND --help` in
    # one process, so that TensorFlow starts once): exit 0 and the usage line.
    helps = run(bin_dir / "python", "-c", HELP_PROBE)
    assert helps.returncode == 0, helps.stderr[-3000:]
    helps = json.loads(helps.stdout.splitlines()[-1])
    from keras_cnns.commands import COMMANDS

    assert helps == {command: [0, f"usage: keras-cnns {command}"] for command in COMMANDS}

    keras_cnns = bin_dir / "keras-cnns"
    export, run_dir = elsewhere / "lenet-export", elsewhere / "runs"
    result = run(keras_cnns, "train", "--model", "lenet", "--epochs", "1", "--image-size", "16",
                 "--no-onnx", "--no-tflite", "--run-dir", run_dir, "--output", export)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((export / "manifest.json").read_text())["config"]["model"] == "lenet"

    result = run(keras_cnns, "verify", export)
    assert result.returncode == 0, result.stderr[-3000:]

    image = elsewhere / "seven.png"
    Image.fromarray(np.full((20, 20), 200, np.uint8)).save(image)
    result = run(keras_cnns, "predict", export, image, "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(image) in result.stdout

    result = run(keras_cnns, "evaluate", export)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout

    # The LiteRT conversion adds model.tflite to the export, checked against the SavedModel.
    result = run(keras_cnns, "convert", export, "--to", "tflite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (export / "model.tflite").is_file()


def test_default_spaces_come_from_the_model_registry_not_files():
    from keras_cnns import tuning
    from keras_cnns.models import list_models

    for model in list_models():
        assert tuning.default_space(model).names
    assert not list((ROOT / "tuning").glob("*.json"))
    assert not (ROOT / "keras_cnns" / "tuning" / "spaces").exists()
