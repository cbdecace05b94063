"""The trainer: one RunConfig in, a run directory and an export out.

    config = RunConfig(model=NAME)  # NAME: any of models.list_models()
    result = train(config)          # resolve, fit, evaluate, plot, export

Single-host runs (one CPU, or MirroredStrategy over local GPUs) use Keras `fit`;
MultiWorkerMirroredStrategy runs through `custom_loop.fit_multi_worker`, because Keras 3 `fit`
fails under it (keras-team/keras#20585). Both paths end every epoch the same way
(`run_state.EpochRecorder`: history, best checkpoint, early stopping, and an atomic state from
which a killed run resumes exactly), and both resume the input stream at the batch where the
restored epoch starts, so a resumed run is the uninterrupted run (tests/test_resume.py).
"""

from __future__ import annotations

import dataclasses
import errno
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_cnns import data as data_lib
from keras_cnns import export as export_lib
from keras_cnns import files, machine
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.data.augment import get_policy
from keras_cnns.models.precision import set_precision
from keras_cnns.preflight import check_run
from keras_cnns.training import plots, run_state, sharding
from keras_cnns.training import run_dir as run_dirs
from keras_cnns.training.ema import AveragedValidation
from keras_cnns.training.evaluation import evaluate
from keras_cnns.training.factories import build_for_training, epoch_steps, make_loss
from keras_cnns.training.filter_images import FilterImages
from keras_cnns.training.strategy import backend_note, check_global_batch, is_chief, make_strategy


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says when and what to try."""


class StorageError(RuntimeError):
    """The run directory could not be written (a full disk); the message says what to do."""


@dataclasses.dataclass
class TrainResult:
    config: RunConfig
    run_dir: Path
    export_dir: Path | None
    metrics: dict[str, Any]
    model: keras.Model
    how: str


class EpochCheckpoint(keras.callbacks.Callback):
    """`fit`'s end of epoch: stop on a non-finite loss, else hand the epoch to the recorder."""

    def __init__(self, recorder: run_state.EpochRecorder):
        super().__init__()
        self.recorder = recorder
        self.epoch = 0
        self.bad_loss: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        files.reach("batch")
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_loss = float(loss)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_loss is not None:
            raise run_state.NonFiniteStateError(epoch + 1, self.bad_loss)
        if self.recorder.end_epoch(epoch, logs or {}, self.model, self.model.optimizer):
            self.model.stop_training = True


def load_data(config: RunConfig, num_replicas: int = 1, *, start_batch: int = 0):
    """The source and the train / validation / test pipelines of a run.

    The training stream starts at batch `start_batch` of the run's endless stream (a resume).
    """
    source = load_source(config)
    return (source, *pipelines(source, config, num_replicas, start_batch=start_batch))


def load_source(config: RunConfig):
    """The run's data: its source, with the training split cut to `train_fraction`."""
    source = data_lib.load_source(config.dataset, config.data_dir)
    # Only the training split shrinks, so every fraction is scored on the same images.
    return data_lib.subset_training_split(source, config.train_fraction, config.seed)


def pipelines(source, config: RunConfig, num_replicas: int = 1, *, start_batch: int = 0):
    common = dict(
        image_size=config.image_size,
        batch_size=config.batch_size,
        seed=config.seed,
        deterministic=config.deterministic,
        one_hot=len(source.info.class_names),
        num_replicas=num_replicas,
    )
    train = data_lib.build_pipeline(
        source, "train", augment=get_policy(config.augment, config.erase_prob),
        repeat=True, shuffle=True,
        start_batch=start_batch, mixup_alpha=config.mixup_alpha,
        cutmix_alpha=config.cutmix_alpha, mix_prob=config.mix_prob, **common
    )
    validation = data_lib.build_pipeline(source, "validation", **common)
    test = data_lib.build_pipeline(source, "test", **common)
    return train, validation, test


