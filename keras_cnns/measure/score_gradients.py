"""d(class score)/d(activations) through the running Keras backend's own autodiff (Grad-CAM's
one backend-specific step).

`keras.ops` has no gradient op, so this one function is written once per backend:
`tf.GradientTape` under TensorFlow, `jax.grad` under JAX, `torch.autograd` under PyTorch. It
differentiates the sum of the images' scores: in inference mode no layer mixes images, so the
gradient with respect to each image's activations is that image's own.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_cnns.config import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")


def class_score_gradients(head: keras.Model, activations, classes) -> np.ndarray:
    """The gradient of `head(activations)[n, classes[n]]` (one score per image) with respect
    to `activations` [N, ...], as float32 numpy of the same shape.

    `head` maps the activations to the scores (the rest of the network after the layer that
    gave them), called with `training=False`.
    """
    backend = keras.backend.backend()
    classes = np.asarray(classes, np.int64).reshape(-1, 1)
    if backend == "tensorflow":
        import tensorflow as tf

        activations = tf.convert_to_tensor(activations)
        with tf.GradientTape() as tape:
            tape.watch(activations)
            scores = tf.gather(head(activations, training=False), classes, axis=1,
                               batch_dims=1)
            total = tf.reduce_sum(scores)
        gradients = tape.gradient(total, activations)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(values):
            scores = jnp.take_along_axis(head(values, training=False), jnp.asarray(classes), 1)
            return jnp.sum(scores)

        gradients = jax.grad(total)(jnp.asarray(activations))
    elif backend == "torch":
        import torch

        values = keras.ops.convert_to_tensor(activations).detach().requires_grad_(True)
        index = torch.as_tensor(classes, device=values.device)
        scores = head(values, training=False).gather(1, index)
        (gradients,) = torch.autograd.grad(scores.sum(), values)
    else:
        raise ConfigError(f"Grad-CAM has no gradient for the Keras backend {backend!r}; use "
                          f"one of {', '.join(BACKENDS)} (KERAS_BACKEND).")
    return keras.ops.convert_to_numpy(gradients).astype(np.float32)
