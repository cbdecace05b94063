"""keras-cnns probe and keras_cnns.measure.layer_probes: edge scores, receptive fields, probes.

The edge score is checked on filters whose answer is known (oriented edges, gratings and Gabors
high; white noise, blobs and flat filters low; rotation, scale and sign change nothing); the
receptive fields layer by layer against hand-computed values for LeNet-5 and AlexNet (and a
branching, dilated toy model); the probe on features that are linearly separable, unrelated to
the labels, or separable only non-linearly (XOR). The report's verdicts are checked on results
built by hand, and the quick preset runs end to end on the embedded digits, then again to show
that a finished study trains nothing and writes the same files.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import keras
import numpy as np
import pytest
from bad_inputs import assert_refused_writing_nothing, run_in_process
from PIL import Image

from keras_cnns.commands import probe as command
from keras_cnns.measure import layer_probes as lp
from keras_cnns.measure import probe_report as report
from keras_cnns.models import build_model


def grid(side: int):
    offsets = np.arange(side) - side // 2
    return np.meshgrid(offsets, offsets, indexing="ij")  # rows (y), columns (x)


def kernel_of(*filters) -> np.ndarray:
    """[h, w] filters -> a Conv2D kernel [h, w, 1, count]."""
    return np.stack(filters, axis=-1)[:, :, None, :].astype(np.float64)


# -- the edge score --------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [5, 11])
def test_oriented_filters_score_high_and_noise_low(side):
    y, x = grid(side)
    edges = kernel_of(np.sign(x), np.sign(y), np.sign(x + y), (x > 0) * 1.0)
    theta = 0.5
    gabor = np.cos(2 * np.pi * 0.25 * (x * np.cos(theta) + y * np.sin(theta))) * np.exp(
        -(x**2 + y**2) / (side * side / 8))
    gratings = kernel_of(np.cos(2 * np.pi * 0.25 * x), gabor)
    noise = np.random.default_rng(0).normal(size=(side, side, 1, 500))
    noise_scores = lp.orientation_selectivity(noise)
    assert lp.orientation_selectivity(edges).min() > 0.45
    assert lp.orientation_selectivity(gratings).min() > 0.7
    # Noise: about 1/sqrt(independent frequencies), so it falls with the filter's size.
    assert noise_scores.mean() < (0.3 if side == 5 else 0.15)
    assert np.percentile(noise_scores, 95) < lp.orientation_selectivity(edges).min()


def test_isotropic_and_flat_filters_have_no_orientation():
    y, x = grid(11)
    blob = np.exp(-(x**2 + y**2) / 4.0) - 0.5 * np.exp(-(x**2 + y**2) / 16.0)
    scores = lp.orientation_selectivity(kernel_of(blob, np.full((11, 11), 3.0)))
    assert scores[0] < 0.02
    assert scores[1] == 0.0


def test_edge_score_ignores_rotation_scale_sign_and_repeated_channels():
    y, x = grid(11)
    edge = np.sign(2 * x + y) + 0.3 * np.random.default_rng(1).normal(size=(11, 11))
    base = lp.orientation_selectivity(kernel_of(edge))[0]
    turned = lp.orientation_selectivity(kernel_of(np.rot90(edge), edge.T, -3 * edge))
    np.testing.assert_allclose(turned, base, rtol=1e-9)
    rgb = np.repeat(kernel_of(edge), 3, axis=2)
    np.testing.assert_allclose(lp.orientation_selectivity(rgb), base, rtol=1e-9)


def test_random_filter_scores_follow_the_layers_initializer():
    model = build_model("lenet", input_shape=(28, 28, 1), num_classes=10)
    first = lp.first_conv(model)
    random = lp.random_filter_scores(first, count=400)
    assert random.shape == (400,)
    np.testing.assert_array_equal(random, lp.random_filter_scores(first, count=400))
    # Fresh 5x5 filters score like white noise of that size (the test above).
    assert 0.15 < random.mean() < 0.3


# -- receptive fields ------------------------------------------------------------------------------
def fields_of(model, names):
    fields = lp.receptive_fields(model)
    return [(fields[name].size, fields[name].jump) for name in names]


def test_lenet_receptive_fields_layer_by_layer():
    # LeCun et al. 1998: C1 5x5 -> 5, S2 2x2/2 -> 6, C3 5x5 -> 6 + 4 x 2 = 14, S4 -> 16; the
    # classifier (C5's 5x5 over the 5x5 map, here Flatten and Dense) sees the whole input.
    model = build_model("lenet", input_shape=(28, 28, 1), num_classes=10)
    assert fields_of(model, ["conv1", "pool1", "conv2", "pool2"]) == [
        (5, 1), (6, 2), (14, 2), (16, 4)]
    assert fields_of(model, ["flatten", "fc1", "fc2", "predictions"]) == [(None, None)] * 4
    assert lp.probed_layers(model) == ["conv1", "conv2", "fc1", "fc2"]


def test_alexnet_receptive_fields_layer_by_layer():
    # Krizhevsky et al. 2012's shapes: conv1 11x11/4 -> 11; pool 3/2 -> 11 + 2 x 4 = 19;
    # conv2 5x5 -> 19 + 4 x 8 = 51; pool -> 67; conv3-5 3x3 at jump 16 -> 99, 131, 163;
    # pool5 -> 195 (the figure Araujo et al., Distill 2019, tabulate for AlexNet).
    model = build_model("alexnet", input_shape=(64, 64, 1), num_classes=10)
    names = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
    assert fields_of(model, names) == [(11, 4), (19, 8), (51, 8), (67, 16), (99, 16),
                                       (131, 16), (163, 16), (195, 32)]
    assert fields_of(model, ["fc1", "fc2"]) == [(None, None)] * 2
    assert lp.probed_layers(model) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1",
                                       "fc2"]


def test_receptive_fields_of_dilation_branches_and_upsampling():
    inputs = keras.Input((32, 32, 1))
    dilated = keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same", name="dilated")(inputs)
    strided = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="strided")(dilated)
    pooled = keras.layers.MaxPooling2D(2, name="pooled")(dilated)
    joined = keras.layers.Add(name="joined")([strided, pooled])
    cropped = keras.layers.Cropping2D(1, name="cropped")(joined)
    up = keras.layers.UpSampling2D(2, name="up")(cropped)
    out = keras.layers.GlobalAveragePooling2D(name="gap")(up)
    model = keras.Model(inputs, out)
    # dilated: 2 x (3 - 1) + 1 = 5; strided: 5 + 2 = 7, jump 2; pooled: 5 + 1 = 6, jump 2;
    # joined: the wider branch; cropping keeps it; up-sampling halves the jump.
    assert fields_of(model, ["dilated", "strided", "pooled", "joined", "cropped", "up",
                             "gap"]) == [(5, 1), (7, 2), (6, 2), (7, 2), (7, 2), (7, 1),
                                         (None, None)]
    resized = keras.Model(inputs, keras.layers.Resizing(8, 8, name="resize")(inputs))
    with pytest.raises(ValueError, match="resize"):
        lp.receptive_fields(resized)


# -- the probe -------------------------------------------------------------------------------------
def classes(n: int, count: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, count, n), rng


def test_probe_reads_separable_features_and_not_unrelated_ones():
    labels, rng = classes(800)
    centres = rng.normal(size=(4, 8)) * 4.0
    separable = centres[labels] + rng.normal(size=(800, 8))
    unrelated = rng.normal(size=(800, 8))
    train, test = slice(0, 400), slice(400, 800)
    assert lp.probe_accuracy(separable[train], labels[train], separable[test],
                             labels[test]) > 0.95
    assert lp.probe_accuracy(unrelated[train], labels[train], unrelated[test],
                             labels[test]) < 0.4  # chance is 0.25


def test_probe_is_linear_xor_defeats_it():
    rng = np.random.default_rng(2)
    points = rng.uniform(-1, 1, size=(800, 2))
    labels = ((points[:, 0] > 0) ^ (points[:, 1] > 0)).astype(int)
    product = np.c_[points, points[:, :1] * points[:, 1:]]  # the feature that makes it linear
    train, test = slice(0, 400), slice(400, 800)
    assert lp.probe_accuracy(points[train], labels[train], points[test], labels[test]) < 0.65
    assert lp.probe_accuracy(product[train], labels[train], product[test], labels[test]) > 0.9


def test_pooled_features_average_each_convolution_over_its_map():
    model = build_model("lenet", input_shape=(16, 16, 1), num_classes=3)
    x = np.random.default_rng(3).normal(size=(5, 16, 16, 1)).astype(np.float32)
    features = lp.pooled_features(model, ["conv2", "fc1"], x)
    maps = keras.Model(model.inputs, [model.get_layer("conv2").output,
                                      model.get_layer("fc1").output]).predict(x, verbose=0)
    np.testing.assert_allclose(features["conv2"], maps[0].mean(axis=(1, 2)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(features["fc1"], maps[1], rtol=1e-5, atol=1e-6)
    assert features["conv2"].shape == (5, 16)


# -- the verdicts ----------------------------------------------------------------------------------
LAYERS = ["conv1", "conv2", "fc1"]


def fake_results(trained, control, edges=((0.5, 0.6), (0.5, 0.6)),
                 control_edges=((0.2, 0.25), (0.2, 0.25)), accuracy=(0.85, 0.86),
                 variant_edges=None, variant_accuracy=(0.8, 0.81)):
    """Results as probe_study.collect writes them, for one model with two seeds: `trained`
    and `control` map each layer to its two seeds' probe accuracies."""
    def row(seed):
        return {"seed": seed, "status": "finished", "error": None, "run_dir": f"runs/r{seed}",
                "test_accuracy": accuracy[seed], "train_seconds": 1.0,
                "edges": list(edges[seed]), "control_edges": list(control_edges[seed]),
                "probes": {layer: trained[layer][seed] for layer in LAYERS},
                "control_probes": {layer: control[layer][seed] for layer in LAYERS}}

    cells = [{"label": "recipe", "augment": "none", "model_options": {}, "epochs": 5,
              "train_fraction": 0.1, "train_images": 540, "runs": [row(0), row(1)]}]
    if variant_edges is not None:
        cells.append({"label": "activation=relu", "augment": "none", "model_options": {},
                      "epochs": 5, "train_fraction": 0.1, "train_images": 540, "runs": [
                          {**row(seed), "edges": list(variant_edges[seed]),
                           "test_accuracy": variant_accuracy[seed], "probes": None,
                           "control_probes": None, "control_edges": None}
                          for seed in (0, 1)]})
    layers = [{"name": "conv1", "kind": "Conv2D", "features": 6, "map": [28, 28],
               "receptive_field": 5, "jump": 1.0},
              {"name": "conv2", "kind": "Conv2D", "features": 16, "map": [10, 10],
               "receptive_field": 14, "jump": 2.0},
              {"name": "fc1", "kind": "Dense", "features": 120, "map": None,
               "receptive_field": None, "jump": None}]
    model = {"model": "net", "params": 1000, "input": [28, 28, 1], "layers": layers,
             "first_layer": {"name": "conv1", "kernel": [5, 5, 1, 2]},
             "random_edge_95th": 0.43, "random_edge_median": 0.22, "cells": cells}
    return {"study": "probe", "preset": "test", "description": "Built by hand.",
            "dataset": "toy", "num_classes": 10, "native_size": [28, 28],
            "probe": {"train_images": 100, "test_images": 50, "pooling": "global average",
                      "classifier": "logistic regression",
                      "pixels": {"accuracy": 0.7, "features": 784}},
            "machine": "a test", "train_seconds": 60.0, "measure_seconds": 6.0,
            "models": [model]}


