"""MixUp, CutMix, RandAugment and random erasing: what each does to a batch, that the training
stream stays a function of (seed, batch index) with them on, and that a run trains with each.

The ops are checked on batches whose images and classes tell every source pixel apart: a mixed
image must be the convex combination its soft label names, a CutMix label must weigh exactly the
pixels pasted, RandAugment must change images and keep labels, erasing must fill one box.
A run killed with them on resumes bit-identical (the last, slow, test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_cnns.data import build_pipeline, load_source
from keras_cnns.data.augment import augment_batch, get_policy
from keras_cnns.data.mixing import Mixing, cut_mix, mix_batch, mix_up

BATCH, SIZE = 24, 12
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def batch():
    """Images of distinct random values in (0.1, 1) and one class per image (one-hot)."""
    images = np.random.default_rng(0).uniform(0.1, 1.0, (BATCH, SIZE, SIZE, 1))
    return tf.constant(images, tf.float32), tf.one_hot(tf.range(BATCH), BATCH)


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def partners(labels):
    """Each row's own-class weight and its partner (the other class it holds, else itself)."""
    own = np.diagonal(labels).copy()
    others = labels - np.diag(own)
    partner = np.where(others.max(axis=1) > 0, others.argmax(axis=1), np.arange(len(labels)))
    return own, partner


def test_mix_up_makes_the_convex_combinations_its_labels_name(batch):
    images, labels = batch
    mixed, soft = (t.numpy() for t in mix_up(images, labels, tf.constant([4, 2]), alpha=0.4))
    x = images.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert ((soft > 0).sum(axis=1) <= 2).all()
    own, partner = partners(soft)
    expected = own[:, None, None, None] * x + (1 - own[:, None, None, None]) * x[partner]
    np.testing.assert_allclose(mixed, expected, atol=1e-6)
    assert ((own > 0.01) & (own < 0.99)).sum() > BATCH // 2  # Beta(0.4, 0.4): mostly mixed
    np.testing.assert_array_equal(
        mixed, mix_up(images, labels, tf.constant([4, 2]), alpha=0.4)[0].numpy())


def test_cut_mix_label_weight_is_the_share_of_pixels_pasted(batch):
    images, labels = batch
    pasted_images, soft = (t.numpy() for t in cut_mix(images, labels, tf.constant([1, 9]),
                                                      alpha=1.0))
    x = images.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    own, partner = partners(soft)
    boxes = 0
    for i in range(BATCH):
        changed = (pasted_images[i] != x[i])[..., 0]
        if partner[i] == i:  # pasted from itself: nothing changes
            assert not changed.any() and own[i] == 1.0
            continue
        np.testing.assert_array_equal(pasted_images[i][changed], x[partner[i]][changed])
        rows, cols = np.nonzero(changed)
        if len(rows):  # one whole box
            boxes += 1
            assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        np.testing.assert_allclose(1.0 - own[i], changed.mean(), atol=1e-6)
    assert boxes > BATCH // 2


def test_mix_prob_mixes_that_share_of_batches_and_both_methods_take_turns(batch):
    images, labels = batch
    both = Mixing(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.5)
    kinds = []
    for step in range(60):
        mixed, soft = (t.numpy() for t in mix_batch(images, labels, tf.constant([7, step]), both))
        if np.array_equal(soft, labels.numpy()):
            np.testing.assert_array_equal(mixed, images.numpy())
            kinds.append("none")
        else:  # CutMix copies pixels; MixUp blends nearly every one into a new value
            kept = np.isin(mixed, images.numpy()).mean()
            kinds.append("cutmix" if kept == 1.0 else "mixup")
    counts = {kind: kinds.count(kind) for kind in ("none", "cutmix", "mixup")}
    assert 18 <= counts["none"] <= 42 and counts["cutmix"] >= 8 and counts["mixup"] >= 8, counts
    assert not Mixing(mixup_alpha=0.4, mix_prob=0.0).active and not Mixing().active
    np.testing.assert_array_equal(
        mix_batch(images, labels, tf.constant([7, 0]), Mixing())[1], labels)


