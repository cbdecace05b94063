"""A search directory's record of what it searches (`search.json`), its claim before a search
starts there (a saved search keras-tuner could not reload is refused), and keras-tuner's
distributed roles: which process is the chief, and a worker's check that it runs the chief's
search. Re-running a different command in a directory, or starting a worker whose command
differs from the chief's, is refused instead of mixing two searches.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keras_cnns import files
from keras_cnns.config import (
    PLACEMENT_FIELDS,
    ConfigError,
    RunConfig,
    read_json_file,
    with_later_fields,
)
from keras_cnns.serving.verify_export import TEXT, check_schema
from keras_cnns.tuning.space import SearchSpace

SEARCH_FILE = "search.json"
PROJECT = "trials"  # keras-tuner's project folder: oracle state, one trial_NN/ per trial
# keras-tuner gives the TensorBoard callback passed to search() a folder per trial under it
# and adds the HParams plugin's callback (Tuner._configure_tensorboard_dir).
TENSORBOARD = "tensorboard"
# Written by report.py; removed with --overwrite so that no stale result outlives its search.
OUTPUT_FILES = ("best.json", "results.csv", "results.png")
# What difference compares; an empty dict is any object.
SEARCH_SCHEMA = {"tuner": TEXT, "space": {}, "config": {}}
# The KERASTUNER_TUNER_ID of the process that serves the oracle (keras-tuner's documented id).
CHIEF_ID = "chief"
# How long a worker waits for the chief's search.json: as long as keras-tuner's workers wait
# for the chief's oracle (keras_tuner/src/distribute/oracle_client.py TIMEOUT), so that start
# order still does not matter.
CHIEF_WAIT_SECONDS = 60 * 60


def role() -> str:
    """This process's part in keras-tuner's distributed mode: single, chief or worker."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not os.environ.get(name):
            raise ConfigError(f"KERASTUNER_ORACLE_IP is set but {name} is not.")
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    if tuner_id == CHIEF_ID:
        return "chief"
    if CHIEF_ID in tuner_id:
        # keras-tuner serves the oracle from any id that contains "chief"
        # (distribute/utils.is_chief_oracle): a second oracle, not a worker.
        raise ConfigError(
            f"KERASTUNER_TUNER_ID {tuner_id!r} contains {CHIEF_ID!r}, which keras-tuner "
            f"reserves for the chief: name the chief exactly {CHIEF_ID!r} and each worker "
            "without it (worker0, worker1, ...)."
        )
    return "worker"


def search_identity(config: RunConfig, space: SearchSpace, tuner: str) -> dict[str, Any]:
    return {"tuner": tuner, "space": space.to_dict(), "config": _searched(config.to_dict())}


def _searched(fields: dict[str, Any]) -> dict[str, Any]:
    """The config fields that say what is searched (a search.json written before onnx, tflite
    and tflite_quantize were left out still holds them: they are ignored there too; one written
    before a later field existed searched with it off)."""
    return {k: v for k, v in with_later_fields(fields).items() if k not in PLACEMENT_FIELDS}


def recorded_identity(path: Path) -> dict[str, Any]:
    """What the search.json at `path` says is searched, checked against SEARCH_SCHEMA; else a
    ConfigError naming the file and the field."""
    try:
        found = read_json_file(path, "Search record")
        check_schema(found, SEARCH_SCHEMA, str(path), ConfigError)
    except ConfigError as error:
        raise ConfigError(f"{str(error).removesuffix('.')}; start over with --overwrite, or "
                          "choose another --directory.") from None
    found["config"] = _searched(found["config"])
    return found


def join_chiefs_search(directory: Path, config, space, tuner: str, log: Callable) -> None:
    """Refuse to work for a chief that searches something else than this worker's command.

    The chief writes search.json before it serves the oracle; a worker started first waits
    for it, as keras-tuner's workers wait for the oracle.
    """
    path = directory / SEARCH_FILE
    deadline = time.monotonic() + CHIEF_WAIT_SECONDS
    if not path.exists():
        log(f"Waiting for the chief's {path} (up to {CHIEF_WAIT_SECONDS / 60:g} min).")
    while not path.exists():
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"No chief wrote {path} within {CHIEF_WAIT_SECONDS / 60:g} min; start the chief "
                f"with this --directory, or copy its {SEARCH_FILE} there when its directory "
                "is on another machine."
            )
        time.sleep(0.5)
    wanted = search_identity(config, space, tuner)
    found = recorded_identity(path)
    if found != wanted:
        raise ConfigError(
            f"This worker's command searches something else than the chief's in {directory} "
            f"({difference(found, wanted)}); start every worker with the chief's command."
        )


def difference(found, wanted) -> str:
    if found["tuner"] != wanted["tuner"]:
        return f"tuner {found['tuner']} there, {wanted['tuner']} here"
    if found["space"] != wanted["space"]:
        return "a different search space"
    theirs = found["config"]
    for key, value in wanted["config"].items():
        if theirs.get(key) != value:
            return f"{key} {theirs.get(key)!r} there, {value!r} here"
    return "different settings"


def check_saved_trials(project: Path) -> None:
    """Refuse, before anything is written, a saved search keras-tuner could not reload: its
    reload parses these files unchecked (oracle.json, the tuner's own, every trial.json), so a
    damaged one would end in a JSONDecodeError traceback."""
    for path in [*sorted(project.glob("*.json")), *sorted(project.glob("trial_*/trial.json"))]:
        try:
            state = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problem = f"is not valid JSON ({error})"
        else:
            if isinstance(state, dict):
                continue
            problem = "is not a JSON object"
        raise ConfigError(f"The search in {project.parent} cannot be resumed: keras-tuner's "
                          f"{path} {problem}; start over with --overwrite, or choose another "
                          "--directory.")


def claim_directory(directory: Path, config, space, tuner: str, overwrite: bool) -> None:
    """Record what `directory` searches; refuse a different search there unless overwriting."""
    path = directory / SEARCH_FILE
    wanted = search_identity(config, space, tuner)
    if overwrite:
        for name in OUTPUT_FILES:
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(directory / PROJECT, ignore_errors=True)
        shutil.rmtree(directory / TENSORBOARD, ignore_errors=True)
    elif path.exists():
        found = recorded_identity(path)
        if found != wanted:
            raise ConfigError(
                f"{directory} holds another search ({difference(found, wanted)}); "
                "re-run its command to resume it, pass --overwrite to start over, "
                "or choose another --directory."
            )
        return
    directory.mkdir(parents=True, exist_ok=True)
    files.write_text(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
