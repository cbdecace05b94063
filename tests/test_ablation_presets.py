"""The built-in grids (`ablate --preset NAME`): every cell is its model's plain recipe changed
by the flags its note names, and nothing else (the runner itself: test_ablation.py)."""

import dataclasses
import json
from pathlib import Path

import pytest

from keras_cnns.ablation import grid as grid_lib
from keras_cnns.config import RunConfig

BENCHMARKS = Path(__file__).parent.parent / "docs" / "benchmarks"
# AlexNet's Fashion-MNIST recipe before it took the 128 px erasing cell of its tries.
FASHION_AS_TRIED = {"image_size": 64, "augment": "light", "mixed_precision": "off"}
EARLIER_ALL_CELL = ("decade-fashion-mnist-3ep.json", "alexnet-all")


def cells_changing_the_recipe(preset: str, dataset: str, changes: dict, **as_tried) -> dict:
    """The preset's cells by name, each checked to be AlexNet's `dataset` recipe (with the
    `as_tried` values the grid pins: the recipe it changed, since replaced) plus its change."""
    grid = grid_lib.load_grid(grid_lib.preset_path(preset))
    cells = {cell.name: cell for cell in grid.cells}
    recipe = RunConfig(model="alexnet", dataset=dataset, **as_tried).resolve()
    assert list(cells) == list(changes)
    for name, change in changes.items():
        assert cells[name].config == dataclasses.replace(recipe, **change), name
    return cells


def comparisons(cells: dict) -> dict:
    return {name: cell.compare_to for name, cell in cells.items() if cell.compare_to}


def test_the_built_in_grids():
    default = grid_lib.load_grid(grid_lib.preset_path("default"))
    cells = {cell.name: cell for cell in default.cells}
    classic = cells["lenet-classic"].config
    assert (classic.model, classic.augment) == ("lenet", "none")
    assert classic.model_kwargs == {"activation": "sigmoid", "pooling": "avg"}
    assert cells["alexnet-sigmoid"].config.model_kwargs == {"activation": "sigmoid"}
    assert cells["alexnet-no-dropout"].config.dropout == 0.0
    assert cells["alexnet-no-augment"].config.augment == "none"
    assert cells["alexnet"].config.augment != "none" and cells["alexnet"].config.dropout > 0
    scale = {(c.data_scale_of, c.config.train_fraction) for c in default.cells if c.data_scale_of}
    assert scale == {(base, f) for base in ("alexnet", "lenet-modern") for f in (0.05, 0.25)}
    quick = grid_lib.load_grid(grid_lib.preset_path("quick"))
    assert {c.config.epochs for c in quick.cells} == {2} and {c.seeds for c in quick.cells} == {1}
    assert quick.datasets == ["digits"] and not any(c.data_scale_of for c in quick.cells)


def test_the_decade_grid_adds_one_trick_per_cell_to_alexnets_recipe():
    tricks = {
        "alexnet-ema": {"ema_decay": 0.999},
        "alexnet-clip": {"clip_norm": 1.0},
        "alexnet-mixup": {"mixup_alpha": 0.2},
        "alexnet-cutmix": {"cutmix_alpha": 1.0},
        "alexnet-randaugment": {"augment": "randaugment"},
        "alexnet-erase": {"augment": "erase"},
        "alexnet-light-erase": {"erase_prob": 0.5},
        "alexnet-all": {"ema_decay": 0.999, "clip_norm": 1.0, "mixup_alpha": 0.2,
                        "cutmix_alpha": 1.0, "augment": "randaugment", "erase_prob": 0.5},
        "alexnet-no-augment": {"augment": "none"},
    }
    cells = cells_changing_the_recipe("decade", "fashion_mnist", {"alexnet": {}, **tricks},
                                      **FASHION_AS_TRIED)
    assert grid_lib.load_grid(grid_lib.preset_path("decade")).datasets == ["fashion_mnist"]
    assert {cell.seeds for cell in cells.values()} == {3}
    assert comparisons(cells) == {
        **{name: ("alexnet",) for name in tricks if name != "alexnet-no-augment"},
        "alexnet-randaugment": ("alexnet", "alexnet-no-augment"),
        "alexnet-erase": ("alexnet", "alexnet-no-augment"),
        "alexnet-light-erase": ("alexnet", "alexnet-erase"),
    }


@pytest.mark.parametrize(("preset", "dataset"),
                         [("recipes-digits", "digits"), ("recipes-fashion", "fashion_mnist")])
