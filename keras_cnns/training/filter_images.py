"""The first layer's filters as TensorBoard images, one grid per epoch (`--filter-images`).

    tensorboard --logdir runs/<run>/logs      # IMAGES tab: first_layer_filters/<layer>

Step 0 is the initial filters (written when a run starts at epoch 1), step n the filters after
epoch n, so the step slider shows edges and colour blobs form. Every filter of one image is
scaled by the one minimum and maximum over all of them, so they compare; 3 input channels
are drawn in colour, any other count as the mean over the channels, in grey. The weights
drawn are the model's as trained (with `ema_decay`, the raw weights, not the average).
The grid is the one `keras-cnns visualize` draws (`keras_cnns.tile_grids.filter_grid`).
"""

from __future__ import annotations

from pathlib import Path

import keras

from keras_cnns.tile_grids import filter_grid

TAG = "first_layer_filters"


def first_convolution(model: keras.Model):
    """The model's first Conv2D layer, or None."""
    return next((layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)),
                None)


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
