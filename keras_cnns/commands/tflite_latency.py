"""Size, accuracy and batch-1 latency of an export: SavedModel vs float TFLite vs int8 TFLite.

    python scripts/tflite_latency.py EXPORT [--repeats 200] [--threads 1]

Converts the export's model.keras to a float and an int8 model.tflite in a temporary folder,
checks both on the stored test split and times one image per call, median of --repeats calls
after a warm-up (keras_cnns/measure/litert_latency.py). The export itself is not changed.
Prints a Markdown table (docs/BENCHMARKS.md, "LiteRT (TFLite)"), and writes the rows to --json.
"""

import json
from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, clashing_input, integer, user_errors

PROG = "tflite_latency.py"


def main(argv=None, prog: str = PROG) -> int:
    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--repeats", type=integer(1), default=200)
    parser.add_argument("--threads", type=integer(1), default=1, help="LiteRT interpreter threads")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.json and clashing_input(args.json, [args.export]):
        parser.error(f"--json {args.json} lies inside the export it measures")
    with user_errors(prog):
        from keras_cnns import files
        from keras_cnns.measure import litert_latency

        rows = litert_latency.measure(args.export, args.repeats, args.threads)
        print(litert_latency.format_table(rows))
        if args.json:
            files.write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0
