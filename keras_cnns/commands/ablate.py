"""Measure the seed's claims: `python scripts/ablate.py --dataset fashion_mnist --data-dir DIR`.

Runs a grid of training runs (by default LeNet-5 classic and modern; AlexNet with sigmoid,
without dropout, without augmentation, and whole; both on 5%, 25% and 100% of the data; other
presets: the decade's tricks, the recipes' goals) through the project's trainer and writes
results.csv, results.json, report.md and ablation.png into
runs/ablation-<dataset>-<UTC stamp>/ (or --output). Re-running the same command continues the
newest results directory of the same grid and data set: finished runs are read back, not
trained again. Exit status 1 when a run failed (it is in the report), 2 for a bad argument.
"""

import argparse
import logging
from pathlib import Path

from keras_cnns.commands.cli import (
    OneLineParser,
    check_output_folder,
    comma_names,
    integer,
    number,
    user_errors,
)

# Flags that set a RunConfig field of every cell, with their types (RunConfig checks the rest).
_CELL_OVERRIDES = {
    "dataset": str,
    "data_dir": str,
    "epochs": integer(1),
    "image_size": integer(1),
    "strategy": str,
    "mixed_precision": str,
    "deterministic": bool,
    "jit_compile": bool,
}


class _NoRetracingWarnings(logging.Filter):
    """Every run of the grid builds a new model, so TensorFlow's "triggered tf.function
    retracing" warning is expected here and says nothing about the runs."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


PROG = "ablate.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from keras_cnns.ablation.grid import PRESETS
    from keras_cnns.commands.flags import HELP

    parser = OneLineParser(
        prog=prog,
        description=__doc__.split("\n\n")[1],
        argument_default=argparse.SUPPRESS,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--preset", choices=PRESETS,
        help="built-in grid: default (the seed's claims: every cell, the data-scale axis; the "
        "default), quick (the same on digits, 2 epochs, 1 seed, no data-scale axis), decade "
        "(AlexNet's recipe plus each later trick, on Fashion-MNIST), recipes-digits or "
        "recipes-fashion (each model's default recipe against its goals); the *-tries presets: "
        "what was tried for a recipe goal",
    )
    which.add_argument("--grid", metavar="FILE", help="a grid JSON file of your own")
    parser.add_argument("--cells", metavar="A,B", type=comma_names("cell names"),
                        help="run only these cells (comma-separated)")
    parser.add_argument(
        "--seeds", type=integer(1), metavar="N",
        help="seeds per cell (default: the grid's, 3 in the default grid)",
    )
    parser.add_argument(
        "--seed-budget", type=number(0), metavar="MINUTES", dest="seed_budget",
        help="run a cell's further seeds only when its first run took less (default: the "
        "grid's, 10; 0: always)",
    )
    parser.add_argument(
        "--output", metavar="DIR",
        help="results directory (default: continue the newest runs/ablation-<dataset>-* of "
        "this grid, or start a new one)",
    )
    parser.add_argument(
        "--merge", metavar="RESULTS_JSON", action="append",
        help="read the finished runs of another results.json (another machine's, or one stored "
        "in docs/) instead of training them, where a cell runs the same config; repeatable",
    )
    parser.add_argument("--fresh", action="store_true",
                        help="start a new results directory even if one of this grid exists")
    parser.add_argument("--retry-failed", action="store_true", dest="retry_failed",
                        help="train again the runs that failed before (default: report them)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Keras progress bars for every run")
    overrides = parser.add_argument_group("applied to every cell (RunConfig fields)")
    for name, kind in _CELL_OVERRIDES.items():
        flag = "--" + name.replace("_", "-")
        text = HELP[name] + " (default: the grid's)"
        if kind is bool:
            overrides.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif name == "mixed_precision":  # as in train.py: alone, it means auto
            overrides.add_argument(flag, nargs="?", const="auto", metavar="MODE", help=text)
        else:
            overrides.add_argument(flag, type=kind, metavar=name.upper(), help=text)
    return parser


def main(argv=None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if "output" in vars(args):
        check_output_folder(parser, Path(args.output), "results directory")
    logging.getLogger("tensorflow").addFilter(_NoRetracingWarnings())
    with user_errors(prog):
        from keras_cnns.ablation import (
            default_output,
            load_grid,
            preset_path,
            run_grid,
            stored_runs,
            write_outputs,
        )
        from keras_cnns.ablation.runs import GRID_FILE

        given = vars(args)
        path = given.get("grid") or preset_path(given.get("preset", "default"))
        grid = load_grid(
            path,
            overrides={name: given[name] for name in _CELL_OVERRIDES if name in given},
            seeds=given.get("seeds"),
            seed_budget_minutes=given.get("seed_budget"),
            cells=given.get("cells"),
        )
        stored = {}
        for path in given.get("merge", []):
            stored.update(stored_runs(Path(path)))
        if "output" in given:
            output = Path(given["output"])
            continuing = (output / GRID_FILE).exists()
        else:
            output, continuing = default_output(grid, fresh=given.get("fresh", False))
        print(
            f"Ablation '{grid.name}': {len(grid.cells)} cells on {', '.join(grid.datasets)}; "
            f"{'continuing' if continuing else 'results will go to'} {output}",
            flush=True,
        )
        rows = run_grid(
            grid,
            output,
            verbose="auto" if given.get("verbose") else 0,
            retry_failed=given.get("retry_failed", False),
            log=lambda line: print(line, flush=True),
            on_progress=lambda rows: write_outputs(output, grid, rows),
            stored=stored,
        )
        failed = [row for cell_rows in rows.values() for row in cell_rows if row.status == "failed"]
        print(f"\nreport   {output / 'report.md'}\nplot     {output / 'ablation.png'}")
        if failed:
            print(f"{len(failed)} run(s) failed; the report names them, failures.json has the "
                  "tracebacks, --retry-failed trains them again.")
            return 1
    return 0
