"""Ablation: grid files, the runner's skip and failure bookkeeping, and `scripts/ablate.py
--preset quick` end to end (the built-in presets: test_ablation_presets.py; the claim
sentences: test_ablation_report.py)."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from keras_cnns.ablation import grid as grid_lib
from keras_cnns.ablation import runs as runner
from keras_cnns.ablation.outputs import write_outputs
from keras_cnns.ablation.results import RunRow, epochs_to_share, read_val_history
from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.training import run_dir as run_dirs

ROOT = Path(__file__).resolve().parent.parent
ABLATE = [sys.executable, str(ROOT / "scripts" / "ablate.py")]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


# -- grids ----------------------------------------------------------------------------------
def test_command_line_choices_apply_to_every_cell():
    grid = grid_lib.load_grid(
        grid_lib.preset_path("default"), overrides={"epochs": 3}, seeds=2,
        cells=["alexnet", "lenet-classic"],
    )
    assert [cell.name for cell in grid.cells] == ["lenet-classic", "alexnet"]  # grid order
    assert {cell.seeds for cell in grid.cells} == {2}
    alexnet = grid.cell("alexnet").config
    # The default grid's AlexNet: 2 warmup epochs of 6; at 3 epochs the warmup keeps its share.
    assert (alexnet.epochs, alexnet.warmup_epochs) == (3, 1.0)
    assert grid.cell("alexnet").seed_config(1, "x").seed == alexnet.seed + 1
    # The report's header says so: the grid's own description speaks of its own lengths.
    described = grid_lib.load_grid(grid_lib.preset_path("default")).description
    assert grid.description == described + " This command set, in every cell: epochs=3."
    on_fashion = grid_lib.load_grid(grid_lib.preset_path("default"),
                                    overrides={"dataset": "fashion_mnist", "data_dir": "/d"})
    assert on_fashion.description == described


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"description": ["a"]}, r"description must be a string, got \['a'\]\.$"),
        ({"cells": [{"name": "a", "model": "lenet", "activation": "relu"}]},
         "'activation' is not a RunConfig field"),
        ({"cells": [{"name": "a", "model": "lenet", "dropout": 2}]}, "cell 'a': dropout"),
        ({"cells": [{"name": "a", "model": "lenet", "augment": "wild"}]}, "cell 'a': augment"),
        ({"cells": [{"name": "a", "model": "lenet", "run_dir": "x"}]}, "chosen by ablate.py"),
        ({"cells": [{"name": "a", "model": "lenet"}, {"name": "a", "model": "lenet"}]},
         "appears twice"),
        ({"cells": [{"name": "A b", "model": "lenet"}]}, "needs a name"),
        ({"cells": [{"name": "a", "model": "lenet", "data_scale_of": "b"}]}, "not a cell"),
        # The report plots a data-scale cell against its base at the whole split.
        ({"cells": [{"name": "a", "model": "lenet", "data_scale_of": "a",
                     "train_fraction": 0.5}]}, "must name another cell .* got 'a'"),
        ({"cells": [{"name": "a", "model": "lenet"},
                    {"name": "b", "model": "lenet", "data_scale_of": "a", "train_fraction": 0.5},
                    {"name": "c", "model": "lenet", "data_scale_of": "b",
                     "train_fraction": 0.1}]}, "cell 'c': data_scale_of must name another cell"),
        ({"cells": [{"name": "a", "model": "lenet"},
                    {"name": "b", "model": "lenet", "data_scale_of": "a"}]},
         "needs a train_fraction below 1"),
        ({"seed_budget_minutes": float("nan")}, "finite number >= 0, got nan"),
        ({"seed_budget_minutes": float("inf")}, "finite number >= 0, got inf"),
        ({"seeds": 0}, "seeds must be a whole number"),
        ({"cells": []}, "non-empty list of cells"),
        ({"cells": [{"name": "a", "model": "lenet", "compare_to": "a"}]},
         "cell 'a': compare_to must name other cells of this grid, got 'a'"),
        ({"cells": [{"name": "a", "model": "lenet", "compare_to": ["b"]}]},
         "compare_to must name other cells of this grid, got 'b'"),
        ({"cells": [{"name": "a", "model": "lenet", "compare_to": 3}]},
         "compare_to must be a cell name or a list of them, got 3"),
        ({"cells": [{"name": "a", "model": "lenet", "goal": 0.9}]},
         "cell 'a', goal must be an object"),
        ({"cells": [{"name": "a", "model": "lenet", "goal": {"accuracy": 0.9}}]},
         "goal has an unknown key 'accuracy'"),
        ({"cells": [{"name": "a", "model": "lenet", "goal": {"test_accuracy": 97}}]},
         r"test_accuracy must be a number in \(0, 1\], got 97"),
        ({"cells": [{"name": "a", "model": "lenet",
                     "goal": {"test_accuracy": 0.9, "over_seeds": "max"}}]},
         "over_seeds must be one of min, median, mean, got 'max'"),
        ({"cells": [{"name": "a", "model": "lenet",
                     "goal": {"test_accuracy": 0.9, "max_epochs": 0}}]},
         "max_epochs must be a whole number >= 1, got 0"),
    ],
)
def test_bad_grids_are_one_sentence(tmp_path, change, message):
    spec = {"name": "mine", "cells": [{"name": "a", "model": "lenet"}], **change}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=message) as error:
        grid_lib.load_grid(path)
    assert str(error.value).count("\n") == 0


def test_unknown_cells_and_presets_are_refused():
    with pytest.raises(ConfigError, match="no cell 'alexnet-huge'; its cells are: lenet"):
        grid_lib.load_grid(grid_lib.preset_path("quick"), cells=["alexnet-huge"])
    with pytest.raises(ConfigError, match="Unknown preset"):
        grid_lib.preset_path("slow")


@pytest.mark.slow
def test_a_bad_grid_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"cells": [{"name": "a", "model": "lenet", "lr": -1}]}))
    output = tmp_path / "results"
    done = subprocess.run([*ABLATE, "--grid", str(path), "--output", str(output)],
                          capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("ablate.py: error: Grid file")
    assert "lr must be" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not output.exists()


# -- the runner, with a stand-in for the trainer --------------------------------------------
def _accuracy_of(config: RunConfig) -> float:
    """A made-up but fixed accuracy per config, so reruns read back the same numbers."""
    digest = hashlib.sha256(config.identity().encode()).digest()
    return 0.5 + digest[0] / 1000


class FakeTrainer:
    """Writes what `train` writes that the ablation reads; fails for sigmoid AlexNet."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, *, verbose=0, export=True):
        self.calls.append(config)
        if config.model == "alexnet" and config.model_kwargs.get("activation") == "sigmoid":
            raise RuntimeError("the loss became nan\nsecond line")
        run_dir = Path(config.run_dir) / f"{config.model}-{len(self.calls)}"
        run_dir.mkdir(parents=True)
        config.to_json(run_dir / run_dirs.CONFIG_FILE)
        (run_dir / run_dirs.IDENTITY_FILE).write_text(config.identity() + "\n")
        accuracy = _accuracy_of(config)
        curve = [accuracy * share for share in (0.5, 0.9, 0.97, 1.0)][: config.epochs]
        lines = ["epoch,accuracy,loss,val_accuracy"]
        lines += [f"{e},{v + 0.01},1.0,{v}" for e, v in enumerate(curve)]
        (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
        run_dirs.write_json(run_dir / run_dirs.DONE_FILE, {
            "test_accuracy": accuracy, "train_seconds": 12.5, "strategy": "default",
            "replicas": 1,
        })
        return SimpleNamespace(run_dir=run_dir, model=None,
                               metrics={"strategy": "default", "replicas": 1})


@pytest.fixture
def fake_trainer(monkeypatch):
    import keras_cnns.training

    trainer = FakeTrainer()
    monkeypatch.setattr(keras_cnns.training, "train", trainer)
    monkeypatch.setattr(runner, "measure_train_accuracy",
                        lambda model, config, source: round(_accuracy_of(config) + 0.02, 6))
    return trainer


def run(grid, output, **kwargs):
    lines = []
    rows = runner.run_grid(grid, output, log=lines.append,
                           on_progress=lambda rows: write_outputs(output, grid, rows), **kwargs)
    return rows, lines


def test_failed_cells_are_reported_and_finished_ones_never_rerun(tmp_path, fake_trainer):
    grid = grid_lib.load_grid(grid_lib.preset_path("quick"), overrides={"epochs": 3}, seeds=2)
    output = tmp_path / "results"
    rows, lines = run(grid, output)
    assert len(fake_trainer.calls) == 6 + 5  # the failed cell gets no second seed
    assert len(lines) == 11 and lines[-1].endswith("done")
    assert "alexnet-sigmoid seed 0: FAILED (RuntimeError: the loss became nan)" in lines[2]
    table = (output / "report.md").read_text()
    assert "| failed: RuntimeError: the loss became nan |" in table
    assert "ReLU against sigmoid: not measured (cell 'alexnet-sigmoid' failed" in table
    failures = json.loads((output / runner.FAILURES_FILE).read_text())
    assert [entry["cell"] for entry in failures.values()] == ["alexnet-sigmoid"]
    csv_lines = (output / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 11 and csv_lines[0].startswith("cell,seed,status,test_accuracy")
    results = json.loads((output / "results.json").read_text())
    alexnet = next(c for c in results["cells"] if c["cell"] == "alexnet")
    assert alexnet["runs"] == 2 and alexnet["epochs_to_95pct_best_val"] == 3
    assert (output / "ablation.png").stat().st_size > 10_000

    report_before = (output / "report.md").read_bytes()
    results_before = (output / "results.csv").read_bytes()
    fake_trainer.calls.clear()
    _, lines = run(grid, output)
    assert fake_trainer.calls == []
    assert all(" earlier): " in line for line in lines) and "(failed earlier)" in lines[2]
    assert (output / "report.md").read_bytes() == report_before
    assert (output / "results.csv").read_bytes() == results_before

    run(grid, output, retry_failed=True)
    assert [c.model_kwargs for c in fake_trainer.calls] == [{"activation": "sigmoid"}]


def test_a_run_killed_before_its_sidecar_is_read_back(tmp_path, fake_trainer, monkeypatch):
    grid = grid_lib.load_grid(grid_lib.preset_path("quick"), cells=["lenet-modern"])
    output = tmp_path / "results"
    run(grid, output)
    (sidecar,) = output.glob("runs/*/ablation.json")
    sidecar.unlink()
    rebuilt = []
    monkeypatch.setattr(runner, "_write_sidecar_afresh",
                        lambda row, run_dir, source: rebuilt.append(run_dir))
    run(grid, output)
    assert rebuilt == [sidecar.parent] and len(fake_trainer.calls) == 1


def test_a_wrong_field_in_a_finished_runs_metrics_is_one_sentence(tmp_path, fake_trainer):
    grid = grid_lib.load_grid(grid_lib.preset_path("quick"), cells=["lenet-modern"])
    output = tmp_path / "results"
    run(grid, output)
    (metrics,) = output.glob(f"runs/*/{run_dirs.DONE_FILE}")
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "test_accuracy": "0.9"}))
    with pytest.raises(ConfigError) as error:
        run(grid, output)
    assert str(error.value) == f"{metrics}'s test_accuracy must be a number in [0, 1], got '0.9'."