RISING = {"conv1": (0.40, 0.41), "conv2": (0.60, 0.61), "fc1": (0.80, 0.81)}
UNTRAINED = {"conv1": (0.30, 0.31), "conv2": (0.40, 0.41), "fc1": (0.50, 0.51)}


def test_claim_holds_when_accuracy_rises_and_beats_the_control():
    verdict = report.verdicts(fake_results(RISING, UNTRAINED))["net"]
    assert verdict["probes"] == report.HOLDS, verdict
    assert "from 0.405 at conv1 to 0.805 at fc1 (+40.0 points, a clear rise)" in \
        verdict["probe_sentence"]
    assert verdict["edges"] == report.HOLDS


def test_claim_fails_where_the_control_keeps_up_or_a_layer_falls():
    close = {**UNTRAINED, "conv2": (0.59, 0.62)}  # within the seeds' spread at conv2
    verdict = report.verdicts(fake_results(RISING, close))["net"]
    assert verdict["probes"] == report.FAILS
    assert "not clearly at conv2" in verdict["probe_sentence"]

    falling = {**RISING, "conv2": (0.90, 0.91)}  # conv2 beats fc1 clearly
    verdict = report.verdicts(fake_results(falling, UNTRAINED))["net"]
    assert verdict["probes"] == report.FAILS
    assert "falling clearly from conv2 to fc1" in verdict["probe_sentence"]

    flat = {layer: (0.60, 0.61) for layer in LAYERS}
    verdict = report.verdicts(fake_results(flat, UNTRAINED))["net"]
    assert verdict["probes"] == report.FAILS
    assert "not a clear rise" in verdict["probe_sentence"]


