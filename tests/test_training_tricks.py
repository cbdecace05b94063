"""EMA of the weights, gradient clipping, top-5 and per-class scores, and TensorBoard filter
images (issue #25 part A, issue #24's filter images).

One tiny LeNet run with `--ema-decay` and `--filter-images` (a subprocess that records the raw
weights and the optimizer's moving averages at every epoch's end) serves every check of what a
run writes; the optimizer's arithmetic is checked by hand on single variables. The kill-and-resume
runs with these flags on are in tests/test_resume.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DECAY = 0.9

# Trains a two-epoch LeNet with EMA and filter images; at every epoch's end it saves the raw
# trainable weights and the optimizer's moving averages (Keras names them <weight>_average).
RECORDED_RUN = f"""
import numpy as np
from keras_cnns.config import RunConfig
from keras_cnns.training import run_state, train

saved = {{}}
end_epoch = run_state.EpochRecorder.end_epoch

def recording(self, epoch, logs, model, optimizer):
    averages = [v for v in optimizer.variables if v.path.endswith("_average")]
    for i, (raw, average) in enumerate(zip(model.trainable_variables, averages, strict=True)):
        saved[f"raw-{{epoch}}-{{i}}"] = np.asarray(raw.numpy())
        saved[f"average-{{epoch}}-{{i}}"] = np.asarray(average.numpy())
    return end_epoch(self, epoch, logs, model, optimizer)

run_state.EpochRecorder.end_epoch = recording
config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=50, epochs=2,
                   warmup_epochs=0.0, augment="none", ema_decay={DECAY}, filter_images=True,
                   run_dir="runs", output="export")