def test_runs_stored_in_another_results_json_are_read_back_not_trained(tmp_path, fake_trainer):
    lenets = grid_lib.load_grid(grid_lib.preset_path("quick"),
                                cells=["lenet-classic", "lenet-modern"])
    run(lenets, tmp_path / "first")
    stored = runner.stored_runs(tmp_path / "first" / "results.json")
    fake_trainer.calls.clear()
    wider = grid_lib.load_grid(grid_lib.preset_path("quick"),
                               cells=["lenet-classic", "lenet-modern", "alexnet"])
    _, lines = run(wider, tmp_path / "second", stored=stored)
    assert [config.model for config in fake_trainer.calls] == ["alexnet"]
    assert [" earlier): " in line for line in lines] == [True, True, False]
    first = json.loads((tmp_path / "first" / "results.json").read_text())["runs"]
    second = json.loads((tmp_path / "second" / "results.json").read_text())["runs"]
    assert second[:2] == first  # run directories and machines as first stored, too
    assert len(runner.stored_runs(tmp_path / "second" / "results.json")) == 3

    fake_trainer.calls.clear()  # a stored run of another config is not this cell's
    longer = grid_lib.load_grid(grid_lib.preset_path("quick"), overrides={"epochs": 1},
                                cells=["lenet-modern"])
    run(longer, tmp_path / "third", stored=stored)
    assert len(fake_trainer.calls) == 1


