"""Keras image preprocessing layers driven by a batch's stateless seed, inside tf.data.

The input pipeline gives every batch a `[2]` seed that is a function of the run's seed and the
batch's position, so a resumed run draws exactly what the uninterrupted run drew with no random
state to save. Keras' preprocessing layers (`keras.layers.MixUp`, `RandomRotation`, ...) split
their work the same way, into `get_random_transformation(data, seed=...)` and
`transform_images(...)`, but Keras 3.15's random ops take a seed only as an int, None or a
`keras.random.SeedGenerator` (`keras.random` draws one with `draw_seed`), never as a tensor. A
`SeedGenerator` keeps its state in a variable that every call advances: inside a parallel
`tf.data` map the calls race, and the pipeline runs ahead of training by its prefetch, so no
epoch boundary has a state to commit.

`BatchSeed` is a `SeedGenerator` without that variable: each draw it hands out is derived from
the batch's seed tensor and the draw's number (`stateless_fold_in`), so a layer given
`seed=BatchSeed(batch_seed)` makes the same transformation for the same batch every time.
`seeded_layer` makes the layers to use it with: float32 whatever the global dtype policy (a
mixed-precision run sets one before the pipeline is built) and their ops on TensorFlow under
every Keras backend (as Keras' own `RandAugment` does inside a tf.data graph).
"""

from __future__ import annotations

import functools
import inspect

import keras
import tensorflow as tf


class BatchSeed(keras.random.SeedGenerator):
    """Seeds for Keras' random ops, derived statelessly from one `[2]` seed tensor.

    The n-th draw is `stateless_fold_in(seed, n)`: distinct draws within a batch, the same
    sequence for the same batch seed. It deliberately skips `SeedGenerator.__init__`, which
    would create the state variable this class exists to avoid.
    """

    def __init__(self, seed):  # noqa: D107 - no super().__init__: see the class docstring
        self.seed = tf.cast(seed, tf.int64)
        self.draws = 0

    def next(self, ordered=True):
        self.draws += 1
        return tf.random.experimental.stateless_fold_in(self.seed, self.draws)


@functools.cache
def seeded_layer(name: str, **options):
    """The Keras layer `keras.layers.<name>(**options)`, made once per set of options.

    Made outside any traced function (its unused seed generator is a variable, which a tf.data
    map may not create), with seed 0 where the layer takes one so that making it draws nothing
    from Python's global random state.
    """
    layer_class = getattr(keras.layers, name)
    if "seed" in inspect.signature(layer_class).parameters:  # not AutoContrast, Equalization
        options["seed"] = 0
    with tf.init_scope():
        layer = layer_class(dtype="float32", **options)
    layer.backend.set_backend("tensorflow")
    return layer
