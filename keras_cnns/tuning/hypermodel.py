"""The hypermodel: a search space plus a base RunConfig, built and trained like `train.py` does.

Every trial's config is `space.apply(base, values)`, a RunConfig that validates like any
other, and the model, optimizer, loss, compilation, precision, seed and data pipelines come
from the trainer's own functions (`build_for_training`, `set_precision`, `load_data`), so a
trial trains what `train.py` trains with that config, epoch for epoch (without the
trainer's checkpoints, reports and export).
"""

from __future__ import annotations

import logging
import math
import time

import keras
import keras_tuner
import numpy as np

from keras_cnns import data as data_lib
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.models import get_model_entry
from keras_cnns.training import trainer
from keras_cnns.training.factories import epoch_steps
from keras_cnns.training.strategy import make_strategy
from keras_cnns.tuning.space import SearchSpace

OBJECTIVE = "val_accuracy"


class _NoRetracingWarnings(logging.Filter):
    """Each trial compiles a new model, so TensorFlow's "retracing" warning is expected noise."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_NoRetracingWarnings())


class _StopOnNaN(keras.callbacks.Callback):
    """TerminateOnNaN without its message: `fit` below reports the trial as failed."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class CNNHyperModel(keras_tuner.HyperModel):
    """Builds, compiles and fits `base.model` with a trial's hyperparameters.

    Args:
        base: the resolved RunConfig every trial starts from (the flags of `tune.py`).
        space: the hyperparameters to tune and their domains.
        strategy: the tf.distribute strategy the trials run under (the tuner's
            `distribution_strategy`); None for the default one.
        shards: the batch shards every trial trains in, as `sharding.prepare` decided them
            for `base` (no tuned value changes them); 1 without that call.
    """

    def __init__(self, base: RunConfig, space: SearchSpace, *, strategy=None, shards: int = 1):
        super().__init__(name=f"{base.model}_hypermodel", tunable=True)
        if not base.is_resolved():
            raise ValueError("CNNHyperModel takes a resolved RunConfig (config.resolve()).")
        self.base = base
        self.space = space
        self.shards = shards
        self.strategy = strategy if strategy is not None else make_strategy("default")[0]
        self.replicas = self.strategy.num_replicas_in_sync
        entry = get_model_entry(self.base.model)
        for name in ("dropout", "width"):
            if name in space.names and name not in entry.options:
                raise ConfigError(f"Model '{self.base.model}' has no option {name!r} to tune.")
        if self.base.augment not in data_lib.list_augment_policies():
            raise ConfigError(
                f"augment must be one of {', '.join(data_lib.list_augment_policies())}, "
                f"got {self.base.augment!r}."
            )
        # Only the source's description here: a chief builds models to learn the space but
        # never trains, so the pipelines (the resized image caches) are made on first use.
        self.info = trainer.load_source(self.base).info
        # The trainer's epoch: a pass over the split, in whole compiled calls (epoch_steps).
        self.steps_per_epoch = epoch_steps(self.base, self.info.split_sizes["train"],
                                           self.replicas)
        self._pipelines: dict[str, tuple] = {}
        self._started = time.perf_counter()
        self.last_result: dict[str, float] | None = None

    def trial_config(self, hp) -> RunConfig:
        """The RunConfig of the trial whose hyperparameters are `hp`."""
        values = hp.values if hasattr(hp, "values") else dict(hp)
        return self.space.apply(self.base, values)

    def build(self, hp) -> keras.Model:
        self.space.declare(hp)
        config = self.trial_config(hp)
        self._started = time.perf_counter()
        # Same seed for every trial: trials then differ by their hyperparameters, not by luck
        # of the draw, and retraining best.json starts from the trial's initial weights.
        keras.utils.set_random_seed(config.seed)
        # keras-tuner clears the Keras session before each build, which resets the policy.
        trainer.set_precision(config.mixed_precision)
        model, _ = trainer.build_for_training(config, self.info, self.steps_per_epoch,
                                              self.strategy, shards=self.shards)
        if "tuner/trial_id" in hp.values:
            # Hyperband loads an earlier trial's checkpoint into this model next; with the
            # optimizer built, that restores the optimizer's state as well as the weights.
            model.optimizer.build(model.trainable_variables)
        return model

    def pipelines(self, config: RunConfig):
        """Train and validation pipelines of `config`, made once per augmentation policy."""
        if config.augment not in self._pipelines:
            _, train, validation, _ = trainer.load_data(config, self.replicas)
            self._pipelines[config.augment] = (train, validation)
        return self._pipelines[config.augment]

    def fit(self, hp, model, *args, epochs=None, initial_epoch=0, callbacks=(), **kwargs):
        """Train one trial; return its best epoch's metrics and its time in seconds.

        The best epoch is the one `train.py` would export (its checkpoint keeps the best
        `val_accuracy`); among equal accuracies the lower `val_loss` wins, since on a small
        validation split several epochs often tie.
        """
        config = self.trial_config(hp)
        train_ds, val_ds = self.pipelines(config)
        steps = self.steps_per_epoch
        if initial_epoch:
            # Hyperband continues a model from its checkpoint, but not its optimizer: start
            # the learning-rate schedule where the earlier rounds left it, not from warmup.
            model.optimizer.iterations.assign(initial_epoch * steps)
        extra = [_StopOnNaN()]
        if config.early_stopping:
            extra.append(
                keras.callbacks.EarlyStopping(
                    monitor=OBJECTIVE, mode="max", patience=config.early_stopping
                )
            )
        history = model.fit(
            train_ds,
            epochs=epochs or config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=[*callbacks, *extra],
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=0,
        ).history
        losses = np.asarray(history.get("loss", []), dtype=float)
        if not len(losses) or not np.all(np.isfinite(losses)):
            raise keras_tuner.errors.FailedTrialError(
                f"The loss became {losses[-1] if len(losses) else 'undefined'}; "
                f"lr {config.lr} is too high for this trial."
            )
        accuracy = np.asarray(history[OBJECTIVE], dtype=float)
        val_loss = np.asarray(history["val_loss"], dtype=float)
        best = max(range(len(accuracy)), key=lambda i: (accuracy[i], -val_loss[i]))
        self.last_result = {
            OBJECTIVE: float(accuracy[best]),
            "val_loss": float(val_loss[best]),
            "accuracy": float(history["accuracy"][best]),
            "best_epoch": float(initial_epoch + best + 1),
            "epochs": float(initial_epoch + len(accuracy)),
            "seconds": round(time.perf_counter() - self._started, 2),
        }
        return dict(self.last_result)