@pytest.mark.parametrize("change, message", [
    ({"test_accuracy": 1.5}, "runs[1]'s test_accuracy must be a number in [0, 1], got 1.5."),
    ({"val_accuracy_per_epoch": None}, "runs[1]'s val_accuracy_per_epoch must be a list"),
    ({"config": {"epochs": 0}}, "runs[1].config: epochs must be"),
    ({"config": {"colour": 1}}, "runs[1].config: Unknown config field 'colour'."),
])
def test_a_bad_run_in_a_results_json_to_merge_is_one_sentence(tmp_path, change, message):
    pending = RunRow("a", 0, RunConfig(model="lenet"), 100, 10)
    finished = dataclasses.replace(pending, status="finished", test_accuracy=0.9,
                                   machine="m", run_dir="runs/a", val_curve=[0.8, 0.9])
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": [pending.to_json(), finished.to_json()]}))
    assert len(runner.stored_runs(path)) == 1  # a pending run is not read back
    results = json.loads(path.read_text())
    results["runs"][1].update(change)
    path.write_text(json.dumps(results))
    with pytest.raises(ConfigError) as error:
        runner.stored_runs(path)
    assert str(error.value).startswith(f"{path}'s ") and message in str(error.value)


def test_extra_seeds_only_within_the_budget():
    cell = grid_lib.load_grid(grid_lib.preset_path("default"), cells=["alexnet"]).cells[0]
    first = RunRow("alexnet", 0, cell.config, 100, 10, status="finished", wall_seconds=599.0)
    assert runner.seeds_allowed(cell, first, budget_minutes=10) == 3
    assert runner.seeds_allowed(cell, dataclasses.replace(first, wall_seconds=600.0), 10) == 1
    assert runner.seeds_allowed(cell, dataclasses.replace(first, wall_seconds=6e4), 0) == 3
    assert runner.seeds_allowed(cell, dataclasses.replace(first, status="failed"), 10) == 1


