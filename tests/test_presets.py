"""Presets: made from an export, loaded in a fresh process with the manifest's accuracy, the
model card's sections, bad presets refused in one sentence, and the shipped presets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import ROOT, assert_one_sentence, run_in_process, snapshot

from keras_cnns.models import PresetError, build_model, list_presets

PRESET_FILES = {"config.json", "model.weights.h5", "metadata.json", "README.md"}
# Scores a preset as a user would, with nothing of the process that made it: build_model's
# loader, the data package's preprocessing, Keras' predict, numpy's argmax.
SCORE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from keras_cnns.data import preprocess
    from keras_cnns.models import build_model

    preset, test_set = sys.argv[1:3]
    model = build_model("lenet", weights=preset)
    steps = json.load(open(preset + "/metadata.json"))["preprocessing"]
    with np.load(test_set) as arrays:
        images, labels = arrays["images"], arrays["labels"]
    inputs = preprocess(images, image_size=steps["image_size"], mean=steps["mean"],
                        std=steps["std"], channels=steps["channels"])
    logits = model.predict(inputs, batch_size=256, verbose=0)
    print(json.dumps({"correct": int(np.sum(logits.argmax(-1) == labels)),
                      "examples": len(labels)}))
""")


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    import keras
    from test_predict_verify import make_export

    keras.utils.set_random_seed(0)
    return make_export(tmp_path_factory.mktemp("export") / "tiny")[1]


@pytest.fixture(scope="module")
def preset(export, tmp_path_factory) -> Path:
    """The preset of `export`, made by the command."""
    from keras_cnns.commands import preset as command

    output = tmp_path_factory.mktemp("preset") / "tiny_preset"
    assert command.main([str(export), "--output", str(output)]) == 0
    return output


def _manifest(export: Path) -> dict:
    return json.loads((export / "manifest.json").read_text())