def test_noise_decides_clear_and_a_network_at_chance_tests_nothing():
    # A 3-point rise from conv1 to fc1 with 5-point spreads between seeds is not clear.
    noisy = {"conv1": (0.40, 0.50), "conv2": (0.42, 0.52), "fc1": (0.43, 0.53)}
    low = {"conv1": (0.20, 0.21), "conv2": (0.21, 0.22), "fc1": (0.22, 0.23)}
    verdict = report.verdicts(fake_results(noisy, low))["net"]
    assert verdict["probes"] == report.FAILS
    assert "(+3.0 points, not a clear rise)" in verdict["probe_sentence"]
    stuck = report.verdicts(fake_results(RISING, UNTRAINED, accuracy=(0.10, 0.11)))["net"]
    assert stuck["probes"] == stuck["edges"] == "not tested"


def test_edge_verdicts_and_variant_sentences():
    results = fake_results(RISING, UNTRAINED, edges=((0.21, 0.26), (0.2, 0.25)),
                           variant_edges=((0.7, 0.8), (0.7, 0.8)))
    verdict = report.verdicts(results)["net"]
    assert verdict["edges"] == report.FAILS  # trained no more edge-like than untrained
    assert "activation=relu: 0.750 ± 0.000" in verdict["edge_sentences"][1]
    assert "clearly more edge-like" in verdict["edge_sentences"][1]
    stuck = fake_results(RISING, UNTRAINED, variant_edges=((0.5, 0.6), (0.5, 0.6)),
                         variant_accuracy=(0.1, 0.1))
    assert "never left chance" in report.verdicts(stuck)["net"]["edge_sentences"][1]


