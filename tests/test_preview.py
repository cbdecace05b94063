"""keras_cnns.data.sample_grid and scripts/preview_data.py: what the model receives, drawn."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import run_in_process
from PIL import Image

from keras_cnns.data import load_source
from keras_cnns.data.sample_grid import augmented_versions, draw_preview, model_view

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "preview_data.py"



@pytest.fixture(scope="module")
def source():
    return load_source("synthetic", num_classes=4, image_size=12, channels=3, train_size=60,
                       validation_size=8, test_size=8)


def test_model_view_is_the_pipeline_with_normalisation_undone(source):
    images, labels = model_view(source, image_size=12, augment="none", seed=3, count=10)
    train, train_labels = source.arrays("train")
    scaled = train.astype(np.float32) / 255
    assert images.shape == (10, 12, 12, 3) and images.min() >= 0 and images.max() <= 1
    for image, label in zip(images, labels, strict=True):
        # Each shown image is one training image, back in [0, 1], with its own label.
        gaps = np.abs(scaled - image).reshape(len(train), -1).max(axis=1)
        assert gaps.min() < 1e-5 and train_labels[gaps.argmin()] == label
    # The stream is shuffled with the seed, as in training: not the split's first images.
    assert not np.allclose(images, scaled[:10], atol=1e-5)


def test_augmented_versions_are_draws_of_the_policy(source):
    plain = augmented_versions(source, 5, image_size=12, augment="none", seed=0, versions=4)
    original = source.arrays("train")[0][5].astype(np.float32) / 255
    np.testing.assert_allclose(plain, np.stack([original] * 4), atol=1e-5)
    strong = augmented_versions(source, 5, image_size=12, augment="strong", seed=0, versions=4)
    assert strong.shape == (4, 12, 12, 3)
    assert len({version.tobytes() for version in strong}) == 4  # each copy its own draw


def test_draw_preview_writes_a_png(source, tmp_path):
    path = draw_preview(source, tmp_path / "grid.png", image_size=24, augment="light",
                        rows=2, columns=4, examples=2, versions=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # drawn, not blank


def call(*argv, capsys):
    return run_in_process("preview_data", [str(a) for a in argv], capsys)


@pytest.mark.parametrize("problem", ["unknown dataset", "existing output", "missing folder",
                                     "not png", "bad augment", "bad size"])
def test_bad_input_ends_in_one_sentence_and_writes_nothing(problem, tmp_path, capsys):
    output, args, status, words = tmp_path / "grid.png", ["--dataset", "digits"], 2, ""
    if problem == "unknown dataset":
        args, status, words = ["--dataset", "nosuchset"], 1, "Unknown dataset 'nosuchset'"
    elif problem == "existing output":
        output.write_bytes(b"keep me")
        words = f"--output {output} exists; pass --overwrite"
    elif problem == "missing folder":
        output = tmp_path / "nowhere" / "grid.png"
        words = f"The folder of --output {output} does not exist."
    elif problem == "not png":
        output, words = tmp_path / "grid.jpg", "--output must name a .png file"
    elif problem == "bad augment":
        args, words = [*args, "--augment", "wild"], "'wild'"
    else:
        args = [*args, "--image-size", "0"]
        words = "--image-size must be a whole number from 4 to 1024, got 0"
    before = sorted(tmp_path.rglob("*"))
    code, out, err = call(*args, "--output", output, capsys=capsys)
    assert code == status and out == ""
    assert err.count("\n") == 1 and err.startswith("preview_data.py: error: "), err
    assert words in err, err
    assert sorted(tmp_path.rglob("*")) == before
    if problem == "existing output":
        assert output.read_bytes() == b"keep me"


@pytest.mark.slow
def test_command_draws_digits(tmp_path):
    output = tmp_path / "digits.png"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, SCRIPT, "--dataset", "digits", "--image-size", "28",
                             "--output", output], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {output}")
    with Image.open(output) as image:
        assert image.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["digits.png"]  # no temporary left
