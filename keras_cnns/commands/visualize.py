"""Draw what the layers learned: `python scripts/visualize.py EXPORT [--output DIR]`.

EXPORT is an export directory (its model.keras and stored test images), a `.keras` file (then
--images is needed) or a run directory (its export). Writes into --output (default
runs/visualize/<name>) PNGs and one index.html that shows them with captions, offline:
  1. the first convolution's filters, all scaled by one min/max (colour for 3 channels);
  2. the feature maps of every Conv2D layer (or --layers) for the first --count stored test
     images, or for --images files (decoded with Pillow to the model's channels and size);
  3. class evidence per image: Grad-CAM on the last convolution (gradients by the running Keras
     backend: TensorFlow, JAX or PyTorch) and occlusion sensitivity (on --runtime);
  4. for --units of the last convolution and the first Dense layer, the --top stored test
     images (of the first --pool) that activate each most.
An export is read only if every file matches its sha256 in the manifest.
See docs/visualize.md. A non-empty --output is refused unless --overwrite is given; the files
are drawn aside and moved in at the end, so a failure leaves it as it was. Exit status: 0, 1
for a missing or unreadable model, export or image, 2 for a bad option.
"""

import argparse
import os
import sys
from pathlib import Path

from keras_cnns.commands.cli import OneLineParser, clashing_input, integer, user_errors

PROG = "visualize.py"


def parse_args(argv, prog: str = PROG):
    parser = OneLineParser(prog=prog, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, metavar="EXPORT",
                        help="an export directory, a .keras file or a run directory")
    parser.add_argument("--output", type=Path,
                        help="the folder to write (default runs/visualize/<name>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an existing non-empty --output")
    parser.add_argument("--images", nargs="+", type=Path, metavar="FILE",
                        help="image files to look at instead of the stored test images")
    parser.add_argument("--count", type=integer(1, 64), default=4,
                        help="stored test images to look at (default 4)")
    parser.add_argument("--layers", nargs="+", metavar="NAME",
                        help="Conv2D layers whose feature maps to draw (default all)")
    parser.add_argument("--units", nargs="+", type=integer(0), default=[0, 1, 2, 3],
                        help="units of the last convolution and first Dense layer whose top "
                             "images to draw (default 0 1 2 3)")
    parser.add_argument("--top", type=integer(1, 64), default=9,
                        help="images per unit (default 9)")
    parser.add_argument("--pool", type=integer(1), default=1000,
                        help="stored test images searched for each unit's top (default 1000)")
    parser.add_argument("--runtime", default="keras",
                        choices=("keras", "savedmodel", "tflite", "onnx"),
                        help="what occlusion's forward passes run on: the Keras model (default), "
                             "or the export's SavedModel, model.tflite or model.onnx")
    args = parser.parse_args(argv)
    if args.output is None:
        stem = args.path.resolve().name
        args.output = Path("runs") / "visualize" / (Path(stem).stem if args.path.suffix ==
                                                      ".keras" else stem)
    clash = clashing_input(args.output, [args.path, *(args.images or [])])
    if clash:
        parser.error(f"--output {args.output} would write into {clash}, which this command "
                     "reads; choose another path")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} is a file; give a folder")
    if args.output.is_dir() and any(args.output.iterdir()) and not args.overwrite:
        parser.error(f"--output {args.output} exists and is not empty; pass --overwrite to "
                     "write into it")
    existing = next((p for p in [args.output, *args.output.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        parser.error(f"--output {args.output} cannot be written ({existing} is not writable)")
    return args


def main(argv=None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with user_errors(prog):
        from keras_cnns.config import ConfigError
        from keras_cnns.export import ExportError
        from keras_cnns.measure.layer_views import visualize

        if not args.path.exists():
            raise ExportError(f"{args.path} does not exist.")
        if not os.access(args.path, os.R_OK):
            raise ExportError(f"{args.path} cannot be read.")
        if args.path.is_file() and args.path.suffix != ".keras":
            raise ExportError(f"{args.path} is not a .keras file, an export or a run directory.")
        if args.path.is_file() and not args.images:
            raise ConfigError(f"{args.path} stores no test images; give some with --images.")
        sections = visualize(args.path, args.output, image_files=args.images,
                             overwrite=args.overwrite, count=args.count, layers=args.layers,
                             units=args.units, top=args.top, pool=args.pool,
                             runtime=args.runtime)
    pictures = sum(len(figures) for figures in sections.values())
    sys.stdout.write(f"wrote {pictures} PNGs and {args.output / 'index.html'}\n")
    return 0
