"""The export directory: its file names, atomic writing and amending, the manifest, provenance.

Every other module of `keras_cnns.export` builds on this one, which imports none of them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns import files
from keras_cnns.machine import cpu_facts, process_alive
from keras_cnns.serving import verify_export as verify

FORMAT_VERSION = verify.FORMAT_VERSION  # the one the manifest schema accepts
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.keras"
TEST_SET_FILE = "test_set.npz"
GOLDEN_FILE = "golden.npz"
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"
# Fixed, recorded batch size: the same images in another batching may differ in the last bit.
EVAL_BATCH_SIZE = 256


class ExportError(RuntimeError):
    """An export that cannot be written or read; the message is one sentence."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_default(value):
    # Metrics often carry numpy scalars (np.float32 is not a float subclass).
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=json_default) + "\n"


def versions() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    import keras_cnns

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "keras_cnns": keras_cnns.__version__,
        **_git_state(),
    }


def hardware() -> dict[str, Any]:
    import tensorflow as tf

    cpu_model, cpu_isa = cpu_facts()
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model,
        "cpu_isa": cpu_isa,
        "cpu_count": os.cpu_count(),
        # What this process may use (taskset, a container's cpuset): the automatic batch shards
        # follow it.
        "usable_cpu_count": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                             else os.cpu_count()),
        "gpus": [
            tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")
        ],
    }


def _git_state() -> dict[str, Any]:
    """The commit of this project's checkout that the package runs from, and whether the
    checkout has uncommitted changes; None for both when the package is not in one (a wheel,
    or a venv inside another repository, whose HEAD says nothing about this code)."""
    package = Path(__file__).resolve().parents[1]
    unknown = {"git_commit": None, "git_dirty": None}

    def git(*args) -> str | None:
        result = subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                                text=True, timeout=5, check=False)
        return result.stdout if result.returncode == 0 else None

    try:
        top = Path((git("rev-parse", "--show-toplevel") or "").strip() or package.anchor)
        pyproject = top / "pyproject.toml"
        ours = (package == top / "keras_cnns" and pyproject.is_file()
                and re.search(r'^name\s*=\s*"keras_cnns"', pyproject.read_text(), re.M)
                and git("ls-files", "--error-unmatch", "__init__.py") is not None)
        commit = git("rev-parse", "HEAD") if ours else None
        status = git("status", "--porcelain") if commit else None
    except (OSError, UnicodeDecodeError, subprocess.SubprocessError):
        return unknown
    if not commit or status is None:
        return unknown
    return {"git_commit": commit.strip(), "git_dirty": bool(status.strip())}


def write_export(output: str | Path, write_contents: Callable[[Path], dict[str, Any]]) -> Path:
    """Write an export directory atomically.

    `write_contents(tmp_dir)` writes the export's files into `tmp_dir` and
    returns the manifest (without `files`); the file hashes are added here.
    """
    output = Path(output)
    if output.exists():
        raise ExportError(f"Export path {output} already exists; choose another --output.")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export's folder {output.parent}: "
                          f"{error.strerror or error}.") from None
    remove_stale_exports(output.parent)
    # Not mkdtemp: its directory is private, and an export is meant to be read by servers too;
    # mkdir applies the umask, and fails rather than share a name.
    tmp_dir = files.temporary_sibling(output)
    try:
        tmp_dir.mkdir()
    except OSError as error:
        raise ExportError(f"Cannot write into {output.parent}: {error.strerror or error}.") \
            from None
    try:
        manifest = write_contents(tmp_dir)
        manifest["files"] = {
            path.relative_to(tmp_dir).as_posix(): sha256_file(path)
            for path in sorted(tmp_dir.rglob("*"))
            if path.is_file()
        }
        (tmp_dir / MANIFEST_FILE).write_text(manifest_text(manifest))
        files.reach("export")
        # Fails if a non-empty `output` appeared meanwhile (an empty one is replaced, which
        # loses nothing).
        files.commit(tmp_dir, output)
    except OSError as error:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ExportError(
                f"The disk filled up while writing the export {output}; nothing was kept. Free "
                "some space and run the same command again: the finished run only exports."
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return output


_TEMPORARY_EXPORT = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]{8}(\..*)?$")  # files.temporary_sibling


def remove_stale_exports(parent: Path) -> list[Path]:
    """Delete the temporary folders that exports killed outright left in `parent`.

    A folder is stale when the process its name records no longer runs on this host. (On a
    filesystem shared between hosts, give each host its own export folder: a pid from another
    host cannot be checked here.) Returns them, and says so on stdout.
    """
    removed = []
    for path in Path(parent).glob(".*.tmp-*"):
        match = _TEMPORARY_EXPORT.match(path.name)
        if match and path.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            print(f"Removed {path}, the unfinished export of process {match.group(1)}, which "
                  "no longer runs.", flush=True)
    return removed


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The export's manifest, refused in one sentence unless it meets the manifest schema
    (keras_cnns.serving.verify_export's: verify and every reader of an export apply the one)."""
    return verify.read_manifest(Path(export_dir), error=ExportError)


def add_file(export_dir: str | Path, written: Path, name: str, section: dict) -> None:
    """Move the finished file `written` into the export as `name` and record it in the manifest
    (its `files` hash and the top-level `section` under `name`'s format key, e.g. `onnx`).

    The file goes first, then the manifest that lists it. If the manifest cannot be replaced,
    the file `name` had before (or its absence) is restored: the export stays as it was or
    gains both. (Only a kill between the two renames leaves the new file beside the old
    manifest, which verification then names.)
    """
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    key = Path(name).suffix.lstrip(".")
    hashes = dict(manifest.get("files") or {})
    hashes[name] = sha256_file(written)
    manifest = {**manifest, "files": dict(sorted(hashes.items())), key: section}
    target = export_dir / name
    new_manifest = files.temporary_sibling(export_dir / MANIFEST_FILE)
    previous = files.temporary_sibling(target)
    try:
        new_manifest.write_text(manifest_text(manifest))
        if target.exists():
            os.link(target, previous)  # a second name for the old file, to put it back
        files.commit(written, target)
        try:
            files.commit(new_manifest, export_dir / MANIFEST_FILE)
        except BaseException:
            if previous.exists():
                os.replace(previous, target)
            else:
                target.unlink(missing_ok=True)
            raise
    finally:
        new_manifest.unlink(missing_ok=True)
        previous.unlink(missing_ok=True)
