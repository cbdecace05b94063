"""A killed run ends as if it had never been killed (issue "Resume and reproduce exactly").

The fault-injection tests SIGKILL a deterministic LeNet run (with --output) at a chosen point
(keras_cnns/files.py), run the identical command again, and compare everything the run leaves
with the uninterrupted run, bit for bit: history, metrics, best checkpoint, and every file of
the export (which also proves that two deterministic runs write byte-identical exports). The
other tests cover the pieces: damaged states, the run-directory lock, diverged runs, the
verdict, full disks and stale temporary exports (the multi-worker loop's own kill test:
tests/test_multi_worker.py).
"""

import errno
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from resume_faults import (
    RUN,
    TRAIN,
    TRICKS,
    differences,
    kill_and_resume,
    outcome,
    train,
)

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = train(cwd)
    assert result.returncode == 0, result.stderr
    return outcome(cwd)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["batch:30", "state:2", "evaluate:1", "export:1",
                                     "exported:1"])
def test_a_killed_fit_run_resumes_bit_identical(tmp_path, uninterrupted, kill_at):
    status, output = kill_and_resume(tmp_path, kill_at)
    assert status == 0, output[-3000:]
    assert "Resuming the unfinished run" in output
    got = outcome(tmp_path)
    assert differences(uninterrupted, got) == [], kill_at
    assert got["leftovers"] == [] and not got["backup kept"] and not got["lock kept"]


