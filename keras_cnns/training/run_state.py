"""What a resume needs, written so that a kill at any byte of any write leaves a resumable run.

At the end of every epoch the trainer (`fit`'s `EpochCheckpoint` callback, or the multi-worker
loop) commits one state directory, `backup/epoch-NNNN/`:

    state.json      epochs done, the history rows so far, the best validation accuracy (ties
                    broken by the lower validation loss) and its epoch, the early-stopping
                    counter, and the sha256 of variables.npz
    variables.npz   every model variable (dropout's seed-generator states included) and every
                    optimizer variable (its step counter and, with `ema_decay`, the weights'
                    moving average included), in the objects' own order

The directory is written under a temporary name and renamed into place, so it exists only when
complete. A resume takes the newest state whose files check out against their hashes and says
which (an older one when the newest is damaged). The input stream needs no state of its own: it
is a function of (seed, batch index), and the trainer rebuilds it from the first batch of the
epoch it resumes at. Nothing non-finite is ever committed: a state with NaN or infinite
variables is refused, and the run is marked diverged instead (`run_dir.mark_diverged`).

The best weights (`backup/best-NNNN.weights.h5`) are written before the state that names them
and published to `checkpoints/best.weights.h5` after it, so the published file is always the
best of the committed epochs, whatever the moment of a kill.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import files
from keras_cnns.serving.verify_export import (
    COUNT,
    NUMBER,
    POSITIVE_INTEGER,
    SHA256,
    TEXT,
    EachEntry,
    EachItem,
    Maybe,
    check_schema,
    or_null,
)
from keras_cnns.training.ema import averaged_weights

STATE_FILE = "state.json"
VARIABLES_FILE = "variables.npz"
BEST_FILE = Path("checkpoints") / "best.weights.h5"
HISTORY_FILE = "history.csv"
KEEP_STATES = 2


@dataclasses.dataclass
class RunState:
    """The part of a run that is not a variable: where it is, and what it has seen."""

    epochs_done: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_value: float | None = None
    best_epoch: int | None = None  # 1-based, as printed
    epochs_without_gain: int = 0
    batch_shards: int = 0  # what the run computes depends on it (training/sharding.py)


def improves(state: RunState, accuracy: float, loss: float | None) -> bool:
    """Whether an epoch with this validation accuracy and loss is the new best: a higher
    accuracy, or the same accuracy at a lower loss. Small validation splits saturate (the
    digits' 180 images reach 100% within a few epochs), and without the tie-break the best
    checkpoint would stay at the first epoch that got there, mid-schedule."""
    if state.best_value is None or accuracy > state.best_value:
        return True
    if (accuracy < state.best_value or loss is None or state.best_epoch is None
            or state.best_epoch > len(state.history)):
        return False
    best_loss = state.history[state.best_epoch - 1].get("val_loss")
    return best_loss is not None and loss < best_loss


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- variables -----------------------------------------------------------------------------------

def _variables(model, optimizer) -> list:
    return [*model.variables, *(optimizer.variables if optimizer is not None else [])]


def _to_numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def capture(model, optimizer) -> list[np.ndarray]:
    return [_to_numpy(v) for v in _variables(model, optimizer)]


def all_finite(arrays: list[np.ndarray]) -> bool:
    return all(
        np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating)
    )


def _npz_bytes(arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"v{i:05d}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def _assign(model, optimizer, arrays: list[np.ndarray]) -> None:
    variables = _variables(model, optimizer)
    if len(variables) != len(arrays):
        raise ValueError(f"{len(arrays)} saved variables for {len(variables)} in the model")
    for variable, value in zip(variables, arrays, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"saved shape {value.shape} for {variable.path} {variable.shape}")
    for variable, value in zip(variables, arrays, strict=True):
        variable.assign(value)


# -- committing and finding states ---------------------------------------------------------------

def state_dirs(backup: Path) -> list[Path]:
    """Committed state directories, newest first."""
    if not backup.is_dir():
        return []
    found = [p for p in backup.glob("epoch-*") if p.is_dir() and p.name[6:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[6:]), reverse=True)


def commit(backup: Path, state: RunState, arrays: list[np.ndarray]) -> Path:
    """Write `state` and `arrays` as `backup/epoch-NNNN/`, atomically; prune older states."""
    backup.mkdir(parents=True, exist_ok=True)
    target = backup / f"epoch-{state.epochs_done:04d}"
    tmp = files.temporary_sibling(target)
    tmp.mkdir()
    payload = _npz_bytes(arrays)
    (tmp / VARIABLES_FILE).write_bytes(payload)
    files.reach("state")
    record = {**dataclasses.asdict(state), "variables_sha256": sha256_bytes(payload),
              "variables": len(arrays)}
    (tmp / STATE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    if target.exists():  # an epoch redone after a kill between this rename and the next commit
        shutil.rmtree(target)
    files.commit(tmp, target)  # fsyncs both files before the directory appears
    _prune(backup, state)
    return target


def _prune(backup: Path, state: RunState) -> None:
    kept = state_dirs(backup)[:KEEP_STATES]
    for old in state_dirs(backup)[KEEP_STATES:]:
        shutil.rmtree(old, ignore_errors=True)
    wanted = {best_weights_path(backup, _best_epoch(state_dir)).name for state_dir in kept}
    wanted.add(best_weights_path(backup, state.best_epoch).name)
    for best in backup.glob("best-*.weights.h5"):
        if best.name not in wanted:
            best.unlink(missing_ok=True)
    for stale in backup.glob(".*.tmp-*"):  # left by a kill mid-write
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _best_epoch(directory: Path) -> int | None:
    try:
        return json.loads((directory / STATE_FILE).read_text()).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        return None


# What a resume reads from state.json; the fields under Maybe came later, so older states lack
# them and take their RunState defaults.
STATE_SCHEMA = {
    "epochs_done": COUNT,
    "history": EachItem(EachEntry(TEXT, NUMBER)),
    "best_value": Maybe(or_null(NUMBER)),
    "best_epoch": Maybe(or_null(POSITIVE_INTEGER)),
    "epochs_without_gain": Maybe(COUNT),
    "batch_shards": Maybe(COUNT),
    "variables_sha256": SHA256,
}


class DamagedStateError(Exception):
    """Why a committed state cannot be resumed from, in one sentence."""


def _read_state(directory: Path) -> RunState:
    """The state committed in `directory`, checked against STATE_SCHEMA and its variables'
    sha256; else DamagedStateError."""
    try:
        record = json.loads((directory / STATE_FILE).read_text())
        payload = (directory / VARIABLES_FILE).read_bytes()
    except FileNotFoundError as error:
        raise DamagedStateError(f"{Path(error.filename).name} is missing.") from None
    except (OSError, ValueError):
        raise DamagedStateError(f"{STATE_FILE} is not readable JSON.") from None
    check_schema(record, STATE_SCHEMA, STATE_FILE, DamagedStateError)
    if sha256_bytes(payload) != record["variables_sha256"]:
        raise DamagedStateError(f"{VARIABLES_FILE} does not match its sha256 in {STATE_FILE}.")
    fields = {f.name for f in dataclasses.fields(RunState)}
    return RunState(**{k: v for k, v in record.items() if k in fields})


def best_weights_path(backup: Path, epoch: int | None) -> Path:
    return backup / f"best-{epoch or 0:04d}.weights.h5"


def restore(backup: Path, model, optimizer) -> tuple[RunState | None, str]:
    """Load the newest intact state into `model` and `optimizer`; returns it and what was done.

    States that cannot be read, fail STATE_SCHEMA or their hash, or whose best weights are
    missing are passed over (each named in the message with what is wrong); with none left the
    run starts from scratch.
    """
    passed_over = []
    for directory in state_dirs(backup):
        try:
            state = _read_state(directory)
        except DamagedStateError as damage:
            passed_over.append(f"{directory.name} ({str(damage).rstrip('.')})")
            continue
        best = best_weights_path(backup, state.best_epoch)
        if state.best_epoch is not None and not best.is_file():
            passed_over.append(f"{directory.name} ({best.name} is missing)")
            continue
        with np.load(directory / VARIABLES_FILE) as saved:
            arrays = [saved[key] for key in sorted(saved.files)]
        try:
            _assign(model, optimizer, arrays)
        except ValueError as error:
            passed_over.append(f"{directory.name} ({error})")
            continue
        note = f"restored the state after epoch {state.epochs_done} ({backup / directory.name})"
        if passed_over:
            note += f"; passed over damaged {', '.join(passed_over)}"
        return state, note
    if passed_over:
        return None, f"no intact state (damaged: {', '.join(passed_over)}); starting from epoch 1"
    return None, "no saved state; starting from epoch 1"


# -- the epoch's end, shared by both training paths ----------------------------------------------

class EpochRecorder:
    """Keeps the history, the best checkpoint and early stopping, and commits each epoch.

    `chief` decides whether this process writes the run directory's public files (history.csv,
    checkpoints/); every process commits its own state to `backup`.
    """

    def __init__(self, run_dir: Path, backup: Path, *, patience: int = 0, chief: bool = True,
                 state: RunState | None = None, ema: bool = False):
        self.run_dir, self.backup, self.patience, self.chief = run_dir, backup, patience, chief
        self.ema = ema  # the best checkpoint holds the optimizer's moving average (ema.py)
        self.state = state or RunState()
        if self.chief:
            self._publish()

    def end_epoch(self, epoch: int, logs: dict[str, Any], model, optimizer) -> bool:
        """Record epoch `epoch` (0-based); returns True when training should stop early.

        Raises `NonFiniteStateError` instead of committing NaN or infinite variables.
        """
        arrays = capture(model, optimizer)
        row = {"epoch": epoch, **{k: float(v) for k, v in sorted(logs.items())}}
        if not all_finite(arrays) or not all(math.isfinite(v) for v in row.values()):
            raise NonFiniteStateError(epoch + 1, row.get("loss", float("nan")))
        state = dataclasses.replace(self.state, epochs_done=epoch + 1,
                                    history=[*self.state.history, row])
        value = row.get("val_accuracy")
        if value is not None and improves(state, value, row.get("val_loss")):
            state.best_value, state.best_epoch, state.epochs_without_gain = value, epoch + 1, 0
            best = best_weights_path(self.backup, epoch + 1)
            self.backup.mkdir(parents=True, exist_ok=True)
            with files.replacing(best) as temporary, averaged_weights(
                    model, optimizer, enabled=self.ema):
                model.save_weights(temporary)
                files.reach("best")
        else:
            state.epochs_without_gain += 1
        commit(self.backup, state, arrays)
        self.state = state
        if self.chief:
            self._publish()
        return bool(self.patience) and state.epochs_without_gain >= self.patience

    def _publish(self) -> None:
        """history.csv and checkpoints/best.weights.h5 as the committed state has them."""
        write_history(self.run_dir / HISTORY_FILE, self.state.history)
        if self.state.best_epoch is not None:
            (self.run_dir / BEST_FILE).parent.mkdir(parents=True, exist_ok=True)
            with files.replacing(self.run_dir / BEST_FILE) as temporary:
                shutil.copyfile(best_weights_path(self.backup, self.state.best_epoch), temporary)


class NonFiniteStateError(RuntimeError):
    def __init__(self, epoch: int, loss: float):
        super().__init__(f"non-finite state after epoch {epoch}")
        self.epoch, self.loss = epoch, loss


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    if not rows:
        if path.exists():
            path.unlink()
        return
    names = ["epoch", *sorted({k for row in rows for k in row} - {"epoch"})]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    files.write_text(path, buffer.getvalue())
