"""Batch shards: each batch split over the CPU cores, one single-threaded shard per core.

On a CPU, TensorFlow hands every oneDNN kernel to its intra-op thread pool and joins the pool
afterwards. A LeNet kernel lasts 0.3-1.5 ms, and the hand-off shows: the same oneDNN kernels
ran 1.0-1.6x longer inside our step than inside PyTorch's (OpenMP) step, and our process made
118 context switches per training step where PyTorch's made 0.2 (docs/BENCHMARKS.md).

With `batch_shards = k`, the training step splits its batch into k equal shards and computes
each shard's forward pass, loss and gradients on its own; the trainer gives TensorFlow one
intra-op thread and k inter-op threads, so each shard's kernels run start to end on one core
without a hand-off, and the k shards run side by side: data parallelism over the cores inside
one step, as PyTorch's DistributedDataParallel does over processes. Each shard's loss is
divided by k, so the optimizer applies the sum of the shards' gradients: the whole batch's
mean gradient up to float rounding (the loss is a mean over the batch and the shards are
equal). Shards: LeNet@28 trained 1.3-1.5x faster, AlexNet@96 0.96-1.10x. The metrics see the
whole batch. The
validation step splits its batch the same way (forward only; the loss and metrics are the
whole batch's).

What a run computes depends on k (float rounding, and each shard draws its own dropout
masks), never on the threads. The config's `0` resolves to one shard per core on a CPU-only,
single-replica TensorFlow run, with at least MIN_SHARD_IMAGES images per shard (1 elsewhere);
the run's metrics and its export's manifest record the number used. Only 2 cores have been
measured: the floor of images per shard for many-core machines is a guess. The exported
model is the same plain model whatever k trained it.

The larger model of the two measured keeps automatic shards too: +10% on the native ISA, -4% on
AVX2 (docs/BENCHMARKS.md, "Training speed against PyTorch").
"""

from __future__ import annotations

import os
import sys
import types

import keras

from keras_cnns.config import ConfigError, RunConfig

