"""The multi-worker loop (`training/custom_loop.py`, which `--strategy multi_worker` runs
instead of `fit`): float16 loss scaling across replicas, and a cluster run with EMA, clipping
and augmentation whose worker is SIGKILLed resumes bit-identical on every worker.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from resume_faults import optimizer_entries

ROOT = Path(__file__).resolve().parent.parent

FLOAT16_LOOP = """
import json
import numpy as np
import tensorflow as tf
import keras
from keras_cnns.config import RunConfig
from keras_cnns.training import custom_loop, train
from keras_cnns.data import load_source
from keras_cnns.training.factories import build_for_training

start_weights = []
loop = custom_loop.fit_multi_worker
def recording_start(model, *args, **kwargs):
    start_weights[:] = [w.copy() for w in model.get_weights()]
    return loop(model, *args, **kwargs)
custom_loop.fit_multi_worker = recording_start

strategy = tf.distribute.MultiWorkerMirroredStrategy()
moved, runs = {}, {}
for precision in ("off", "float16"):
    config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=50,
                       epochs=1, warmup_epochs=0, augment="none", mixed_precision=precision,
                       run_dir=f"runs-{precision}")
    result = train(config, strategy=strategy, verbose=0, export=False)
    runs[precision] = result.model.get_weights()
    moved[precision] = [float(np.abs(end - start).max())
                        for end, start in zip(runs[precision], start_weights, strict=True)]
_, optimizer = build_for_training(config.resolve(), load_source("synthetic", None).info, 20,
                                  strategy, compile=False)
print(json.dumps({"optimizer": type(optimizer).__name__, "moved": moved,
                  "finite": all(bool(np.isfinite(w).all()) for w in runs["float16"]),
                  "compute": result.model.get_layer("conv1").compute_dtype}))
"""


@pytest.mark.slow
def test_the_multi_worker_loop_scales_a_float16_loss(tmp_path):
    """float16 steps move every weight about as far as float32 steps do.

    Without loss scaling the small float16 gradients underflow, and the optimizer's unscaling
    shrinks the rest 2**15-fold: the first layers then move about a hundredth as far. Between
    the two precisions each tensor's movement varies by up to about 30% from run to run (two
    replicas, float16 rounding), so the bound is a factor of two, far from a hundredfold.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    result = subprocess.run([sys.executable, "-c", FLOAT16_LOOP], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["compute"] == "float16" and report["finite"]
    assert report["optimizer"] == "LossScaleOptimizer"
    moved = report["moved"]
    assert max(moved["off"]) > 0.05, moved  # the float32 steps are a yardstick, not no-ops
    ratios = [half / full for half, full in zip(moved["float16"], moved["off"], strict=True)]
    assert all(0.5 < ratio < 2.0 for ratio in ratios), moved
    history = (tmp_path / "runs-float16").glob("*/history.csv")
    assert "nan" not in next(history).read_text().lower()


WORKER = """
import json, sys
from keras_cnns.config import RunConfig
from keras_cnns.training import train
config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=50, epochs=3,
                   optimizer="sgd", lr=0.1, warmup_epochs=0, dropout=0.5, augment="light",
                   ema_decay=0.9, clip_norm=1.0, deterministic=True, strategy="multi_worker",
                   run_dir="runs", output="exports/mw")
result = train(config, verbose=0)
assert result.metrics["replicas"] == 2, result.metrics
json.dump([w.tolist() for w in result.model.get_weights()], open(sys.argv[1], "w"))
"""


def _start_workers(cwd, ports, kill_at=None):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        env.pop("KERAS_CNNS_KILL_AT", None)
        if kill_at and index == 1:
            env["KERAS_CNNS_KILL_AT"] = kill_at
        processes.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, f"worker{index}.json"], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(cwd):
    return [json.loads((cwd / f"worker{i}.json").read_text()) for i in range(2)]


@pytest.mark.slow
def test_a_killed_multi_worker_run_resumes_on_every_worker_bit_identical(tmp_path):
    baseline, broken = tmp_path / "baseline", tmp_path / "broken"
    baseline.mkdir()
    broken.mkdir()
    for process in _start_workers(baseline, _free_ports(2)):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    expected = _weights(baseline)

    # Worker 1 dies in epoch 2 (batch 30 of 20 per epoch); worker 0 then waits on a collective
    # that never comes, and is stopped the way a cluster manager would.
    chief, worker = _start_workers(broken, _free_ports(2), kill_at="batch:30")
    worker.communicate(timeout=300)
    assert worker.returncode == -9
    chief.kill()
    chief.communicate()
    run_dir = next((broken / "runs").iterdir())
    assert (run_dir / "backup" / "epoch-0001").is_dir() and not (run_dir / "metrics.json").exists()

    outputs = []
    for process in _start_workers(broken, _free_ports(2)):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        outputs.append(out)
    for out in outputs:  # both restored the chief's state, not only the chief
        assert "restored the state after epoch 1" in out, out
    got = _weights(broken)
    for a, b, c in zip(expected[0], got[0], got[1], strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))
        np.testing.assert_array_equal(np.array(b), np.array(c))
    # Only the chief (worker 0) wrote a run directory and an export, in both attempts.
    assert len(list((baseline / "runs").iterdir())) == len(list((broken / "runs").iterdir())) == 1
    assert (broken / "exports" / "mw" / "manifest.json").exists()
    assert optimizer_entries(broken / "exports" / "mw" / "model.keras") == []
    assert (run_dir / "history.csv").read_text() == next(
        (baseline / "runs").iterdir()).joinpath("history.csv").read_text()
