"""Kill a deterministic run, re-run the identical command, compare with the uninterrupted run.

Shared by tests/test_resume.py (a few fixed kill points, in CI) and by a person's longer check:

    python tests/resume_faults.py --trials 20 --seed 0      # random points; prints a table

A kill point is `KERAS_CNNS_KILL_AT=<point>:<n>` (keras_cnns/files.py): SIGKILL at the n-th
arrival at `batch` (inside an epoch), `state` (between the files of a state commit), `best`
(while writing a best checkpoint), `evaluate`, `export` (before the export's final rename) or
`exported` (after it, before metrics.json marks the run finished).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "scripts" / "train.py")]
# Four epochs of 20 steps, one step per call so that `batch` counts steps.
RUN = ["--model", "lenet", "--dataset", "synthetic", "--image-size", "16", "--batch-size", "50",
       "--epochs", "4", "--augment", "strong", "--deterministic", "--steps-per-execution", "1",
       "--output", "exports/run"]
# The same run with the training tricks on: the weights' moving average (optimizer variables),
# gradient clipping, MixUp and CutMix (drawn from the batch's seed), RandAugment, and the filter
# images (TensorBoard).
TRICKS = [*RUN, "--ema-decay", "0.9", "--clip-norm", "1.0", "--mixup-alpha", "0.4",
          "--cutmix-alpha", "1.0", "--mix-prob", "0.8", "--augment", "randaugment",
          "--erase-prob", "0.25", "--filter-images"]
STEPS, EPOCHS = 20, 4
# Where each point can be reached, for random trials: (point, largest n).
POINTS = {"batch": STEPS * EPOCHS, "state": EPOCHS, "best": EPOCHS, "evaluate": 1, "export": 1,
          "exported": 1}
# Manifest fields that say where and how long a run was (and on how many cores the exporting
# process could run), not what it computed.
RUN_SPECIFIC = {("config", "output"), ("config", "run_dir"), ("run_dir",),
                ("metrics", "train_seconds"), ("hardware", "usable_cpu_count")}


def train(cwd: Path, kill_at: str | None = None, timeout: int = 300, prefix=(), args=RUN):
    """Run train.py with `args` (the deterministic RUN unless given) in `cwd`, after `prefix`
    (a command that runs the rest, such as taskset)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KERAS_CNNS_KILL_AT", None)
    if kill_at:
        env["KERAS_CNNS_KILL_AT"] = kill_at
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*prefix, *TRAIN, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def outcome(cwd: Path) -> dict:
    """Everything a run leaves that must not depend on having been killed."""
    runs = [p for p in (cwd / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run directory, found {runs}"
    run_dir = runs[0]
    export = cwd / "exports" / "run"
    manifest = json.loads((export / "manifest.json").read_text())
    for path in RUN_SPECIFIC:
        section = manifest
        for key in path[:-1]:
            section = section[key]
        section.pop(path[-1], None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")
    metrics.pop("process")  # how long this process ran and its memory: not what it computed
    files = {p.relative_to(export).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(export.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    return {
        "history.csv": (run_dir / "history.csv").read_text(),
        "metrics.json": metrics,
        "best.weights.h5": best_weights(run_dir / "checkpoints" / "best.weights.h5"),
        "export files": files,
        "manifest": manifest,
        "leftovers": sorted(p.name for p in cwd.rglob(".*.tmp-*")) + sorted(
            p.name for p in (cwd / "exports").iterdir() if p.name.startswith(".")),
        "backup kept": (run_dir / "backup").exists(),
        "lock kept": (run_dir / "lock").exists(),
    }


def best_weights(path: Path) -> dict:
    import h5py
    import numpy as np

    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, np.asarray(item).tobytes())
                          if isinstance(item, h5py.Dataset) else None)
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(arrays.items())}


def optimizer_entries(keras_file: Path) -> list[str]:
    """The optimizer's entries in a `.keras` file's weights (an export keeps none)."""
    import io
    import zipfile

    import h5py

    names = []
    with zipfile.ZipFile(keras_file) as archive, h5py.File(
            io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visit(names.append)
    return [name for name in names if name.startswith("optimizer")]


def differences(expected: dict, got: dict) -> list[str]:
    return [key for key in expected if expected[key] != got.get(key)]


def kill_and_resume(cwd: Path, kill_at: str, prefix=(), args=RUN) -> tuple[int, str]:
    """Run `args` with the kill, then the identical command (after `prefix`, such as taskset);
    returns the resumed run's status and output."""
    killed = train(cwd, kill_at, args=args)
    if killed.returncode != -9:
        raise AssertionError(f"{kill_at}: the run was not killed ({killed.returncode}): "
                             f"{killed.stderr[-2000:]}")
    resumed = train(cwd, prefix=prefix, args=args)
    return resumed.returncode, resumed.stdout + resumed.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="/tmp/keras_cnns-resume-faults")
    args = parser.parse_args()
    work = Path(args.workdir)
    if work.exists():
        raise SystemExit(f"{work} exists; remove it or pass another --workdir.")
    baseline = train(work / "baseline")
    assert baseline.returncode == 0, baseline.stderr
    expected = outcome(work / "baseline")
    rng = random.Random(args.seed)
    failures = 0
    print("| trial | kill point | resumed | differs in |\n|---:|---|---|---|")
    for trial in range(args.trials):
        point = rng.choice(sorted(POINTS))
        kill_at = f"{point}:{rng.randint(1, POINTS[point])}"
        status, _ = kill_and_resume(work / f"trial-{trial}", kill_at)
        diff = differences(expected, outcome(work / f"trial-{trial}")) if status == 0 else ["-"]
        failures += bool(diff) or status != 0
        print(f"| {trial} | {kill_at} | exit {status} | {', '.join(diff) or 'nothing'} |",
              flush=True)
    print(f"\n{args.trials - failures} of {args.trials} killed runs ended bit-identical to the "
          "uninterrupted run.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
