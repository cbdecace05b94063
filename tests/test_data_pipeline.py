"""The tf.data pipeline, `preprocess` and the augmentation policies."""


import numpy as np
import pytest
import tensorflow as tf

from keras_cnns.data import (
    AugmentPolicy,
    DataError,
    augment_batch,
    build_pipeline,
    list_augment_policies,
    load_source,
    preprocess,
)
from keras_cnns.data.augment import POLICIES, get_policy, sample_params


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


@pytest.fixture(scope="module")
def colour():
    return load_source("synthetic", num_classes=3, image_size=16, channels=3, train_size=60,
                       validation_size=12, test_size=12, allow_horizontal_flip=True)


def take(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_shapes_and_dtypes(digits):
    x, y = next(iter(build_pipeline(digits, "train", image_size=32, batch_size=16)))
    assert x.shape == (16, 32, 32, 1) and x.dtype == tf.float32
    assert y.shape == (16,) and y.dtype == tf.int32
    x, y = next(iter(build_pipeline(digits, "validation", image_size=20, batch_size=8,
                                    one_hot=10, channels=3, augment="strong")))
    assert x.shape == (8, 20, 20, 3) and y.shape == (8, 10) and y.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy().sum(axis=1), 1.0)


def test_one_epoch_covers_the_split_once(digits):
    ds = build_pipeline(digits, "test", image_size=8, batch_size=50, deterministic=True)
    labels = np.concatenate([y for _, y in take(ds, 100)])
    np.testing.assert_array_equal(labels, digits.arrays("test")[1])  # test: unshuffled, in order
    train = build_pipeline(digits, "train", image_size=8, batch_size=100, drop_remainder=True)
    sizes = [len(y) for _, y in take(train, 100)]
    assert sizes == [100] * 12  # 1,259 images, the last partial batch dropped


def test_normalisation_uses_train_stats(digits):
    ds = build_pipeline(digits, "train", image_size=8, batch_size=2000, shuffle=False)
    (x, _), = take(ds, 1)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4


def test_pipeline_matches_preprocess(digits, colour):
    images, _ = digits.arrays("validation")
    (x, _), = take(build_pipeline(digits, "validation", image_size=24, batch_size=500,
                                  deterministic=True), 1)
    info = digits.info
    want = preprocess(images, image_size=24, mean=info.mean, std=info.std)
    np.testing.assert_allclose(x, want.numpy(), atol=1e-5)
    (x, _), = take(build_pipeline(colour, "test", image_size=20, batch_size=12, cache=False,
                                  channels=1), 1)
    want = preprocess(colour.arrays("test")[0], image_size=20, mean=colour.info.mean,
                      std=colour.info.std, channels=1)
    np.testing.assert_allclose(x, want.numpy(), atol=1e-5)


def test_preprocess_in_a_serving_signature():
    spec = tf.TensorSpec([None, None, None, 1], tf.uint8)
    serve = tf.function(lambda x: preprocess(x, image_size=16, mean=(0.5,), std=(0.25,),
                                             channels=3), input_signature=[spec])
    out = serve(tf.fill([2, 8, 8, 1], tf.constant(255, tf.uint8)))
    assert out.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out.numpy(), 2.0)  # (1 - 0.5) / 0.25
    unknown = tf.TensorSpec([None, None, None, None], tf.float32)
    grey = tf.function(lambda x: preprocess(x, image_size=(5, 7), mean=(0.1, 0.2, 0.3),
                                            std=(0.2, 0.2, 0.2), channels=1),
                       input_signature=[unknown])
    white = grey(tf.fill([3, 9, 9, 3], 255.0)).numpy()
    assert white.shape == (3, 5, 7, 1)
    luma_mean = 0.2989 * 0.1 + 0.587 * 0.2 + 0.114 * 0.3
    # Luma weights sum to 0.9999: white is 0.9999 grey; the std is luma-weighted too.
    np.testing.assert_allclose(white, (0.9999 - luma_mean) / (0.2 * 0.9999), rtol=1e-5)
    assert grey(tf.zeros([1, 4, 4, 1])).shape == (1, 5, 7, 1)