@pytest.mark.slow
def test_a_preset_loads_in_a_fresh_process_and_scores_the_manifests_accuracy(preset, export):
    result = subprocess.run(
        [sys.executable, "-c", SCORE, str(preset), str(export / "test_set.npz")],
        capture_output=True, text=True, timeout=300, cwd=preset.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads(result.stdout.splitlines()[-1])
    metrics = _manifest(export)["metrics"]
    assert scored == {"correct": metrics["test_correct"], "examples": metrics["test_examples"]}
    assert scored["correct"] / scored["examples"] == metrics["test_accuracy"]


def test_a_preset_is_keras_hubs_layout_with_every_hash(preset):
    import keras

    assert {path.name for path in preset.iterdir()} == PRESET_FILES
    metadata = json.loads((preset / "metadata.json").read_text())
    for name, digest in metadata["files"].items():
        assert hashlib.sha256((preset / name).read_bytes()).hexdigest() == digest
    assert set(metadata["files"]) == PRESET_FILES - {"metadata.json"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", metadata["date_saved"])
    assert metadata["keras_version"] == keras.version()
    # keras-hub's loader, with nothing of ours: deserialize config.json, load the weights.
    config = json.loads((preset / "config.json").read_text())
    assert "compile_config" not in config and "build_config" not in config
    hub_model = keras.saving.deserialize_keras_object(config)
    hub_model.load_weights(preset / "model.weights.h5")
    ours = build_model("lenet", weights=preset)
    assert metadata["parameter_count"] == hub_model.count_params() == ours.count_params()
    probe = np.random.default_rng(0).normal(size=(4, *metadata["input_shape"]))
    np.testing.assert_array_equal(hub_model.predict(probe, verbose=0),
                                  ours.predict(probe, verbose=0))
    # metadata.json's config is the training RunConfig: `train --config` reads it back.
    from keras_cnns.config import RunConfig

    recorded = RunConfig.from_json(preset / "metadata.json")
    assert (recorded.model, recorded.dataset, recorded.label_smoothing) == (
        "lenet", "synthetic", 0.1)


def test_the_model_card_has_every_section_and_the_measured_numbers(preset, export):
    from keras_cnns.export import load_serving, run_serving

    card = (preset / "README.md").read_text()
    manifest = _manifest(export)
    metrics = manifest["metrics"]
    for section in ("## Architecture", "## Data", "## Results", "## Training",
                    "## Intended use", "## Limitations"):
        assert f"\n{section}\n" in card, section
    with np.load(export / "test_set.npz") as arrays:
        images, labels = arrays["images"], arrays["labels"]
    top5 = _top5(run_serving(load_serving(export), images)[0], labels)
    assert metrics["test_top5_accuracy"] == top5
    # LeNet-5 at 16x16x1: conv1 16*16*6*25, conv2 4*4*16*150, fc 64*120 + 120*84 + 84*10 MACs.
    flops = 2 * (16 * 16 * 6 * 25 + 4 * 4 * 16 * 150 + 64 * 120 + 120 * 84 + 84 * 10)
    parameters = build_model("lenet", input_shape=(16, 16, 1), num_classes=10,
                             activation="relu").count_params()
    for expected in (
        f"parameters: {parameters:,}", f"FLOPs per image (2 x multiply-adds of the "
        f"convolutions and dense layers): {flops:,}",
        f"| top-1 accuracy | {metrics['test_accuracy']:.4f} ({metrics['test_correct']}/"
        f"{metrics['test_examples']}) | `keras-cnns train`",
        f"| top-5 accuracy | {top5:.4f} | `keras-cnns train`, as top-1 |",
        "data set: `synthetic`", "licence of the data: not recorded",
        f"label_smoothing {manifest['config']['label_smoothing']}",
        "retrain: `keras-cnns train --config PRESET/metadata.json`",
        f"training time: {metrics['train_seconds']:.1f} s" if "train_seconds" in metrics
        else "training time: not recorded",
        f"hardware: {manifest['hardware']['cpu_model']}",
    ):
        assert expected in card, expected


def _top5(probabilities, labels) -> float:
    """The share of labels with fewer than 5 classes scored strictly higher (a tie is in)."""
    return float(np.mean([(row > row[label]).sum() < 5
                          for row, label in zip(probabilities, labels, strict=True)]))


def test_the_preset_command_measures_top5_where_the_manifest_lacks_it(export):
    """Exports from before top-5 was recorded: measured through serving_default, and the card
    names the preset command as what measured it."""
    from keras_cnns.export import load_serving, run_serving
    from keras_cnns.export.preset import TOP5_MADE_HERE, _scored_metrics

    manifest = _manifest(export)
    del manifest["metrics"]["test_top5_accuracy"]
    figures = _scored_metrics(export, manifest)
    with np.load(export / "test_set.npz") as arrays:
        images, labels = arrays["images"], arrays["labels"]
    assert figures["test_top5_accuracy"] == _top5(run_serving(load_serving(export), images)[0],
                                                  labels)
    assert figures["measured_by"]["test_top5_accuracy"] == TOP5_MADE_HERE


@pytest.mark.parametrize("dataset, licence", [("digits", "CC BY 4.0"),
                                              ("fashion_mnist", "MIT licence")])
def test_the_card_names_the_licence_of_the_documented_data_sets(preset, dataset, licence):
    from keras_cnns.export.model_card import model_card

    metadata = json.loads((preset / "metadata.json").read_text())
    metadata["dataset"]["name"] = dataset
    card = model_card(build_model("lenet", weights=preset), metadata, "x")
    assert f"licence of the data: {licence}" in card


def test_a_run_directory_stands_for_its_export(export, tmp_path):
    from keras_cnns.config import RunConfig
    from keras_cnns.export import ExportError
    from keras_cnns.export.preset import export_of

    RunConfig(model="lenet", dataset="synthetic", output=str(export)).to_json(
        tmp_path / "config.json")
    assert export_of(tmp_path) == export
    RunConfig(model="lenet", output=str(tmp_path / "gone")).to_json(tmp_path / "config.json")
    with pytest.raises(ExportError, match=r"has no export yet: .*gone holds no manifest.json\."):
        export_of(tmp_path)


# -- bad presets through build_model (the command's rows: tests/test_bad_inputs_export.py) ----
def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def other_models_config(folder: Path) -> None:
    """config.json becomes a (registered, valid) AlexNet's, its hash updated to match."""
    import keras

    other = build_model("alexnet", input_shape=(63, 63, 1), num_classes=10)
    (folder / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(other)))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"]["config.json"] = hashlib.sha256(
        (folder / "config.json").read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(metadata))


