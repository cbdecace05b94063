"""Batch shards (keras_cnns/training/sharding.py): the split step computes the whole batch's
step, the validation step splits any batch, and the automatic choice follows the machine."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.models import build_model, list_models
from keras_cnns.training import sharding


def _pair(name="lenet", size=28, shards=2, dropout=None):
    """Two compiled copies of one model (same weights); the second trains in `shards` shards."""
    options = {} if dropout is None else {"dropout": dropout}
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        model = build_model(name, input_shape=(size, size, 1), num_classes=10, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        models.append(model)
    sharding.install(models[1], shards)
    return models


def _batch(n, size=28, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size, 1), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return images, labels


@pytest.mark.parametrize("shards", [2, 4])
def test_a_sharded_step_is_the_whole_batch_step(shards):
    whole, split = _pair(shards=shards)
    images, labels = _batch(16)
    for _ in range(3):
        logs_whole = whole.train_on_batch(images, labels, return_dict=True)
        logs_split = split.train_on_batch(images, labels, return_dict=True)
        assert logs_split["loss"] == pytest.approx(logs_whole["loss"], rel=1e-5)
        assert logs_split["accuracy"] == logs_whole["accuracy"]
    moved = 0.0
    for a, b, start in zip(whole.get_weights(), split.get_weights(),
                           _pair(shards=shards)[0].get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
        moved = max(moved, float(np.abs(a - start).max()))
    assert moved > 1e-3  # the steps changed the weights: the comparison is not of two no-ops


def _recording_predictions(model, batch):
    """A variable that holds the predictions of `model`'s last training step."""
    import tensorflow as tf

    seen = tf.Variable(tf.zeros((batch, 10)))
    compute_metrics = model.compute_metrics

    def recording(x, y, y_pred, sample_weight=None):
        seen.assign(tf.cast(y_pred, seen.dtype))
        return compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.compute_metrics = recording
    return seen


def test_sharded_dropout_steps_are_reproducible():
    """Each shard draws its own masks from the model's seed generator, in a fixed order."""
    images, labels = _batch(4, size=64)
    images, labels = np.concatenate([images, images]), np.concatenate([labels, labels])
    runs = []
    for _ in range(2):
        _, split = _pair("alexnet", size=64, dropout=0.5)
        seen = _recording_predictions(split, len(images))
        keras.utils.set_random_seed(3)
        split.train_on_batch(images, labels)
        runs.append(split.get_weights())
        first_shard, second_shard = np.split(seen.numpy(), 2)
        assert np.abs(first_shard).max() > 0  # the recording saw the step's predictions
        assert not np.allclose(first_shard, second_shard)  # same images, other masks
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in runs[0])


@pytest.mark.parametrize("batch", [5, 1])
def test_validation_splits_any_batch_and_scores_the_whole_batch(batch):
    whole, split = _pair(shards=2)
    images, labels = _batch(7, seed=1)
    expected = whole.evaluate(images, labels, batch_size=batch, return_dict=True, verbose=0)
    got = split.evaluate(images, labels, batch_size=batch, return_dict=True, verbose=0)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == expected["accuracy"]


def _config(**fields):
    return RunConfig(model="lenet", **fields).resolve()


def test_automatic_shards_follow_the_cores_and_divide_the_batch(monkeypatch):
    monkeypatch.setattr(sharding, "available_cores", lambda: 4)
    assert sharding.resolve_shards(_config(), "default", has_gpu=False) == 4
    assert sharding.resolve_shards(_config(batch_size=48), "default", has_gpu=False) == 3
    assert sharding.resolve_shards(_config(batch_size=50), "default", has_gpu=False) == 2
    assert sharding.resolve_shards(_config(batch_size=31), "default", has_gpu=False) == 1
    assert sharding.resolve_shards(_config(batch_size=20), "default", has_gpu=False) == 1
    assert sharding.resolve_shards(_config(), "default", has_gpu=True) == 1
    assert sharding.resolve_shards(_config(), "mirrored", has_gpu=False) == 1
    monkeypatch.setattr(sharding, "available_cores", lambda: 1)
    assert sharding.resolve_shards(_config(), "default", has_gpu=False) == 1


def test_a_count_that_cannot_apply_is_one_sentence():
    assert sharding.resolve_shards(_config(batch_shards=4), "default", has_gpu=False) == 4
    with pytest.raises(ConfigError, match="batch_shards 3 does not divide the batch size 64"):
        sharding.resolve_shards(_config(batch_shards=3), "default", has_gpu=False)
    with pytest.raises(ConfigError, match="mirrored strategy"):
        sharding.resolve_shards(_config(batch_shards=2), "mirrored", has_gpu=False)
    with pytest.raises(ConfigError, match="batch_shards must be at least 0, got -1"):
        RunConfig(batch_shards=-1)


def test_the_automatic_choice_keeps_the_identity_and_a_count_changes_it():
    assert _config(batch_shards=0).identity() == _config().identity()
    assert _config(batch_shards=2).identity() != _config().identity()


def test_more_shards_than_usable_cores_is_a_note_not_silence(monkeypatch, capsys):
    monkeypatch.setattr(sharding, "available_cores", lambda: 2)
    monkeypatch.setattr(sharding, "configure_threads", lambda shards: None)
    assert sharding.crowding_note(2, 64) is None
    assert sharding.prepare(_config(batch_shards=64), keras_default_strategy()) == 64
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: batch_shards 64 (1 image each) outnumber the 2 cores")
    assert len(note.splitlines()) == 1


def keras_default_strategy():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def test_threads_that_can_no_longer_change_are_said_not_swallowed(capsys):
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow's runtime has started: its thread pools are fixed
    threading = tf.config.threading
    before = (threading.get_intra_op_parallelism_threads(),
              threading.get_inter_op_parallelism_threads())
    note = sharding.configure_threads(before[1] + 5)
    assert f"cannot change them, so these {before[1] + 5} batch shards run with them" in note
    # What it has: no note.
    assert sharding.configure_threads(1 if before == (0, 0) else before[1]) is None
    # prepare prints the note, or hands it to a caller that prints it after its other checks.
    config = RunConfig(model=list_models()[0], batch_shards=before[1] + 5,
                       batch_size=16 * (before[1] + 5)).resolve()
    notes = []
    sharding.prepare(config, notes=notes)
    assert capsys.readouterr().err == "" and any("cannot change them" in n for n in notes)
    sharding.prepare(config)
    assert "note: TensorFlow already runs with" in capsys.readouterr().err


def test_the_sharded_steps_use_only_public_keras_api():
    import inspect

    source = inspect.getsource(sharding)
    assert "keras.src" not in source and "self._" not in source
