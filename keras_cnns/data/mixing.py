"""MixUp and CutMix: a batch mixed with a permutation of itself, labels in the same proportion.

    mixing = Mixing(mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5)
    images, labels = mix_batch(images, one_hot_labels, seed, mixing)  # seed: [2] tensor

MixUp (Zhang et al., 2018) is `keras.layers.MixUp`, driven by the batch's seed
(`seeded_layers.py`): per image, weight ~ Beta(alpha, alpha), image = weight * image +
(1 - weight) * partner, label likewise, the partners a random permutation of the batch.

CutMix (Yun et al., 2019) is written here. `keras.layers.CutMix` weighs the labels by the area of
a box with fractional corners but pastes the whole pixels inside it (measured on one batch:
0.5625 of an image pasted, its partner's label weighted 0.592), and its `factor` draws alpha
itself from U(0, factor) for each batch instead of taking the paper's alpha. Here, per image,
weight ~ Beta(alpha, alpha); a box of sides sqrt(1 - weight) times the image's, centred
uniformly, rounded to whole pixels and clipped to the image, is pasted from the partner; and the
label weight is the share of pixels pasted, exactly.

Each batch is mixed with probability `mix_prob`; with both alphas above 0 a mixed batch gets
CutMix or MixUp with probability 1/2 each (timm's default). Labels go in one-hot and come out as
soft targets whose rows sum to 1; the loss (categorical cross-entropy, label smoothing included)
and the accuracy (argmax of the target) take them as they are.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_cnns.data.seeded_layers import BatchSeed, seeded_layer


@dataclasses.dataclass(frozen=True)
class Mixing:
    """How the training batches are mixed; an alpha of 0 turns its method off."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # probability that a batch is mixed

    @property
    def active(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0


def _beta(shape, alpha: float, seed):
    """Beta(alpha, alpha) samples from two stateless Gamma(alpha) draws."""
    first, second = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    a = tf.random.stateless_gamma(shape, first, alpha=alpha)
    b = tf.random.stateless_gamma(shape, second, alpha=alpha)
    return a / (a + b)


def mix_up(images, labels, seed, alpha: float):
    """`keras.layers.MixUp` on a float32 `[B, H, W, C]` batch and its `[B, K]` targets."""
    layer = seeded_layer("MixUp", alpha=float(alpha))
    transformation = layer.get_random_transformation(images, training=True,
                                                     seed=BatchSeed(seed))
    return (layer.transform_images(images, transformation, training=True),
            layer.transform_labels(labels, transformation, training=True))


def cut_mix(images, labels, seed, alpha: float):
    """Paste a box of a partner into each image; weigh the labels by the pixels pasted."""
    seed = tf.cast(seed, tf.int64)
    weight_seed, order_seed, centre_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    partner = tf.argsort(tf.random.stateless_uniform([batch], order_seed))
    side = tf.sqrt(1.0 - _beta([batch], float(alpha), weight_seed))
    centre = tf.random.stateless_uniform([batch, 2], centre_seed)

    def bounds(centre, length):
        length = tf.cast(length, tf.float32)
        low = tf.round((centre - side / 2.0) * length)
        high = tf.round((centre + side / 2.0) * length)
        return tf.clip_by_value(low, 0.0, length), tf.clip_by_value(high, 0.0, length)

    top, bottom = bounds(centre[:, 0], height)
    left, right = bounds(centre[:, 1], width)
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None]
    cols = tf.cast(tf.range(width), tf.float32)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
              & (cols >= left[:, None, None]) & (cols < right[:, None, None]))
    images = tf.where(inside[..., None], tf.gather(images, partner), images)
    pasted = (bottom - top) * (right - left) / tf.cast(height * width, tf.float32)
    labels = (1.0 - pasted)[:, None] * labels + pasted[:, None] * tf.gather(labels, partner)
    return images, labels


def mix_batch(images, labels, seed, mixing: Mixing):
    """Mix one batch as `mixing` says, every draw from `seed` (shape [2])."""
    if not mixing.active:
        return images, labels
    apply_seed, switch_seed, mix_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3))

    def mixed():
        if mixing.mixup_alpha > 0 and mixing.cutmix_alpha > 0:
            return tf.cond(tf.random.stateless_uniform([], switch_seed) < 0.5,
                           lambda: cut_mix(images, labels, mix_seed, mixing.cutmix_alpha),
                           lambda: mix_up(images, labels, mix_seed, mixing.mixup_alpha))
        if mixing.cutmix_alpha > 0:
            return cut_mix(images, labels, mix_seed, mixing.cutmix_alpha)
        return mix_up(images, labels, mix_seed, mixing.mixup_alpha)

    if mixing.mix_prob >= 1.0:
        return mixed()
    return tf.cond(tf.random.stateless_uniform([], apply_seed) < mixing.mix_prob, mixed,
                   lambda: (images, labels))