BAD_PRESETS = {
    "wrong_hash": ("lenet", lambda p: _flip(p / "model.weights.h5"),
                   "Preset {p}'s model.weights.h5 does not match its sha256 in metadata.json."),
    "missing_file": ("lenet", lambda p: (p / "config.json").unlink(),
                     "Preset {p} has no config.json, which its metadata.json lists."),
    "other_config": ("lenet", other_models_config,
                     "Preset {p}'s config.json describes the model 'alexnet', not the lenet its "
                     "metadata.json records."),
    "asked_as_other": ("alexnet", lambda p: None, "Preset {p} holds a lenet model, not alexnet."),
    "no_metadata": ("lenet", lambda p: (p / "metadata.json").unlink(),
                    "Preset {p} has no metadata.json."),
}


@pytest.mark.parametrize("case", sorted(BAD_PRESETS))
def test_build_model_refuses_a_bad_preset_in_one_sentence_before_deserializing(
        case, preset, tmp_path, monkeypatch):
    import keras

    model, damage, says = BAD_PRESETS[case]
    copy = tmp_path / "p"
    shutil.copytree(preset, copy)
    damage(copy)
    calls = []
    real = keras.saving.deserialize_keras_object
    monkeypatch.setattr(keras.saving, "deserialize_keras_object",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    with pytest.raises(PresetError) as refused:
        build_model(model, weights=copy)
    assert str(refused.value) == says.format(p=copy)
    assert calls == []


def test_a_preset_fixes_its_shape_classes_and_options(preset):
    assert build_model("lenet", weights=preset, input_shape=(16, 16, 1), num_classes=10)
    with pytest.raises(PresetError, match=r"takes input_shape \(16, 16, 1\), not \(28, 28, 1\)\."):
        build_model("lenet", weights=preset, input_shape=(28, 28, 1))
    with pytest.raises(PresetError, match=r"predicts 10 classes, not 3\."):
        build_model("lenet", weights=preset, num_classes=3)
    with pytest.raises(PresetError, match=r"pass none of dropout with weights="):
        build_model("lenet", weights=preset, dropout=0.5)
    with pytest.raises(PresetError, match=r"neither a directory nor a shipped preset \(shipped: "):
        build_model("lenet", weights="no_such_preset")
    with pytest.raises(TypeError, match="needs input_shape and num_classes"):
        build_model("lenet")


def test_the_command_refuses_an_existing_output_and_one_inside_the_export(
        export, preset, tmp_path, capsys):
    before = snapshot(export, preset.parent)
    code, _, err = run_in_process("preset", [str(export), "--output", str(preset)], capsys)
    assert_one_sentence(code, err, 1, f"Preset path {preset} already exists", "preset.py")
    code, _, err = run_in_process("preset", [str(export), "--output", str(export / "p")], capsys)
    assert_one_sentence(code, err, 2, f"--output {export / 'p'} lies inside {export}",
                        "preset.py")
    code, _, err = run_in_process("preset", ["--list", "--check", "x"], capsys)
    assert_one_sentence(code, err, 2, "not --list and --check", "preset.py")
    assert snapshot(export, preset.parent) == before


# -- the shipped presets -------------------------------------------------------------------
SHIPPED = ("lenet_digits", "lenet_fashion_mnist")


def test_the_list_command_lists_the_shipped_presets(capsys):
    assert tuple(list_presets()) == SHIPPED
    code, out, err = run_in_process("preset", ["--list"], capsys)
    assert (code, err) == (0, "")
    rows = out.splitlines()
    assert rows[0].split()[:5] == ["name", "model", "dataset", "top-1", "top-5"]
    assert [row.split()[:3] for row in rows[1:]] == [
        ["lenet_digits", "lenet", "digits"], ["lenet_fashion_mnist", "lenet", "fashion_mnist"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_preset_loads_and_scores_its_recorded_accuracy(name):
    from keras_cnns.export.preset import check_preset, describe_preset

    described = describe_preset(name)
    # Small enough for the wheel: LeNet-5's 61,706 float32 weights and a few kB of text.
    assert described["bytes"] < 400_000
    data_dir = (described.get("config") or {}).get("data_dir")
    if data_dir and not Path(data_dir).is_dir():
        pytest.skip(f"{name} is scored on {data_dir}, which this machine lacks")
    result = check_preset(name)
    recorded = described["metrics"]
    assert result["scored"] and result["test_correct"] == recorded["test_correct"]
    assert result["test_accuracy"] == recorded["test_accuracy"]
    assert result["test_top5_accuracy"] == recorded["test_top5_accuracy"]
    assert build_model("lenet", weights=name).count_params() == described["parameter_count"]
