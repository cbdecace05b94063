"""RandAugment (Cubuk et al., 2020): each image gets `num_ops` ops drawn from a fixed list.

The ops are Keras' own preprocessing layers, seeded per batch (`seeded_layers.py`). Three things
are written here instead of calling `keras.layers.RandAugment`, because Keras 3.15's layer:

- draws its ops once per call, so all images of a batch get the same ops; the paper (and timm)
  draws them per image, which is done here by computing each op for the batch and keeping it
  where an image chose it;
- passes its one `factor` (0.5) to every op as the range (0, 0.5): rotations of 0 to 180
  degrees one way only (a 6 becomes a 9), shifts of up to half the image one way, and sharpness
  that only blurs (0.5 is its identity). Here each op ranges both ways up to `magnitude` times
  the largest setting of the paper (as timm scales them): rotate 30 degrees, shear 0.3,
  translate 0.45 of the side, brightness, contrast, sharpness and colour by 0.9, posterize to
  4 bits, solarize above any threshold; auto-contrast and equalize have no magnitude;
- ignores the `seed` given to its `get_random_transformation` (it draws from its own seed
  generator), so it cannot be driven by the batch's seed.

Images are float32 in [0, 1]; geometric ops fill with 0 (black), as the other policies do.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from keras_cnns.data.seeded_layers import BatchSeed, seeded_layer

VALUE_RANGE = (0.0, 1.0)
_FILL = {"fill_mode": "constant", "fill_value": 0.0}


def _options(magnitude: float) -> list[tuple[str, dict]]:
    m = float(magnitude)
    return [
        ("RandomRotation", dict(factor=30.0 * m / 360.0, **_FILL)),
        ("RandomShear", dict(x_factor=0.3 * m, **_FILL)),
        ("RandomShear", dict(y_factor=0.3 * m, **_FILL)),
        ("RandomTranslation", dict(height_factor=0.0, width_factor=0.45 * m, **_FILL)),
        ("RandomTranslation", dict(height_factor=0.45 * m, width_factor=0.0, **_FILL)),
        ("RandomBrightness", dict(factor=0.9 * m, value_range=VALUE_RANGE)),
        ("RandomContrast", dict(factor=0.9 * m, value_range=VALUE_RANGE)),
        ("RandomSharpness", dict(factor=(0.5 - 0.45 * m, 0.5 + 0.45 * m),
                                 value_range=VALUE_RANGE)),
        ("RandomColorDegeneration", dict(factor=0.9 * m, value_range=VALUE_RANGE)),
        ("RandomPosterization", dict(factor=8 - round(4 * m), value_range=VALUE_RANGE)),
        ("Solarization", dict(threshold_factor=(1.0 - m, 1.0), value_range=VALUE_RANGE)),
        ("AutoContrast", dict(value_range=VALUE_RANGE)),
        ("Equalization", dict(value_range=VALUE_RANGE)),
    ]


@functools.cache
def rand_augment_ops(magnitude: float) -> tuple:
    """The Keras layers RandAugment chooses from, at `magnitude` in [0, 1]."""
    return tuple(seeded_layer(name, **options) for name, options in _options(magnitude))


def _apply(layer, images, draws):
    transformation = layer.get_random_transformation(images, training=True, seed=draws)
    return layer.transform_images(images, transformation, training=True)


def rand_augment(images, seed, *, num_ops: int, magnitude: float):
    """Apply `num_ops` ops, each chosen per image, to a float32 `[B, H, W, C]` batch in [0, 1].

    Every draw (which ops, and each op's own parameters) comes from `seed` (shape [2]). Each op
    runs on the images that chose it only (`dynamic_partition`, then `dynamic_stitch` back into
    place): running all 13 on the whole batch and keeping one per image is 13 times the work
    (the LeNet@28 training stream ran about 15 times slower that way, 3,000 against 44,000
    img/s, timed once on two cores that other jobs shared).
    """
    ops = rand_augment_ops(magnitude)
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num_ops + 1)
    chosen = tf.random.stateless_uniform([num_ops, batch], seeds[0], 0, len(ops), dtype=tf.int32)
    for step in range(num_ops):
        draws = BatchSeed(seeds[step + 1])
        positions = tf.dynamic_partition(tf.range(batch), chosen[step], len(ops))
        parts = tf.dynamic_partition(images, chosen[step], len(ops))
        changed = [tf.cond(tf.shape(part)[0] > 0, functools.partial(_apply, layer, part, draws),
                           lambda part=part: part)  # Equalization fails on no images
                   for layer, part in zip(ops, parts, strict=True)]
        images = tf.dynamic_stitch(positions, changed)
    return tf.clip_by_value(images, *VALUE_RANGE)
