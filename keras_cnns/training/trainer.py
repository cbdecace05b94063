"""The trainer: one RunConfig in, a run directory and an export out.

    config = RunConfig(model="alexnet").resolve()
    result = train(config)          # fit, evaluate, plot, export

Single-host runs (one CPU, or MirroredStrategy over local GPUs) use Keras
`fit` with BackupAndRestore, a best checkpoint, TensorBoard, CSV history,
TerminateOnNaN and optional early stopping. MultiWorkerMirroredStrategy runs
through `custom_loop.fit_multi_worker`, because Keras 3 `fit` fails under it
(keras-team/keras#20585).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cnns import data as data_lib
from keras_cnns import export as export_lib
from keras_cnns import reporting
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.models import build_model
from keras_cnns.training import run_dir as run_dirs
from keras_cnns.training.strategy import backend_note, check_global_batch, is_chief, make_strategy


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says when and what to try."""


@dataclasses.dataclass
class TrainResult:
    config: RunConfig
    run_dir: Path
    export_dir: Path | None
    metrics: dict[str, Any]
    model: keras.Model
    how: str


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX), read on Linux."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_mode(mode: str) -> str:
    """"off", "float16" or "bfloat16": what `mode` means here ("auto" picks the fast one).

    "auto" is float16 on a GPU, bfloat16 on a CPU with native bfloat16 instructions (measured:
    AlexNet@96 trains 1.5x faster than float32 on AVX512_BF16), and float32 otherwise.
    """
    if mode != "auto":
        return mode
    if tf.config.list_physical_devices("GPU"):
        return "float16"
    return "bfloat16" if cpu_has_bfloat16() else "off"


def set_precision(mode: str) -> str:
    """Set the global dtype policy and return its name."""
    mode = precision_mode(mode)
    policy = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mode]
    keras.mixed_precision.set_dtype_policy(policy)
    return policy


def make_model(config: RunConfig, input_shape, num_classes: int) -> keras.Model:
    model = build_model(
        config.model, input_shape=input_shape, num_classes=num_classes, **config.model_options()
    )
    if keras.mixed_precision.dtype_policy().compute_dtype != "float32":
        # Softmax and loss in float32: float16 logits lose the small differences that matter.
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(
            model.output
        )
        model = keras.Model(model.input, logits, name=model.name)
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
    if config.optimizer == "sgd":
        # Keras SGD has no weight decay of its own; `weight_decay` applies it decoupled.
        return keras.optimizers.SGD(
            lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay or None
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)


def make_loss(config: RunConfig) -> keras.losses.Loss:
    return keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing
    )


def steps_per_execution(config: RunConfig, steps_per_epoch: int, replicas: int = 1) -> int:
    if keras.backend.backend() == "torch":
        return 1  # Keras' torch trainer runs one step per call, and raises otherwise
    if replicas > 1:
        # Keras 3.15's multi-step loop fails under MirroredStrategy ("You must feed a value
        # for placeholder tensor", measured over two logical CPUs): one step per call there.
        return 1
    if config.steps_per_execution:
        return min(config.steps_per_execution, steps_per_epoch)
    # One compiled call per epoch's worth of steps (capped) amortises fit's per-call
    # overhead; for small models that overhead is most of a step (docs/BENCHMARKS.md).
    return max(1, min(steps_per_epoch, 50))


class _NaNGuard(keras.callbacks.Callback):
    """TerminateOnNaN that remembers where it stopped, to say so in one sentence."""

    def __init__(self):
        super().__init__()
        self.stopped_at: tuple[int, float] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_at = (self.epoch + 1, float(loss))
            self.model.stop_training = True


def build_for_training(config: RunConfig, info, steps: int, strategy, *, compile: bool = True):
    """The model and optimizer of a run, created in `strategy`'s scope and compiled for `fit`.

    `scripts/benchmark.py` times exactly this, so its numbers are `train.py`'s.
    """
    input_shape = (config.image_size, config.image_size, info.channels)
    with strategy.scope():
        model = make_model(config, input_shape, info.num_classes)
        optimizer = make_optimizer(config, steps)
        if compile:
            model.compile(
                optimizer=optimizer,
                loss=make_loss(config),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                # On torch, jit_compile means torch.compile: untested here, and slow to start.
                jit_compile=config.jit_compile and keras.backend.backend() != "torch",
                steps_per_execution=steps_per_execution(
                    config, steps, strategy.num_replicas_in_sync
                ),
            )
    return model, optimizer


def load_data(config: RunConfig, num_replicas: int = 1):
    """The source and the train / validation / test pipelines of a run."""
    source = data_lib.load_source(config.dataset, config.data_dir)
    # Only the training split shrinks, so every fraction is scored on the same images.
    source = data_lib.subset_training_split(source, config.train_fraction, config.seed)
    common = dict(
        image_size=config.image_size,
        batch_size=config.batch_size,
        seed=config.seed,
        deterministic=config.deterministic,
        one_hot=len(source.info.class_names),
        num_replicas=num_replicas,
    )
    train = data_lib.build_pipeline(
        source, "train", augment=config.augment, repeat=True, shuffle=True, **common
    )
    validation = data_lib.build_pipeline(source, "validation", **common)
    test = data_lib.build_pipeline(source, "test", **common)
    return source, train, validation, test