def test_erase_fills_one_box_of_erased_images_with_one_grey_level(batch):
    images, _ = batch
    x = images.numpy()
    erased = augment_batch(images, tf.constant([3, 5]), "erase").numpy()
    count = 0
    for before, after in zip(x, erased, strict=True):
        changed = (after != before)[..., 0]
        if not changed.any():
            continue
        count += 1
        rows, cols = np.nonzero(changed)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert changed[box].all() and np.unique(after[box]).size == 1
    assert 0 < count < BATCH  # erase_prob 0.5


def test_erase_prob_puts_erasing_after_any_policy_and_zero_turns_it_off(batch):
    """`--erase-prob` on `light`: the same shifts as `light` alone, then erased boxes; the
    erased images of light+erasing equal `erase`'s boxes drawn on the shifted images."""
    images, _ = batch
    seed = tf.constant([3, 5])
    light = augment_batch(images, seed, "light").numpy()
    light_erased = augment_batch(images, seed, get_policy("light", 1.0)).numpy()
    changed = (light_erased != light).reshape(BATCH, -1).any(axis=1)
    assert changed.sum() >= BATCH - 2  # p 1: every image loses a box (unless it fell on zeros)
    boxes_only = augment_batch(tf.constant(light), seed, get_policy("none", 1.0)).numpy()
    np.testing.assert_array_equal(light_erased, boxes_only)
    np.testing.assert_array_equal(augment_batch(images, seed, get_policy("erase", 0.0)), images)
    assert get_policy("randaugment", 0.25).rand_augment_ops == 2


STREAMS = {
    "mixup": dict(mixup_alpha=0.4),
    "cutmix": dict(cutmix_alpha=1.0),
    "both_half": dict(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.5),
    "randaugment": dict(augment="randaugment"),
    "erase": dict(augment="erase"),
    "randaugment_erase": dict(augment=get_policy("randaugment", 0.25)),
}


@pytest.mark.parametrize("options", STREAMS.values(), ids=STREAMS.keys())
def test_the_stream_is_seeded_and_a_resume_continues_it_exactly(digits, options):
    # 32 images of 12x12 are loaded 4 batches at a time: batch 5 starts inside a load.
    common = dict(image_size=SIZE, batch_size=32, repeat=True, seed=5, deterministic=True,
                  one_hot=10, **options)
    pipeline = build_pipeline(digits, "train", **common).take(9)
    stream = [(x.numpy(), y.numpy()) for x, y in pipeline]
    resumed = build_pipeline(digits, "train", start_batch=5, **common).take(4)
    for (x, y), (xb, yb) in zip(stream, pipeline, strict=True):  # a second pass, as a strategy
        np.testing.assert_array_equal(xb, x)
        np.testing.assert_array_equal(yb, y)
    for (x, y), (xr, yr) in zip(stream[5:], resumed, strict=True):
        np.testing.assert_array_equal(xr, x)
        np.testing.assert_array_equal(yr, y)
    labels = np.concatenate([y for _, y in stream])
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    soft = (labels.max(axis=1) < 1.0).mean()
    assert (soft > 0.2) == ("mixup_alpha" in options or "cutmix_alpha" in options)
    if "augment" in options:  # the policies change images and keep labels
        plain = build_pipeline(digits, "train", **{**common, "augment": "none"}).take(9)
        for (x, y), (xp, yp) in zip(stream, plain, strict=True):
            np.testing.assert_array_equal(y, yp)
            differs = np.abs(x - xp.numpy()).reshape(len(x), -1).max(axis=1) > 1e-3
            # erase_prob is 0.5; RandAugment's ops all change an image, but a few barely
            assert differs.mean() > (0.25 if options["augment"] == "erase" else 0.75)


