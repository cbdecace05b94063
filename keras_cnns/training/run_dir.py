"""Run directories: `runs/<model>-<dataset>-<UTC stamp>/`, and finding an unfinished one.

A run directory is finished once `metrics.json` is in it. Re-running the
identical command (same RunConfig identity) finds its own unfinished run and
continues it from the BackupAndRestore state kept in `backup/`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from keras_cnns.config import ConfigError, RunConfig

CONFIG_FILE = "config.json"
IDENTITY_FILE = "identity.txt"
DONE_FILE = "metrics.json"
BACKUP_DIR = "backup"


def utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def is_finished(run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).exists()


def find_unfinished(config: RunConfig) -> Path | None:
    """The newest unfinished run under `config.run_dir` whose identity matches `config`."""
    root = Path(config.run_dir)
    if not root.is_dir():
        return None
    identity = config.identity()
    candidates = []
    for marker in root.glob(f"*/{IDENTITY_FILE}"):
        run_dir = marker.parent
        if marker.read_text().strip() == identity and not is_finished(run_dir):
            candidates.append(run_dir)
    return max(candidates, key=lambda p: p.name) if candidates else None


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}.")
    return RunConfig.from_json(path)


def prepare_run_dir(config: RunConfig, *, writer: bool = True) -> tuple[RunConfig, Path, str]:
    """Choose the run directory and return `(config, run_dir, how)`.

    `how` is "new", "resumed" (named with --resume) or "found" (an unfinished
    run of the identical command). The returned config has `output` filled.
    """
    if config.resume:
        # `--resume RUN` continues exactly the run that directory records.
        run_dir = Path(config.resume)
        if not run_dir.is_dir():
            raise ConfigError(
                f"Run directory {run_dir} does not exist; there is nothing to resume."
            )
        if is_finished(run_dir):
            raise ConfigError(f"Run {run_dir} already finished; there is nothing to resume.")
        saved = load_run_config(run_dir)
        return _with_output(saved, run_dir), run_dir, "resumed"

    found = find_unfinished(config)
    if found is not None:
        saved = load_run_config(found)
        return _with_output(config, found, saved.output), found, "found"

    stamp = utc_stamp()
    name = f"{config.model}-{_slug(config.dataset)}-{stamp}"
    run_dir = Path(config.run_dir) / name
    suffix = 1
    while run_dir.exists():
        run_dir = Path(config.run_dir) / f"{name}-{suffix}"
        suffix += 1
    config = _with_output(config, run_dir)
    if writer:
        run_dir.mkdir(parents=True)
        config.to_json(run_dir / CONFIG_FILE)
        (run_dir / IDENTITY_FILE).write_text(config.identity() + "\n")
    return config, run_dir, "new"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def _with_output(config: RunConfig, run_dir: Path, output: str | None = None) -> RunConfig:
    if config.output:
        return config
    chosen = output or str(Path("saved_models") / Path(run_dir).name)
    return dataclasses.replace(config, output=chosen)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
