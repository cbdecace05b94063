"""Tuning: space files, tiny searches per model and tuner, resume, TensorBoard, best.json into
training (keras-tuner's distributed mode: test_tuning_distributed.py)."""

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tuning_helpers import (
    DONE,
    ROOT,
    TINY_FLAGS,
    TRAIN,
    TUNE,
    completed,
    env,
    search,
    tiny_config,
    trial_files,
)

from keras_cnns import tuning
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.models import list_models

# -- space files ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_declares_a_valid_search_space(model):
    space = tuning.default_space(model)
    assert {"dropout", "width", "lr"} <= set(space.names)


BAD_SPACES = [
    ('{"depth": {"choices": [1, 2]}}', r"unknown hyperparameter 'depth'"),
    ('{"dropout": {"min": 0.6, "max": 0.2}}', r"range \[0.6, 0.2\] is empty"),
    ('{"dropout": {"min": 0.0, "max": 1.5}}', r"must lie in \[0, 1\)"),
    ('{"dropout": {"min": 0.0, "max": 0.5, "stepp": 0.1}}', r"unknown key 'stepp'"),
    ('{"dropout": {"min": 0.0, "max": 0.5, "step": 0.9}}', r"wider than the range"),
    ('{"dropout": [0.1, 0.2]}', r"must be a range like"),
    ('{"lr": {"min": 0, "max": 0.1}}', r"must be above 0"),
    ('{"lr": {"min": 0.001}}', r"needs 'max'"),
    ('{"width": {"choices": []}}', r"non-empty list"),
    ('{"width": {"choices": [0.5, -1]}}', r"positive numbers"),
    ('{"width": [0.5, 1.0]}', r"must be a list of choices"),
    ('{"augment": {"choices": ["none", "wild"]}}', r"'wild' is not an augmentation policy"),
    ("{}", r"tunes nothing"),
    ("[1, 2]", r"must hold a JSON object"),
    ("{not json", r"is not valid JSON"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SPACES)
def test_bad_space_file_is_one_clear_sentence(tmp_path, text, expected):
    path = tmp_path / "space.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as error:
        tuning.load_space(path)
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and str(path) in message


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        tuning.load_space(tmp_path / "nope.json")


def test_trial_config_is_a_runconfig_with_the_tuned_values():
    space = tuning.space_from_dict({"dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
                                    "width": {"choices": [1, 2]},
                                    "augment": {"choices": ["none", "light"]}})
    config = space.apply(tiny_config("lenet"),
                         {"dropout": 0.30000000000000004, "width": 2.0, "augment": "none",
                          "tuner/epochs": 3})
    assert (config.dropout, config.width, config.augment) == (0.3, 2.0, "none")


def test_where_a_search_writes_is_not_what_it_searches(tmp_path):
    """--onnx, --tflite and the other placement fields never make a search "another search"."""
    from keras_cnns.tuning.search_record import SEARCH_FILE, claim_directory

    config, space = tiny_config("lenet"), tuning.default_space("lenet")
    claim_directory(tmp_path, config, space, "random", overwrite=False)
    placed = dataclasses.replace(config, onnx=True, tflite=True, tflite_quantize="int8",
                                 output="elsewhere", run_dir="other-runs")
    claim_directory(tmp_path, placed, space, "random", overwrite=False)
    with pytest.raises(ConfigError, match=r"holds another search \(lr "):
        claim_directory(tmp_path, dataclasses.replace(config, lr=0.5), space, "random",
                         overwrite=False)
    # A search.json written while onnx and tflite were still part of a search's identity.
    record = json.loads((tmp_path / SEARCH_FILE).read_text())
    assert "onnx" not in record["config"]
    record["config"].update(onnx=False, tflite=False, tflite_quantize="none")
    (tmp_path / SEARCH_FILE).write_text(json.dumps(record))
    claim_directory(tmp_path, placed, space, "random", overwrite=False)


def test_a_search_json_with_a_wrong_field_is_refused_naming_it(tmp_path):
    from keras_cnns.tuning.search_record import SEARCH_FILE, claim_directory

    config, space = tiny_config("lenet"), tuning.default_space("lenet")
    claim_directory(tmp_path, config, space, "random", overwrite=False)
    record = json.loads((tmp_path / SEARCH_FILE).read_text())
    (tmp_path / SEARCH_FILE).write_text(json.dumps({**record, "config": ["lenet"]}))
    with pytest.raises(ConfigError) as error:
        claim_directory(tmp_path, config, space, "random", overwrite=False)
    assert str(error.value) == (f"{tmp_path / SEARCH_FILE}'s config must be an object, got "
                                "['lenet']; start over with --overwrite, or choose another "
                                "--directory.")
    claim_directory(tmp_path, config, space, "random", overwrite=True)


# -- searches -------------------------------------------------------------------------------


def test_tiny_lenet_search_reports_every_trial(lenet_search):
    result = lenet_search
    assert [t.status for t in result.trials] == ["COMPLETED", "COMPLETED"]
    assert result.ran == [t.trial_id for t in result.trials]
    for trial in result.trials:
        assert 0.0 <= trial.score <= 1.0 and trial.metrics["seconds"] > 0
        assert set(trial.values) == {"dropout", "width", "lr"}
    table = tuning.format_table(result)
    assert "val_accuracy" in table and "time (s)" in table and len(table.splitlines()) == 3
    for name in ("best.json", "results.csv", "results.png", "search.json"):
        assert (result.directory / name).stat().st_size > 0
    assert sorted(p.name for p in result.tensorboard_dir.iterdir()) == result.ran


@pytest.mark.slow
def test_tiny_alexnet_search(tmp_path):
    space = tuning.space_from_dict({"dropout": {"min": 0.2, "max": 0.6, "step": 0.1},
                                    "width": {"choices": [0.125, 0.25]},
                                    "lr": {"min": 3e-4, "max": 3e-3},
                                    "augment": {"choices": ["none", "light"]}})
    result = search(tmp_path, model="alexnet", space=space)
    assert [t.status for t in result.trials] == ["COMPLETED", "COMPLETED"]
    assert {"augment", "width"} <= set(result.best.values)


@pytest.mark.filterwarnings("error:Skipping variable loading for optimizer")
def test_hyperband_continues_models_and_caps_trials(tmp_path):
    # max_epochs 3: bracket 1 trains 3 models for 1 epoch, then continues the best to 3.
    assert tuning.hyperband_trials(3) == 6
    result = search(tmp_path, tuner="hyperband", max_trials=4, epochs=3)
    assert len(result.trials) == 4 and all(t.status == "COMPLETED" for t in result.trials)
    assert sorted(t.metrics["epochs"] for t in result.trials) == [1, 1, 1, 3]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_bayesian_search_runs(tmp_path):
    result = search(tmp_path, tuner="bayesian", max_trials=3)
    assert [t.status for t in result.trials] == ["COMPLETED"] * 3


def test_diverging_trials_fail_loudly_not_quietly(tmp_path):
    space = tuning.space_from_dict({"lr": {"min": 1e8, "max": 1e9}})
    with pytest.raises(tuning.TuningError, match=r"3 failed trials in a row.*loss became nan"):
        search(tmp_path, space=space, max_trials=4)


def test_trials_run_under_the_trainers_strategy(tmp_path):
    from keras_cnns.training.strategy import make_strategy

    strategy, kind = make_strategy("mirrored")  # over the CPU here, as the trainer's tests do
    config = tiny_config("lenet", strategy="mirrored")
    hypermodel = tuning.CNNHyperModel(config, tuning.default_space("lenet"),
                                      strategy=strategy)
    tuner = tuning.make_tuner(hypermodel, "random", 1, tmp_path, strategy=strategy)
    assert kind == "mirrored" and tuner.distribution_strategy is strategy is hypermodel.strategy
    result = search(tmp_path / "search", max_trials=1, config=config)
    assert result.trials[0].status == "COMPLETED"


def test_rerun_resumes_extends_and_overwrites(lenet_search, tmp_path):
    directory = tmp_path / "search"
    shutil.copytree(lenet_search.directory, directory)
    before = trial_files(directory)

    again = search(directory)  # finished: nothing to run
    assert again.ran == [] and trial_files(directory) == before
    more = search(directory, max_trials=3)  # a larger budget runs only the new trial
    assert len(more.ran) == 1 and more.ran[0] not in before
    assert {k: v for k, v in trial_files(directory).items() if k in before} == before

    with pytest.raises(ConfigError, match=r"holds another search \(epochs 1 there, 2 here\)"):
        search(directory, epochs=2)
    assert len(list(more.tensorboard_dir.iterdir())) == 3
    fresh = search(directory, max_trials=1, overwrite=True)
    assert len(fresh.trials) == 1 and fresh.ran == [fresh.trials[0].trial_id]
    assert not (directory / "best.json").exists()  # the old search's result is gone
    assert [p.name for p in fresh.tensorboard_dir.iterdir()] == fresh.ran  # its logs too


def test_trial_finished_just_before_a_kill_is_not_run_again(lenet_search, tmp_path):
    # The state a kill leaves between keras-tuner's two writes at the end of a trial:
    # trial.json says COMPLETED, oracle.json still lists the trial as running.
    directory = tmp_path / "search"
    shutil.copytree(lenet_search.directory, directory)
    oracle_file = directory / "trials" / "oracle.json"
    state = json.loads(oracle_file.read_text())
    state["ongoing_trials"] = {"tuner0": lenet_search.trials[-1].trial_id}
    oracle_file.write_text(json.dumps(state))
    assert search(directory).ran == []


def test_a_trial_run_again_after_a_kill_starts_its_tensorboard_logs_over(lenet_search,
                                                                          tmp_path):
    directory = tmp_path / "search"
    shutil.copytree(lenet_search.directory, directory)
    last = lenet_search.trials[-1].trial_id
    trial_file = directory / "trials" / f"trial_{last}" / "trial.json"
    trial_file.write_text(json.dumps({**json.loads(trial_file.read_text()), "status": "RUNNING"}))
    oracle_file = directory / "trials" / "oracle.json"
    oracle_file.write_text(json.dumps({**json.loads(oracle_file.read_text()),
                                       "ongoing_trials": {"tuner0": last}}))
    run = directory / "tensorboard" / last / "execution0"
    killed = set(run.rglob("events.*"))  # stand-ins for the interrupted run's logs
    assert killed and search(directory).ran == [last]
    assert not killed & set(run.rglob("events.*"))
    scalars, _ = tensorboard_events(run / "validation")
    assert "epoch_loss" in scalars and all(len(values) == 1 for values in scalars.values())


# -- TensorBoard ----------------------------------------------------------------------------


def tensorboard_events(run: Path):
    """({tag: [value per step]}, {hparams tag: HParamsPluginData}) of one TensorBoard run
    folder (its own event files, not its subfolders')."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(run)).Reload()
    try:
        hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
                   for tag, content in events.PluginTagToContent("hparams").items()}
    except KeyError:  # no hparams data in this folder
        hparams = {}
    scalars = {tag: [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]
               for tag in events.Tags()["tensors"] if not tag.startswith("_hparams_/")}
    return scalars, hparams


def test_a_search_writes_hparams_and_scalars_for_tensorboard_and_resumes(tmp_path, capsys):
    from tensorboard.plugins.hparams import api_pb2

    from keras_cnns.commands import tune

    directory = tmp_path / "search"
    argv = [*TINY_FLAGS, "--max-trials", "1", "--directory", str(directory)]
    assert tune.main(argv) == 0
    board = directory / "tensorboard"
    assert f"tensorboard    tensorboard --logdir {board}\n" in capsys.readouterr().out
    (trial_dir,) = board.iterdir()  # one run per trial, named by its id
    trial = json.loads((directory / "trials" / f"trial_{trial_dir.name}" / "trial.json")
                       .read_text())
    run = trial_dir / "execution0"

    scalars, hparams = tensorboard_events(run)
    assert scalars == {}
    start = hparams["_hparams_/session_start_info"].session_start_info
    assert {k: v.number_value for k, v in start.hparams.items()} == pytest.approx(
        trial["hyperparameters"]["values"])
    assert start.group_name == trial_dir.name
    end = hparams["_hparams_/session_end_info"].session_end_info
    assert api_pb2.Status.Name(end.status) == "STATUS_SUCCESS"
    for split in ("train", "validation"):
        scalars, _ = tensorboard_events(run / split)
        assert {"epoch_loss", "epoch_accuracy"} <= set(scalars)
        assert all(len(values) == 1 for values in scalars.values())  # the trial's one epoch
    observed = trial["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"][0]
    assert scalars["epoch_accuracy"] == [pytest.approx(observed)]

    written = {p: p.stat().st_mtime_ns for p in board.rglob("*")}
    assert tune.main(argv) == 0  # resumed: the finished search writes no new logs
    out = capsys.readouterr().out
    assert "1 trial(s) already finished" in out and f"--logdir {board}\n" in out
    assert {p: p.stat().st_mtime_ns for p in board.rglob("*")} == written


def test_best_json_round_trips_into_training(lenet_search, tmp_path):
    from keras_cnns.export import read_manifest
    from keras_cnns.training import train

    best = lenet_search.best
    config = RunConfig.from_json(lenet_search.directory / "best.json")
    assert config == lenet_search.best_config() == best.config  # trials trained 1 epoch too
    assert (config.dropout, config.width, config.lr) == (
        best.values["dropout"], best.values["width"], best.values["lr"])
    config = dataclasses.replace(config, run_dir=str(tmp_path / "runs"),
                                 output=str(tmp_path / "export"))
    result = train(config, verbose=0)
    manifest = read_manifest(result.export_dir)
    assert manifest["config"]["dropout"] == best.values["dropout"]
    assert manifest["config"]["width"] == best.values["width"]


# -- processes: kill and resume, chief and workers ------------------------------------------


def wait_for_completed_trial(directory: Path, process, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (directory / "trials").glob("trial_*/trial.json"):
            try:
                if json.loads(path.read_text())["status"] == "COMPLETED":
                    return
            except (OSError, ValueError, KeyError):
                pass  # being written
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    pytest.fail("no trial completed in time")


@pytest.mark.slow
def test_killed_search_resumes_without_repeating_trials_then_retrains(tmp_path):
    directory = tmp_path / "search"
    command = [*TUNE, *TINY_FLAGS, "--epochs", "2", "--max-trials", "3", "--directory",
               str(directory), "--run-dir", str(tmp_path / "runs")]
    first = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for_completed_trial(directory, first)
    first.kill()
    first.communicate()
    finished = completed(directory)
    assert 1 <= len(finished) < 3

    second = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    rerun = {f"trial_{trial}" for _, trial in DONE.findall(second.stdout)}
    assert not rerun & set(finished), "a finished trial ran again"
    assert {k: completed(directory)[k] for k in finished} == finished
    assert len(completed(directory)) == 3

    best = json.loads((directory / "best.json").read_text())
    train = subprocess.run([*TRAIN, "--config", str(directory / "best.json"), "--output",
                            str(tmp_path / "export")], cwd=tmp_path, env=env(),
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    for name in ("dropout", "width"):
        assert manifest["config"][name] == best["tuning"]["hyperparameters"][name]


@pytest.mark.slow
@pytest.mark.parametrize("model", list_models())
def test_tune_then_train_best_json_for_one_epoch_then_verify(tmp_path, model):
    """Rows P1c_*: best.json records the training run's recipe warmup (derived, not chosen),
    so `--config best.json --epochs 1` scales it down as `--model` alone would."""
    from keras_cnns.models import get_model_entry

    size = str(max(16, get_model_entry(model).min_image_size))
    tuned = subprocess.run(
        [*TUNE, "--model", model, "--image-size", size, "--tuner", "random", "--max-trials", "1",
         "--epochs", "1", "--no-jit-compile", "--directory", "search"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    best = json.loads((tmp_path / "search" / "best.json").read_text())["config"]
    assert best["warmup_epochs"] >= 1 or best["epochs"] > 1  # the training run's, recorded
    trained = subprocess.run(
        [*TRAIN, "--config", "search/best.json", "--epochs", "1", "--lr", str(best["lr"]),
         "--output", "export"], cwd=tmp_path, env=env(), capture_output=True, text=True,
        timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["config"]["epochs"] == 1 and 0 <= manifest["config"]["warmup_epochs"] < 1
    assert manifest["config"]["dropout"] == best["dropout"]
    verified = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify.py"), "export"],
                              cwd=tmp_path, env=env(), capture_output=True, text=True,
                              timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr
