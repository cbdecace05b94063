"""What a run trains: the model, optimizer, loss and compile settings a RunConfig asks for.

`build_for_training` is the one place they are made, so `train.py`, the tuner and the benchmark
train exactly the same thing.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras

from keras_cnns.config import RunConfig
from keras_cnns.export.scoring import TOP_K, TOP_K_NAME, reports_top_k
from keras_cnns.models import build_model
from keras_cnns.training import run_state, sharding


def make_model(config: RunConfig, info) -> keras.Model:
    """The model `config` names, for `info`'s images (at `config.image_size`) and classes."""
    model = build_model(
        config.model, input_shape=(config.image_size, config.image_size, info.channels),
        num_classes=info.num_classes, **config.model_options()
    )
    if keras.mixed_precision.dtype_policy().compute_dtype != "float32":
        # Softmax and loss in float32: float16 logits lose the small differences that matter.
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(
            model.output
        )
        model = keras.Model(model.input, logits, name=model.name)
    return model


def best_model(run_dir: Path, config: RunConfig, info) -> keras.Model:
    """A run directory's model with its best checkpoint (the weights its test scores are of)."""
    model = make_model(config, info)
    model.load_weights(Path(run_dir) / run_state.BEST_FILE)
    return model


def make_optimizer(config: RunConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else config.lr,
            decay_steps=max(1, total - warmup),
            alpha=0.0,
            warmup_target=config.lr if warmup else None,
            warmup_steps=warmup,
        )
    else:
        lr = config.lr
    # Keras' own options, the same on every optimizer: the moving average lives in the
    # optimizer's variables (so a committed state holds it), and clipping is by the global norm.
    common = dict(
        global_clipnorm=config.clip_norm,
        use_ema=bool(config.ema_decay),
        ema_momentum=config.ema_decay or 0.99,
    )
    if config.optimizer == "sgd":
        # Keras SGD has no weight decay of its own; `weight_decay` applies it decoupled.
        return keras.optimizers.SGD(
            lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None,
            **common,
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **common)
    return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **common)


def training_metrics(num_classes: int) -> list[keras.metrics.Metric]:
    """What `fit` logs besides the loss: accuracy, and top-5 accuracy where there are more
    than 5 classes (`scoring.TOP_K`), on one-hot (or mixed) targets."""
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if reports_top_k(num_classes):
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=TOP_K, name=TOP_K_NAME))
    return metrics


def make_loss(config: RunConfig) -> keras.losses.Loss:
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing
    )


def steps_per_execution(config: RunConfig, steps_per_epoch: int, replicas: int = 1) -> int:
    """Train steps per compiled call: a divisor of `steps_per_epoch` when `epoch_steps` made it.

    Keras 3.15's `fit` rounds every epoch up to whole calls (16 steps at 5 per call run 20:
    measured), so the call size must divide the epoch or the epoch is not the one planned.
    """
    cap = _execution_cap(config, replicas)
    if cap == 1:
        return 1
    high = min(cap, steps_per_epoch)
    return min(range(max(1, min((cap + 1) // 2, high)), high + 1),
               key=lambda size: (math.ceil(steps_per_epoch / size) * size, -size))


def epoch_steps(config: RunConfig, train_size: int, replicas: int = 1, *,
                custom_loop: bool = False) -> int:
    """Steps in one epoch: a pass over the training split (ceil(train_size / batch_size)),
    rounded up to whole compiled calls under `fit`.

    The call size is chosen in [cap/2, cap] to need the fewest extra steps (none when a divisor
    is in range; 844 steps at a cap of 50 become 846 at 47 per call); the extra steps simply
    continue the endless training stream. The multi-worker loop steps one batch at a time and
    takes the pass exactly.
    """
    steps = max(1, math.ceil(train_size / config.batch_size))
    if custom_loop:
        return steps
    size = steps_per_execution(config, steps, replicas)
    return math.ceil(steps / size) * size


def _execution_cap(config: RunConfig, replicas: int) -> int:
    if keras.backend.backend() == "torch":
        return 1  # Keras' torch trainer runs one step per call, and raises otherwise
    if replicas > 1:
        # Keras 3.15's multi-step loop fails under MirroredStrategy ("You must feed a value
        # for placeholder tensor", measured over two logical CPUs): one step per call there.
        return 1
    if config.steps_per_execution:
        return config.steps_per_execution
    # One compiled call per epoch's worth of steps (capped) amortises fit's per-call
    # overhead; for small models that overhead is most of a step (docs/BENCHMARKS.md).
    return 50


def build_for_training(config: RunConfig, info, steps: int, strategy, *, shards: int = 1,
                       compile: bool = True):
    """The model and optimizer of a run, created in `strategy`'s scope and compiled for `fit`
    (or, with `compile=False`, left for a custom loop, float16 loss scaling included).

    Compiled, the model trains in `shards` batch shards (`sharding.py`; its `batch_shards`
    attribute says how many): the count `sharding.prepare` returned, called before any
    TensorFlow op for the threads the shards want.

    `scripts/benchmark.py` times exactly this, so its numbers are `train.py`'s.
    """
    with strategy.scope():
        model = make_model(config, info)
        optimizer = make_optimizer(config, steps)
        if not compile and keras.mixed_precision.dtype_policy().name == "mixed_float16":
            # compile() wraps the optimizer itself; a custom loop must scale the loss explicitly
            # (float16 gradients underflow without it).
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        if compile:
            model.compile(
                optimizer=optimizer,
                loss=make_loss(config),
                metrics=training_metrics(info.num_classes),
                # On torch, jit_compile means torch.compile: untested here, and slow to start.
                jit_compile=config.jit_compile and keras.backend.backend() != "torch",
                steps_per_execution=steps_per_execution(
                    config, steps, strategy.num_replicas_in_sync
                ),
            )
            sharding.install(model, shards)
    return model, optimizer
