"""Score a run directory or an export: `python scripts/evaluate.py runs/<run>`.

Prints accuracy (top-1, and top-5 with more than 5 classes) and loss on the test split (or
`--split`), and writes a confusion-matrix PNG (`--confusion`; default `confusion-<split>.png`
inside a run directory, and `confusion-<export>-<split>.png` in the current directory for an
export, which it never writes into: verify.py would then find a file its manifest does not
list). An export of
converted weights (`convert.py --to export`, such as torchvision's AlexNet) is scored through
its serving_default on the images `--dataset` names, as torchvision scores ImageNet:

    python scripts/evaluate.py EXPORT --dataset folder --data-dir imagenet-val
"""

from pathlib import Path

from keras_cnns.commands.cli import user_errors

PROG = "evaluate.py"


def main(argv=None, prog: str = PROG) -> int:
    from keras_cnns.commands.cli import OneLineParser

    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run directory (runs/...) or an export (saved_models/...)")
    parser.add_argument("--dataset", help="score on another source (default: the trained one)")
    parser.add_argument("--data-dir", help="where --dataset's files are")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--confusion", help="confusion-matrix PNG path (default: in the run "
                        "directory, or in the current directory for an export)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    with user_errors(prog):
        from keras_cnns.config import ConfigError
        from keras_cnns.training.evaluation import confusion_path, evaluate_path

        if not Path(args.path).exists():
            raise ConfigError(f"{args.path} does not exist.")
        png = confusion_path(args.path, args.split, args.confusion)
        metrics = evaluate_path(
            args.path,
            dataset=args.dataset,
            data_dir=args.data_dir,
            split=args.split,
            batch_size=args.batch_size,
            confusion_png=png,
        )
        from keras_cnns.export.scoring import TOP_K, TOP_K_NAME

        top = metrics.get(f"test_{TOP_K_NAME}")
        top_k = "" if top is None else f"top-{TOP_K} {top:.4f}  "
        print(
            f"{metrics['dataset']} {args.split}: accuracy {metrics['test_accuracy']:.4f}  "
            f"{top_k}loss {metrics['test_loss']:.4f}  ({metrics['test_examples']} images)"
        )
        print(f"confusion matrix  {png}")
    return 0