def train(
    config: RunConfig, *, strategy=None, verbose: int | str = "auto", export: bool = True
) -> TrainResult:
    """Train `config` end to end and return where everything went.

    Here, once each, `config` is resolved (unless it already is) and the run's identity and
    batch shards are decided; every step below is handed them and decides none again. The
    shard count is the run's: config.json records it, and a resume keeps it.
    """
    if config.resume:
        # The run's own config: the flags beside --resume are not the run (their default data
        # set would have been loaded and scored).
        config = run_dirs.resumed_config(config)
    if not config.is_resolved():
        config = config.resolve()
    identity = config.identity()  # of the count asked for (0: automatic), so reruns find it
    unfinished = Path(config.resume) if config.resume else run_dirs.find_unfinished(
        config, identity)
    recorded = _recorded_shards(unfinished)
    if recorded:
        config = dataclasses.replace(config, batch_shards=recorded)
    # every refusal comes before any file is written
    check_run(config, own_export=unfinished is not None and config.output is not None
              and Path(config.output).exists()
              and not _exported_by_other(Path(config.output), unfinished))
    shard_notes: list[str] = []
    shards = sharding.prepare(config, strategy, shard_notes)  # before any TensorFlow op
    config = dataclasses.replace(config, batch_shards=shards)
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

    source = load_source(config)
    diverged = None if config.resume else run_dirs.latest_diverged(config, identity)
    # Every worker finds the same unfinished run (the run directory must be on a filesystem
    # they share, as tf.distribute's BackupAndRestore requires); only the chief writes in it.
    config, run_dir, how = run_dirs.prepare_run_dir(config, identity, writer=chief)
    for note in shard_notes:  # once every refusal has had its turn
        print(f"note: {note}", file=sys.stderr, flush=True)
    # A run directory written before the count was recorded gives back its config's 0.
    config = dataclasses.replace(config, batch_shards=shards)
    try:
        if how == "new" and diverged is not None:
            record = run_dirs.read_json(diverged / run_dirs.DIVERGED_FILE)
            print(f"The last run of this command, {diverged}, diverged in epoch "
                  f"{record.get('epoch')} (loss {record.get('loss')}); starting a new run.",
                  flush=True)
        elif how != "new":
            print(f"Resuming the unfinished run in {run_dir} ({how}).", flush=True)
        return _train_in(config, run_dir, how, source, strategy, kind, chief, policy,
                         verbose=verbose, export=export, shards=shards)
    finally:
        if chief:
            run_dirs.release_lock(run_dir)


def _train_in(config, run_dir: Path, how: str, source, strategy, kind: str, chief: bool,
              policy: str, *, verbose, export: bool, shards: int) -> TrainResult:
    info = source.info
    if chief and export and _exported_by_other(Path(config.output), run_dir):
        raise ConfigError(
            f"Export path {config.output} already exists; choose another --output.")
    steps = epoch_steps(config, info.split_sizes["train"], strategy.num_replicas_in_sync,
                        custom_loop=kind == "multi_worker")
    model, optimizer = build_for_training(
        config, info, steps, strategy, shards=shards, compile=kind != "multi_worker"
    )
    if kind != "multi_worker":
        optimizer = model.optimizer  # compile may have wrapped it (float16 loss scaling)
    with strategy.scope():
        optimizer.build(model.trainable_variables)  # its variables exist before a restore
    state = None
    if how != "new":
        state, note = run_state.restore(run_dir / run_dirs.BACKUP_DIR, model, optimizer)
        print(f"{run_dir}: {note}.", flush=True)
    # Other workers commit their states where nobody reads them (the chief's are restored).
    backup = run_dir / run_dirs.BACKUP_DIR if chief else Path(tempfile.mkdtemp(
        prefix="keras_cnns-worker-"))
    recorder = run_state.EpochRecorder(
        run_dir, backup, patience=config.early_stopping, chief=chief,
        state=state or run_state.RunState(batch_shards=shards),
        ema=bool(config.ema_decay))
    done = recorder.state.epochs_done
    stopped_early = bool(config.early_stopping) and (
        recorder.state.epochs_without_gain >= config.early_stopping)
    train_ds, val_ds, test_ds = pipelines(
        source, config, strategy.num_replicas_in_sync, start_batch=done * steps)

    start = time.perf_counter()
    try:
        if done < config.epochs and not stopped_early:
            _fit(model, optimizer, config, kind, strategy, steps, done, train_ds, val_ds,
                 run_dir, recorder, verbose)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StorageError(
            f"The disk filled up while saving the state of {run_dir}; free some space and run "
            "the same command again: it resumes from the last complete epoch."
        ) from None
    except run_state.NonFiniteStateError as error:
        if chief:
            run_dirs.mark_diverged(run_dir, error.epoch, error.loss)
        raise TrainingDivergedError(
            f"Training stopped in epoch {error.epoch} because the loss became {error.loss}; "
            f"lower --lr (now {config.lr}) or check the data."
        ) from None
    except BaseException:
        if not chief:
            shutil.rmtree(backup, ignore_errors=True)
        raise
    train_seconds = time.perf_counter() - start

    if recorder.state.best_epoch is not None:
        # Each worker reads the best weights it committed itself (the same on every worker);
        # a resumed run that trained no further epoch reads the chief's, which it restored.
        best = run_state.best_weights_path(backup, recorder.state.best_epoch)
        if not best.exists():
            best = run_state.best_weights_path(run_dir / run_dirs.BACKUP_DIR,
                                               recorder.state.best_epoch)
        model.load_weights(best)  # with ema_decay, the moving average at that epoch
    elif config.ema_decay:
        optimizer.finalize_variable_values(model.trainable_variables)
    if not chief:
        shutil.rmtree(backup, ignore_errors=True)
    metrics = evaluate(model, test_ds, info.class_names, config)
    files.reach("evaluate")
    metrics.update(
        train_seconds=round(train_seconds, 2),
        dtype_policy=policy,
        replicas=strategy.num_replicas_in_sync,
        strategy=kind,
        batch_shards=shards,
        best_epoch=recorder.state.best_epoch,
    )
    export_dir = None
    if chief:
        _write_reports(run_dir, metrics, info.class_names, config)
        if export:
            export_dir = _export(model, config, source, metrics, run_dir)
        files.reach("exported")
        # Written last: metrics.json marks the run finished, so a crash before it resumes.
        run_dirs.write_json(run_dir / run_dirs.DONE_FILE,
                            {**_public_metrics(metrics), "process": machine.process_usage()})
        shutil.rmtree(run_dir / run_dirs.BACKUP_DIR, ignore_errors=True)
    return TrainResult(config, run_dir, export_dir, metrics, model, how)


