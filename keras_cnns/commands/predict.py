"""Classify images with an export: `python scripts/predict.py EXPORT INPUT... [options]`.

INPUT is an image file, a folder (searched recursively) or a glob pattern ("photos/**/*.jpg",
quoted). PNG, JPEG, GIF or BMP files of any size, grey or colour, go uint8 in batches into the
export's `serving_default` signature, which resizes and normalises them as training did.

--format table (default) prints each path and one `probability  class` line per top-k class;
csv and json give, per image, the path, its true class when known, and the top-k labels and
probabilities. A folder in the `folder` source's layout (one subfolder per class, named as the
export's classes) also gives the accuracy and a confusion matrix: after the table, inside the
JSON, and for CSV on stdout when --output holds the CSV (else on stderr).

An unreadable image, or one whose header declares more than --max-pixels pixels (a possible
decompression bomb), is reported on stderr, one line per file, and the run goes on.
Exit status: 0 when every image was classified, 1 when some could not be (or the export is
broken), 2 for a bad option. --output is never overwritten unless --overwrite is given, never
one of the images or inside the export, and nothing is written when no image could be
classified.
"""

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from keras_cnns import files
from keras_cnns.commands.cli import OneLineParser, clashing_input, integer
from keras_cnns.serving import prediction  # TensorFlow only; no Keras

PROG = "predict.py"
FORMATS = ("table", "csv", "json")


def parse_args(argv, prog: str = PROG):
    parser = OneLineParser(prog=prog, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="the export directory")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (recursive) or quoted glob patterns")
    parser.add_argument("--top-k", type=integer(1), default=3,
                        help="classes per image (default 3)")
    parser.add_argument("--format", default="table", choices=FORMATS,
                        help="output format (default table)")
    parser.add_argument("--output", type=Path, help="write the output here instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--batch-size", type=integer(1), default=64,
                        help="images per call of the signature (default 64)")
    parser.add_argument("--max-pixels", type=integer(1), default=prediction.DEFAULT_MAX_PIXELS,
                        help="refuse images whose header declares more pixels (default "
                             f"{prediction.DEFAULT_MAX_PIXELS:,}, Pillow's limit)")
    args = parser.parse_args(argv)
    if args.output is not None:
        if args.output.is_dir():
            parser.error(f"--output {args.output} is a folder; give a file name")
        if args.output.exists() and not args.overwrite:
            parser.error(f"--output {args.output} exists; pass --overwrite to replace it")
        if not args.output.parent.is_dir():
            parser.error(f"the folder of --output {args.output} does not exist")
        if not os.access(args.output.parent, os.W_OK):
            parser.error(f"the folder of --output {args.output} is not writable")
    return args


def format_evaluation(evaluation, names) -> str:
    """Accuracy, then the confusion matrix with classes numbered (names can be long)."""
    lines = [f"accuracy {evaluation.accuracy:.4f} "
             f"({evaluation.correct} of {evaluation.total} images in class folders)",
             "confusion matrix (rows: true class, columns: predicted class)"]
    width = max(3, len(str(int(evaluation.confusion.max()))) + 1)
    label_width = max(len(f"{i} {name}") for i, name in enumerate(names))
    lines.append(" " * label_width + "".join(f"{i:>{width}}" for i in range(len(names))))
    for i, row in enumerate(evaluation.confusion):
        cells = "".join(f"{int(count):>{width}}" for count in row)
        lines.append(f"{f'{i} {names[i]}':<{label_width}}{cells}")
    return "\n".join(lines) + "\n"


def format_table(predictions, names, top_k) -> str:
    lines = []
    for p in predictions:
        folder = "" if p.label is None else f"  (class folder {names[p.label]})"
        lines.append(f"{p.path}{folder}")
        lines.extend(f"  {probability:.4f}  {names[i]}" for i, probability in p.top(top_k))
    return "".join(line + "\n" for line in lines)


def format_csv(predictions, names, top_k) -> str:
    k = min(top_k, len(names))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "true_label",
                     *(f"{key}_{rank}" for rank in range(1, k + 1)
                       for key in ("label", "probability"))])
    for p in predictions:
        top = [cell for i, probability in p.top(k) for cell in (names[i], f"{probability:.6f}")]
        writer.writerow([str(p.path), "" if p.label is None else names[p.label], *top])
    return out.getvalue()


def format_json(predictions, names, top_k, evaluation, failures) -> str:
    document = {
        "predictions": [
            {"path": str(p.path), "true_label": None if p.label is None else names[p.label],
             "top_k": [{"label": names[i], "probability": probability}
                       for i, probability in p.top(top_k)]}
            for p in predictions],
        "failed": failures,
    }
    if evaluation is not None:
        document["accuracy"] = evaluation.accuracy
        document["confusion_matrix"] = {"class_names": names,
                                        "rows_true_columns_predicted":
                                            evaluation.confusion.tolist()}
    return json.dumps(document, indent=1) + "\n"


def main(argv=None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    failures = []

    def report(message: str):
        failures.append(message)
        sys.stderr.write(f"{prog}: error: {message}\n")
        sys.stderr.flush()

    try:
        names = prediction.read_class_names(args.export)
        items, problems = prediction.collect_images(args.inputs, names)
        clash = args.output and clashing_input(args.output, [args.export,
                                                             *(item.path for item in items)])
        if clash:
            sys.stderr.write(f"{prog}: error: --output {args.output} would write into {clash}, "
                             "which this command reads; choose another path.\n")
            return 2
        for problem in problems:
            report(problem)
        if not items:
            return 1
        serving, names = prediction.load_export(args.export)
    except prediction.PredictError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return 1
    predictions = prediction.classify(serving, items, batch_size=args.batch_size,
                                      max_pixels=args.max_pixels, on_error=report)
    if not predictions:
        return 1
    evaluation = prediction.evaluate(predictions, len(names))
    summary = format_evaluation(evaluation, names) if evaluation is not None else ""
    if args.format == "json":
        text, summary = format_json(predictions, names, args.top_k, evaluation, failures), ""
    elif args.format == "csv":
        text = format_csv(predictions, names, args.top_k)
    else:
        text = format_table(predictions, names, args.top_k) + summary
        summary = "" if args.output is None else summary
    if args.output is not None:
        files.write_text(args.output, text)
        sys.stdout.write(summary)
    else:
        sys.stdout.write(text)
        # The CSV owns stdout; the accuracy must not break a reader parsing it.
        sys.stderr.write(summary if args.format == "csv" else "")
    return 1 if failures else 0
