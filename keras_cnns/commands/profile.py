"""Where a training step's time goes, op by op, in our path and in the PyTorch reference.

    python scripts/profile_step.py --model NAME --image-size 96

Traces one training epoch of each side in a child process of its own, groups the op times
into the same categories on both sides, and prints them with the bound on what framework
work on our side could buy (keras_cnns/measure/profiling.py says how).
"""

from keras_cnns.commands.benchmark import measurement_parser
from keras_cnns.commands.cli import OneLineParser, integer, user_errors

PROG = "profile_step.py"


def build_parser(prog: str = PROG) -> OneLineParser:
    from keras_cnns.measure.isa import ISA_CHOICES

    parser = measurement_parser(prog, __doc__.splitlines()[0])
    parser.add_argument("--steps", type=integer(1),
                        help="traced steps (default: from the model's FLOPs, 10 to 100)")
    parser.add_argument("--layout", choices=("nchw", "cl"), default="nchw",
                        help="PyTorch memory format: nchw (the seed's code) or cl")
    parser.add_argument("--mixed-precision")
    parser.add_argument("--input", choices=("pipeline", "constant"), default="pipeline",
                        help="our side's input: train.py's pipeline (default), or its first "
                        "batch repeated, as the PyTorch side trains on one in-memory batch")
    parser.add_argument("--batch-shards", type=integer(0), default=1,
                        help="our side's batch shards (training/sharding.py). The default, 1, "
                        "profiles the step in one piece, so that its op times add up to the "
                        "step and its kernels have PyTorch's shapes; the trainer's automatic "
                        "choice is 0. With N > 1 the op times add up over N cores")
    parser.add_argument("--isa", choices=ISA_CHOICES, default="native",
                        help="cap both sides' kernels to this ISA (avx2: an AVX2 machine's "
                        "kernels on an AVX-512 host); default: the CPU's own")
    parser.add_argument("--kernels", action="store_true",
                        help="also list the oneDNN kernels each side ran, shape by shape "
                        "(one more run per side with ONEDNN_VERBOSE=1)")
    parser.add_argument("--json", help="also write the report here")
    return parser


def main(argv=None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    with user_errors(prog):
        import json

        from keras_cnns import files
        from keras_cnns.measure import profiling
        from keras_cnns.measure.throughput import check_settings

        check_settings(args)
        try:
            report = profiling.profile(args)
        except profiling.ProfileSideError as error:
            raise SystemExit(f"{prog}: {error}") from None
        print(profiling.format_report(report))
        if args.json:
            files.write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0