@pytest.mark.slow
def test_a_killed_run_with_ema_clipping_and_mixup_resumes_bit_identical(tmp_path):
    """--ema-decay, --clip-norm, --mixup-alpha, --cutmix-alpha, --mix-prob, --augment randaugment,
    --erase-prob and --filter-images on: killed in epoch 2, the resumed run restores the moving
    average with the optimizer's other variables, draws the same mixing and augmentation, and
    ends bit-identical, its export (the average's weights) included; the filter images of the
    two processes cover every epoch once."""
    import tensorflow as tf

    result = train(tmp_path / "uninterrupted", args=TRICKS)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = outcome(tmp_path / "uninterrupted")
    assert expected["manifest"]["ema"]["decay"] == 0.9
    status, output = kill_and_resume(tmp_path / "killed", "batch:30", args=TRICKS)
    assert status == 0, output[-3000:]
    assert "restored the state after epoch 1" in output
    assert differences(expected, outcome(tmp_path / "killed")) == []
    steps = [event.step for path in (tmp_path / "killed").glob("runs/*/logs/filters/events.*")
             for event in tf.compat.v1.train.summary_iterator(str(path)) if event.summary.value]
    assert sorted(steps) == [0, 1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_a_resume_on_fewer_cores_keeps_the_runs_shards(tmp_path, uninterrupted):
    status, output = kill_and_resume(
        tmp_path, "state:2", prefix=["taskset", "-c", str(min(os.sched_getaffinity(0)))])
    assert status == 0, output[-3000:]
    assert "outnumber the 1 core this process" in output  # its 2 shards, said, on one core
    assert differences(uninterrupted, outcome(tmp_path)) == []


@pytest.mark.slow
def test_a_kill_during_the_best_checkpoint_write_loses_nothing(tmp_path, uninterrupted):
    status, output = kill_and_resume(tmp_path, "best:3")
    assert status == 0, output[-3000:]
    assert differences(uninterrupted, outcome(tmp_path)) == []


@pytest.mark.slow
def test_a_run_killed_after_its_export_resumes_by_name_into_that_export_only(
        tmp_path, uninterrupted):
    """`--resume RUN --output X` after a kill between the export and metrics.json: an X that is
    not the run's export is refused before anything is written (it used to be dropped without
    a word); the run's own X finishes the run and keeps the export it wrote."""
    killed = train(tmp_path, "exported:1")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = str(run_dir.relative_to(tmp_path))
    written = (tmp_path / "exports" / "run" / "manifest.json").stat()

    elsewhere = train(tmp_path, args=["--resume", run, "--output", "exports/other"])
    assert elsewhere.returncode == 2, elsewhere.stderr[-2000:]
    assert elsewhere.stderr.strip().splitlines() == [
        f"train.py: error: Run {run} exports to exports/run, not to --output exports/other; "
        "leave --output out to resume it."]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["run"]
    assert not (run_dir / "metrics.json").exists()

    resumed = train(tmp_path, args=["--resume", run, "--output", "exports/run"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Export exports/run was already written by this run; keeping it." in resumed.stdout
    kept = (tmp_path / "exports" / "run" / "manifest.json").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    got = outcome(tmp_path)
    assert differences(uninterrupted, got) == [] and not got["lock kept"]


# Runs the command after it with the disk full at the export's final rename (after every file
# of the export is written into its temporary), the way ENOSPC reaches write_export.
FULL_DISK_AT_EXPORT = [sys.executable, "-c", """
import errno, runpy, sys
from keras_cnns import files

reach = files.reach
def full_disk(point):
    if point == "export":
        raise OSError(errno.ENOSPC, "No space left on device")
    reach(point)

files.reach = full_disk
sys.argv = sys.argv[2:]  # the script and its arguments, after '-c' and the interpreter
runpy.run_path(sys.argv[0], run_name="__main__")
"""]


@pytest.mark.slow
def test_a_full_disk_at_the_export_then_the_same_command_finishes_the_run(
        tmp_path, uninterrupted):
    """The rerun half of a full disk during the export: the refused run keeps its state, and
    the identical command then only exports, ending where the uninterrupted run ends."""
    full = train(tmp_path, prefix=FULL_DISK_AT_EXPORT)
    assert full.returncode == 1, full.stderr[-2000:]
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("train.py: error: The disk filled up while writing the export "
                           "exports/run; nothing was kept."), line
    assert list((tmp_path / "exports").iterdir()) == []

    rerun = train(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Resuming the unfinished run" in rerun.stdout
    got = outcome(tmp_path)
    assert differences(uninterrupted, got) == []
    assert got["leftovers"] == [] and not got["backup kept"] and not got["lock kept"]


# -- the state files themselves ------------------------------------------------------------------

def _tiny_model():
    import keras

    from keras_cnns.models import build_model

    model = build_model("lenet", input_shape=(16, 16, 1), num_classes=10, dropout=0.5)
    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_a_damaged_newest_state_falls_back_to_the_one_before(tmp_path):
    from keras_cnns.training import run_state

    model, optimizer = _tiny_model()
    recorder = run_state.EpochRecorder(tmp_path, tmp_path / "backup")
    first = [v.numpy().copy() for v in model.weights]
    recorder.end_epoch(0, {"loss": 1.0, "val_accuracy": 0.5}, model, optimizer)
    for variable in model.weights:
        variable.assign(variable.numpy() + 1.0)
    recorder.end_epoch(1, {"loss": 0.5, "val_accuracy": 0.4}, model, optimizer)
    newest = tmp_path / "backup" / "epoch-0002" / run_state.VARIABLES_FILE
    newest.write_bytes(newest.read_bytes()[:96])  # a write cut short

    fresh, fresh_optimizer = _tiny_model()
    state, note = run_state.restore(tmp_path / "backup", fresh, fresh_optimizer)
    assert state.epochs_done == 1 and state.best_epoch == 1
    assert "passed over damaged epoch-0002" in note
    for restored, saved in zip(fresh.weights, first, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved)
    # The published best checkpoint is epoch 1's (0.5 beat 0.4), and the history has 2 rows.
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize(("field", "value", "named"), [
    ("epochs_done", "x", "state.json's epochs_done must be a whole number >= 0, got 'x'"),
    ("history", [{"loss": [0.5]}], "state.json's history[0]['loss'] must be a finite number, "
                                    "got [0.5]"),
])
def test_a_state_with_a_wrong_field_is_passed_over_and_named(tmp_path, field, value, named):
    from keras_cnns.training import run_state

    model, optimizer = _tiny_model()
    recorder = run_state.EpochRecorder(tmp_path, tmp_path / "backup")
    recorder.end_epoch(0, {"loss": 1.0, "val_accuracy": 0.5}, model, optimizer)
    recorder.end_epoch(1, {"loss": 0.5, "val_accuracy": 0.4}, model, optimizer)
    newest = tmp_path / "backup" / "epoch-0002" / run_state.STATE_FILE
    newest.write_text(json.dumps({**json.loads(newest.read_text()), field: value}))

    state, note = run_state.restore(tmp_path / "backup", *_tiny_model())
    assert state.epochs_done == 1
    assert note.endswith(f"; passed over damaged epoch-0002 ({named})")


def test_no_state_with_nan_is_ever_committed(tmp_path):
    from keras_cnns.training import run_state

    model, optimizer = _tiny_model()
    recorder = run_state.EpochRecorder(tmp_path, tmp_path / "backup")
    model.weights[0].assign(np.full(model.weights[0].shape, np.nan, "float32"))
    with pytest.raises(run_state.NonFiniteStateError):
        recorder.end_epoch(0, {"loss": 1.0, "val_accuracy": 0.5}, model, optimizer)
    assert run_state.state_dirs(tmp_path / "backup") == []


def test_the_best_checkpoint_survives_a_worse_epoch_after_a_resume(tmp_path):
    from keras_cnns.training import run_state

    model, optimizer = _tiny_model()
    recorder = run_state.EpochRecorder(tmp_path, tmp_path / "backup")
    recorder.end_epoch(0, {"val_accuracy": 0.9}, model, optimizer)
    best_bytes = (tmp_path / run_state.BEST_FILE).read_bytes()
    state, _ = run_state.restore(tmp_path / "backup", *_tiny_model())
    resumed = run_state.EpochRecorder(tmp_path, tmp_path / "backup", state=state)
    model.weights[0].assign(model.weights[0].numpy() * 0)
    resumed.end_epoch(1, {"val_accuracy": 0.5}, model, optimizer)  # worse: not the best
    assert resumed.state.best_value == 0.9 and resumed.state.best_epoch == 1
    assert (tmp_path / run_state.BEST_FILE).read_bytes() == best_bytes



def test_a_tie_in_validation_accuracy_goes_to_the_lower_validation_loss(tmp_path):
    from keras_cnns.training import run_state

    model, optimizer = _tiny_model()
    recorder = run_state.EpochRecorder(tmp_path, tmp_path / "backup")
    for epoch, (accuracy, loss) in enumerate([(1.0, 0.3), (1.0, 0.1), (1.0, 0.2), (0.9, 0.01)]):
        recorder.end_epoch(epoch, {"val_accuracy": accuracy, "val_loss": loss}, model, optimizer)
    assert recorder.state.best_epoch == 2 and recorder.state.best_value == 1.0
    assert recorder.state.epochs_without_gain == 2

# -- one process per run directory ----------------------------------------------------------------

def test_a_live_lock_is_refused_a_dead_one_taken_over(tmp_path):
    from keras_cnns.config import ConfigError
    from keras_cnns.training import run_dir as run_dirs

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "lock").write_text(f"{holder.pid} {socket.gethostname()}\n")
        with pytest.raises(ConfigError, match=f"in use by process {holder.pid}"):
            run_dirs.acquire_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    run_dirs.acquire_lock(tmp_path)  # the holder is gone: taken over
    assert (tmp_path / "lock").read_text().split()[0] == str(os.getpid())
    run_dirs.release_lock(tmp_path)
    assert not (tmp_path / "lock").exists()
    (tmp_path / "lock").write_text("1 another-host\n")
    with pytest.raises(ConfigError, match="on host another-host"):
        run_dirs.acquire_lock(tmp_path)


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    from keras_cnns.config import RunConfig
    from keras_cnns.training import run_dir as run_dirs

    monkeypatch.setattr(run_dirs, "utc_stamp", lambda: "20260101-000000")
    config = RunConfig(model="lenet", dataset="synthetic", run_dir=str(tmp_path)).resolve()
    names = set()
    for seed in range(3):  # different identities, so none finds another's run
        seeded = __import__("dataclasses").replace(config, seed=seed)
        _, run_dir, how = run_dirs.prepare_run_dir(seeded, seeded.identity())
        assert how == "new"
        names.add(run_dir.name)
    assert names == {"lenet-synthetic-20260101-000000", "lenet-synthetic-20260101-000000-1",
                     "lenet-synthetic-20260101-000000-2"}


@pytest.mark.slow
def test_a_second_identical_command_refuses_while_the_first_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Long enough to outlast the second command's start-up (30 epochs once finished first).
    args = [*TRAIN, *RUN, "--epochs", "3000"]
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("runs/*/history.csv")):
            time.sleep(0.2)
        assert list(tmp_path.glob("runs/*/history.csv")), "the first run never got going"
        second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by process {first.pid}" in lines[0], second.stderr
    assert len(list(tmp_path.glob("runs/*"))) == 1


# -- the verdict ----------------------------------------------------------------------------------

def _manifest(**config):
    return {
        "config": {"model": "lenet", "seed": 0, "deterministic": True, "output": "a", **config},
        "dataset": {"fingerprint": "f"},
        "metrics": {"test_accuracy": 0.9, "test_loss": 0.3},
        "golden": {"probabilities": [[0.5, 0.5]]},
        "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"},
        "hardware": {"machine": "x86_64", "cpu_isa": ["avx2", "avx512f"]},
    }


def test_a_changed_config_is_not_judged():
    from keras_cnns.training.reproduction import judge

    status, verdict = judge(_manifest(), {**_manifest()["config"], "seed": 1, "output": "b"},
                            _manifest())
    assert status == 0 and verdict.startswith("not judged") and "seed (1 vs 0)" in verdict
    assert "output" not in verdict  # where a run lives is no difference


def test_bit_equality_is_asked_only_on_the_same_hardware_and_libraries():
    from keras_cnns.training.reproduction import judge

    same = _manifest()
    status, verdict = judge(same, same["config"], _manifest())
    assert status == 0 and "reproduced exactly" in verdict
    elsewhere = _manifest()
    elsewhere["hardware"]["cpu_isa"] = ["avx2"]
    elsewhere["metrics"]["test_accuracy"] = 0.89
    status, verdict = judge(same, same["config"], elsewhere)
    assert status == 0 and "within tolerance" in verdict and "cpu_isa" in verdict
    elsewhere["metrics"]["test_accuracy"] = 0.5
    status, verdict = judge(same, same["config"], elsewhere)
    assert status == 1 and "not reproduced" in verdict


# -- faults around the export ---------------------------------------------------------------------

def test_a_full_disk_during_an_export_is_one_sentence_and_leaves_nothing(tmp_path):
    from keras_cnns.export import ExportError, write_export

    def fill_up(tmp_dir):
        (tmp_dir / "partial").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ExportError, match="disk filled up") as caught:
        write_export(tmp_path / "export", fill_up)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_exports_of_dead_processes_are_removed(tmp_path):
    from keras_cnns.export import write_export

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".old.tmp-{dead.pid}-0123abcd"
    live = tmp_path / f".other.tmp-{os.getpid()}-89abcdef"
    stale.mkdir()
    live.mkdir()
    write_export(tmp_path / "new", lambda tmp_dir: {})
    assert not stale.exists() and live.exists() and (tmp_path / "new").is_dir()