# The automatic choice keeps at least this many images in a shard (unmeasured beyond 2 cores).
MIN_SHARD_IMAGES = 16


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, as `taskset` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_shards(config: RunConfig, strategy_kind: str, *, has_gpu: bool) -> int:
    """The batch shards a run trains with: `config.batch_shards`, or for 0 the automatic choice.

    Automatic: one shard per core (the largest count up to the cores, and up to a shard of
    MIN_SHARD_IMAGES images, that divides the batch) when training on the CPU, with the
    TensorFlow backend and the default strategy; 1 (no split) elsewhere. A count the user
    gave that cannot apply is a `ConfigError`.
    """
    requested = config.batch_shards
    applies = (keras.backend.backend() == "tensorflow" and strategy_kind == "default")
    if requested == 0:
        if not applies or has_gpu:
            return 1
        cores = max(1, min(available_cores(), config.batch_size // MIN_SHARD_IMAGES))
        return max(d for d in range(1, cores + 1) if config.batch_size % d == 0)
    if requested > 1 and not applies:
        why = (f"the Keras backend is {keras.backend.backend()}"
               if keras.backend.backend() != "tensorflow"
               else f"the {strategy_kind} strategy already splits each batch over its replicas")
        raise ConfigError(
            f"batch_shards {requested} splits a batch over one TensorFlow device's cores, but "
            f"{why}; use batch_shards 1 or 0 (automatic).")
    if config.batch_size % requested:
        raise ConfigError(
            f"batch_shards {requested} does not divide the batch size {config.batch_size}; "
            f"use a divisor of {config.batch_size}.")
    return requested


def crowding_note(shards: int, batch_size: int) -> str | None:
    """One sentence when `shards` outnumber the cores this process may use, else None.

    Not a refusal: a run recorded with more shards (a resume, a re-run of a manifest on a
    smaller machine) must keep its count to compute the same result.
    """
    cores = available_cores()
    if shards <= cores:
        return None
    images = batch_size // shards
    return (f"batch_shards {shards} ({images} image{'s' * (images != 1)} each) outnumber the "
            f"{cores} core{'s' * (cores != 1)} this process may use, so shards wait for a "
            "core: the same result, "
            f"more slowly than with --batch-shards {cores} or 0 (which compute differently).")


def strategy_kind_of(strategy) -> str:
    """default, mirrored or multi_worker: what kind of tf.distribute strategy `strategy` is."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def prepare(config: RunConfig, strategy=None, notes: list[str] | None = None) -> int:
    """The run's batch shards, with TensorFlow's threads set for them: call it before the run
    makes any TensorFlow op (a `ConfigError` for a count that cannot apply comes first too).

    Its notes go into `notes` when given, so that a caller can print them once the run's
    other checks have passed (a refused run then says one sentence only); else to stderr.
    """
    notes_given = notes is not None
    notes = [] if notes is None else notes
    from keras_cnns.training.strategy import strategy_kind

    kind = strategy_kind(config.strategy) if strategy is None else strategy_kind_of(strategy)
    shards = resolve_shards(config, kind, has_gpu=has_gpu())
    note = crowding_note(shards, config.batch_size)
    if note:
        notes.append(note)
    note = configure_threads(shards)
    if note:
        notes.append(note)
    if not notes_given:
        for note in notes:
            print(f"note: {note}", file=sys.stderr, flush=True)
    return shards


def configure_threads(shards: int) -> str | None:
    """Give TensorFlow one intra-op thread and `shards` inter-op threads when `shards` > 1, and
    its own choice (0) again for one shard.

    TensorFlow fixes its thread pools when it first runs an op: a process that already ran one
    (the second cell of an ablation) keeps its pools, and a note says so; the shards still
    compute the same result, only at another speed. Returns that note, or None.
    """
    import tensorflow as tf

    threading = tf.config.threading
    intra, inter = (1, shards) if shards > 1 else (0, 0)
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (intra, inter):
        return None
    try:
        threading.set_intra_op_parallelism_threads(intra)
        threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        return (f"TensorFlow already runs with {threading.get_intra_op_parallelism_threads()}"
                f" intra-op and {threading.get_inter_op_parallelism_threads()} inter-op threads "
                f"in this process and cannot change them, so these {shards} batch shards run "
                "with them: the same result, at another speed.")
    return None


def install(model: keras.Model, shards: int) -> None:
    """Make `fit` and `evaluate` on `model` run the sharded steps (nothing for 1 shard).

    The steps are bound to this model object rather than defined in a Model subclass so that
    the trained, saved and exported model stays the registry's plain Functional model.
    """
    if shards <= 1:
        return
    model.train_step = types.MethodType(_sharded_train_step, model)
    model.test_step = types.MethodType(_sharded_test_step, model)
    model.batch_shards = shards


def _split(tensor, shards: int, sizes=None):
    import tensorflow as tf

    if tensor is None:
        return [None] * shards
    return tf.split(tensor, sizes if sizes is not None else shards)


def _loss_tracker(model):
    """The mean of the loss that `fit` and `evaluate` report, from the public `metrics`.

    Keras' own steps also unscale the loss for distribution; shards run on one replica only
    (`resolve_shards`), where that factor is 1.
    """
    return next(metric for metric in model.metrics if metric.name == "loss")


def _sharded_train_step(self, data):
    """Keras 3's TensorFlow `train_step`, with the batch computed in `self.batch_shards` parts."""
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    shards = self.batch_shards
    predictions, losses, gradients = [], [], []
    weights = self.trainable_weights
    for x_part, y_part, w_part in zip(_split(x, shards), _split(y, shards),
                                      _split(sample_weight, shards), strict=True):
        with tf.GradientTape() as tape:
            y_pred = self(x_part, training=True)
            loss = self.compute_loss(x=x_part, y=y_part, y_pred=y_pred,
                                     sample_weight=w_part, training=True)
            # Each shard's loss over `shards`: the gradients then sum to the batch's mean
            # gradient, with no pass over them to divide (AlexNet's are 57M numbers).
            scaled = self.optimizer.scale_loss(loss) / shards
        gradients.append(tape.gradient(scaled, weights))
        predictions.append(y_pred)
        losses.append(loss)
    # Equal shards: the whole batch's mean loss is the mean of the shards' means.
    _loss_tracker(self).update_state(tf.add_n(losses) / shards, sample_weight=tf.shape(x)[0])
    mean = [tf.add_n(list(parts)) for parts in zip(*gradients, strict=True)]
    self.optimizer.apply_gradients(zip(mean, weights, strict=True))
    return self.compute_metrics(x, y, tf.concat(predictions, 0), sample_weight=sample_weight)


def inference(model: keras.Model):
    """`model(images, training=False)` as a function, in the model's batch shards when it
    trains in shards (the shards run side by side, as in training; TensorFlow backend)."""
    shards = getattr(model, "batch_shards", 1)
    if shards <= 1:
        return lambda images: model(images, training=False)
    import tensorflow as tf

    return tf.function(lambda images: _sharded_forward(model, images, shards))


def _sharded_forward(model, x, shards: int):
    import tensorflow as tf

    batch = tf.shape(x)[0]
    sizes = tf.stack([(batch + i) // shards for i in range(shards)])

    def in_shards():
        return tf.concat([model(part, training=False) for part in _split(x, shards, sizes)], 0)

    # A batch smaller than the shard count would leave a shard empty, which TensorFlow's
    # oneDNN convolution refuses: such a batch runs whole.
    return tf.cond(batch >= shards, in_shards, lambda: model(x, training=False))


def _sharded_test_step(self, data):
    """Keras 3's TensorFlow `test_step` with the forward pass in shards (a last, smaller batch
    splits unevenly; the loss and metrics are computed once, over the whole batch)."""
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = _sharded_forward(self, x, self.batch_shards)
    loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                             training=False)
    _loss_tracker(self).update_state(loss, sample_weight=tf.shape(x)[0])
    return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
