"""Tune a model's hyperparameters: `python scripts/tune.py --model NAME`.

Searches the model's search space (declared in its file under keras_cnns/models/: dropout,
width, lr, optionally augment; or --space FILE) with
keras-tuner, training every trial like train.py would (same flags, data pipeline and
strategy) for --epochs epochs (a quarter of the training run's by default). Prints a
results table, writes DIR/results.png, DIR/best.json (the training run with the best
values, at its full epochs) and DIR/tensorboard (`tensorboard --logdir DIR/tensorboard`:
keras-tuner's HParams dashboard and every trial's curves); retrain and export it with
`python scripts/train.py --config DIR/best.json`. Re-running the same command resumes;
--overwrite starts over. For several tuner processes see tuning/README.md.
"""

import re
import sys
from pathlib import Path

from keras_cnns.commands.cli import user_errors

PROG = "tune.py"


def parse_args(argv=None, prog: str = PROG):
    from keras_cnns.commands.flags import build_parser, config_from_args
    from keras_cnns.config import ConfigError

    parser = build_parser(prog, __doc__)
    group = parser.add_argument_group("search")
    group.add_argument("--tuner", choices=("random", "hyperband", "bayesian"), default="random",
                       help="search algorithm (default: random)")
    group.add_argument("--max-trials", type=int, default=10, metavar="N",
                       help="trials to run in all, counting those already finished; for "
                       "hyperband a cap on its trials, 0 for one full Hyperband iteration "
                       "(default: 10)")
    group.add_argument("--directory", metavar="DIR", default=None,
                       help="working directory of the search (default: "
                       "tuning/runs/<model>-<dataset>)")
    group.add_argument("--space", metavar="JSON", default=None,
                       help="search space file (default: the model's own, from its registry entry)")
    group.add_argument("--overwrite", action="store_true", default=False,
                       help="delete the search in DIR and start over (default: resume it)")
    # --epochs is each trial's budget here; the training run best.json describes keeps its own.
    parser._option_string_actions["--epochs"].help = (
        "epochs each trial trains, Hyperband's max_epochs (default: a quarter of the "
        "training run's epochs, at least 1)"
    )
    args = parser.parse_args(argv)
    args.search_epochs = vars(args).pop("epochs", None)
    try:
        if getattr(args, "resume", None):
            raise ConfigError("tune.py resumes by re-running the same command; --resume is "
                              "for train.py.")
        config = config_from_args(args).resolve()
    except ConfigError as error:
        parser.exit(2, f"{prog}: error: {error}\n")
    return config, args


def main(argv=None, prog: str = PROG) -> int:
    config, args = parse_args(argv, prog)
    with user_errors(prog):
        from keras_cnns import tuning

        space = (tuning.load_space(args.space) if args.space
                 else tuning.default_space(config.model))
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.dataset)
        directory = Path(args.directory or Path("tuning") / "runs" / f"{config.model}-{slug}")
        part = tuning.role()
        epochs = args.search_epochs
        if epochs is None:
            epochs = tuning.search_epochs(config)
        print(
            f"{config.model} on {config.dataset}: {args.tuner} search over "
            f"{', '.join(space.names)} ({space.path}), up to {args.max_trials or 'all'} trials "
            f"of {epochs} epoch{'s' * (epochs != 1)}, in {directory}"
            + ("" if part == "single" else f" [{part} of a distributed search]"),
            flush=True,
        )
        if args.tuner == "hyperband":
            print(
                f"hyperband: max_epochs={epochs}; one full iteration is "
                f"{tuning.hyperband_trials(epochs)} trials (continued models count "
                "again); --max-trials caps them",
                flush=True,
            )
        try:
            result = tuning.run_search(
                config, space, directory=directory, tuner=args.tuner,
                max_trials=args.max_trials, epochs=epochs, overwrite=args.overwrite,
                log=lambda line: print(line, flush=True),
            )
        except tuning.TuningError as error:
            sys.stderr.write(f"{prog}: error: {error}\n")
            return 1
        board = (f"tensorboard --logdir {result.tensorboard_dir}"
                 if result.tensorboard_dir.is_dir() else None)
        if part == "worker":
            ran = ", ".join(result.ran) or "none"
            print(f"Search finished; this worker completed trials: {ran}.")
            if board:
                print(f"its trials in TensorBoard: {board}")
            return 0
        print()
        print(tuning.format_table(result))
        print()
        print(tuning.summary(result))
        files = tuning.write_reports(result)
        print(f"table          {files['csv']}")
        print(f"plot           {files['plot']}")
        if board:
            print(f"tensorboard    {board}")
        if "best" not in files:
            sys.stderr.write(f"{prog}: error: no trial completed, so there is no best.json; "
                             "see the trial messages above.\n")
            return 1
        print(f"best config    {files['best']}")
        print(f"retrain        python scripts/train.py --config {files['best']}")
    return 0