def _fit(model, optimizer, config, kind, strategy, steps, done, train_ds, val_ds, run_dir,
         recorder, verbose) -> None:
    if kind == "multi_worker":
        from keras_cnns.training.custom_loop import fit_multi_worker

        fit_multi_worker(model, optimizer, make_loss(config), train_ds, val_ds, config, steps,
                         strategy, recorder, initial_epoch=done, verbose=verbose)
        return
    callbacks = [
        EpochCheckpoint(recorder),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
    ]
    if config.ema_decay:
        callbacks.insert(0, AveragedValidation(optimizer))
    if config.filter_images:
        callbacks.append(FilterImages(run_dir / "logs" / "filters", initial_epoch=done))
    model.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=done,
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles, seeded
        verbose=verbose,
    )


def _recorded_shards(run_dir: Path | None) -> int:
    """The batch shards the unfinished run in `run_dir` trains with (0: none recorded)."""
    if run_dir is None:
        return 0
    recorded = run_dirs.read_json(run_dir / run_dirs.CONFIG_FILE).get("batch_shards")
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else 0


def _exported_by_other(output: Path, run_dir: Path) -> bool:
    """Whether `output` exists and is not the export of `run_dir` (killed after writing it)."""
    if not output.exists():
        return False
    try:
        return export_lib.read_manifest(output).get("run_dir") != str(run_dir)
    except export_lib.ExportError:
        return True


def _export(model, config: RunConfig, source, metrics: dict, run_dir: Path) -> Path:
    """Export, or keep the export this run wrote before it was killed."""
    output = Path(config.output)
    if output.exists() and not _exported_by_other(output, run_dir):
        print(f"Export {output} was already written by this run; keeping it.", flush=True)
        return output
    return export_lib.export_model(
        model,
        output,
        config=config.to_dict(),
        source=source,
        metrics=_public_metrics(metrics),
        extra={"run_dir": str(run_dir), "ema": ema_record(config)},
        onnx=config.onnx,
        tflite=config.tflite,
        tflite_quantize=None if config.tflite_quantize == "none" else config.tflite_quantize,
    )


def ema_record(config: RunConfig) -> dict | None:
    """The manifest's `ema`: null, or the decay and which weights the export holds."""
    if not config.ema_decay:
        return None
    return {"decay": config.ema_decay,
            "weights": "the optimizer's exponential moving average of the trained weights "
                       "(Keras use_ema) at the best epoch, not the raw weights"}


def _public_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def _write_reports(run_dir: Path, metrics: dict, class_names, config: RunConfig) -> None:
    title = f"{config.model} on {config.dataset}"
    history_file = run_dir / "history.csv"
    if history_file.exists():
        plots.plot_curves(plots.read_history(history_file), run_dir / "curves.png", title)
    plots.plot_confusion(
        np.asarray(metrics["confusion_matrix"]),
        list(class_names),
        run_dir / "confusion.png",
        f"{title}: test accuracy {metrics['test_accuracy']:.4f}",
    )