def test_the_recipe_grids_run_each_models_plain_default(preset, dataset):
    grid = grid_lib.load_grid(grid_lib.preset_path(preset))
    cells = {cell.name: cell for cell in grid.cells}
    assert list(cells) == ["lenet", "alexnet"] and grid.seed_budget_minutes == 0
    for model, cell in cells.items():  # exactly what `train.py --model M` trains
        assert cell.config == RunConfig(model=model, dataset=dataset).resolve()
    goals = {name: (cell.seeds, cell.goal) for name, cell in cells.items()}
    if preset == "recipes-digits":
        assert goals == {"lenet": (5, grid_lib.Goal(0.97, "min", 40)),
                         "alexnet": (3, grid_lib.Goal(0.99, "median"))}
    else:
        assert goals == {"lenet": (3, grid_lib.Goal(0.90, "median")),
                         "alexnet": (3, grid_lib.Goal(0.93, "median"))}


def test_the_alexnet_digits_tries_change_the_plain_recipe_by_their_flags_alone():
    cells = cells_changing_the_recipe("alexnet-digits-tries", "digits", {
        "alexnet": {}, "alexnet-erase": {"augment": "erase"},
        "alexnet-randaugment": {"augment": "randaugment"},
        "alexnet-mixup": {"mixup_alpha": 0.2}, "alexnet-cutmix": {"cutmix_alpha": 1.0},
        "alexnet-smoothing": {"label_smoothing": 0.1}, "alexnet-lr2e-3": {"lr": 0.002},
        "alexnet-medium": {"augment": "medium"},
        "alexnet-medium-smoothing": {"augment": "medium", "label_smoothing": 0.1},
        "alexnet-sgd": {"optimizer": "sgd", "lr": 0.01}, "alexnet-30-epochs": {"epochs": 30},
        "alexnet-medium-smoothing0.2": {"augment": "medium", "label_smoothing": 0.2},
        "alexnet-medium-smoothing-erase": {"augment": "medium", "label_smoothing": 0.1,
                                           "erase_prob": 0.25},
        "alexnet-strong-smoothing": {"augment": "strong", "label_smoothing": 0.1}},
        augment="light", label_smoothing=0.0)
    assert {cell.goal for cell in cells.values()} == {grid_lib.Goal(0.99, "median")}
    assert comparisons(cells) == {name: ("alexnet",) for name in cells if name != "alexnet"}


def test_the_alexnet_fashion_tries_change_the_plain_recipe_by_their_flags_alone():
    bigger = {"image_size": 96, "mixed_precision": "bfloat16"}
    cells = cells_changing_the_recipe("alexnet-fashion-tries", "fashion_mnist", {
        "alexnet": {}, "alexnet-erase": {"augment": "erase"},
        "alexnet-96-bf16": bigger, "alexnet-96-bf16-erase": {**bigger, "augment": "erase"},
        "alexnet-96-bf16-erase-40-epochs": {**bigger, "augment": "erase", "epochs": 40},
        "alexnet-128-bf16-erase": {**bigger, "image_size": 128, "augment": "erase"}},
        **FASHION_AS_TRIED)
    assert {cell.goal for cell in cells.values()} == {grid_lib.Goal(0.93, "median")}
    assert comparisons(cells) == {
        "alexnet-erase": ("alexnet",), "alexnet-96-bf16": ("alexnet",),
        "alexnet-96-bf16-erase": ("alexnet-erase", "alexnet-96-bf16"),
        "alexnet-96-bf16-erase-40-epochs": ("alexnet-96-bf16-erase",),
        "alexnet-128-bf16-erase": ("alexnet-96-bf16-erase",)}


@pytest.mark.parametrize("stored", sorted(
    path.name for path in BENCHMARKS.glob("*.json") if '"grid": ' in path.read_text()))
def test_a_stored_grid_report_is_what_its_preset_runs_now(stored):
    """A report in docs/benchmarks was measured by `ablate --preset NAME`: every run in it must
    be the config that preset gives its cell today, so a recipe changed later leaves the docs'
    figures reproducible (a grid pins in `defaults` the recipe its cells change)."""
    report = json.loads((BENCHMARKS / stored).read_text())
    runs = report["runs"]
    command_line = {"data_dir": runs[0]["config"]["data_dir"]}
    if "This command set, in every cell: epochs=" in report["description"]:
        command_line["epochs"] = runs[0]["config"]["epochs"]
    grid = grid_lib.load_grid(grid_lib.preset_path(report["grid"]), overrides=command_line)
    for run in runs:
        # The docs say this report ran before `alexnet-all` erased too (--erase-prob).
        before = {"erase_prob": None} if (stored, run["cell"]) == EARLIER_ALL_CELL else {}
        measured = RunConfig.from_dict(run["config"])
        now = dataclasses.replace(grid.cell(run["cell"]).config, seed=run["seed"], **before)
        assert now == dataclasses.replace(measured, run_dir=now.run_dir), run["cell"]
