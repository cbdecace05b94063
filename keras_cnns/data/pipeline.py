"""One input pipeline for every model and split, and the preprocessing export bakes in.

`preprocess` is the single definition of "what the model sees": scale uint8 to [0, 1], convert
channels, resize (bilinear, no antialiasing, half-pixel centres: `tf.image.resize`'s default,
cheap, and the images here are mostly upsampled), then normalise with the source's per-channel
mean and std. The SavedModel export calls the same function in its serving signature.

`build_pipeline` runs those steps with augmentation between resizing and normalising:

    indices -> shuffle (seeded) -> [repeat] -> batch (global) -> gather the cached,
    resized images -> augment (train only, batched, seeded) -> mix (train only, seeded:
    MixUp / CutMix, `mixing.py`) -> normalise -> prefetch

(the endless training stream loads up to 4 small batches per call, then splits them).

The cache is the whole split decoded, scaled and resized once, up front, as one float32 tensor
(when it fits `CACHE_BUDGET_BYTES`); a batch is then a single `tf.gather`. Without the cache the
native uint8 images are gathered and resized per batch instead, which is still vectorised.
"""

from __future__ import annotations

import tensorflow as tf

from keras_cnns.data.augment import augment_batch, get_policy
from keras_cnns.data.base import DataError
from keras_cnns.data.mixing import Mixing, mix_batch

# Largest resized float32 split kept in memory (MNIST at 96x96 is 2 GB and is resized per batch).
CACHE_BUDGET_BYTES = 1 << 30
_LUMA = (0.2989, 0.5870, 0.1140)  # ITU-R 601, as tf.image.rgb_to_grayscale


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _to_channels(x, channels: int):
    """Convert the last axis to `channels` (1 <-> 3), statically when the shape is known."""
    have = x.shape[-1]
    if have == channels:
        return x
    if channels == 1:
        grey = lambda: tf.reduce_sum(x[..., :3] * tf.constant(_LUMA), -1, keepdims=True)  # noqa: E731
        if have is None:
            return tf.cond(tf.shape(x)[-1] == 3, grey, lambda: x[..., :1])
        return grey()
    if channels == 3:
        tile = lambda: tf.concat([x[..., :1]] * 3, axis=-1)  # noqa: E731
        if have is None:
            return tf.cond(tf.shape(x)[-1] == 1, tile, lambda: x[..., :3])
        return tile()
    raise ValueError(f"channels must be 1 or 3, got {channels}.")


def match_stats(mean, std, channels: int | None):
    """Mean/std for `channels` outputs: tile one value to 3, or luma-weight 3 values to 1.

    Grey from RGB: the mean is exact by linearity; for the std the luma-weighted sum of stds is
    used, exact when the channels are perfectly correlated (nearly so in natural images).
    """
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if channels is None or len(mean) == channels:
        return mean, std
    if len(mean) == 1:
        return mean * channels, std * channels
    if len(mean) == 3 and channels == 1:
        return [sum(w * m for w, m in zip(_LUMA, mean, strict=True))], \
            [sum(w * s for w, s in zip(_LUMA, std, strict=True))]
    raise ValueError(f"Cannot map {len(mean)}-channel statistics to {channels} channels.")


