"""Print the parity report: `python scripts/parity.py [--model NAME ...] [--keras FILE ...]`.

For each model, the max relative logit gap against the TF backend and the time per forward
batch of: Keras under TensorFlow, JAX and torch (each in a subprocess with KERAS_BACKEND set),
the PyTorch reference module, and ONNX Runtime on the ONNX export (keras_cnns.measure.logit_parity).
Registry models (default: every registered one) are freshly initialised at their recipe's image
size (1 channel, 10 classes);
`--keras` adds trained models (.keras files or exports). Exit status 0 when every gap is at
most 1e-5, else 1.
"""

import json
import os
import sys
from pathlib import Path

# This process is the TensorFlow side: it writes the cases, the reference and the ONNX file.
os.environ["KERAS_BACKEND"] = "tensorflow"

from keras_cnns import files
from keras_cnns.commands.cli import OneLineParser, user_errors

PROG = "parity.py"


def main(argv=None, prog: str = PROG) -> int:
    from keras_cnns.measure.logit_parity import PATHS, TOLERANCE

    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="*", default=None,
                        help="registry models to check, freshly initialised (default: every "
                        "registered model; --model alone: none)")
    parser.add_argument("--keras", nargs="+", default=[], type=Path, metavar="PATH",
                        help="trained models to check too: .keras files or export directories")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS,
                        help="which paths to run (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed forward passes per path; the median is reported")
    parser.add_argument("--image-size", type=int,
                        help="input size of the registry models (default: each recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        parser.error("--batch-size and --repeats must be positive")
    if args.model == [] and not args.keras:
        parser.error("nothing to check: give --model names or --keras paths")

    with user_errors(prog):
        from keras_cnns.measure import logit_parity as parity

        rows = parity.run(
            args.model, args.keras, paths=args.paths, batch_size=args.batch_size,
            repeats=args.repeats, seed=args.seed, image_size=args.image_size,
            log=lambda message: print(f"[parity] {message}", file=sys.stderr, flush=True),
        )
        if args.json:
            files.write_text(args.json, json.dumps(rows, indent=2) + "\n")
        print(parity.format_table(rows, TOLERANCE))
        return 0 if parity.passed(rows, TOLERANCE) else 1
