"""Run directories: `runs/<model>-<dataset>-<UTC stamp>/`, and finding an unfinished one.

A run directory is finished once `metrics.json` is in it, and diverged once `diverged.json` is
(the NaN guard stopped it; it is never resumed). Re-running the identical command (same
RunConfig identity) finds its own unfinished run and continues it from the state kept in
`backup/` (`run_state`). One process at a time works in a run directory: it holds `lock`
(pid and host); a second one is refused, and a lock left by a dead process on this host is
taken over.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
from pathlib import Path

from keras_cnns import files
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.machine import process_alive

CONFIG_FILE = "config.json"
IDENTITY_FILE = "identity.txt"
DONE_FILE = "metrics.json"
BACKUP_DIR = "backup"
LOCK_FILE = "lock"
DIVERGED_FILE = "diverged.json"


def utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def is_finished(run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).exists()


def find_unfinished(config: RunConfig, identity: str) -> Path | None:
    """The newest unfinished run under `config.run_dir` of `identity` (`config.identity()`)."""
    return _newest(config, identity,
                   lambda run_dir: not is_finished(run_dir) and not is_diverged(run_dir))


def find_finished(config: RunConfig, identity: str) -> Path | None:
    """The newest finished run under `config.run_dir` of `identity`: a study reads it back."""
    return _newest(config, identity, is_finished)


def is_diverged(run_dir: Path) -> bool:
    return (run_dir / DIVERGED_FILE).exists()


def latest_diverged(config: RunConfig, identity: str) -> Path | None:
    """The newest run of the identical command that diverged, to say so before starting anew."""
    return _newest(config, identity, is_diverged)


def _newest(config: RunConfig, identity: str, wanted) -> Path | None:
    """The newest run directory under `config.run_dir` of `identity` where `wanted(run_dir)`."""
    root = Path(config.run_dir)
    if not root.is_dir():
        return None
    found = [marker.parent for marker in root.glob(f"*/{IDENTITY_FILE}")
             if _read(marker) == identity and wanted(marker.parent)]
    return max(found, key=lambda p: p.name) if found else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# -- one process per run directory ----------------------------------------------------------------

def acquire_lock(run_dir: Path) -> None:
    """Hold `run_dir/lock` for this process; a live holder is a one-sentence ConfigError.

    The lock names pid and host. One left by a process that no longer runs on this host is
    taken over; one from another host cannot be checked and is refused (delete it by hand).
    """
    path = Path(run_dir) / LOCK_FILE
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is None:
                continue  # released meanwhile
            pid, _, host = holder.partition(" ")
            if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise ConfigError(
                f"Run {run_dir} is in use by process {pid} on host {host or '?'}; wait for it "
                f"to end (or, if it is gone, delete {path})."
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(mine)
        return
    raise ConfigError(f"Could not take the lock {path}; another process keeps changing it.")


def release_lock(run_dir: Path) -> None:
    path = Path(run_dir) / LOCK_FILE
    holder = _read(path)
    if holder is not None and holder.split(" ")[0] == str(os.getpid()):
        path.unlink(missing_ok=True)


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}.")
    return RunConfig.from_json(path)


def resumed_config(config: RunConfig) -> RunConfig:
    """The config that `--resume RUN` (`config.resume`) continues: the one RUN records, its data
    set and export path included, with `resume` kept. Refuses a run that cannot be resumed, and
    an `--output` other than the run's."""
    run_dir = Path(config.resume)
    if not run_dir.is_dir():
        raise ConfigError(
            f"Run directory {run_dir} does not exist; there is nothing to resume."
        )
    if is_finished(run_dir):
        raise ConfigError(f"Run {run_dir} already finished; there is nothing to resume.")
    if is_diverged(run_dir):
        raise ConfigError(
            f"Run {run_dir} diverged (see its {DIVERGED_FILE}) and is never resumed; start "
            "a new run with a lower --lr."
        )
    saved = load_run_config(run_dir)
    if config.output and saved.output and not _same_path(config.output, saved.output):
        # The run exports where it recorded (it may already have): another --output would be
        # dropped without a word.
        raise ConfigError(
            f"Run {run_dir} exports to {saved.output}, not to --output {config.output}; "
            "leave --output out to resume it."
        )
    return dataclasses.replace(_with_output(saved, run_dir), resume=config.resume)


def prepare_run_dir(config: RunConfig, identity: str, *,
                    writer: bool = True) -> tuple[RunConfig, Path, str]:
    """Choose the run directory of `config`, whose identity is `identity`, and return
    `(config, run_dir, how)`.

    `how` is "new", "resumed" (named with --resume) or "found" (an unfinished
    run of the identical command). The returned config has `output` filled.
    """
    if config.resume:
        run_dir = Path(config.resume)
        resumed = resumed_config(config)
        if writer:
            acquire_lock(run_dir)
        # The run's own record, as an uninterrupted run has it: resume is no part of it.
        return dataclasses.replace(resumed, resume=None), run_dir, "resumed"

    found = find_unfinished(config, identity)
    if found is not None:
        saved = load_run_config(found)
        if writer:
            acquire_lock(found)
        return _with_output(config, found, saved.output), found, "found"

    name = f"{config.model}-{_slug(config.dataset)}-{utc_stamp()}"
    root = Path(config.run_dir)
    run_dir, suffix = root / name, 0
    if writer:
        root.mkdir(parents=True, exist_ok=True)
        while True:  # mkdir, not exists(): two runs started in the same second get two names
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                suffix += 1
                run_dir = root / f"{name}-{suffix}"
        acquire_lock(run_dir)
    config = _with_output(config, run_dir)
    if writer:
        files.write_text(run_dir / CONFIG_FILE, config.to_json())
        files.write_text(run_dir / IDENTITY_FILE, identity + "\n")
    return config, run_dir, "new"


def _same_path(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def _with_output(config: RunConfig, run_dir: Path, output: str | None = None) -> RunConfig:
    if config.output:
        return config
    chosen = output or str(Path("saved_models") / Path(run_dir).name)
    return dataclasses.replace(config, output=chosen)


def read_json(path: Path) -> dict:
    """A small JSON record of this module's (an empty one when it is unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_json(path: Path, payload: dict) -> None:
    """Write `payload` durably (`files.write_text`): the run's DONE_FILE marks it finished, so it
    must be whole or absent."""
    files.write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def mark_diverged(run_dir: Path, epoch: int, loss: float) -> None:
    """Mark `run_dir` as diverged: never resumed, and named when the command is run again."""
    write_json(Path(run_dir) / DIVERGED_FILE, {"epoch": epoch, "loss": repr(float(loss))})
