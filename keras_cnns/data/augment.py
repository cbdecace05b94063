"""Label-preserving augmentation policies, applied to whole batches with stateless random ops.

Each batch gets a `[2]` seed; every random draw is derived from it with `stateless_split`, so a
pipeline with the same seed augments identically, whatever the thread scheduling.

Policies: `none`; `light` = random translation (integer shift, zero fill: crop-with-padding)
plus flip; `medium` adds small rotation and zoom; `strong` goes further and adds random erasing;
`erase` is random erasing alone; `randaugment` is RandAugment alone (two ops per image at
magnitude 0.5, from Keras' layers: `randaugment.py`). `get_policy(name, erase_prob)` puts
random erasing on any of them (timm's `--reprob`, torchvision's `--random-erase`), after
its other ops.
When a policy rotates or zooms, rotation, zoom, translation and flip are folded into one
projective transform per image (one bilinear resampling, one op for the whole batch); shifts
and flips alone are two row gathers, exact and several times cheaper. Erasing is a box mask.

Random erasing is written here, not taken from `keras.layers.RandomErasing`: Keras' layer draws
the box's height and width share independently (not the area and aspect ratio of Zhong et al.),
and it cannot be driven by the batch's seed tensor (`seeded_layers.py` says why). MixUp and
CutMix change labels too, so they are not policies here but `mixing.py`.

Images are float32 in [0, 1] (before normalisation), so the constant fill value 0 is black.
The flip is applied only when the policy asks for it AND the dataset allows it
(`SourceInfo.allow_horizontal_flip`; never for digits or MNIST-like characters).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import tensorflow as tf

from keras_cnns.data.base import DataError
from keras_cnns.data.randaugment import rand_augment


@dataclass(frozen=True)
class AugmentPolicy:
    """Strengths of the label-preserving ops; 0 (or False) turns an op off."""

    name: str
    translate: float = 0.0  # max shift, as a fraction of height / width
    rotate: float = 0.0  # max rotation, degrees
    zoom: float = 0.0  # max relative scale change (0.1: 0.9x .. 1.1x)
    erase_prob: float = 0.0  # probability of erasing one random box (Zhong et al., 2017)
    erase_area: tuple[float, float] = (0.02, 0.2)  # box area as a fraction of the image
    flip: bool = False  # horizontal flip with p=0.5, where the dataset allows it
    rand_augment_ops: int = 0  # RandAugment's ops per image (Cubuk et al., 2020)
    rand_augment_magnitude: float = 0.5  # their strength, a share of each op's largest

    @property
    def active(self) -> bool:
        """Whether the policy has any op (a flip may still be off for the data set)."""
        return bool(self.translate or self.resamples or self.flip or self.erase_prob > 0
                    or self.rand_augment_ops)

    @property
    def resamples(self) -> bool:
        """Rotation or zoom need bilinear resampling; shifts and flips alone do not."""
        return bool(self.rotate or self.zoom)


POLICIES = {
    "none": AugmentPolicy("none"),
    # Shifts and flips only: integer moves done with row gathers, cheap enough for LeNet rates.
    "light": AugmentPolicy("light", translate=0.1, flip=True),
    "medium": AugmentPolicy("medium", translate=0.1, rotate=10.0, zoom=0.1, flip=True),
    "strong": AugmentPolicy("strong", translate=0.15, rotate=15.0, zoom=0.15, erase_prob=0.5,
                            flip=True),
    "erase": AugmentPolicy("erase", erase_prob=0.5),
    # Keras' RandAugment defaults: two ops at factor 0.5.
    "randaugment": AugmentPolicy("randaugment", rand_augment_ops=2, rand_augment_magnitude=0.5),
}


def list_augment_policies() -> list[str]:
    return list(POLICIES)


def get_policy(policy, erase_prob: float | None = None) -> AugmentPolicy:
    """A policy by name (or an `AugmentPolicy`), with `erase_prob`, when given, as the
    probability of its random erasing (`RunConfig.erase_prob`)."""
    if not isinstance(policy, AugmentPolicy):
        if policy not in POLICIES:
            raise DataError(
                f"Unknown augmentation policy {policy!r}; choose one of {', '.join(POLICIES)}."
            )
        policy = POLICIES[policy]
    return policy if erase_prob is None else dataclasses.replace(policy, erase_prob=erase_prob)


def sample_params(batch, height, width, seed, policy: AugmentPolicy, allow_flip: bool) -> dict:
    """Draw every random parameter of a batch from `seed` (shape [2]); exposed for tests."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=10)

    def uniform(i, low, high):
        return tf.random.stateless_uniform([batch], seeds[i], low, high, dtype=tf.float32)

    angle = uniform(0, -1.0, 1.0) * (policy.rotate * math.pi / 180.0)
    scale = 1.0 + uniform(1, -policy.zoom, policy.zoom)
    shift_x = uniform(2, -policy.translate, policy.translate) * tf.cast(width, tf.float32)
    shift_y = uniform(3, -policy.translate, policy.translate) * tf.cast(height, tf.float32)
    flip = uniform(4, 0.0, 1.0) < 0.5
    if not (policy.flip and allow_flip):
        flip = tf.zeros([batch], tf.bool)
    erase = uniform(5, 0.0, 1.0) < policy.erase_prob
    area = uniform(6, *policy.erase_area)
    log_aspect = uniform(7, math.log(0.3), math.log(1 / 0.3))
    corner = tf.random.stateless_uniform([batch, 2], seeds[8], 0.0, 1.0)
    fill = uniform(9, 0.0, 1.0)
    return dict(angle=angle, scale=scale, shift_x=shift_x, shift_y=shift_y, flip=flip,
                erase=erase, area=area, log_aspect=log_aspect, corner=corner, fill=fill)


