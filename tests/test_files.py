"""The durable write (`keras_cnns.files`): all or nothing, fsynced, even under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_cnns import files


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_text_and_bytes_replace_the_target_and_leave_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old\n")
    files.write_text(target, "new\r\nline é\n")
    assert target.read_bytes() == "new\r\nline é\n".encode()
    files.write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert hidden(tmp_path) == []


def test_an_exception_mid_write_keeps_the_old_target_and_removes_the_temporary(tmp_path):
    target = tmp_path / "best.weights.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), files.replacing(target) as temporary:
        temporary.write_bytes(b"half of the ne")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert hidden(tmp_path) == []


def test_a_failed_rename_keeps_the_old_target_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    target.write_text("old")

    def no_rename(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="No space"):
        files.write_text(target, "new")
    assert target.read_text() == "old"
    assert hidden(tmp_path) == []


def record_fsyncs(monkeypatch) -> list[str]:
    """The paths os.fsync is called on, in order, from now on."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_the_file_and_then_its_directory_are_fsynced(tmp_path, monkeypatch):
    synced = record_fsyncs(monkeypatch)
    (tmp_path / "runs").mkdir()
    files.write_text(tmp_path / "runs" / "metrics.json", "{}\n")
    assert len(synced) == 2
    assert Path(synced[0]).parent == tmp_path / "runs"
    assert Path(synced[0]).name.startswith(".metrics.tmp-")  # the data, before the rename
    assert synced[1] == str(tmp_path / "runs")  # the rename itself


def test_a_committed_directory_has_every_file_and_folder_fsynced(tmp_path, monkeypatch):
    temporary = files.temporary_sibling(tmp_path / "export")
    (temporary / "variables").mkdir(parents=True)
    (temporary / "manifest.json").write_text("{}")
    (temporary / "variables" / "data").write_bytes(b"x")
    synced = record_fsyncs(monkeypatch)
    files.commit(temporary, tmp_path / "export")
    names = {Path(path).relative_to(tmp_path).as_posix().replace(temporary.name, "T")
             for path in synced}
    assert names == {"T", "T/manifest.json", "T/variables", "T/variables/data", "."}
    assert (tmp_path / "export" / "variables" / "data").read_bytes() == b"x"
    assert hidden(tmp_path) == []


def test_a_directory_never_replaces_a_non_empty_one(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.keras").write_text("earlier")
    with pytest.raises(OSError), files.replacing(tmp_path / "export") as temporary:
        temporary.mkdir()
        (temporary / "model.keras").write_text("later")
    assert (tmp_path / "export" / "model.keras").read_text() == "earlier"
    assert hidden(tmp_path) == []


def test_temporary_siblings_are_hidden_unique_and_keep_the_endings(tmp_path):
    first = files.temporary_sibling(tmp_path / "best-0003.weights.h5")
    second = files.temporary_sibling(tmp_path / "best-0003.weights.h5")
    assert first != second and first.parent == tmp_path
    assert first.name.startswith(f".best-0003.tmp-{os.getpid()}-")
    assert first.name.endswith(".weights.h5")
    assert files.temporary_sibling(tmp_path / "run").name.startswith(".run.tmp-")


WRITER = """
import sys
from keras_cnns import files

target, size = sys.argv[1], int(sys.argv[2])
version = 1
print("writing", flush=True)
while True:
    files.write_bytes(target, bytes([version % 251]) * size)
    version += 1
"""


def test_sigkill_at_random_moments_never_leaves_a_partial_target(tmp_path):
    """A child rewrites a large file in a loop; killed anywhere, the target is whole."""
    target, size = tmp_path / "large.bin", 8 << 20
    target.write_bytes(bytes([0]) * size)
    seed = random.randrange(1 << 30)
    moments = random.Random(seed)
    seen = set()
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(size)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "writing\n"
        time.sleep(moments.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        content = target.read_bytes()
        assert len(content) == size, f"seed {seed}: {len(content)} of {size} bytes"
        assert content == content[:1] * size, f"seed {seed}: two versions mixed"
        seen.add(content[0])
    assert len(seen) > 1, "the writer never finished a write before its kill"
