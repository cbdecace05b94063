"""Size, accuracy and batch-1 latency of an export: SavedModel vs float TFLite vs int8 TFLite.

    python scripts/tflite_latency.py EXPORT [--repeats 200] [--threads 1]

Converts the export's model.keras to a float and an int8 model.tflite in a temporary folder,
checks both on the stored test split and times one image per call, median of --repeats calls
after a warm-up (keras_cnns/measure/litert_latency.py). The export itself is not changed.
Prints a Markdown table (docs/BENCHMARKS.md, "LiteRT (TFLite)").
"""

from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, user_errors

PROG = "tflite_latency.py"


def main(argv=None, prog: str = PROG) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    with user_errors(prog):
        from keras_cnns.measure import litert_latency

        print(litert_latency.format_table(
            litert_latency.measure(args.export, args.repeats, args.threads)))
    return 0