def scale_resize(images, image_size, channels: int | None = None):
    """uint8 (or float 0..255) `[..., H, W, C]` -> float32 in [0, 1], `image_size`, `channels`."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0
    height, width = _pair(image_size)
    if channels == 1:  # fewer channels to resize
        x = _to_channels(x, 1)
    if tuple(x.shape[-3:-1]) != (height, width):
        x = tf.image.resize(x, (height, width), method="bilinear", antialias=False)
    if channels is not None:
        x = _to_channels(x, channels)
    return x


def normalize(x, mean, std, channels: int | None = None):
    """`(x - mean) / std` per channel on [0, 1]-scaled images, as `x * (1/std) - mean/std`.

    Broadcasting a `[C]` vector over the innermost axis is 3-6x slower on CPU than over a long
    one, so with known width and channels the multiply-add runs on a `[..., W * C]` view.
    """
    mean, std = match_stats(mean, std, channels or x.shape[-1])
    scale = [1.0 / s for s in std]
    offset = [-m / s for m, s in zip(mean, std, strict=True)]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        return x * scale[0] + offset[0]
    width, chans = x.shape[-2], x.shape[-1]
    if width is None or chans != len(scale):
        return x * tf.constant(scale) + tf.constant(offset)
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([shape[:-2], [width * chans]], axis=0))
    flat = flat * tf.constant(scale * width) + tf.constant(offset * width)
    return tf.reshape(flat, shape)


def preprocess(images, *, image_size, mean, std, channels: int | None = None) -> tf.Tensor:
    """What every model sees: scale to [0, 1], convert channels, resize, normalise.

    Pure TensorFlow, so it traces inside a `tf.function` with unknown batch, height and width
    (the export's serving signature); `images` is uint8 or float 0..255, `[B, H, W, C]`.
    """
    x = scale_resize(images, image_size, channels)
    return normalize(x, mean, std, channels)


def _resize_all(images, size, channels, chunk: int = 4096):
    """The whole split scaled and resized once, in chunks to bound the temporary memory."""
    parts = [scale_resize(images[i:i + chunk], size, channels)
             for i in range(0, len(images), chunk)]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def _permutation(n: int, seed: int, epoch):
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key))


def images_per_load(batch_size: int, size, channels: int, max_group: int = 4,
                    pixel_budget: int = 1 << 19) -> int:
    """How many images the endless training stream loads per call: whole batches, up to
    `max_group` of them while they stay under `pixel_budget` values (2 MB of float32)."""
    pixels = batch_size * size[0] * size[1] * channels
    return batch_size * max(1, min(max_group, pixel_budget // max(pixels, 1)))


def build_pipeline(source, split: str, *, image_size, batch_size: int, augment="none",
                   seed: int = 0, deterministic: bool = False, shuffle: bool | None = None,
                   repeat: bool = False, drop_remainder: bool = False, cache: bool = True,
                   one_hot: int | None = None, num_replicas: int = 1,
                   channels: int | None = None, start_batch: int = 0,
                   mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                   mix_prob: float = 1.0) -> tf.data.Dataset:
    """Batches of `(float32 [B, S, S, C], int32 [B] or float32 one-hot [B, one_hot])`.

    `batch_size` is global (all replicas together; it must divide by `num_replicas`).
    Shuffling defaults to on for "train" only and is seeded by `seed`, as is augmentation, which
    applies to "train" only. Two pipelines built with the same arguments yield the same batches;
    `deterministic=True` also keeps their order fixed under parallelism (slightly slower).
    `channels` converts grey <-> colour for models that expect the other (default: the source's).
    `start_batch` (endless streams only) starts the stream at that batch, exactly as the batch
    the uninterrupted stream yields there: a resumed run continues the data where it stopped.
    `mixup_alpha`, `cutmix_alpha` and `mix_prob` mix "train" batches (`mixing.Mixing`), seeded
    like augmentation; its labels are then soft one-hot targets even without `one_hot`.
    """
    info = source.info
    policy = get_policy(augment)
    images, labels = source.arrays(split)
    if batch_size < 1 or num_replicas < 1 or batch_size % num_replicas:
        raise DataError(
            f"The global batch size {batch_size} must be positive and divide across "
            f"{num_replicas} replica(s)."
        )
    if one_hot is not None and one_hot < info.num_classes:
        raise DataError(f"one_hot={one_hot} is fewer than the {info.num_classes} classes.")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}.")
    n = len(labels)
    if drop_remainder and not repeat and n < batch_size:
        raise DataError(f"The {split} split has {n} images, fewer than one batch of {batch_size}.")
    size = _pair(image_size)
    out_channels = channels or info.channels
    mean, std = match_stats(info.mean, info.std, out_channels)
    shuffle = split == "train" if shuffle is None else shuffle
    augmenting = split == "train" and policy.active
    mixing = Mixing(mixup_alpha, cutmix_alpha, mix_prob)
    mixing = mixing if split == "train" and mixing.active else None
    if mixing is not None and one_hot is None:
        one_hot = info.num_classes  # mixed labels are soft targets

    # Grey -> colour happens last, so the cache and the augmentation handle one channel, not 3
    # (augmentation treats channels alike, so the result is the same as tiling first).
    early = 1 if channels == 1 else None
    cached_channels = 1 if channels == 1 else info.channels
    # tf.data runs on the host: keep the stores there even inside a GPU strategy's scope.
    with tf.device("/cpu:0"):
        if cache and n * size[0] * size[1] * cached_channels * 4 <= CACHE_BUDGET_BYTES:
            store = _resize_all(images, size, early)
            prepare = tf.identity
        else:
            store = tf.convert_to_tensor(images)
            prepare = lambda x: scale_resize(x, size, early)  # noqa: E731
        label_store = tf.convert_to_tensor(labels.astype("int32"))

    def load(indices, batch_seed, batches=1):
        """The `batches` batches of `indices`, one after the other."""
        x = prepare(tf.gather(store, indices))
        if augmenting:
            x = augment_batch(x, batch_seed, policy,
                              allow_horizontal_flip=info.allow_horizontal_flip)
        y = tf.gather(label_store, indices)
        if one_hot is not None:
            y = tf.one_hot(y, one_hot, dtype=tf.float32)
        if mixing is not None:
            x, y = mix_each(x, y, tf.random.experimental.stateless_fold_in(
                tf.cast(batch_seed, tf.int64), 2), batches)
        if channels == 3:
            x = _to_channels(x, 3)
        x = tf.ensure_shape(normalize(x, mean, std), [None, *size, out_channels])
        return x, y

    def mix_each(x, y, seed, batches):
        """Mix each batch within itself; batch `b` of a load draws from (seed, b)."""
        seeds = tf.stack([tf.random.experimental.stateless_fold_in(seed, b)
                          for b in range(batches)])
        # map_fn traces the mixing once, not once per batch of the load.
        x, y = tf.map_fn(lambda args: mix_batch(*args, mixing), (
            tf.reshape(x, tf.concat([[batches, -1], tf.shape(x)[1:]], axis=0)),
            tf.reshape(y, tf.concat([[batches, -1], tf.shape(y)[1:]], axis=0)), seeds),
            fn_output_signature=(x.dtype, y.dtype))
        return (tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0)),
                tf.reshape(y, tf.concat([[-1], tf.shape(y)[2:]], axis=0)))

    if repeat:
        # An endless stream that depends on nothing but `seed`: epoch e's order and batch b's
        # augmentation come from stateless ops keyed by (seed, e) and (seed, b). Stateful
        # shuffles change with every new iterator over the dataset, and a tf.distribute
        # strategy makes its own, so its replicas would not see the batches a single device
        # sees (measured: MirroredStrategy over two CPUs trained on other batches).
        # Small batches are loaded `group` at a time and split afterwards: the per-op cost of
        # the load function then falls on 4x the images (benchmark.py's `pipeline` case for
        # LeNet@28: 252k -> 350k img/s).
        group = images_per_load(batch_size, size, cached_channels) // batch_size
        # Resuming at batch `start_batch`: start at its load call (its group), then drop the
        # batches of that group before it below; the indices and seeds are those of an
        # uninterrupted stream.
        first_load, skip_in_group = divmod(start_batch, group)
        data_epoch, offset = divmod(first_load * group * batch_size, n)
        if shuffle:
            ds = tf.data.Dataset.counter(start=data_epoch).flat_map(
                lambda epoch: tf.data.Dataset.from_tensor_slices(_permutation(n, seed, epoch)))
        else:
            ds = tf.data.Dataset.range(n).repeat()
        ds = ds.skip(offset).batch(batch_size * group, drop_remainder=True)  # endless: full
        seeds = tf.data.Dataset.counter(start=first_load).map(
            lambda step: tf.stack([tf.constant(seed + 1, tf.int64), step]))
    else:
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        # One [2] seed per batch; fresh each pass over a finite dataset, identical across rebuilds.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        if start_batch:
            raise DataError("start_batch applies to endless (repeat=True) streams only.")
        skip_in_group = 0
    ds = tf.data.Dataset.zip((ds, seeds))
    if repeat and group > 1:
        def load_group(indices, batch_seed):
            # [group * B, ...] -> [group, B, ...], unbatched into `group` batches below. The -1
            # lets tf.distribute's batch rewrite (B per replica) flow through; `rebatch` here
            # broke a one-replica MirroredStrategy (it yielded the whole group).
            return tuple(tf.reshape(t, tf.concat([[group, -1], tf.shape(t)[1:]], axis=0))
                         for t in load(indices, batch_seed, group))

        ds = ds.map(load_group, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    else:
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if repeat and skip_in_group:
        ds = ds.skip(skip_in_group)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    # In-memory data has no files to shard; shard by element under multi-worker strategies.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
