"""The trainer end to end: run directory, export, strategies, resume, divergence, CLI errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from extras import require

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "scripts" / "train.py")]
# A LeNet small enough that each subprocess spends its time starting TensorFlow, not training.
TINY = [
    "--model",
    "lenet",
    "--dataset",
    "synthetic",
    "--image-size",
    "16",
    "--batch-size",
    "50",
    "--epochs",
    "2",
    "--no-jit-compile",
]


def run(args, cwd, timeout=240, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def python_snippet(code: str, cwd, env=None, timeout=240):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_main_job_writes_run_directory_and_export(tmp_path):
    require("onnxruntime", "onnx", "tf2onnx")  # it passes --onnx
    result = run([*TRAIN, *TINY, "--output", "exports/tiny", "--onnx"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "Epoch 2/2" in result.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("lenet-synthetic-")
    for name in ("config.json", "history.csv", "metrics.json", "curves.png", "confusion.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.weights.h5").is_file()
    assert any((run_dir / "logs").rglob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and len(metrics["per_class_accuracy"]) == 10
    manifest = json.loads((tmp_path / "exports/tiny/manifest.json").read_text())
    assert manifest["config"]["model"] == "lenet" and manifest["config"]["image_size"] == 16
    assert manifest["metrics"]["keras_test_accuracy"] == metrics["test_accuracy"]
    assert (tmp_path / "exports/tiny/model.keras").is_file()
    assert "model.onnx" in manifest["files"] and manifest["config"]["onnx"] is True
    # History has one row per epoch, train and validation.
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "val_accuracy" in rows[0]

    # evaluate.py scores the run (best checkpoint) and the export alike, and draws the matrix.
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py")]
    for target in (run_dir, tmp_path / "exports/tiny"):
        result = run([*evaluate, str(target), "--confusion", "matrix.png"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"accuracy {metrics['test_accuracy']:.4f}" in result.stdout
        assert (tmp_path / "matrix.png").stat().st_size > 0
        (tmp_path / "matrix.png").unlink()
    result = run([*evaluate, str(tmp_path / "exports"), "--dataset", "digits"], cwd=tmp_path)
    assert result.returncode == 2 and "neither a run directory nor an export" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 2])
def test_the_shard_count_is_the_runs_and_model_keras_carries_no_optimizer(tmp_path, shards):
    from resume_faults import optimizer_entries

    from keras_cnns.config import RunConfig
    from keras_cnns.training import train

    config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=50,
                       epochs=1, warmup_epochs=0, batch_shards=shards,
                       run_dir=str(tmp_path / "runs"), output=str(tmp_path / "export"))
    result = train(config, verbose=0)
    assert getattr(result.model, "batch_shards", 1) == shards
    assert optimizer_entries(result.export_dir / "model.keras") == []
    recorded = json.loads((result.run_dir / "config.json").read_text())
    manifest = json.loads((result.export_dir / "manifest.json").read_text())
    assert recorded["batch_shards"] == manifest["config"]["batch_shards"] == shards
    assert manifest["metrics"]["batch_shards"] == shards
    assert manifest["hardware"]["usable_cpu_count"] == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_bfloat16_run_computes_in_bfloat16_and_exports_a_verified_float32_model(tmp_path):
    result = run([*TRAIN, *TINY, "--mixed-precision", "bfloat16", "--output", "bf16"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "bf16/manifest.json").read_text())
    assert manifest["metrics"]["dtype_policy"] == "mixed_bfloat16"
    # Layers compute in bfloat16 over float32 weights; the logits come out in float32.
    code = """
        import keras
        model = keras.saving.load_model("bf16/model.keras")
        conv = model.get_layer("conv1")
        print(conv.compute_dtype, conv.kernel.dtype, model.output.dtype)
    """
    probe = python_snippet(code, tmp_path)
    out, err = probe.communicate(timeout=240)
    assert probe.returncode == 0, err
    assert out.split() == ["bfloat16", "float32", "float32"]
    verify = run([sys.executable, str(ROOT / "scripts" / "verify.py"), "bf16"], cwd=tmp_path)
    assert verify.returncode == 0 and "PASS" in verify.stdout, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "resnet"], "Unknown model 'resnet'"),
        (["--model", "alexnet", "--image-size", "32"], "needs image_size >= 63"),
        (["--dropout", "1.2"], "dropout must be in [0.0, 1.0)"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--epochs", "many"], "invalid int value: 'many'"),
        (["--output", "exports/good"], "already exists"),
        (["--augment", "wild"], "augment must be one of"),
        (["--strategy", "multi_worker"], "needs TF_CONFIG"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_touch_nothing(tmp_path, args, fragment):
    good = tmp_path / "exports" / "good"
    good.mkdir(parents=True)
    (good / "manifest.json").write_text("{}")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = run([*TRAIN, *TINY, *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (good / "manifest.json").read_text() == "{}"


def test_missing_data_dir_is_one_sentence(tmp_path):
    result = run([*TRAIN, *TINY, "--dataset", "folder", "--data-dir", "nowhere"], cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nowhere" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_divergence_stops_cleanly_exports_nothing_and_is_never_resumed(tmp_path):
    args = [
            *TRAIN,
            *TINY,
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--schedule",
            "constant",
            "--warmup-epochs",
            "0",
            "--model-kwargs",
            "activation=relu",
            "--output",
            "exports/nan",
    ]
    result = run(args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "loss became" in result.stderr and "lower --lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "exports" / "nan").exists()
    (first,) = (tmp_path / "runs").iterdir()
    assert json.loads((first / "diverged.json").read_text())["epoch"] == 1
    assert not list(first.glob("backup/epoch-*"))  # no non-finite state was ever committed

    # The identical command says the last run diverged and starts anew; it is never resumed.
    again = run(args, cwd=tmp_path)
    assert again.returncode == 1
    assert f"The last run of this command, runs/{first.name}, diverged in epoch 1" in again.stdout
    assert "Resuming" not in again.stdout
    assert len(list((tmp_path / "runs").iterdir())) == 2
    resumed = run([*TRAIN, "--resume", f"runs/{first.name}"], cwd=tmp_path)
    assert resumed.returncode == 2 and "never resumed" in resumed.stderr


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_cnns.config import RunConfig
from keras_cnns.training import train
config = RunConfig(model="lenet", dataset="synthetic", image_size=16, batch_size=32, epochs=1,
                   optimizer="sgd", lr=0.1, warmup_epochs=0, dropout=0.0, augment="none",
                   jit_compile=False, deterministic=True, run_dir="runs")
weights = {}
for name, strategy in (
    ("default", tf.distribute.get_strategy()),
    ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
):
    result = train(config, strategy=strategy, verbose=0, export=False)
    assert result.metrics["replicas"] == (2 if name == "mirrored" else 1)
    weights[name] = [w.tolist() for w in result.model.get_weights()]
json.dump(weights, open("weights.json", "w"))
"""


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_the_default_strategy(tmp_path):
    process = python_snippet(MIRRORED, tmp_path)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    weights = json.loads((tmp_path / "weights.json").read_text())
    initial_gap = 0.0
    for default, mirrored in zip(weights["default"], weights["mirrored"], strict=True):
        np.testing.assert_allclose(np.array(mirrored), np.array(default), rtol=1e-4, atol=1e-5)
        initial_gap = max(initial_gap, float(np.abs(np.array(default)).max()))
    assert initial_gap > 0
