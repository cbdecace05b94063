"""Training loop for MultiWorkerMirroredStrategy.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy ("Attempt to convert a
value (PerReplica...)", keras-team/keras#20585), so multi-worker runs step
through `strategy.run` with the same Keras model, optimizer and loss that
`fit` would use. Every worker reads the same seeded pipeline; the strategy
shards each global batch across the replicas and all-reduces the gradients,
so the workers' weights stay identical. With `ema_decay` the validation runs on the weights'
moving average (`ema.py`), as under `fit`. Under a float16 policy the optimizer
is a `LossScaleOptimizer` (`factories.build_for_training`) and the loss is
scaled before the gradients are taken.

Each epoch ends in the trainer's `EpochRecorder`, as under `fit`: the chief
commits the run's state to `run_dir/backup/` (the others to a throwaway
folder, as TensorFlow's multi-worker guide prescribes). On a resume every
worker has restored the chief's state before this loop starts; the loop checks
that they all start at the same epoch.
"""

from __future__ import annotations

import math
import time

import keras
import tensorflow as tf

from keras_cnns import files
from keras_cnns.config import ConfigError
from keras_cnns.export.scoring import TOP_K, TOP_K_NAME, reports_top_k
from keras_cnns.training.ema import averaged_weights


def fit_multi_worker(
    model,
    optimizer,
    loss_fn,
    train_ds,
    val_ds,
    config,
    steps_per_epoch,
    strategy,
    recorder,
    *,
    initial_epoch: int = 0,
    verbose="auto",
) -> None:
    """Train epochs `initial_epoch`..`config.epochs - 1`; `train_ds` starts at the first of them.

    Raises `run_state.NonFiniteStateError` on a NaN or infinite loss.
    """
    from keras_cnns.training.run_state import NonFiniteStateError

    global_batch = config.batch_size
    per_example_loss = loss_fn.__class__(
        from_logits=True, label_smoothing=config.label_smoothing, reduction="none"
    )
    _check_same_start(strategy, initial_epoch)
    train_iter = iter(strategy.experimental_distribute_dataset(train_ds))
    val_dist = strategy.experimental_distribute_dataset(val_ds)

    top_k = TOP_K if reports_top_k(int(model.outputs[0].shape[-1])) else 0

    def hits(labels, logits):
        """Right top-1 and (when reported) top-k predictions in the batch, as float32 sums."""
        targets = tf.argmax(labels, -1)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), targets), tf.float32))
        if not top_k:
            return correct, tf.zeros([])
        in_top = tf.math.in_top_k(targets, tf.cast(logits, tf.float32), top_k)
        return correct, tf.reduce_sum(tf.cast(in_top, tf.float32))

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_example_loss(labels, logits)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)  # the loss itself unless loss scaling is on
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return (loss, *hits(labels, logits))

    def replica_eval(images, labels):
        logits = model(images, training=False)
        losses = per_example_loss(labels, logits)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return (tf.reduce_sum(losses), *hits(labels, logits), count)

    @tf.function(jit_compile=False)
    def train_step(batch):
        results = strategy.run(replica_step, args=batch)
        return [strategy.reduce("SUM", value, axis=None) for value in results]

    @tf.function
    def eval_step(batch):
        results = strategy.run(replica_eval, args=batch)
        return [strategy.reduce("SUM", value, axis=None) for value in results]

    for epoch in range(initial_epoch, config.epochs):
        start = time.perf_counter()
        bar = keras.utils.Progbar(steps_per_epoch, verbose=0 if verbose == 0 else 1)
        loss_sum = correct_sum = top_sum = 0.0
        for step in range(steps_per_epoch):
            loss, correct, in_top = train_step(next(train_iter))
            files.reach("batch")
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteStateError(epoch + 1, loss)
            loss_sum += loss
            correct_sum, top_sum = correct_sum + float(correct), top_sum + float(in_top)
            bar.update(step + 1, [("loss", loss)])
        totals = [0.0] * 4  # loss, right, in the top k, images
        with averaged_weights(model, optimizer, enabled=bool(config.ema_decay)):
            for batch in val_dist:
                totals = [total + float(value) for total, value in
                          zip(totals, eval_step(batch), strict=True)]
        count = max(totals[3], 1)
        row = {
            "loss": loss_sum / steps_per_epoch,
            "accuracy": correct_sum / (steps_per_epoch * global_batch),
            "val_loss": totals[0] / count,
            "val_accuracy": totals[1] / count,
        }
        if top_k:
            row[TOP_K_NAME] = top_sum / (steps_per_epoch * global_batch)
            row[f"val_{TOP_K_NAME}"] = totals[2] / count
        if verbose != 0:
            print(
                f"epoch {epoch + 1}/{config.epochs} ({time.perf_counter() - start:.1f}s) "
                + " ".join(f"{k}={v:.4f}" for k, v in row.items()),
                flush=True,
            )
        if recorder.end_epoch(epoch, row, model, optimizer):
            return


def _check_same_start(strategy, epoch: int) -> None:
    """Every worker must resume at the same epoch, or their all-reduces would mix epochs.

    Two all-reduced sums (of the epoch and of its square) equal the single-worker values
    times the replica count only when every replica holds the same epoch.
    """
    value = tf.constant([epoch, epoch * epoch], tf.int64)
    total = strategy.reduce("SUM", strategy.run(lambda: value), axis=None).numpy().tolist()
    replicas = strategy.num_replicas_in_sync
    if total != [epoch * replicas, epoch * epoch * replicas]:
        raise ConfigError(
            f"This worker resumes after epoch {epoch} but the others do not (sums {total} over "
            f"{replicas} replicas); give every worker the same shared --run-dir."
        )
