"""Training loop for MultiWorkerMirroredStrategy.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy ("Attempt to convert a
value (PerReplica...)", keras-team/keras#20585), so multi-worker runs step
through `strategy.run` with the same Keras model, optimizer and loss that
`fit` would use. Every worker reads the same seeded pipeline; the strategy
shards each global batch across the replicas and all-reduces the gradients,
so the workers' weights stay identical.

Each epoch ends with a checkpoint of the model and optimizer, written by the
chief into `run_dir/backup/` (other workers write to a throwaway directory,
as TensorFlow's multi-worker guide prescribes), from which an interrupted run
continues.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_cnns.training import run_dir as run_dirs


def fit_multi_worker(
    model,
    optimizer,
    loss_fn,
    train_ds,
    val_ds,
    config,
    steps_per_epoch,
    strategy,
    run_dir: Path,
    verbose="auto",
) -> dict:
    """Train for `config.epochs`; returns the history (and `stopped_at` on a NaN loss)."""
    global_batch = config.batch_size
    per_example_loss = loss_fn.__class__(
        from_logits=True, label_smoothing=config.label_smoothing, reduction="none"
    )
    train_iter = iter(strategy.experimental_distribute_dataset(train_ds))
    val_dist = strategy.experimental_distribute_dataset(val_ds)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            losses = per_example_loss(labels, logits)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
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

    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    backup = run_dir / run_dirs.BACKUP_DIR
    manager = tf.train.CheckpointManager(checkpoint, str(backup), max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        print(f"Restored epoch {int(epoch_var.numpy())} from {backup}.", flush=True)
        # Skip the batches already consumed, so the data order matches an unbroken run.
        for _ in range(int(epoch_var.numpy()) * steps_per_epoch):
            next(train_iter)

    history: dict = {"epoch": [], "loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best = -1.0
    best_path = run_dir / "checkpoints" / "best.weights.h5"
    best_path.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        start = time.perf_counter()
        bar = keras.utils.Progbar(steps_per_epoch, verbose=0 if verbose == 0 else 1)
        loss_sum = correct_sum = 0.0
        for step in range(steps_per_epoch):
            loss, correct = train_step(next(train_iter))
            loss = float(loss)
            if not math.isfinite(loss):
                history["stopped_at"] = (epoch + 1, loss)
                return history
            loss_sum += loss
            correct_sum += float(correct)
            bar.update(step + 1, [("loss", loss)])
        total_loss = total_correct = total_count = 0.0
        for batch in val_dist:
            loss, correct, count = eval_step(batch)
            total_loss, total_correct = total_loss + float(loss), total_correct + float(correct)
            total_count += float(count)
        row = {
            "epoch": epoch,
            "loss": loss_sum / steps_per_epoch,
            "accuracy": correct_sum / (steps_per_epoch * global_batch),
            "val_loss": total_loss / max(total_count, 1),
            "val_accuracy": total_correct / max(total_count, 1),
        }
        for key, value in row.items():
            history[key].append(value)
        if verbose != 0:
            print(
                f"epoch {epoch + 1}/{config.epochs} ({time.perf_counter() - start:.1f}s) "
                + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"),
                flush=True,
            )
        _append_csv(run_dir / "history.csv", row)
        if row["val_accuracy"] > best:
            best = row["val_accuracy"]
            model.save_weights(best_path)
        epoch_var.assign(epoch + 1)
        manager.save()
    return history


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
