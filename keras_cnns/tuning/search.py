"""Run a search: pick the tuner, resume or start over, and collect the trials.

    result = run_search(config, default_space(config.model), tuner="random",
                        max_trials=10, directory=f"tuning/runs/{config.model}-digits")
    result.best.config        # the best trial's RunConfig

`config` is the training run to tune; each trial trains it for `epochs` epochs, by default
`search_epochs(config)`, a quarter of its own: on digits, LeNet reaches 100% validation
accuracy in most of its 40-epoch runs, so full-length trials would rank settings by ties
(and cost four times as much). best.json keeps `config.epochs` for the retraining.

Layout of `directory`: `trials/` is keras-tuner's project (oracle state, one `trial_NN/` per
trial); `search.json` records what is searched, so that re-running a different command
there, or a worker whose command differs from the chief's, is refused instead of mixing two
searches; `report.py` adds `best.json`,
`results.csv` and `results.png`; `tensorboard/` holds keras-tuner's HParams data and each
trial's scalars (`tensorboard/<trial id>/execution0/`, TensorFlow backend), for
`tensorboard --logdir DIR/tensorboard`. `search_record` beside it claims the directory
(search.json) and checks the distributed roles.

Resuming is keras-tuner's own: with `overwrite=False` it reloads the oracle from
`trials/`, finished trials stay finished, and a trial that was running when the process
died is run again from its start. Distributed tuning is keras-tuner's chief/worker mode,
chosen by the `KERASTUNER_*` environment variables (see tuning/README.md).
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src import config as kt_config  # DEBUG has no public setter

from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.preflight import check_run, check_writable_dir
from keras_cnns.training import sharding
from keras_cnns.training.strategy import check_global_batch, make_strategy
from keras_cnns.tuning import search_record
from keras_cnns.tuning.hypermodel import OBJECTIVE, CNNHyperModel
from keras_cnns.tuning.search_record import PROJECT, TENSORBOARD, role
from keras_cnns.tuning.space import SearchSpace

TUNERS = ("random", "hyperband", "bayesian")
HYPERBAND_FACTOR = 3


class TuningError(RuntimeError):
    """A search that could not produce a result; the message is one sentence."""


@dataclasses.dataclass
class TrialRecord:
    """One trial as the oracle recorded it."""

    trial_id: str
    status: str
    values: dict[str, Any]
    config: RunConfig
    metrics: dict[str, float]
    message: str = ""

    @property
    def score(self) -> float | None:
        return self.metrics.get(OBJECTIVE)


@dataclasses.dataclass
class SearchResult:
    directory: Path
    role: str  # "single", "chief" or "worker"
    tuner: str
    trials: list[TrialRecord]  # every trial (empty on a worker, which sees only its own)
    ran: list[str]  # trial ids this process ran to completion
    best: TrialRecord | None
    space: SearchSpace
    base: RunConfig  # what every trial starts from: `training` with the search's epochs
    training: RunConfig  # the run being tuned, as given

    @property
    def tensorboard_dir(self) -> Path:
        """Where the trials' TensorBoard logs are: `tensorboard --logdir` it."""
        return self.directory / TENSORBOARD

    def best_config(self) -> RunConfig | None:
        """The best trial's values in the training config: what best.json holds."""
        if self.best is None:
            return None
        return dataclasses.replace(
            self.best.config,
            epochs=self.training.epochs,
            warmup_epochs=self.training.warmup_epochs,
        )


def search_epochs(config: RunConfig) -> int:
    """Default epochs per trial of the resolved `config`: a quarter of its epochs, and more
    than its warmup."""
    if not config.is_resolved():
        raise ValueError("search_epochs takes a resolved RunConfig (config.resolve()).")
    return max(math.ceil(config.epochs / 4), math.floor(config.warmup_epochs or 0) + 1)


def trial_warmup(training: RunConfig, epochs: int) -> float:
    """Warmup epochs of a trial `epochs` long: the run's own when it is shorter than the trial,
    else scaled with the epochs (40 epochs warming up for 1 -> 1-epoch trials warm up for 0.025),
    so that `--epochs N` works for every N >= 1."""
    warmup = training.warmup_epochs or 0.0
    if warmup < epochs:
        return warmup
    return math.floor(warmup * epochs / training.epochs * 10_000) / 10_000


def hyperband_trials(max_epochs: int, factor: int = HYPERBAND_FACTOR) -> int:
    """Trials in one full Hyperband iteration (keras-tuner's bracket arithmetic)."""
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    final = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(final / (bracket + 1) * factor ** (bracket - rung))
        for bracket in range(brackets)
        for rung in range(bracket + 1)
    )


