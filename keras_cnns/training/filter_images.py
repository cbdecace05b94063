"""The first layer's filters as TensorBoard images, one grid per epoch (`--filter-images`).

    tensorboard --logdir runs/<run>/logs      # IMAGES tab: first_layer_filters/<layer>

Step 0 is the initial filters (written when a run starts at epoch 1), step n the filters after
epoch n, so the step slider shows edges and colour blobs form. Every filter of one image is
scaled by the one minimum and maximum over all of them, so they compare; 3 input channels
are drawn in colour, any other count as the mean over the channels, in grey. The weights
drawn are the model's as trained (with `ema_decay`, the raw weights, not the average).

Written by hand: `keras-cnns visualize` draws the same grid into a PNG
(`measure.layer_views.filter_grid`), but `measure` sits above `training` in the layers and
cannot be imported here; the few lines of tiling below are this module's own.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

TAG = "first_layer_filters"
GAP = 1  # pixels of background between filters
LEAST_SIDE = 24  # each filter is scaled up by a whole factor to at least this many pixels


def first_convolution(model: keras.Model):
    """The model's first Conv2D layer, or None."""
    return next((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)),
                None)


def filter_grid(kernel) -> np.ndarray:
    """A convolution kernel [kh, kw, in, out] -> one uint8 image [H, W, 1 or 3] of its `out`
    filters in a near-square grid, on a white background."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[2] != 3:
        kernel = kernel.mean(axis=2, keepdims=True)
    low, high = kernel.min(), kernel.max()
    scaled = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
    tiles = np.moveaxis(scaled, -1, 0)  # [out, kh, kw, channels]
    count, tile_h, tile_w, channels = tiles.shape
    scale = max(1, math.ceil(LEAST_SIDE / min(tile_h, tile_w)))
    tiles = np.repeat(np.repeat(tiles, scale, axis=1), scale, axis=2)
    tile_h, tile_w = tile_h * scale, tile_w * scale
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    canvas = np.full((rows * (tile_h + GAP) + GAP, cols * (tile_w + GAP) + GAP, channels), 255,
                     np.uint8)
    for i, tile in enumerate(np.round(tiles * 255).astype(np.uint8)):
        top, left = GAP + (i // cols) * (tile_h + GAP), GAP + (i % cols) * (tile_w + GAP)
        canvas[top:top + tile_h, left:left + tile_w] = tile
    return canvas


class FilterImages(keras.callbacks.Callback):
    """Writes `filter_grid` of the first convolution to `log_dir` with `tf.summary.image`."""

    def __init__(self, log_dir: str | Path, initial_epoch: int = 0):
        super().__init__()
        self.log_dir, self.initial_epoch = Path(log_dir), initial_epoch
        self._writer = None

    def write(self, step: int) -> None:
        import tensorflow as tf

        layer = first_convolution(self.model)
        if layer is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        image = filter_grid(keras.ops.convert_to_numpy(layer.kernel))
        with self._writer.as_default():
            tf.summary.image(f"{TAG}/{layer.name}", image[None], step=step)
        self._writer.flush()

    def on_train_begin(self, logs=None):
        if self.initial_epoch == 0:
            self.write(0)

    def on_epoch_end(self, epoch, logs=None):
        self.write(epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