def test_validation_and_test_stay_unmixed_and_hard(digits):
    plain = dict(image_size=SIZE, batch_size=64, deterministic=True)
    common = dict(plain, mixup_alpha=1.0, cutmix_alpha=1.0)
    for split in ("validation", "test"):
        x, y = next(iter(build_pipeline(digits, split, **common)))
        plain_x, plain_y = next(iter(build_pipeline(digits, split, **plain)))
        np.testing.assert_array_equal(x, plain_x)
        np.testing.assert_array_equal(y, plain_y)  # integer labels, as without mixing
    _, y = next(iter(build_pipeline(digits, "train", **common)))
    assert y.dtype == tf.float32 and y.shape[1] == 10  # soft targets even without one_hot


MIRRORED = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_cnns.data import build_pipeline, load_source
source = load_source("synthetic")
options = dict(image_size=12, batch_size=32, repeat=True, seed=3, deterministic=True, one_hot=10,
               mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.8)
plain = build_pipeline(source, "train", **options).take(6)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
shared = strategy.experimental_distribute_dataset(
    build_pipeline(source, "train", num_replicas=2, **options))
compared = 0
for (x, y), (xs, ys) in zip(plain, shared):
    for whole, parts in ((x, xs), (y, ys)):
        assert np.array_equal(whole, tf.concat(strategy.experimental_local_results(parts), 0))
    compared += 1
print("same", compared)
"""


def test_mirrored_replicas_together_see_the_mixed_batches_of_one_device(tmp_path):
    """Partners come from the whole global batch, not from each replica's share."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", MIRRORED], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and result.stdout.split() == ["same", "6"], result.stderr[-3000:]


def test_records_written_before_the_mixing_fields_still_match_the_same_config(tmp_path):
    """A manifest or search.json without the fields is judged as the run with mixing off."""
    from keras_cnns.config import RunConfig
    from keras_cnns.training.reproduction import judge
    from keras_cnns.tuning import default_space
    from keras_cnns.tuning.search_record import recorded_identity, search_identity

    config = RunConfig(model="lenet").resolve()
    new = ("mixup_alpha", "cutmix_alpha", "mix_prob")
    old = {key: value for key, value in config.to_dict().items() if key not in new}
    run = {"metrics": {"test_accuracy": 0.9}, "dataset": {"fingerprint": "f"}}
    status, verdict = judge({**run, "config": old}, config.to_dict(), run)
    assert (status, verdict.split(":")[0]) == (0, "reproduced within tolerance"), verdict
    mixing = {**config.to_dict(), "mixup_alpha": 0.2}
    assert "mixup_alpha (0.2 vs 0.0)" in judge({**run, "config": old}, mixing, run)[1]
    identity = search_identity(config, default_space("lenet"), "random")
    record = tmp_path / "search.json"
    record.write_text(json.dumps({**identity, "config": {
        key: value for key, value in identity["config"].items() if key not in new}}))
    assert recorded_identity(record) == identity


# -- training ---------------------------------------------------------------------------------
FLAGS = {
    "mixup_alpha": dict(mixup_alpha=0.4),
    "cutmix_alpha": dict(cutmix_alpha=1.0),
    "mix_prob": dict(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.5),
    "randaugment": dict(augment="randaugment"),
}


def tiny_run(tmp_path, **options):
    from keras_cnns.config import RunConfig
    from keras_cnns.training import train

    config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=100,
                       epochs=1, warmup_epochs=0, deterministic=True,
                       run_dir=str(tmp_path / "runs"), **{"augment": "none", **options})
    return train(config, verbose=0, export=False)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("baseline"))


@pytest.mark.parametrize("options", FLAGS.values(), ids=FLAGS.keys())
def test_a_tiny_run_trains_with_the_flag_and_it_changes_training(tmp_path, baseline, options):
    result = tiny_run(tmp_path, **options)
    history = result.run_dir / "history.csv"
    assert history.read_text() != (baseline.run_dir / "history.csv").read_text()
    assert all(np.isfinite(value) for value in result.metrics.values()
               if isinstance(value, float))
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert {name: recorded[name] for name in options} == options