def test_report_and_figure_come_from_the_numbers(tmp_path):
    results = fake_results(RISING, UNTRAINED, variant_edges=((0.5, 0.6), (0.5, 0.6)))
    written = report.write_report(copy.deepcopy(results), tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| conv2 (Conv2D) | 14 | GAP of 16 | 0.605 ± 0.007 | 0.405 ± 0.007 | +20.0 | yes |" \
        in text
    assert "| fc1 (Dense) | whole image | 120 |" in text
    assert "- **net, probes: holds.**" in text
    assert json.loads((tmp_path / "probes.json").read_text()) == written
    assert report.render_report(written) == text  # the same numbers, the same words
    with Image.open(tmp_path / "probes.png") as image:
        assert image.size == (600, 800)
        assert np.asarray(image.convert("L")).std() > 10


# -- the command -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick preset on the embedded digits, once for the module: (output, stdout)."""
    output = tmp_path_factory.mktemp("probe") / "study"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = command.main(["--preset", "quick", "--output", str(output)])
    assert code == 0, printed.getvalue()
    return output, printed.getvalue()


def test_quick_preset_end_to_end(quick):
    output, printed = quick
    results = json.loads((output / "probes.json").read_text())
    (model,) = results["models"]
    assert model["model"] == "lenet"
    assert [(layer["name"], layer["receptive_field"]) for layer in model["layers"]] == [
        ("conv1", 5), ("conv2", 14), ("fc1", None), ("fc2", None)]
    assert [cell["label"] for cell in model["cells"]] == ["recipe", "activation=relu"]
    recipe = model["cells"][0]["runs"]
    assert [row["status"] for row in recipe] == ["finished", "finished"]
    for row in recipe:
        for probes in (row["probes"], row["control_probes"]):
            assert list(probes) == ["conv1", "conv2", "fc1", "fc2"]
            assert all(0.0 <= accuracy <= 1.0 for accuracy in probes.values())
        assert len(row["edges"]) == len(row["control_edges"]) == 6
        assert (output / row["run_dir"] / "metrics.json").is_file()
    assert results["probe"]["pixels"]["accuracy"] > 0.5  # digits: pixels alone go far
    verdict = results["verdicts"]["lenet"]
    assert verdict["probes"] in (report.HOLDS, report.FAILS)  # it left chance: a verdict
    assert "## Verdicts" in (output / "report.md").read_text()
    with Image.open(output / "probes.png") as image:
        assert image.size == (600, 800)
    assert "[4/4] lenet activation=relu seed 1: trained in" in printed


def test_a_finished_study_trains_nothing_and_writes_the_same_files(quick, capsys):
    output, _ = quick
    before = {name: (output / name).read_bytes() for name in ("probes.json", "report.md")}
    runs = sorted((output / "runs").iterdir())
    code, out, _ = run_in_process("probe", ["--preset", "quick", "--output", str(output)],
                                  capsys)
    assert code == 0
    assert "continuing" in out and "trained in" not in out
    assert sorted((output / "runs").iterdir()) == runs
    assert {name: (output / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("argv, code, says", [
    (["--seeds", "0"], 2, "--seeds must be a whole number from 1 to 20, got 0"),
    (["--epochs", "0"], 2, "--epochs must be a whole number from 1 to 1000, got 0"),
    (["--train-fraction", "0"], 2, "--train-fraction must be a finite number above 0.0"),
    (["--train-fraction", "1.5"], 2, "--train-fraction must be a finite number above 0.0"),
    (["--train-fraction", "nan"], 2, "--train-fraction must be a finite number"),
    (["--preset", "full"], 2, "invalid choice: 'full'"),
    (["--models", "lenet,,"], 2, "must be model names separated by commas"),
    (["--models", "lenet,resnet"], 2, "Unknown model 'resnet'"),
    (["--dataset", "no_such_set"], 1, "no_such_set"),
    (["--output", "{file}"], 2, "is a file"),
    (["--output", "{full}"], 2, "is not empty and holds no probe study"),
])
def test_bad_flags_are_one_sentence_and_write_nothing(argv, code, says, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    argv = [arg.format(file=tmp_path / "a-file", full=tmp_path / "full") for arg in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    assert_refused_writing_nothing("probe", argv, code, says, [tmp_path], capsys)


def test_the_stored_fashion_study_is_what_the_default_preset_runs_now():
    """`keras-cnns probe --dataset fashion_mnist` must still train the cells of the stored
    study in docs/benchmarks, at their input size, whatever the models' recipes became."""
    from pathlib import Path

    from keras_cnns.measure.probe_plan import load_plan

    stored = json.loads((Path(__file__).parent.parent / "docs" / "benchmarks" /
                         "probes-fashion-mnist.json").read_text())
    plan = load_plan("default", dataset="fashion_mnist", data_dir=None, output=Path("unused"))
    for model in stored["models"]:
        cells = [cell for cell in plan.cells if cell.model == model["model"]]
        assert [cell.label for cell in cells] == [cell["label"] for cell in model["cells"]]
        for cell, measured in zip(cells, model["cells"], strict=True):
            config = cell.configs[0]
            assert [config.image_size, config.image_size] == model["input"][:2]
            assert (config.augment, config.epochs, len(cell.configs)) == (
                measured["augment"], measured["epochs"], len(measured["runs"]))
            assert config.mixed_precision == "off", cell.label