def test_a_further_seed_that_already_ran_is_read_back_whatever_the_budget(tmp_path,
                                                                          fake_trainer):
    def lenet(seeds, budget):
        return grid_lib.load_grid(grid_lib.preset_path("quick"), cells=["lenet-modern"],
                                  seeds=seeds, seed_budget_minutes=budget)

    output = tmp_path / "results"
    run(lenet(2, 0), output)  # --seed-budget 0: both seeds trained
    sidecar = output / "runs" / "lenet-1" / runner.SIDECAR  # seed 0's run, made to be slow
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "wall_seconds": 3600}))
    fake_trainer.calls.clear()
    rows, lines = run(lenet(3, 10), output)  # seed 0 took over 10 minutes
    assert fake_trainer.calls == []  # seed 2 is over the budget; seed 1 is read back
    first = rows["lenet-modern"][0].seed
    assert [row.seed for row in rows["lenet-modern"]] == [first, first + 1]
    assert lines[1].startswith("[2/2] lenet-modern seed") and lines[1].endswith("done")
    assert json.loads((output / "results.json").read_text())["cells"][0]["runs"] == 2


def test_the_default_output_continues_the_same_grid(tmp_path):
    grid = grid_lib.load_grid(grid_lib.preset_path("quick"))
    first, continuing = runner.default_output(grid, tmp_path)
    assert not continuing and first.name.startswith("ablation-digits-")
    first.mkdir()
    run_dirs.write_json(first / runner.GRID_FILE, {"name": "quick", "datasets": ["digits"]})
    assert runner.default_output(grid, tmp_path) == (first, True)
    assert runner.default_output(grid, tmp_path, fresh=True)[0] != first
    other = grid_lib.load_grid(grid_lib.preset_path("default"))
    assert runner.default_output(other, tmp_path)[1] is False


def test_history_reading():
    assert epochs_to_share([0.1, 0.5, 0.96, 1.0]) == 3
    assert epochs_to_share([0.8, 0.2, 0.81]) == 1
    assert epochs_to_share([]) is None