def _transforms(p, height, width):
    """Per-image output->input maps `[a0, a1, a2, b0, b1, b2, 0, 0]` about the image centre."""
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    sign = tf.where(p["flip"], -1.0, 1.0)
    cos, sin = tf.cos(p["angle"]) / p["scale"], tf.sin(p["angle"]) / p["scale"]
    a0, a1, b0, b1 = sign * cos, -sin, sign * sin, cos
    a2 = cx - p["shift_x"] - (a0 * cx + a1 * cy)
    b2 = cy - p["shift_y"] - (b0 * cx + b1 * cy)
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _erase(images, p, height, width):
    """Fill each erased image's box with its grey level `fill`.

    Works on `[B, H, W * C]` so the box mask is computed at full width: broadcasting a
    `[B, H, W, 1]` mask over a small channel axis is several times slower on CPU.
    """
    shape = tf.shape(images)
    channels = shape[3]
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    area = p["area"] * h_f * w_f
    aspect = tf.exp(p["log_aspect"])
    box_h = tf.minimum(tf.sqrt(area * aspect), h_f)
    box_w = tf.minimum(tf.sqrt(area / aspect), w_f)
    top = (p["corner"][:, 0] * (h_f - box_h))[:, None, None]
    left = (p["corner"][:, 1] * (w_f - box_w))[:, None, None]
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None]
    cols = tf.cast(tf.range(width * channels) // channels, tf.float32)[None, None, :]
    inside = ((rows >= top) & (rows < top + box_h[:, None, None])
              & (cols >= left) & (cols < left + box_w[:, None, None]))
    mask = tf.cast(inside & p["erase"][:, None, None], images.dtype)
    flat = tf.reshape(images, [shape[0], height, width * channels])
    flat += mask * (p["fill"][:, None, None] - flat)
    return tf.reshape(flat, shape)


def _gather_rows(images, source, rows_per_image, row_length):
    """Row `r` of output image `b` is row `source[b, r]` of image `b`, or zeros if outside.

    Whole rows are contiguous slices, so one gather moves them at memcpy speed; with a
    per-pixel gather (one-channel slices) benchmark.py's `pipeline` case ran 1.6x (LeNet@28)
    to 2.1x (AlexNet@96) slower.
    """
    batch = tf.shape(images)[0]
    rows = tf.reshape(images, [batch * rows_per_image, row_length])
    rows = tf.concat([rows, tf.zeros([1, row_length], images.dtype)], axis=0)  # the zero row
    inside = (source >= 0) & (source < rows_per_image)
    index = tf.where(inside, tf.range(batch)[:, None] * rows_per_image + source,
                     batch * rows_per_image)
    return tf.gather(rows, index)


def _shift_flip(images, p, height, width):
    """Integer translation (zero fill) and optional flip per image, as two row gathers.

    The vertical shift moves rows; the horizontal shift and the flip move rows of the
    transposed batch (columns), so both gathers copy contiguous slices.
    """
    shape = tf.shape(images)
    batch, channels = shape[0], shape[3]
    dy = tf.cast(tf.round(p["shift_y"]), tf.int32)
    dx = tf.cast(tf.round(p["shift_x"]), tf.int32)
    rows = tf.range(height)[None, :] - dy[:, None]  # source row of each output row, [B, H]
    cols = tf.range(width)[None, :]
    cols = tf.where(p["flip"][:, None], width - 1 - cols, cols) - dx[:, None]  # [B, W]
    x = _gather_rows(images, rows, height, width * channels)
    x = tf.transpose(tf.reshape(x, shape), [0, 2, 1, 3])  # [B, W, H, C]
    x = _gather_rows(x, cols, width, height * channels)
    return tf.transpose(tf.reshape(x, [batch, width, height, channels]), [0, 2, 1, 3])


def augment_batch(images, seed, policy="none", *, allow_horizontal_flip: bool = False):
    """Augment a float32 `[B, H, W, C]` batch in [0, 1]; labels are untouched by design."""
    policy = get_policy(policy)
    do_flip = policy.flip and allow_horizontal_flip
    if not (policy.translate or policy.resamples or do_flip or policy.erase_prob > 0
            or policy.rand_augment_ops):
        return images
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    p = sample_params(batch, height, width, seed, policy, allow_horizontal_flip)
    if policy.resamples:
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=_transforms(p, height, width),
            output_shape=tf.stack([height, width]), fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT",
        )
    elif policy.translate or do_flip:
        images = _shift_flip(images, p, height, width)
    if policy.rand_augment_ops:
        own_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1)
        images = rand_augment(images, own_seed, num_ops=policy.rand_augment_ops,
                              magnitude=policy.rand_augment_magnitude)
    if policy.erase_prob > 0:
        # Erased boxes take one random grey level per image (cheaper than per-pixel noise).
        images = _erase(images, p, height, width)
    return images
