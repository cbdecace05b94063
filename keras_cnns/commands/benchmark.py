"""Side-by-side speed of our training path and the PyTorch reference, on this machine.

    python scripts/benchmark.py --model NAME --image-size 96

Runs every case of --cases in a fresh child process, interleaved, --repeats times, and prints
their medians and ratios (the cases and the arithmetic: keras_cnns/measure/throughput.py);
the report goes to --json as well (default runs/benchmarks/MODEL-SIZE.json).
"""

import argparse
import json
from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, integer, user_errors

PROG = "benchmark.py"


def measurement_parser(prog: str, description: str) -> OneLineParser:
    """The flags benchmark and profile share: which model, at what size, on which data."""
    from keras_cnns.models import default_model, list_models

    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--model", default=default_model(), choices=list_models())
    parser.add_argument("--image-size", type=integer(1), default=96)
    parser.add_argument("--batch-size", type=integer(1), default=128)
    parser.add_argument("--dataset", default="synthetic")
    return parser


def build_parser(prog: str = PROG) -> OneLineParser:
    from keras_cnns.measure.isa import ISA_CHOICES
    from keras_cnns.measure.throughput import CASES, EPOCH_FLOPS, MIN_STEPS

    parser = measurement_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=integer(1),
                        help=f"steps per timed epoch (default: about {EPOCH_FLOPS:.1e} training "
                        f"FLOPs, {MIN_STEPS} to 150 steps)")
    parser.add_argument("--epochs", type=integer(1), default=2, help="timed epochs per run")
    parser.add_argument("--repeats", type=integer(1), default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--steps-per-execution", type=integer(0))
    parser.add_argument("--batch-shards", type=integer(0),
                        help="the trainer's batch shards in our training cases (default: its "
                        "automatic choice)")
    parser.add_argument("--mixed-precision")
    parser.add_argument("--augment")
    parser.add_argument("--isa", choices=ISA_CHOICES, default="native",
                        help="cap oneDNN, ATen, inductor and XLA to this ISA in every case "
                        "(avx2: an AVX2 machine's kernels on an AVX-512 host); default: the "
                        "CPU's own")
    parser.add_argument("--json", help="write the report here (default: runs/benchmarks/...)")
    return parser


def main(argv=None, prog: str = PROG) -> int:
    from keras_cnns.measure.throughput import CASES

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    unknown = sorted(set(filter(None, args.cases.split(","))) - set(CASES))
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; cases: {', '.join(CASES)}")
    with user_errors(prog):
        from keras_cnns import files
        from keras_cnns.measure import throughput

        throughput.check_settings(args)
        report = throughput.benchmark(args)
        print()
        print(report["table"])
        failed = report["failed"]
        if not report["cases"]:
            # An empty report would only stand where an earlier good one may have been.
            raise SystemExit(f"{prog}: error: every case failed ({_first_failure(failed)}); "
                             "no report written.")
        path = Path(args.json or f"runs/benchmarks/{args.model}-{args.image_size}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(path, json.dumps(report, indent=2) + "\n")
        print(f"\nreport: {path}")
        if failed:
            raise SystemExit(f"{prog}: error: {', '.join(failed)} failed "
                             f"({_first_failure(failed)}); the report at {path} leaves them out.")
    return 0


def _first_failure(failed: dict) -> str:
    case, reasons = next(iter(failed.items()))
    return f"{case}: {reasons[0].rstrip('.')}"
