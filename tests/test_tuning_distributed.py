"""keras-tuner's distributed mode: which process is the chief, a worker that joins only the
chief's own command, waits for a chief that starts later and gives up on none, and a chief with
two workers on 127.0.0.1 sharing the trials."""

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from tuning_helpers import (
    DONE,
    TINY_FLAGS,
    TUNE,
    completed,
    env,
    tiny_config,
)

from keras_cnns import tuning
from keras_cnns.config import ConfigError


def as_tuner(monkeypatch, tuner_id: str) -> None:
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner_id)


@pytest.mark.parametrize(("tuner_id", "part"),
                         [("chief", "chief"), ("worker0", "worker"), ("tuner1", "worker")])
def test_the_chief_is_the_id_chief_and_every_other_id_a_worker(monkeypatch, tuner_id, part):
    as_tuner(monkeypatch, tuner_id)
    assert tuning.role() == part


@pytest.mark.parametrize("tuner_id", ["chief0", "mischief", "not-the-chief"])
def test_an_id_that_keras_tuner_would_also_make_a_chief_is_refused(monkeypatch, tuner_id):
    as_tuner(monkeypatch, tuner_id)
    with pytest.raises(ConfigError, match="reserves for the chief") as error:
        tuning.role()
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and repr(tuner_id) in message


class JoinedTheSearchError(Exception):
    """Raised where a worker would start asking the chief's oracle for trials."""


@pytest.fixture
def worker(monkeypatch):
    """This process as worker0, stopped where it would connect to the chief; its log lines."""
    as_tuner(monkeypatch, "worker0")

    def joined(*args, **kwargs):
        raise JoinedTheSearchError

    monkeypatch.setattr(tuning.search, "make_tuner", joined)
    return []


def work(directory, log, config=None, space=None, tuner="random", epochs=1):
    return tuning.run_search(config or tiny_config("lenet"),
                             space or tuning.default_space("lenet"), directory=directory,
                             tuner=tuner, max_trials=2, epochs=epochs, log=log.append)


def chiefs_directory(lenet_search, tmp_path) -> Path:
    """A directory holding what a chief running `search()`'s command records."""
    directory = tmp_path / "shared"
    directory.mkdir()
    shutil.copy(lenet_search.directory / tuning.search_record.SEARCH_FILE, directory)
    return directory


def test_a_worker_with_the_chiefs_command_joins(worker, lenet_search, tmp_path):
    with pytest.raises(JoinedTheSearchError):
        work(chiefs_directory(lenet_search, tmp_path), worker)


@pytest.mark.parametrize(("change", "difference"), [
    (dict(config=tiny_config("lenet", seed=5)), "seed 0 there, 5 here"),
    (dict(tuner="bayesian"), "tuner random there, bayesian here"),
    (dict(space=tuning.space_from_dict({"dropout": {"min": 0.0, "max": 0.5, "step": 0.1}})),
     "a different search space"),
    (dict(epochs=2), "epochs 1 there, 2 here"),
])
def test_a_worker_with_another_command_is_refused(worker, lenet_search, tmp_path, change,
                                                  difference):
    with pytest.raises(ConfigError, match="start every worker with the chief's command") as error:
        work(chiefs_directory(lenet_search, tmp_path), worker, **change)
    message = str(error.value)
    assert difference in message and "\n" not in message and message.endswith(".")


def test_a_worker_waits_for_a_chief_that_starts_later(worker, lenet_search, tmp_path,
                                                      monkeypatch):
    import threading

    monkeypatch.setattr(tuning.search_record, "CHIEF_WAIT_SECONDS", 120)
    directory = tmp_path / "shared"
    chief = threading.Timer(2.0, chiefs_directory, (lenet_search, tmp_path))
    chief.start()
    try:
        with pytest.raises(JoinedTheSearchError):
            work(directory, worker)
    finally:
        chief.cancel()
    assert any(line.startswith("Waiting for the chief's") for line in worker), worker


def test_a_worker_without_a_chief_gives_up_in_one_sentence(worker, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning.search_record, "CHIEF_WAIT_SECONDS", 1)
    with pytest.raises(ConfigError, match="No chief wrote") as error:
        work(tmp_path / "nobody", worker)
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and "search.json" in message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_share_the_trials(tmp_path):
    directory = tmp_path / "search"
    command = [*TUNE, *TINY_FLAGS, "--max-trials", "4", "--directory", str(directory)]
    oracle = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    processes = {
        name: subprocess.Popen(command, cwd=tmp_path, env=env(KERASTUNER_TUNER_ID=name, **oracle),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("chief", "worker0", "worker1")
    }
    outputs = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=400)
            assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
            outputs[name] = stdout
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    ran = [trial for name in ("worker0", "worker1") for _, trial in DONE.findall(outputs[name])]
    assert len(ran) == len(set(ran)) == 4, "a trial ran twice, or not at all"
    assert not DONE.findall(outputs["chief"]), "the chief runs only the oracle"
    best = json.loads((directory / "best.json").read_text())
    assert best["tuning"]["completed"] == 4 and best["tuning"]["trial"] in ran
    assert len(completed(directory)) == 4

    # A chief re-run on the finished search reports it and exits, waiting for no worker.
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env=env(KERASTUNER_TUNER_ID="chief", **oracle))
    assert again.returncode == 0, again.stderr
    assert "4 trial(s) already finished" in again.stdout and (directory / "best.json").exists()