class _Reporting:
    """One line per trial on the process that runs it (workers included), and a record."""

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        # A trial run again after an interruption starts its TensorBoard logs over too, so
        # that its curves are not drawn on top of the interrupted run's.
        shutil.rmtree(self.tensorboard_dir / trial.trial_id, ignore_errors=True)
        values = self.hypermodel.space.trial_values(trial.hyperparameters.values)
        hyper = trial.hyperparameters.values
        budget = f" (to epoch {hyper['tuner/epochs']})" if "tuner/epochs" in hyper else ""
        if hyper.get("tuner/trial_id"):
            budget = f" (continues trial {hyper['tuner/trial_id']}{budget[1:]}"
        self.log(f"[{self.tuner_id}] trial {trial.trial_id} started{budget}: {_format(values)}")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        result = self.hypermodel.last_result
        if trial.status == "COMPLETED" and result:
            self.ran.append(trial.trial_id)
            self.log(
                f"[{self.tuner_id}] trial {trial.trial_id} done: {OBJECTIVE} "
                f"{result[OBJECTIVE]:.4f} in {result['seconds']:.1f} s"
            )
        else:
            if "FailedTrialError" not in (trial.message or ""):
                sys.stderr.write(trial.message or "")  # not a known failure: maybe a bug
            self.log(f"[{self.tuner_id}] trial {trial.trial_id} {trial.status.lower()}: "
                     f"{_last_line(trial.message)}")
        self.hypermodel.last_result = None


class RandomTuner(_Reporting, keras_tuner.RandomSearch):
    """keras-tuner's RandomSearch with one-line trial reports."""


class HyperbandTuner(_Reporting, keras_tuner.Hyperband):
    """keras-tuner's Hyperband with one-line trial reports."""


class BayesianTuner(_Reporting, keras_tuner.BayesianOptimization):
    """keras-tuner's BayesianOptimization with one-line trial reports."""