train(config, verbose=0)
np.savez("recorded.npz", **saved)
"""


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ema_run")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", RECORDED_RUN], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    with np.load(cwd / "recorded.npz") as recorded:
        saved = dict(recorded)
    weights = len([key for key in saved if key.startswith("raw-0-")])

    def at(kind, epoch):
        return [saved[f"{kind}-{epoch}-{i}"] for i in range(weights)]

    history = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
    return {"cwd": cwd, "run_dir": run_dir, "export": cwd / "export", "at": at,
            "history": history,
            "metrics": json.loads((run_dir / "metrics.json").read_text()),
            "manifest": json.loads((cwd / "export" / "manifest.json").read_text())}


def _config(**fields):
    from keras_cnns.config import RunConfig

    base = dict(model="lenet", dataset="synthetic", image_size=16, epochs=1, batch_size=8,
                optimizer="sgd", lr=0.1, momentum=0.0, schedule="constant", warmup_epochs=0.0,
                weight_decay=0.0)
    return RunConfig(**{**base, **fields}).resolve()


def _variable(values):
    import keras

    return keras.Variable(np.asarray(values, np.float32))


# -- EMA ----------------------------------------------------------------------------------------

def test_ema_decay_averages_the_weights_after_every_step():
    """average_1 = w_1, then average_t = d * average_(t-1) + (1 - d) * w_t, by hand; inside
    `averaged_weights` the model holds it, after it the raw weights are back bit for bit."""
    import keras

    from keras_cnns.training.ema import averaged_weights
    from keras_cnns.training.factories import make_optimizer

    optimizer = make_optimizer(_config(ema_decay=0.75), steps_per_epoch=10)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    variables = model.trainable_variables  # kernel [3, 1], bias [1]
    optimizer.build(variables)
    steps = []
    for gradient in ([3.0, 1.0, -1.0], [0.5, -4.0, 2.0], [1.0, 1.0, 1.0]):
        gradients = [np.asarray(gradient, np.float32)[:, None], np.asarray(gradient[:1])]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        steps.append([np.array(v.numpy()) for v in variables])
    average = steps[0]
    for step in steps[1:]:
        average = [0.75 * a + 0.25 * w for a, w in zip(average, step, strict=True)]
    raw = steps[-1]
    assert not np.allclose(raw[0], average[0])  # the average lags the raw weights
    with averaged_weights(model, optimizer):
        for got, want in zip(variables, average, strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    for got, want in zip(variables, raw, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    # The averages are optimizer variables: a committed state (run_state.capture) holds them.
    names = [v.path for v in optimizer.variables]
    assert sum(name.endswith("_average") for name in names) == len(variables)


def test_a_run_with_ema_validates_checkpoints_and_exports_the_average(ema_run):
    """The export's weights are the optimizer's moving average at the best epoch (not the raw
    weights), and the history's val_loss at that epoch is the export's validation loss."""
    import keras

    from keras_cnns.training.evaluation import evaluate_path

    best = ema_run["metrics"]["best_epoch"]
    exported = keras.saving.load_model(ema_run["export"] / "model.keras")
    averages, raw = ema_run["at"]("average", best - 1), ema_run["at"]("raw", best - 1)
    for got, want, trained in zip(exported.trainable_variables, averages, raw, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
        assert not np.array_equal(got.numpy(), trained)
    manifest = ema_run["manifest"]
    assert manifest["config"]["ema_decay"] == DECAY and manifest["ema"]["decay"] == DECAY
    assert "moving average" in manifest["ema"]["weights"]
    validation = evaluate_path(ema_run["export"], split="validation")
    history = ema_run["history"]
    np.testing.assert_allclose(validation["test_loss"], history["val_loss"][best - 1],
                               rtol=1e-4)
    # The run's best checkpoint holds the same average, so `evaluate RUN` scores it too.
    from keras_cnns.training.evaluation import _load

    _, checkpoint = _load(ema_run["run_dir"])
    for got, want in zip(checkpoint.trainable_variables, averages, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


# -- gradient clipping --------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_clip_norm_is_kerass_global_clipnorm_on_every_optimizer(optimizer):
    from keras_cnns.training.factories import make_optimizer

    assert make_optimizer(_config(optimizer=optimizer, clip_norm=2.5), 10).global_clipnorm == 2.5
    assert make_optimizer(_config(optimizer=optimizer), 10).global_clipnorm is None


def test_clip_norm_rescales_a_step_whose_gradient_exceeds_it():
    """Plain SGD (lr 0.1): two tensors' gradients of global norm 13 step 0.1 * g * 2 / 13 under
    --clip-norm 2, and 0.1 * g without it; a gradient within the norm steps unclipped."""
    from keras_cnns.training.factories import make_optimizer

    gradients = [np.array([3.0, 4.0], np.float32), np.array([12.0], np.float32)]  # norm 13

    def step(clip_norm, scale=1.0):
        optimizer = make_optimizer(_config(clip_norm=clip_norm), 10)
        variables = [_variable([1.0, 1.0]), _variable([1.0])]
        optimizer.apply_gradients(zip([g * scale for g in gradients], variables, strict=True))
        return [1.0 - v.numpy() for v in variables]

    for got, gradient in zip(step(2.0), gradients, strict=True):
        np.testing.assert_allclose(got, 0.1 * gradient * 2.0 / 13.0, rtol=1e-5)
    for got, gradient in zip(step(None), gradients, strict=True):
        np.testing.assert_allclose(got, 0.1 * gradient, rtol=1e-5)
    for got, gradient in zip(step(2.0, scale=0.1), gradients, strict=True):  # norm 1.3 < 2
        np.testing.assert_allclose(got, 0.1 * 0.1 * gradient, rtol=1e-5)


# -- top-5, precision and recall ----------------------------------------------------------------

def test_top_k_accuracy_and_per_class_scores_by_hand():
    from keras_cnns.export.scoring import class_scores, top_k_accuracy

    scores = np.array([[0.9, 0.1, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.3, 0.2, 0.2],
                       [0.0, 0.0, 0.0, 1.0], [0.5, 0.4, 0.1, 0.0]])
    labels = np.array([0, 0, 1, 3, 2])
    # The label's rank: row 0 first, row 1 last (4th), row 2 tied first (a tie at the boundary
    # counts as in, as tf.math.in_top_k counts it), row 3 first, row 4 third.
    assert [top_k_accuracy(scores, labels, k) for k in (1, 2, 3, 4)] == [3 / 5, 3 / 5, 4 / 5, 1]
    import tensorflow as tf

    for k in (1, 2, 3):
        in_top = tf.math.in_top_k(labels, tf.constant(scores, tf.float32), k).numpy()
        assert top_k_accuracy(scores, labels, k) == in_top.mean()
    scored = class_scores(scores, labels, ["a", "b", "c", "d"])
    # predictions (argmax, first of a tie): 0, 3, 0, 3, 0 -> matrix rows true, columns predicted
    assert scored["confusion_matrix"] == [[1, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0],
                                          [0, 0, 0, 1]]
    assert scored["per_class_precision"] == {"a": 1 / 3, "b": None, "c": None, "d": 1 / 2}
    assert scored["per_class_recall"] == {"a": 1 / 2, "b": 0.0, "c": 0.0, "d": 1.0}
    assert "test_top5_accuracy" not in scored  # 4 classes: top-5 is always 1


def _hand_top5(probabilities, labels):
    return float(np.mean([label in np.argsort(-row)[:5]
                          for row, label in zip(probabilities, labels, strict=True)]))


def test_top5_is_in_the_logs_metrics_manifest_and_evaluate(ema_run, tmp_path, capsys):
    import tensorflow as tf

    from keras_cnns.commands import evaluate

    names = ema_run["history"].dtype.names
    assert "top5_accuracy" in names and "val_top5_accuracy" in names
    with np.load(ema_run["export"] / "test_set.npz") as test_set:
        images, labels = test_set["images"], test_set["labels"]
    serving = tf.saved_model.load(str(ema_run["export"])).signatures["serving_default"]
    probabilities = serving(images=tf.constant(images))["probabilities"].numpy()
    manifest = ema_run["manifest"]["metrics"]
    assert manifest["test_top5_accuracy"] == _hand_top5(probabilities, labels)
    assert ema_run["metrics"]["test_top5_accuracy"] == _hand_top5(probabilities, labels)
    assert manifest["keras_test_top5_accuracy"] == ema_run["metrics"]["test_top5_accuracy"]
    assert 0 < manifest["test_top5_accuracy"] < 1  # informative: neither all nor none

    assert evaluate.main([str(ema_run["export"]), "--confusion", str(tmp_path / "c.png")]) == 0
    printed = capsys.readouterr().out
    assert f"top-5 {manifest['test_top5_accuracy']:.4f}" in printed


def test_metrics_hold_each_classes_precision_and_recall_of_the_confusion_matrix(ema_run):
    from keras_cnns.training.evaluation import evaluate_path

    scored = evaluate_path(ema_run["export"])
    matrix = np.array(scored["confusion_matrix"])
    names = list(scored["per_class_recall"])
    for i, name in enumerate(names):
        recall = matrix[i, i] / matrix[i].sum()
        precision = matrix[i, i] / matrix[:, i].sum() if matrix[:, i].sum() else None
        assert scored["per_class_recall"][name] == pytest.approx(recall)
        assert scored["per_class_precision"][name] == (
            None if precision is None else pytest.approx(precision))
    # metrics.json has them for the same test split (Keras-side; the same predictions)
    assert ema_run["metrics"]["per_class_precision"] == scored["per_class_precision"]
    assert ema_run["metrics"]["per_class_recall"] == scored["per_class_recall"]


def test_converted_weights_report_top1_and_top5_on_an_image_folder(tmp_path, capsys):
    """torchvision's AlexNet layout (alexnet2012), converted weights with ImageNet's mean and
    std, scored through the export's serving_default as torchvision scores ImageNet."""
    import tensorflow as tf
    from bad_inputs import png_folders

    from keras_cnns.commands import evaluate
    from keras_cnns.data import load_source
    from keras_cnns.export.converted import export_converted
    from keras_cnns.models import build_model

    classes = [f"n0{i}" for i in range(7)]
    folder = png_folders(tmp_path / "val", classes=classes, per_class=10)
    model = build_model("alexnet2012", input_shape=(63, 63, 3), num_classes=7, width=0.125)
    export = export_converted(model, tmp_path / "alexnet", mean=[0.485, 0.456, 0.406],
                              std=[0.229, 0.224, 0.225], class_names=[f"c{i}" for i in range(7)])
    argv = [str(export), "--dataset", "folder", "--data-dir", str(folder),
            "--confusion", str(tmp_path / "c.png")]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out

    images, labels = load_source("folder", str(folder)).arrays("test")
    serving = tf.saved_model.load(str(export)).signatures["serving_default"]
    probabilities = serving(images=tf.constant(images))["probabilities"].numpy()
    top1 = float((probabilities.argmax(-1) == labels).mean())
    assert f"accuracy {top1:.4f}  top-5 {_hand_top5(probabilities, labels):.4f}" in printed
    assert (tmp_path / "c.png").is_file()

    with pytest.raises(SystemExit) as refused:  # no images of its own: one sentence
        evaluate.main([str(export), "--confusion", str(tmp_path / "none.png")])
    assert refused.value.code == 2 and not (tmp_path / "none.png").exists()
    (line,) = capsys.readouterr().err.splitlines()
    assert "holds converted weights" in line and "--dataset" in line


