"""--deterministic CPU runs are bit-identical, and an export's manifest retrains to itself."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_cnns.training.reproduction import ACCURACY_TOLERANCE, compare

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "scripts" / "train.py")]
TINY = ["--model", "lenet", "--dataset", "synthetic", "--image-size", "16", "--batch-size", "50",
        "--epochs", "2", "--augment", "strong", "--deterministic"]


def run(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def weights(export):
    model = keras.saving.load_model(export / "model.keras", safe_mode=True)
    return model.get_weights()


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical_and_reproduce_from_the_manifest(tmp_path):
    for name in ("a", "b"):
        result = run([*TRAIN, *TINY, "--output", f"exports/{name}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    first, second = tmp_path / "exports/a", tmp_path / "exports/b"
    for x, y in zip(weights(first), weights(second), strict=True):
        np.testing.assert_array_equal(x, y)
    manifests = [json.loads((p / "manifest.json").read_text()) for p in (first, second)]
    assert manifests[0]["metrics"]["test_loss"] == manifests[1]["metrics"]["test_loss"]
    assert manifests[0]["golden"] == manifests[1]["golden"]

    result = run([*TRAIN, "--config", str(first / "manifest.json")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reproduced exactly" in result.stdout
    # The re-run wrote a new export beside the recorded one, which is untouched.
    assert len(list((tmp_path / "saved_models").iterdir())) == 1

    tampered = manifests[0]
    tampered["metrics"]["test_accuracy"] = 1.5
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    result = run([*TRAIN, "--config", "tampered.json"], cwd=tmp_path)
    assert result.returncode == 1
    assert "not reproduced exactly" in result.stdout


def _manifest(accuracy, deterministic=False, fingerprint="abc", probabilities=((0.5, 0.5),)):
    return {
        "config": {"deterministic": deterministic},
        "dataset": {"fingerprint": fingerprint},
        "metrics": {"test_accuracy": accuracy, "test_loss": 0.1},
        "golden": {"probabilities": [list(p) for p in probabilities]},
    }


def test_non_deterministic_runs_match_within_the_stated_tolerance():
    ok, verdict = compare(_manifest(0.95), _manifest(0.95 + ACCURACY_TOLERANCE / 2))
    assert ok and "within tolerance" in verdict
    ok, verdict = compare(_manifest(0.95), _manifest(0.95 - 2 * ACCURACY_TOLERANCE))
    assert not ok and "gap above" in verdict


def test_deterministic_runs_must_match_exactly():
    reference = _manifest(0.9, deterministic=True)
    assert compare(reference, _manifest(0.9, deterministic=True))[0]
    ok, verdict = compare(reference, _manifest(0.9, True, probabilities=((0.5, 0.5000001),)))
    assert not ok and "1.00e-07" in verdict


def test_other_data_is_never_a_reproduction():
    ok, verdict = compare(_manifest(0.9), _manifest(0.9, fingerprint="def"))
    assert not ok and "data differ" in verdict


def test_an_older_manifests_automatic_shards_are_named_as_the_cause():
    from keras_cnns.training.reproduction import judge

    reference = _manifest(0.9, deterministic=True)
    reference["config"]["batch_shards"] = 0  # written before configs recorded the count
    reference["metrics"]["batch_shards"] = 1
    rerun = _manifest(0.9, True, probabilities=((0.5, 0.5000001),))
    rerun["metrics"]["batch_shards"] = 2
    status, verdict = judge(reference, {"deterministic": True, "batch_shards": 2}, rerun)
    assert status == 1 and "not reproduced exactly" in verdict
    assert "batch shards differ (2 vs recorded 1" in verdict and "--batch-shards 1" in verdict


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_a_run_on_one_core_reruns_on_two_with_its_shards_and_names_the_cores(tmp_path):
    """Row P1b_repro: the automatic count follows the usable cores, and the manifest keeps it;
    in one shard TensorFlow's threads follow them too, which the verdict names."""
    one_core = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    args = [*TINY, "--seed", "5", "--output", "exports/a"]
    result = run([*one_core, *TRAIN, *args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "exports/a/manifest.json").read_text())
    assert manifest["config"]["batch_shards"] == manifest["metrics"]["batch_shards"] == 1
    assert manifest["hardware"]["usable_cpu_count"] == 1
    result = run([*TRAIN, "--config", "exports/a/manifest.json"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rerun = json.loads(next((tmp_path / "saved_models").iterdir()).joinpath(
        "manifest.json").read_text())
    assert rerun["config"]["batch_shards"] == 1
    cores = len(os.sched_getaffinity(0))
    assert "within tolerance" in result.stdout
    assert f"usable_cpu_count {cores} vs 1" in result.stdout


def test_one_shard_runs_name_the_usable_cores_as_an_environment_difference():
    from keras_cnns.training.reproduction import environment_differences

    def manifest(shards, cores):
        return {"config": {"batch_shards": shards}, "hardware": {"usable_cpu_count": cores}}

    assert environment_differences(manifest(1, 1), manifest(1, 2)) == ["usable_cpu_count 2 vs 1"]
    assert environment_differences(manifest(2, 1), manifest(2, 2)) == []  # one thread a shard
