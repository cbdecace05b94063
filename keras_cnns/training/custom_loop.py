"""Training loop for MultiWorkerMirroredStrategy.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy ("Attempt to convert a
value (PerReplica...)", keras-team/keras#20585), so multi-worker runs step
through `strategy.run` with the same Keras model, optimizer and loss that
`fit` would use. Every worker reads the same seeded pipeline; the strategy
shards each global batch across the replicas and all-reduces the gradients,
so the workers' weights stay identical. Under a float16 policy the optimizer
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

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_example_loss(labels, logits)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)  # the loss itself unless loss scaling is on
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), tf.float32)
        )
        return loss, correct

    def replica_eval(images, labels):
        logits = model(images, training=False)
        losses = per_example_loss(labels, logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(correct), tf.float32)

    @tf.function(jit_compile=False)
    def train_step(batch):
        loss, correct = strategy.run(replica_step, args=batch)
        return (strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None))

    @tf.function
    def eval_step(batch):
        results = strategy.run(replica_eval, args=batch)
        return [strategy.reduce("SUM", value, axis=None) for value in results]

    for epoch in range(initial_epoch, config.epochs):
        start = time.perf_counter()
        bar = keras.utils.Progbar(steps_per_epoch, verbose=0 if verbose == 0 else 1)
        loss_sum = correct_sum = 0.0
        for step in range(steps_per_epoch):
            loss, correct = train_step(next(train_iter))
            files.reach("batch")
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteStateError(epoch + 1, loss)
            loss_sum += loss
            correct_sum += float(correct)
            bar.update(step + 1, [("loss", loss)])
        total_loss = total_correct = total_count = 0.0
        for batch in val_dist:
            loss, correct, count = eval_step(batch)
            total_loss, total_correct = total_loss + float(loss), total_correct + float(correct)
            total_count += float(count)
        row = {
            "loss": loss_sum / steps_per_epoch,
            "accuracy": correct_sum / (steps_per_epoch * global_batch),
            "val_loss": total_loss / max(total_count, 1),
            "val_accuracy": total_correct / max(total_count, 1),
        }
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
