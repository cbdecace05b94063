"""Convert a model between Keras, PyTorch, ONNX and TFLite: `convert.py SOURCE --to FORMAT`.

    convert.py MODEL.keras|EXPORT --to torch [--output W.pt]
        the PyTorch reference module's state_dict (keras_cnns.reference), plus W.json beside it
        with the build_reference arguments; default output: SOURCE's name with .pt.
    convert.py W.pt --to keras [--output M.keras]
        back to a Keras model; the architecture comes from W.json, or --like MODEL.keras|EXPORT,
        or --model NAME [--input-shape H W C] [--num-classes K] [--model-kwargs KEY=VALUE ...]
        (channels and classes default to the checkpoint's, the size to 224; so a torchvision
        checkpoint needs only the name of its registry model; README, "Across frameworks").
    convert.py M.keras|W.pt --to export --mean M.. --std S.. --class-names FILE [--output DIR]
        a SavedModel export whose serving_default takes uint8 RGB or grey images of any size and
        applies that normalisation (on the [0, 1] scale), with one class name per line of FILE,
        for scripts/predict.py; a .pt is converted first as for --to keras.
    convert.py EXPORT --to onnx [--replace]
        adds model.onnx (serving_default as ONNX) to the export and its manifest.
    convert.py EXPORT --to tflite [--tflite-quantize int8] [--replace]
        adds model.tflite (LiteRT: uint8 [1, H, W, C] images of the model's input size in,
        probabilities, classes and labels out, builtin ops only) to the export and its
        manifest; int8 is full-integer quantisation calibrated on the export's training split,
        reloaded from its config and checked against its fingerprint.

Torch conversions check themselves (both models' logits on one random batch, relative gap at
most 1e-5) and print the gap; ONNX is checked with onnxruntime against the SavedModel's
probabilities on the export's stored test images; TFLite by the interpreter on them (float:
probabilities within 1e-5; int8: accuracy within 1 point). Any failure is one sentence and
exit 1. A flag that the chosen --to (or SOURCE) does not use is refused with exit 2, never
dropped, and so is an --output inside what the command reads.
"""

import argparse
from pathlib import Path

from keras_cnns.commands.cli import clashing_input, integer, number, user_errors