def train(
    config: RunConfig, *, strategy=None, verbose: int | str = "auto", export: bool = True
) -> TrainResult:
    """Train `config` (resolved) end to end and return where everything went."""
    config = config.resolve()
    if config.augment not in data_lib.list_augment_policies():
        raise ConfigError(
            f"augment must be one of {', '.join(data_lib.list_augment_policies())}, "
            f"got {config.augment!r}."
        )
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if strategy is None:
        strategy, kind = make_strategy(config.strategy)
        note = backend_note(config.strategy, config.jit_compile)
        if note:
            print(note, flush=True)
    else:
        kind = (
            "multi_worker"
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            else "given"
        )
    check_global_batch(config.batch_size, strategy)
    chief = is_chief(strategy)
    policy = set_precision(config.mixed_precision)

    if config.output and Path(config.output).exists() and not config.resume:
        raise ConfigError(f"Export path {config.output} already exists; choose another --output.")
    source, train_ds, val_ds, test_ds = load_data(config, strategy.num_replicas_in_sync)
    info = source.info
    if chief:
        config, run_dir, how = run_dirs.prepare_run_dir(config)
    else:  # other workers write their copies where nobody reads them
        config, _, how = run_dirs.prepare_run_dir(config, writer=False)
        run_dir = Path(tempfile.mkdtemp(prefix="keras_cnns-worker-"))
    if how != "new":
        print(f"Resuming the unfinished run in {run_dir} ({how}).", flush=True)
    if chief and Path(config.output).exists():
        raise ConfigError(f"Export path {config.output} already exists; choose another --output.")

    steps = math.ceil(info.split_sizes["train"] / config.batch_size)
    model, optimizer = build_for_training(
        config, info, steps, strategy, compile=kind != "multi_worker"
    )

    start = time.perf_counter()
    if kind == "multi_worker":
        from keras_cnns.training.custom_loop import fit_multi_worker

        history = fit_multi_worker(
            model,
            optimizer,
            make_loss(config),
            train_ds,
            val_ds,
            config,
            steps,
            strategy,
            run_dir,
            verbose=verbose,
        )
        stopped_at = history.pop("stopped_at", None)
    else:
        guard = _NaNGuard()
        model.fit(
            train_ds,
            epochs=config.epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=_callbacks(config, run_dir, guard),
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=verbose,
        )
        stopped_at = guard.stopped_at
    train_seconds = time.perf_counter() - start
    if stopped_at is not None:
        epoch, loss = stopped_at
        raise TrainingDivergedError(
            f"Training stopped in epoch {epoch} because the loss became {loss}; "
            f"lower --lr (now {config.lr}) or check the data."
        )

    best = run_dir / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    metrics = evaluate(model, test_ds, info.class_names, config)
    metrics.update(
        train_seconds=round(train_seconds, 2),
        dtype_policy=policy,
        replicas=strategy.num_replicas_in_sync,
        strategy=kind,
    )
    export_dir = None
    if chief:
        _write_reports(run_dir, metrics, info.class_names, config)
        if export:
            export_dir = export_lib.export_model(
                model,
                config.output,
                config=config.to_dict(),
                source=source,
                metrics=_public_metrics(metrics),
                extra={"run_dir": str(run_dir)},
                onnx=config.onnx,
            )
        # Written last: metrics.json marks the run finished, so a crash before it resumes.
        run_dirs.write_json(run_dir / run_dirs.DONE_FILE, _public_metrics(metrics))
        shutil.rmtree(run_dir / run_dirs.BACKUP_DIR, ignore_errors=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return TrainResult(config, run_dir, export_dir, metrics, model, how)


def _callbacks(config: RunConfig, run_dir: Path, guard: _NaNGuard) -> list:
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    callbacks = [
        guard,
        keras.callbacks.BackupAndRestore(
            str(run_dir / run_dirs.BACKUP_DIR), delete_checkpoint=False
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
    ]
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=config.early_stopping
            )
        )
    return callbacks


def evaluate(model: keras.Model, dataset, class_names, config: RunConfig | None = None) -> dict:
    """Accuracy, loss, per-class accuracy and the confusion matrix of `model` on `dataset`."""
    labels, logits = [], []
    for images, targets in dataset:
        logits.append(keras.ops.convert_to_numpy(model(images, training=False)).astype(np.float32))
        targets = np.asarray(targets)
        labels.append(targets.argmax(-1) if targets.ndim == 2 else targets)
    labels = np.concatenate(labels)
    logits = np.concatenate(logits)
    smoothing = config.label_smoothing if config else 0.0
    one_hot = keras.ops.one_hot(labels, len(class_names))
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)(
        one_hot, logits
    )
    predictions = logits.argmax(-1)
    matrix = reporting.confusion_matrix(labels, predictions, len(class_names))
    return {
        "test_accuracy": float((predictions == labels).mean()),
        "test_loss": float(loss),
        "test_examples": int(len(labels)),
        "per_class_accuracy": dict(
            zip(class_names, reporting.per_class_accuracy(matrix), strict=True)
        ),
        "confusion_matrix": matrix.tolist(),
    }


def _public_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def _write_reports(run_dir: Path, metrics: dict, class_names, config: RunConfig) -> None:
    title = f"{config.model} on {config.dataset}"
    history_file = run_dir / "history.csv"
    if history_file.exists():
        reporting.plot_curves(reporting.read_history(history_file), run_dir / "curves.png", title)
    reporting.plot_confusion(
        np.asarray(metrics["confusion_matrix"]),
        list(class_names),
        run_dir / "confusion.png",
        f"{title}: test accuracy {metrics['test_accuracy']:.4f}",
    )
