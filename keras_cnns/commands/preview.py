"""Draw training samples as the model receives them: `python scripts/preview_data.py
--dataset NAME [--data-dir DIR] [--augment POLICY] [--image-size N] --output grid.png`.

The PNG shows a grid of the training stream through keras_cnns.data's pipeline (resized,
augmented, normalisation undone for display), each image titled with its class name, and a few
training images raw beside several augmented versions. --image-size defaults to the data set's
own size. An existing --output is refused unless --overwrite is given; the file is written
under a temporary name and renamed, so a failure leaves nothing behind. Exit status: 0, 1 for
a data problem, 2 for a bad option.
"""

import argparse
import os
from pathlib import Path

from keras_cnns import files
from keras_cnns.commands.cli import SEEDS, OneLineParser, clashing_input, integer, user_errors

PROG = "preview_data.py"


def parse_args(argv, prog: str = PROG):
    from keras_cnns.data import list_augment_policies

    parser = OneLineParser(prog=prog, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="a source name: digits, fashion_mnist, folder, synthetic, ...")
    parser.add_argument("--data-dir", help="where the data set's files are")
    parser.add_argument("--augment", default="light", choices=list_augment_policies(),
                        help="augmentation policy (default light)")
    parser.add_argument("--image-size", type=integer(4, 1024),
                        help="side of the square input (default: the data set's own)")
    parser.add_argument("--seed", type=integer(*SEEDS), default=0,
                        help="shuffling and augmentation seed")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    output = args.output
    if output.suffix.lower() != ".png":
        parser.error(f"--output must name a .png file, got {output}")
    if output.is_dir():
        parser.error(f"--output {output} is a folder; give a file name")
    if args.data_dir and clashing_input(output, [args.data_dir]):
        # A PNG written into an image folder would become one of its training images.
        parser.error(f"--output {output} would write into --data-dir {args.data_dir}, which "
                     "this command reads; choose another path")
    if output.exists() and not args.overwrite:
        parser.error(f"--output {output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        parser.error(f"the folder of --output {output} does not exist")
    if not os.access(output.parent, os.W_OK):
        parser.error(f"the folder of --output {output} is not writable")
    return args


def main(argv=None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with user_errors(prog):
        from keras_cnns.data import load_source
        from keras_cnns.data.sample_grid import draw_preview

        source = load_source(args.dataset, args.data_dir)
        with files.replacing(args.output) as temporary:
            draw_preview(source, temporary, image_size=args.image_size, augment=args.augment,
                         seed=args.seed)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0