# -- TensorBoard filter images -------------------------------------------------------------------

def test_filter_grid_scales_all_filters_by_one_range():
    from keras_cnns.tile_grids import FILTER_SIDE, GAP, filter_grid

    kernel = np.zeros((2, 2, 1, 3), np.float32)
    kernel[..., 0, 1] = 1.0  # filter 1 at the top of the range, filter 0 at the bottom
    kernel[0, 0, 0, 2] = 0.5
    image = filter_grid(kernel)
    side, half = FILTER_SIDE, FILTER_SIDE // 2  # a 2-pixel filter drawn at FILTER_SIDE a side
    assert image.shape == (2 * (side + GAP) + GAP, 2 * (side + GAP) + GAP, 3)

    def tile(row, col):
        top, left = GAP + row * (side + GAP), GAP + col * (side + GAP)
        return image[top:top + side, left:left + side]

    assert (tile(0, 0) == 0).all() and (tile(0, 1) == 255).all()
    assert (tile(1, 0)[:half, :half] == 128).all() and (tile(1, 0)[half:] == 0).all()
    assert (image[:GAP] == 255).all() and (tile(1, 1) == 255).all()  # background, no filter


def test_filter_images_are_in_the_event_file_each_epoch(ema_run):
    """Step 0 holds the initial filters, step n those after epoch n (the raw weights)."""
    import tensorflow as tf

    from keras_cnns.tile_grids import filter_grid
    from keras_cnns.training.filter_images import TAG

    (events,) = (ema_run["run_dir"] / "logs" / "filters").glob("events.out.tfevents.*")
    images = {}
    for event in tf.compat.v1.train.summary_iterator(str(events)):
        for value in event.summary.value:
            assert value.tag == f"{TAG}/conv1"
            encoded = tf.make_ndarray(value.tensor)[2]  # [width, height, png]
            images[event.step] = tf.io.decode_png(encoded).numpy()
    assert sorted(images) == [0, 1, 2]
    for epoch in (1, 2):
        kernel = ema_run["at"]("raw", epoch - 1)[0]  # conv1's kernel comes first
        np.testing.assert_array_equal(images[epoch], filter_grid(kernel))
    assert not np.array_equal(images[0], images[1])


def test_ema_comes_from_the_recipe_and_zero_turns_it_off():
    from keras_cnns.config import RunConfig
    from keras_cnns.models import get_model_entry
    from keras_cnns.training.trainer import ema_record

    entry = get_model_entry("lenet")
    digits = RunConfig(model="lenet", dataset="digits").resolve()
    assert digits.ema_decay == entry.recipe_for("digits")["ema_decay"] == 0.99
    assert ema_record(digits)["decay"] == 0.99
    off = RunConfig(model="lenet", dataset="digits", ema_decay=0.0).resolve()
    assert off.ema_decay == 0.0 and ema_record(off) is None
    assert ema_record(RunConfig(model="lenet", dataset="synthetic").resolve()) is None