def make_tuner(hypermodel: CNNHyperModel, tuner: str, max_trials: int, directory: Path,
               *, strategy=None, overwrite: bool = False, log: Callable = print):
    """A keras-tuner Tuner over `hypermodel`, working in `directory/trials`."""
    config = hypermodel.base
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        # keras-tuner draws a random seed for seed=0; keep every search reproducible.
        seed=config.seed + 1,
        # The trainer's strategy; keras-tuner takes tf.distribute ones only (not the
        # stand-in of other Keras backends), and opens its scope around every build.
        distribution_strategy=strategy if isinstance(strategy, tf.distribute.Strategy) else None,
        directory=str(directory),
        project_name=PROJECT,
        overwrite=overwrite,
    )
    if tuner == "random":
        made = RandomTuner(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        dimensions = len(hypermodel.space.params)
        made = BayesianTuner(
            max_trials=max_trials,
            # keras-tuner's default (3 random points per dimension) leaves small searches
            # almost no model-guided trials; start modelling after half of them.
            num_initial_points=max(2, min(3 * dimensions, max_trials // 2)),
            **common,
        )
    elif tuner == "hyperband":
        made = HyperbandTuner(max_epochs=config.epochs, factor=HYPERBAND_FACTOR, **common)
        if role() != "worker" and max_trials:
            made.oracle.max_trials = max_trials  # Hyperband has no cap of its own
    else:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, got {tuner!r}.")
    made.log = log
    made.ran = []
    made.tensorboard_dir = Path(directory) / TENSORBOARD
    return made


def run_search(config: RunConfig, space: SearchSpace, *, directory: str | Path,
               tuner: str = "random", max_trials: int = 10, epochs: int | None = None,
               overwrite: bool = False, log: Callable = print) -> SearchResult:
    """Run (or resume) a search and return its trials; see the module docstring.

    `epochs` is what each trial trains (Hyperband's max_epochs); `max_trials` counts the
    finished trials too, so raising it extends a finished search.
    """
    # keras-tuner prints every failed trial's traceback; the reporting tuner prints one line
    # for an expected failure (a diverged trial) and the traceback for anything else.
    kt_config.DEBUG = False
    if not config.is_resolved():
        config = config.resolve()  # once: everything below takes the resolved config
    training = dataclasses.replace(config, resume=None)
    if epochs is None:
        epochs = search_epochs(training)
    if isinstance(epochs, int) and epochs >= 1:  # else the RunConfig below says what is wrong
        warmup = trial_warmup(training, epochs)
        if warmup != training.warmup_epochs:
            log(f"Each trial warms up for {warmup} epochs: the run's {training.warmup_epochs} "
                f"scaled from {training.epochs} to {epochs} epochs.")
    else:
        warmup = training.warmup_epochs
    # validates, like any RunConfig; search.json records the trials' warmup
    config = dataclasses.replace(training, epochs=epochs, warmup_epochs=warmup)
    check_run(config, write_places=False)
    widths = [v for param in space.params if param.name == "width" for v in param.values]
    if widths and max(widths) > (config.width or 1.0):  # the widest trial must fit as well
        check_run(dataclasses.replace(config, width=float(max(widths))), write_places=False)
    check_writable_dir(directory, "--directory")
    if tuner not in TUNERS:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, got {tuner!r}.")
    if max_trials < (0 if tuner == "hyperband" else 1):
        raise ConfigError(f"max_trials must be at least 1, got {max_trials}.")
    directory = Path(directory)
    part = role()
    strategy, shards, shard_notes = None, 1, []
    if part != "chief":  # the chief only serves the oracle; it never trains
        shards = sharding.prepare(config, notes=shard_notes)  # before any TensorFlow op
        strategy, kind = make_strategy(config.strategy)
        if kind == "multi_worker":
            raise ConfigError(
                "tune.py cannot train trials under the multi_worker strategy; run several "
                "tuner processes (KERASTUNER_* variables) instead."
            )
        check_global_batch(config.batch_size, strategy)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
    # checks model and data
    hypermodel = CNNHyperModel(config, space, strategy=strategy, shards=shards)
    if part == "worker":
        search_record.join_chiefs_search(directory, config, space, tuner, log)
    else:
        if not overwrite:
            search_record.check_saved_trials(directory / PROJECT)
        search_record.claim_directory(directory, config, space, tuner, overwrite)
    for note in shard_notes:  # once every refusal has had its turn
        log(f"note: {note}")
    # Only the chief may start over: a worker deleting the shared directory would wipe
    # the oracle's state under it.
    made = make_tuner(hypermodel, tuner, max_trials, directory, strategy=strategy,
                      overwrite=overwrite and part != "worker", log=log)
    if part != "worker":
        _forget_finished_retries(made.oracle)
        done = sum(t.status == "COMPLETED" for t in made.oracle.trials.values())
        if done:
            log(f"Resuming the search in {directory}: {done} trial(s) already finished.")
    # A chief would serve a finished search until some worker called; it just reports it.
    serve = not (part == "chief" and _finished(made))
    try:
        if serve:
            # verbose: keras-tuner's own progress display only where no trial runs to report.
            made.search(epochs=config.epochs, verbose=1 if part == "chief" else 0,
                        callbacks=_tensorboard_callbacks(made.tensorboard_dir))
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        raise TuningError(
            f"The search stopped after {made.oracle.max_consecutive_failed_trials} failed "
            f"trials in a row; the last one said: {_last_line(str(error))}"
        ) from None
    if part == "worker":
        return SearchResult(directory, part, tuner, [], made.ran, None, space, config, training)
    trials = [_record(trial, space, config) for _, trial in sorted(made.oracle.trials.items())]
    return SearchResult(directory, part, tuner, trials, made.ran, best_trial(trials), space,
                        config, training)


def _tensorboard_callbacks(log_dir: Path) -> list:
    """The TensorBoard callback keras-tuner turns into per-trial scalars and HParams data.

    keras-tuner gives it a folder per trial and adds the HParams callback on the TensorFlow
    backend only; elsewhere every trial would write into the same folder, so none is passed.
    """
    if keras.backend.backend() != "tensorflow":
        return []
    # No graph: a tf.distribute step's graph is large and the dashboard is for the scalars.
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)]


def _forget_finished_retries(oracle) -> None:
    """Never run a finished trial again after a reload.

    keras-tuner writes a finished trial's trial.json before the oracle state that stops
    listing it as running; a process killed between the two writes would, on reload, queue
    the finished trial to run again. trial.json is the later truth, so drop it from the queue.
    """
    queue = getattr(oracle, "_retry_queue", None)
    if queue:
        oracle._retry_queue = [i for i in queue if oracle.trials[i].status != "COMPLETED"]


def _finished(made) -> bool:
    """True when the oracle's budget is spent and no trial is waiting to be run again."""
    trials = made.oracle.trials.values()
    return made.remaining_trials == 0 and all(t.status != "RUNNING" for t in trials)


def best_trial(trials: list[TrialRecord]) -> TrialRecord | None:
    """Highest validation accuracy; on a tie the lower validation loss."""
    done = [t for t in trials if t.status == "COMPLETED" and t.score is not None]
    if not done:
        return None
    return max(done, key=lambda t: (t.score, -t.metrics.get("val_loss", 0.0)))


def _record(trial, space: SearchSpace, base: RunConfig) -> TrialRecord:
    metrics = {}
    for name in trial.metrics.metrics:
        value = trial.metrics.get_last_value(name)
        if value is not None:
            metrics[name] = float(value)
    values = space.trial_values(trial.hyperparameters.values)
    return TrialRecord(trial.trial_id, trial.status, values, space.apply(base, values), metrics,
                       trial.message or "")


def _format(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _last_line(message: str) -> str:
    """The exception's own sentence from a traceback, without its class name."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1]) if lines else "no message"

