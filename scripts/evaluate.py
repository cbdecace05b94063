"""Score a run directory or an export: `python scripts/evaluate.py runs/<run>`.

Prints accuracy and loss on the test split (or `--split`), and writes a confusion-matrix
PNG (`--confusion`, default `confusion-<split>.png` inside the run or export).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.runner import quiet_tensorflow, user_errors  # noqa: E402

quiet_tensorflow()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run directory (runs/...) or an export (saved_models/...)")
    parser.add_argument("--dataset", help="score on another source (default: the trained one)")
    parser.add_argument("--data-dir", help="where --dataset's files are")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--confusion", help="confusion-matrix PNG path")
    args = parser.parse_args(argv)
    with user_errors("evaluate.py"):
        from keras_cnns.training.evaluate import evaluate_path

        png = Path(args.confusion or Path(args.path) / f"confusion-{args.split}.png")
        metrics = evaluate_path(
            args.path,
            dataset=args.dataset,
            data_dir=args.data_dir,
            split=args.split,
            batch_size=args.batch_size,
            confusion_png=png,
        )
        print(
            f"{metrics['dataset']} {args.split}: accuracy {metrics['test_accuracy']:.4f}  "
            f"loss {metrics['test_loss']:.4f}  ({metrics['test_examples']} images)"
        )
        print(f"confusion matrix  {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