def test_a_resumed_history_keeps_one_line_per_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,val_accuracy\n0,0.5,0.4\n1,0.6,0.5\n1,0.7,0.6\n2,0.8,0.7\n")
    assert read_val_history(path) == {"accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.4, 0.6, 0.7]}


# -- end to end -----------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_preset_end_to_end_and_rerun(tmp_path):
    output = tmp_path / "quick"
    command = [*ABLATE, "--preset", "quick", "--output", str(output)]
    first = subprocess.run(command, capture_output=True, text=True, env=env(), cwd=tmp_path,
                           timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    progress = [line for line in first.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 6 and progress[-1].endswith("; done")
    for name in ("results.csv", "results.json", "report.md", "ablation.png"):
        assert (output / name).stat().st_size > 0
    results = json.loads((output / "results.json").read_text())
    assert [row["cell"] for row in results["runs"]] == [
        "lenet-classic", "lenet-modern", "alexnet-sigmoid", "alexnet-no-dropout",
        "alexnet-no-augment", "alexnet",
    ]
    for row in results["runs"]:
        assert row["status"] == "finished" and row["epochs_run"] == 2
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["train_images"] == 1259
        assert row["params"] in (61_706, 5_303_498) and row["train_images_per_s"] > 0
        history = output / row["run_dir"] / "history.csv"
        curve = read_val_history(history)["val_accuracy"]
        assert [round(v, 4) for v in curve] == row["val_accuracy_per_epoch"]
    text = (output / "report.md").read_text()
    assert "Device: CPU" in text and text.count("\n| ") == 6 + 1
    claims = [line for line in text.splitlines() if line[:2] in {f"{n}." for n in range(1, 7)}]
    assert len(claims) == 6

    before = {name: (output / name).read_bytes() for name in ("report.md", "results.csv")}
    run_dirs_before = sorted(p.name for p in (output / "runs").iterdir())
    second = subprocess.run(command, capture_output=True, text=True, env=env(), cwd=tmp_path,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("(finished earlier)") == 6
    assert sorted(p.name for p in (output / "runs").iterdir()) == run_dirs_before
    assert {name: (output / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_an_ablation_killed_in_a_cell_is_finished_by_the_same_command(tmp_path):
    """SIGKILL in the cell's second epoch (its one compiled call per epoch is a `batch`
    arrival), then the identical command: the cell resumes from its first epoch's state in the
    same run directory, and the report is complete with the cell once."""
    output = tmp_path / "quick"
    command = [*ABLATE, "--preset", "quick", "--cells", "lenet-classic", "--epochs", "2",
               "--output", str(output)]
    killed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**env(), "KERAS_CNNS_KILL_AT": "batch:2"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    (run_dir,) = (output / "runs").iterdir()
    assert not (output / "report.md").exists() and not (run_dir / "metrics.json").exists()

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env=env())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "restored the state after epoch 1" in rerun.stdout
    assert [p.name for p in (output / "runs").iterdir()] == [run_dir.name]
    (row,) = json.loads((output / "results.json").read_text())["runs"]
    assert (row["cell"], row["status"], row["epochs_run"]) == ("lenet-classic", "finished", 2)
    assert len(read_val_history(run_dir / "history.csv")["val_accuracy"]) == 2
    assert (output / "report.md").read_text().count("\n| lenet-classic ") == 1


@pytest.mark.slow
def test_a_grid_with_comparisons_and_a_goal_end_to_end(tmp_path):
    """LeNet-5 with and without MixUp for three epochs on digits (the decade grid's machinery at
    LeNet's cost): the trick reaches the trainer, and report.md and results.json carry the
    declared comparison and goal instead of the seed's claims.

    Both runs must learn for the comparison to get a verdict. LeNet's digits recipe does not
    in 60 steps: its moving average (decay 0.99) still holds half the initial weights, and its
    AdamW rate 2e-2 sometimes kills a ReLU LeNet (0.10 test accuracy in 1 of 3 plain runs).
    At 3e-3 without the average, seeds 0-5 all ended at 0.91-0.95."""
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"name": "tiny", "seeds": 1, "defaults": {
        "model": "lenet", "dataset": "digits", "epochs": 3, "warmup_epochs": 0,
        "lr": 3e-3, "ema_decay": 0.0,
        "model_kwargs": {"activation": "relu", "pooling": "max"}}, "cells": [
        {"name": "lenet", "goal": {"test_accuracy": 0.01, "over_seeds": "min"}},
        {"name": "lenet-mixup", "mixup_alpha": 0.2, "compare_to": "lenet"}]}))
    output = tmp_path / "tiny"
    done = subprocess.run([*ABLATE, "--grid", str(path), "--output", str(output)],
                          capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((output / "results.json").read_text())
    runs = {row["cell"]: row for row in results["runs"]}
    assert [row["status"] for row in runs.values()] == ["finished", "finished"]
    mixup = RunConfig.from_json(output / runs["lenet-mixup"]["run_dir"] / "config.json")
    assert (mixup.mixup_alpha, mixup.epochs) == (0.2, 3)
    (comparison,) = results["comparisons"]
    assert (comparison["cell"], comparison["baseline"]) == ("lenet-mixup", "lenet")
    lenet = runs["lenet"]["test_accuracy"]  # rounded to 4 digits in the rows
    difference = (runs["lenet-mixup"]["test_accuracy"] - lenet) * 100
    assert comparison["verdict"] in ("helps", "hurts", "within seed noise")  # both learned
    assert comparison["difference_points"] == pytest.approx(difference, abs=0.011)
    (goal,) = results["goals"]
    assert (goal["cell"], goal["verdict"]) == ("lenet", "met")
    assert goal["value"] == pytest.approx(lenet, abs=5e-5)
    text = (output / "report.md").read_text()
    for sentence in (comparison["sentence"], goal["sentence"]):
        assert f"\n- {sentence}\n" in text
    assert "seed's claims" not in text and (output / "ablation.png").stat().st_size > 10_000