def test_batch_and_replica_checks(digits):
    with pytest.raises(DataError, match="divide across 4"):
        build_pipeline(digits, "train", image_size=8, batch_size=30, num_replicas=4)
    ds = build_pipeline(digits, "train", image_size=8, batch_size=32, num_replicas=4)
    assert next(iter(ds))[0].shape[0] == 32  # global batch; the strategy splits it
    with pytest.raises(DataError, match="augmentation policy"):
        build_pipeline(digits, "train", image_size=8, batch_size=8, augment="wild")
    with pytest.raises(DataError, match="one_hot"):
        build_pipeline(digits, "train", image_size=8, batch_size=8, one_hot=5)


def test_repeat_is_infinite(digits):
    ds = build_pipeline(digits, "validation", image_size=8, batch_size=100, repeat=True)
    assert len(take(ds, 5)) == 5  # the split has 179 images: two batches an epoch


def test_loading_several_batches_per_call_changes_nothing_but_speed(digits, monkeypatch):
    from keras_cnns.data import pipeline

    def batches():
        ds = build_pipeline(digits, "train", image_size=16, batch_size=64, seed=5,
                            deterministic=True, repeat=True)
        return take(ds, 45)  # crosses two epoch boundaries

    assert pipeline.images_per_load(64, (16, 16), 1) == 4 * 64  # the default groups 4
    grouped = batches()
    monkeypatch.setattr(pipeline, "images_per_load", lambda batch_size, *_: batch_size)
    single = batches()
    for (xa, ya), (xb, yb) in zip(grouped, single, strict=True):
        assert xa.shape == (64, 16, 16, 1)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert pipeline.images_per_load(128, (96, 96), 1) == 128  # large batches load alone


def test_grouped_stream_keeps_its_batches_under_a_one_replica_mirrored_strategy(digits):
    # tf.distribute rewrites batch ops; a `rebatch` split once came out as whole groups here.
    ds = build_pipeline(digits, "train", image_size=16, batch_size=64, augment="light",
                        seed=2, deterministic=True, repeat=True)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    distributed = iter(strategy.experimental_distribute_dataset(ds))
    for x, y in take(ds, 6):
        xd, yd = next(distributed)
        np.testing.assert_array_equal(xd.numpy(), x)
        np.testing.assert_array_equal(yd.numpy(), y)


