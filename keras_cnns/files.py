"""The one durable write, and the kill points that test it.

Every file a later step reads (a run's config, state and best checkpoint, metrics, an export and
its manifest, tuning and ablation results, benchmark reports, predictions) is written through
`write_text`, `write_bytes` or `replacing`: into a hidden temporary sibling, flushed and fsynced,
renamed onto its target, and the directory fsynced. The target then holds its old content or its
new content, never part of either: after SIGKILL at any moment (tests/test_files.py kills a
writer at random moments) and after a power cut as far as the filesystem keeps fsync's promise.
A write that fails removes its temporary and leaves the target as it was; one killed outright
leaves only its temporary (named by `temporary_sibling`, so the owner can sweep it).

`KERAS_CNNS_KILL_AT=state:3` sends SIGKILL to this process the third time it reaches the point
named `state`. The points sit where a kill is most harmful: inside an epoch (`batch`), between
the files of a state commit (`state`) and of a best checkpoint (`best`), during evaluation
(`evaluate`), before an export's final rename (`export`) and between the export and the
`metrics.json` that marks the run finished (`exported`). Unset, `reach` costs a dictionary
lookup. tests/test_resume.py kills runs at each point and checks that the identical command then
ends exactly where the uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

ENV = "KERAS_CNNS_KILL_AT"
_arrivals: dict[str, int] = {}


def write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8, newlines as given), durably: all or nothing."""
    write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data`, durably: all or nothing."""
    with replacing(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` for other code to write (a file or a directory);
    on a clean exit it replaces `path` (`commit`), on an exception it is removed.

        with files.replacing(best) as temporary:
            model.save_weights(temporary)
    """
    temporary = temporary_sibling(path)
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise
    commit(temporary, path)


def commit(temporary: str | Path, target: str | Path) -> None:
    """Move the finished file or directory `temporary` onto `target` durably: fsync its data
    (every file and folder of a directory), rename, fsync the parent directory.

    A directory replaces only an absent or empty `target` (rename's rule), so an export never
    lands on another. On failure `temporary` is removed and `target` left as it was.
    """
    temporary, target = Path(temporary), Path(target)
    try:
        _fsync_tree(temporary)
        os.replace(temporary, target)
    except BaseException:
        _remove(temporary)
        raise
    _fsync(target.parent)


def temporary_sibling(path: str | Path) -> Path:
    """A hidden, unique name beside `path`: `.<stem>.tmp-<pid>-<8 hex><endings>`.

    It keeps the endings because writers pick their format by them (Keras' save_weights insists
    on `.weights.h5`, numpy adds `.npz` where it is missing, matplotlib reads `.png`).
    """
    path = Path(path)
    endings = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(endings)]
    return path.with_name(f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{endings}")


def _fsync_tree(path: Path) -> None:
    if not path.is_dir():
        _fsync(path)
        return
    for folder, _, names in os.walk(path):
        for name in names:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _fsync(path: Path) -> None:
    # A read-only descriptor suffices on Linux, and is the only kind a directory opens with.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def reach(point: str) -> None:
    """SIGKILL this process at the configured arrival at `point` (module docstring)."""
    target = os.environ.get(ENV)
    if not target:
        return
    name, _, count = target.partition(":")
    if name != point:
        return
    _arrivals[point] = _arrivals.get(point, 0) + 1
    if _arrivals[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
