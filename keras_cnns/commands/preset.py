"""Make, list and check presets: `preset.py EXPORT --output DIR`, `--list`, `--check PRESET`.

    preset.py EXPORT|RUN --output DIR
        writes a keras-hub preset of the export (or of the export a run directory made):
        config.json, model.weights.h5, metadata.json and a README model card. The export's
        files are checked against its manifest first, and the preset, read back, must score
        the manifest's top-1 on the export's stored test split.
    preset.py --list
        the presets shipped with the package (build_model(NAME, weights="<name>") loads one).
    preset.py --check PRESET [--data-dir DIR]
        loads a preset directory or shipped name as build_model does (every sha256 checked
        first) and scores it on its data set's test split, reloaded and matched to its
        fingerprint: it must score what its metadata.json records.

A bad export or preset (a file missing or not matching its sha256, another model's config)
is one sentence and exit 1; a usage error exit 2. Nothing is written but --output's folder.
"""

import argparse
from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, clashing_input, user_errors

PROG = "preset.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog, description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("source", nargs="?", type=Path,
                        help="an export (saved_models/...) or a run directory (runs/...)")
    parser.add_argument("--output", type=Path, help="the preset directory to write")
    parser.add_argument("--list", action="store_true", help="list the shipped presets")
    parser.add_argument("--check", metavar="PRESET",
                        help="load a preset (a directory or a shipped name) and score it")
    parser.add_argument("--data-dir", help="--check: where the preset's data set is (default: "
                        "where training read it)")
    return parser


def _refuse_mixed(parser, args) -> None:
    modes = [name for name, given in (("EXPORT", args.source is not None), ("--list", args.list),
                                      ("--check", args.check is not None)) if given]
    if len(modes) != 1:
        parser.error("Give one of EXPORT --output DIR, --list or --check PRESET"
                     + (f", not {' and '.join(modes)}" if modes else ""))
    if args.source is not None and args.output is None:
        parser.error("EXPORT needs --output DIR, the preset directory to write")
    if args.output is not None and args.source is None:
        parser.error("--output goes with EXPORT: it names the preset made from it")
    if args.data_dir is not None and args.check is None:
        parser.error("--data-dir goes with --check")
    if args.output is not None and clashing_input(args.output, [args.source]):
        parser.error(f"--output {args.output} lies inside {args.source}, which it reads")


def _list() -> None:
    from keras_cnns.export.preset import TOP5_KEY, describe_preset
    from keras_cnns.models.preset import list_presets

    header = ("name", "model", "dataset", "top-1", "top-5", "parameters", "bytes", "path")
    rows = [header]
    for name in list_presets():
        found = describe_preset(name)
        metrics = found.get("metrics") or {}
        top1, top5 = (metrics.get(key) for key in ("test_accuracy", TOP5_KEY))
        rows.append((name, found["model"], found["dataset"]["name"],
                     "-" if top1 is None else f"{top1:.4f}",
                     "-" if top5 is None else f"{top5:.4f}",
                     f"{found['parameter_count']:,}", f"{found['bytes']:,}", found["path"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths,
                                                                      strict=True)).rstrip())


def main(argv=None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _refuse_mixed(parser, args)
    with user_errors(prog):
        if args.list:
            _list()
            return 0
        if args.check is not None:
            from keras_cnns.export.preset import TOP5_KEY, check_preset

            result = check_preset(args.check, args.data_dir)
            print(f"preset  {result['path']}: {result['model']}, every sha256 as recorded")
            if result["scored"]:
                top5 = f", top-5 {result[TOP5_KEY]:.4f}" if TOP5_KEY in result else ""
                print(f"test    top-1 {result['test_accuracy']:.4f} ({result['test_correct']}/"
                      f"{result['test_examples']}){top5}, as recorded")
            else:
                print("test    not scored: its metadata.json records no metrics")
            return 0
        from keras_cnns.export.preset import make_preset
        from keras_cnns.measure.throughput import forward_flops

        # FLOPs are counted in measure/, which the export layer may not import.
        output = make_preset(args.source, args.output, count_flops=forward_flops)
        print(f"preset  {output}")
    return 0