PROG = "convert.py"
MAX_SIDE, MAX_CLASSES = 1024, 100_000
# The --to targets each optional flag serves: given with any other, it is refused, not dropped.
_ARCHITECTURE = ("like", "model", "input_shape", "num_classes", "model_kwargs")
_USED_BY = {
    "output": ("torch", "keras", "export"),
    "replace": ("onnx", "tflite"),
    "tflite_quantize": ("tflite",),
    **dict.fromkeys(("mean", "std", "class_names"), ("export",)),
    **dict.fromkeys(_ARCHITECTURE, ("keras", "export")),
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from keras_cnns.commands.cli import OneLineParser  # usage errors in one line, exit 2

    parser = OneLineParser(
        prog=prog, description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("source", type=Path, help="a .keras file, an export directory, or a .pt")
    parser.add_argument("--to", required=True,
                        choices=("torch", "keras", "onnx", "tflite", "export"))
    parser.add_argument("--output", type=Path,
                        help="the file (torch, keras) or directory (export) to write")
    parser.add_argument("--like", type=Path,
                        help="--to keras: a .keras file or export with the same architecture")
    parser.add_argument("--model", help="--to keras/export from a .pt: a registry model name")
    parser.add_argument("--input-shape", type=integer(1, MAX_SIDE), nargs=3,
                        metavar=("H", "W", "C"))
    parser.add_argument("--num-classes", type=integer(2, MAX_CLASSES))
    parser.add_argument("--model-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
                        help="--to keras: model options, e.g. dropout=0.5 width=0.5")
    parser.add_argument("--replace", action="store_true",
                        help="--to onnx/tflite: replace an existing model.onnx/model.tflite")
    parser.add_argument("--tflite-quantize", choices=("none", "int8"), default="none",
                        help="--to tflite: none (float32) or int8 (full-integer, calibrated on "
                        "training images)")
    parser.add_argument("--mean", type=number(0, 1), nargs="+",
                        help="--to export: per-channel mean on the [0, 1] scale (1 or 3 values)")
    parser.add_argument("--std", type=number(high=1, above=0), nargs="+",
                        help="--to export: per-channel std on the [0, 1] scale (1 or 3 values)")
    parser.add_argument("--class-names", type=Path, metavar="FILE",
                        help="--to export: a text file with one class name per line")
    return parser


def _spec(args, parser):
    if args.like is not None:
        from keras_cnns.reference.checkpoints import load_keras_model
        from keras_cnns.reference.spec import reference_spec

        return reference_spec(load_keras_model(args.like))
    if args.model is None:
        return None
    return {"name": args.model,
            "input_shape": list(args.input_shape) if args.input_shape else None,
            "num_classes": args.num_classes, "options": _options(args.model_kwargs, parser)}


def _options(pairs, parser) -> dict:
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--model-kwargs takes KEY=VALUE pairs, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare string such as relu
    return options


def main(argv=None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    source = args.source
    _refuse_flags_it_cannot_honour(args, parser)
    if args.output is not None and (clash := clashing_input(
            args.output, [source, args.like, args.class_names])):
        parser.error(f"--output {args.output} would write into {clash}, which this command "
                     "reads; choose another path")
    with user_errors(prog):
        from keras_cnns.export import ExportError

        try:
            if args.to == "onnx":
                if not source.is_dir():
                    parser.error("--to onnx takes an export directory (its ONNX graph includes "
                                 "the export's preprocessing)")
                from keras_cnns.export import add_onnx

                section = add_onnx(source, replace=args.replace)
                print(f"wrote {source / section['file']} (opset {section['opset']}); "
                      f"onnxruntime vs serving_default on {section['checked_images']} images: "
                      f"max probability gap {section['max_probability_gap']:.2e}")
                return 0
            if args.to == "tflite":
                return _tflite(args, parser)

            from keras_cnns.reference.checkpoints import (
                ConversionError,
                keras_to_torch_file,
                torch_file_to_keras,
            )

            try:
                if args.to == "export":
                    return _export(args, parser)
                if args.to == "torch":
                    stem = source.name if source.is_dir() else source.stem
                    output = args.output or source.parent / f"{stem}.pt"
                    record = keras_to_torch_file(source, output)
                    spec = record["reference"]
                    print(f"wrote {output} and {output.with_suffix('.json')} "
                          f"({spec['name']}, {spec['options']}); "
                          f"Keras vs PyTorch logits gap {record['logits_gap']:.2e}")
                    return 0
                output = args.output or source.with_suffix(".keras")
                record = torch_file_to_keras(source, output, spec=_spec(args, parser))
                print(f"wrote {output} ({record['reference']['name']}); "
                      f"PyTorch vs Keras logits gap {record['logits_gap']:.2e}")
                return 0
            except (ConversionError, ValueError) as error:
                raise ExportError(str(error)) from None
        except ImportError as error:
            raise ExportError(str(error)) from None


def _refuse_flags_it_cannot_honour(args, parser) -> None:
    given = [name for name in _USED_BY if getattr(args, name) != parser.get_default(name)]
    for name in given:
        if args.to not in _USED_BY[name]:
            into = (f" (--to {args.to} adds its file to the export SOURCE itself)"
                    if name == "output" else "")
            *others, last = _USED_BY[name]
            targets = f"{', '.join(others)} or {last}" if others else last
            parser.error(f"--{name.replace('_', '-')} goes with --to {targets}, not --to "
                         f"{args.to}{into}")
    architecture = [name for name in given if name in _ARCHITECTURE]
    if architecture and args.source.suffix not in (".pt", ".pth"):
        parser.error(f"--{architecture[0].replace('_', '-')} describes a .pt SOURCE; "
                     f"{args.source} brings its own architecture")
    if "like" in architecture and len(architecture) > 1:
        parser.error(f"--like and --{architecture[1].replace('_', '-')} both say which model it "
                     "is; give one")
    if architecture and "model" not in architecture and "like" not in architecture:
        parser.error(f"--{architecture[0].replace('_', '-')} goes with --model NAME")


def _class_names(path: Path, parser) -> list[str]:
    from keras_cnns.export.converted import read_class_names

    try:
        names = read_class_names(path)
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--class-names {path} cannot be read ({error.strerror or error})")
    for line, name in enumerate(names, 1):
        if not name:
            parser.error(f"--class-names {path} has an empty name on line {line}")
        if names.index(name) < line - 1:
            parser.error(f"--class-names {path} names {name!r} twice (lines "
                         f"{names.index(name) + 1} and {line}); each class needs its own name")
    return names


def _tflite(args, parser) -> int:
    if not args.source.is_dir():
        parser.error("--to tflite takes an export directory (its TFLite graph includes the "
                     "export's preprocessing)")
    from keras_cnns.export import add_tflite

    quantize = None if args.tflite_quantize == "none" else args.tflite_quantize
    section = add_tflite(args.source, quantize=quantize, replace=args.replace)
    accuracy = section["test_accuracy"]
    print(f"wrote {args.source / section['file']} ({quantize or 'float32'}, "
          f"{section['size_bytes']} bytes); interpreter vs serving_default on "
          f"{section['checked_images']} images: max probability gap "
          f"{section['max_probability_gap']:.2e}"
          + (f", test accuracy {accuracy:.4f} (serving_default "
             f"{section['serving_default_test_accuracy']:.4f})" if accuracy is not None else ""))
    return 0


def _export(args, parser) -> int:
    import tempfile

    from keras_cnns.export.converted import export_converted
    from keras_cnns.reference.checkpoints import load_keras_model, torch_file_to_keras

    if not (args.mean and args.std and args.class_names):
        parser.error("--to export needs --mean, --std and --class-names FILE")
    class_names = _class_names(args.class_names, parser)
    source, conversion = args.source, {"source": str(args.source)}
    stem = source.name if source.is_dir() else source.stem
    output = args.output or source.parent / f"{stem}-export"
    with tempfile.TemporaryDirectory(prefix="keras_cnns-convert-") as tmp:
        if source.suffix in (".pt", ".pth"):
            record = torch_file_to_keras(source, Path(tmp) / "m.keras", spec=_spec(args, parser))
            conversion.update(reference=record["reference"], logits_gap=record["logits_gap"])
            source = Path(tmp) / "m.keras"
        model = load_keras_model(source)
        export_converted(model, output, mean=args.mean, std=args.std,
                         class_names=class_names, conversion=conversion)
    gap = conversion.get("logits_gap")
    print(f"wrote {output}" + (f"; PyTorch vs Keras logits gap {gap:.2e}" if gap is not None
                               else ""))
    return 0
