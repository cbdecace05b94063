"""Measure "edges, then parts, then categories": linear probes on every layer, edge-like filters.

Trains each model of the preset (and one-change variants: the other activation, the other
augmentation) through the project's trainer on a shortened schedule, then fits a logistic
regression on every layer's globally average-pooled activations (a linear probe), for the
trained network and for the same network untrained, and scores the first layer's filters for
edges. Writes probes.json, report.md (tables and verdicts computed from the numbers) and
probes.png into --output (default runs/probe-<dataset>). Re-running the same command continues:
finished runs and measurements are read back, an unfinished run resumes. See docs/visualize.md,
"The claim, measured". Exit status 1 when a run failed (the report names it), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_cnns.commands.cli import (
    OneLineParser,
    check_output_folder,
    comma_names,
    integer,
    number,
    user_errors,
)

PROG = "probe.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from keras_cnns.commands.flags import HELP

    parser = OneLineParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("--preset", choices=("default", "quick"), default="default",
                        help="default (both models, 15 runs sized for about 20 min on "
                             "Fashion-MNIST on 2 cores) or quick (LeNet-5 on digits, a smoke "
                             "test); default: default")
    parser.add_argument("--dataset", default="digits", help=HELP["dataset"] + " (default "
                        "digits)")
    parser.add_argument("--data-dir", dest="data_dir", help=HELP["data_dir"])
    parser.add_argument("--models", type=comma_names("model names"), metavar="A,B",
                        help="models to study, comma-separated (default: the preset's)")
    parser.add_argument("--seeds", type=integer(1, 20), metavar="N",
                        help="seeds per cell, replacing the preset's (1 gives no seed noise "
                             "to judge by)")
    parser.add_argument("--epochs", type=integer(1, 1000), metavar="N",
                        help="epochs of every run, replacing the preset's")
    parser.add_argument("--train-fraction", dest="train_fraction", metavar="F",
                        type=number(high=1.0, above=0.0),
                        help="share of the training split every run trains on, replacing the "
                             "preset's")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="study directory (default runs/probe-<dataset>); an earlier study "
                             "there is continued")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over: delete an earlier study's runs and results in "
                             "--output, or write into a non-empty folder that holds none")
    parser.add_argument("--verbose", action="store_true",
                        help="show Keras progress bars for every run")
    return parser


def main(argv=None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    output = args.output or Path("runs") / ("probe-" + "".join(
        c if c.isalnum() or c in "_-" else "_" for c in args.dataset))
    check_output_folder(parser, output)
    with user_errors(prog):
        from keras_cnns.measure.probe_plan import load_plan
        from keras_cnns.measure.probe_report import FIGURE_FILE, REPORT_FILE, RESULTS_FILE
        from keras_cnns.measure.probe_study import check_output, run_study

        continuing = check_output(output, overwrite=args.overwrite)
        plan = load_plan(args.preset, dataset=args.dataset, data_dir=args.data_dir,
                         output=output, models=args.models, seeds=args.seeds,
                         epochs=args.epochs, train_fraction=args.train_fraction)
        runs = sum(len(cell.configs) for cell in plan.cells)
        print(f"Probe study '{plan.preset}': {', '.join(plan.models)} on {plan.dataset}, "
              f"{len(plan.cells)} cells, {runs} runs; "
              f"{'continuing' if continuing else 'results will go to'} {output}", flush=True)
        results = run_study(plan, overwrite=args.overwrite,
                            verbose="auto" if args.verbose else 0,
                            log=lambda line: print(line, flush=True))
    print(f"\nresults  {output / RESULTS_FILE}\nreport   {output / REPORT_FILE}\n"
          f"figure   {output / FIGURE_FILE}")
    failed = [row for model in results["models"] for cell in model["cells"]
              for row in cell["runs"] if row["status"] == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed (diverged); the report's tables leave them out.")
        return 1
    return 0