def test_seeded_shuffle_and_deterministic_batches(digits):
    def batches(seed, augment="strong"):
        ds = build_pipeline(digits, "train", image_size=16, batch_size=64, augment=augment,
                            seed=seed, deterministic=True, repeat=True)
        return take(ds, 25)  # crosses an epoch boundary

    first, second = batches(3), batches(3)
    for (xa, ya), (xb, yb) in zip(first, second, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = batches(4)
    assert not np.array_equal(first[0][1], other[0][1])
    # Augmenting leaves the labels (and the shuffled order) alone.
    plain = batches(3, augment="none")
    for (_, ya), (_, yb) in zip(first, plain, strict=True):
        np.testing.assert_array_equal(ya, yb)
    # Non-deterministic mode may reorder batches; an epoch still holds every image once.
    loose = build_pipeline(digits, "train", image_size=16, batch_size=64, augment="strong",
                           seed=3, deterministic=False)
    labels = np.concatenate([y for _, y in take(loose, 100)])
    assert sorted(labels.tolist()) == sorted(digits.arrays("train")[1].tolist())


def test_epochs_reshuffle_and_reaugment(digits):
    ds = build_pipeline(digits, "train", image_size=8, batch_size=2000, augment="light", seed=1)
    (x1, y1), = take(ds, 1)
    (x2, y2), = take(ds, 1)
    assert not np.array_equal(y1, y2) and sorted(y1) == sorted(y2)


def test_eval_splits_are_the_same_whatever_the_seed(digits):
    a = take(build_pipeline(digits, "test", image_size=8, batch_size=400, seed=0,
                            augment="strong", deterministic=True), 1)
    b = take(build_pipeline(digits, "test", image_size=8, batch_size=400, seed=9,
                            augment="strong", deterministic=True), 1)
    np.testing.assert_array_equal(a[0][0], b[0][0])  # no augmentation outside train


def test_policies():
    names = list_augment_policies()
    assert names[0] == "none" and {"light", "strong"} <= set(names) and len(names) >= 3
    assert all(not p.flip or p.name != "none" for p in POLICIES.values())


def test_augmentation_is_seeded_and_preserves_shape_and_range(colour):
    x = tf.constant(colour.arrays("train")[0][:16], tf.float32) / 255.0
    for name in list_augment_policies():
        a = augment_batch(x, tf.constant([1, 2]), name, allow_horizontal_flip=True)
        b = augment_batch(x, tf.constant([1, 2]), name, allow_horizontal_flip=True)
        c = augment_batch(x, tf.constant([1, 3]), name, allow_horizontal_flip=True)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.shape == x.shape and float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 1
        assert np.array_equal(a.numpy(), x.numpy()) == (name == "none")
        assert name == "none" or not np.array_equal(a.numpy(), c.numpy())


@pytest.mark.parametrize("shape", [(8, 12, 12, 1), (6, 10, 14, 3)])
def test_light_is_the_sampled_integer_shift_and_mirror_with_zero_fill(shape):
    batch, height, width, _ = shape
    x = np.random.default_rng(0).uniform(0.1, 1.0, shape).astype(np.float32)
    seed = tf.constant([5, 6])
    out = augment_batch(tf.constant(x), seed, "light", allow_horizontal_flip=True).numpy()
    params = sample_params(batch, height, width, seed, get_policy("light"), True)
    dys = np.round(params["shift_y"].numpy()).astype(int)
    dxs = np.round(params["shift_x"].numpy()).astype(int)
    flips = params["flip"].numpy()
    for src, dst, dy, dx, flip in zip(x, out, dys, dxs, flips, strict=True):
        img = src[:, ::-1] if flip else src
        expected = np.zeros_like(img)
        expected[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
            img[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
        np.testing.assert_array_equal(dst, expected)
    assert 0 < flips.sum() < batch and (dys != 0).any() and (dxs != 0).any()


def test_no_flip_unless_the_dataset_allows_it(digits):
    assert digits.info.allow_horizontal_flip is False
    flip_only = AugmentPolicy("flip_only", flip=True)
    x = tf.random.stateless_uniform([32, 8, 8, 1], [0, 0])
    np.testing.assert_array_equal(
        augment_batch(x, tf.constant([0, 1]), flip_only, allow_horizontal_flip=False), x)
    mirrored = augment_batch(x, tf.constant([0, 1]), flip_only, allow_horizontal_flip=True)
    flipped = [not np.array_equal(m, o) for m, o in zip(mirrored.numpy(), x.numpy(), strict=True)]
    assert 0 < sum(flipped) < 32
    for seed in range(20):
        params = sample_params(64, 32, 32, tf.constant([seed, 7]), POLICIES["strong"],
                               digits.info.allow_horizontal_flip)
        assert not params["flip"].numpy().any()


def test_repeated_stream_is_the_same_for_every_iterator(digits):
    """A strategy makes its own iterator; it must see the batches a plain loop sees."""
    ds = build_pipeline(digits, "train", image_size=16, batch_size=64, augment="strong",
                        repeat=True, seed=3, deterministic=True)
    first, second = iter(ds), iter(ds)
    for _ in range(25):  # past the first epoch of 1,259 images
        (xa, ya), (xb, yb) = next(first), next(second)
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_erasing_boxes_stay_inside_the_image():
    x = tf.ones([64, 20, 20, 1])
    out = augment_batch(x, tf.constant([3, 3]), AugmentPolicy("erase", erase_prob=1.0)).numpy()
    erased = (out != 1.0).reshape(64, -1).mean(axis=1)
    assert np.all(erased > 0) and np.all(erased <= 0.2 + 0.05)


@pytest.mark.parametrize("batch_size, size", [(50, 16), (7, 8)])
def test_a_stream_started_at_a_batch_is_the_uninterrupted_stream_from_there(batch_size, size):
    """A resumed run rebuilds its training stream at the epoch's first batch (start_batch):
    the same images, labels and augmentation as the stream that was never interrupted."""
    from keras_cnns.data import build_pipeline, load_source

    source = load_source("synthetic")
    options = dict(image_size=size, batch_size=batch_size, augment="strong", repeat=True,
                   shuffle=True, seed=3, deterministic=True, one_hot=10)
    whole = list(build_pipeline(source, "train", **options).take(30).as_numpy_iterator())
    for start in (1, 3, 13, 27):
        part = build_pipeline(source, "train", start_batch=start, **options)
        for (x, y), (x_whole, y_whole) in zip(part.take(30 - start).as_numpy_iterator(),
                                               whole[start:], strict=True):
            np.testing.assert_array_equal(x, x_whole)
            np.testing.assert_array_equal(y, y_whole)
