"""The exponential moving average (EMA) of the weights, as Keras' optimizers keep it.

With `ema_decay` d the optimizer is built with Keras' own `use_ema=True, ema_momentum=d`: after
every step it updates `average = d * average + (1 - d) * weights` (the first step copies the
weights; there is no warm-up or bias correction), in optimizer variables of its own. Those are
among `optimizer.variables`, so every committed state holds the average and a resumed run
continues it exactly. The average covers roughly the last 1 / (1 - d) steps.

A run with EMA validates, keeps its best checkpoint, scores its test split and exports with the
averaged weights, as timm's `--model-ema` evaluates its EMA model; the raw weights only train.
The training loss and accuracy in the logs are the raw weights' (they come from the steps).

Written by hand: moving the average into the model and back. Keras' `SwapEMAWeights` callback
swaps the two in place by adding and subtracting (TensorFlow backend), which rounds: two swaps
turned a weight of 0.1 beside an average of 1000.3 into 0.099975586 (float32, measured), so the
run would train on from weights it never reached, and a resumed run would differ from the
uninterrupted one. Here the raw weights are copied aside, the average goes in through Keras'
public `finalize_variable_values`, and the copy goes back exactly.
"""

from __future__ import annotations

import contextlib

import keras


class AveragedWeights:
    """Puts the optimizer's moving average into `model`'s trainable weights (`swap_in`) and
    the raw weights back, bit for bit (`swap_out`)."""

    def __init__(self, model: keras.Model, optimizer):
        self.model, self.optimizer = model, optimizer
        self._raw = None

    def swap_in(self) -> None:
        if self._raw is not None:
            return
        variables = self.model.trainable_variables
        self._raw = [keras.ops.convert_to_numpy(variable) for variable in variables]
        self.optimizer.finalize_variable_values(variables)

    def swap_out(self) -> None:
        if self._raw is None:
            return
        for variable, value in zip(self.model.trainable_variables, self._raw, strict=True):
            variable.assign(value)
        self._raw = None


@contextlib.contextmanager
def averaged_weights(model: keras.Model, optimizer, enabled: bool = True):
    """Inside, `model` holds the moving average (when `enabled`); after, its raw weights."""
    if not enabled:
        yield
        return
    swap = AveragedWeights(model, optimizer)
    swap.swap_in()
    try:
        yield
    finally:
        swap.swap_out()


class AveragedValidation(keras.callbacks.Callback):
    """`fit`'s validation on the averaged weights (Keras' `SwapEMAWeights`, swapping exactly)."""

    def __init__(self, optimizer):
        super().__init__()
        self.optimizer = optimizer
        self._swap = None

    def on_test_begin(self, logs=None):
        self._swap = AveragedWeights(self.model, self.optimizer)
        self._swap.swap_in()

    def on_test_end(self, logs=None):
        if self._swap is not None:
            self._swap.swap_out()
            self._swap = None
