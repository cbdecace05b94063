"""Check the Keras port against the real torchvision, installed in another Python environment.

torchvision does not install beside this project's CPU torch, so a person runs this once with
a scratch environment that has it:

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    python tests/check_torchvision.py --python /tmp/tv/bin/python [--model alexnet2012]

(Not a pytest module: it needs that second environment, so CI does not run it.)

The other Python builds `torchvision.models.<arch>()` (He-normal weights, seeded; no download),
saves its state_dict and its logits on a random batch at each size; this one converts that
checkpoint with `keras_cnns.reference.checkpoints.torch_file_to_keras`, exactly as
`scripts/convert.py W.pth --to keras --model NAME` does, and prints the relative logit gap
(`max|keras - torchvision| / max|torchvision|`, eager and predict). Exit status 1 above 1e-5.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.commands.cli import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

TOLERANCE = 1e-5
# Runs under the other Python: argv = arch, out_dir, sizes (JSON).
_TORCHVISION_SIDE = """
import json, sys
import numpy as np, torch, torchvision
arch, out, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
torch.manual_seed(0)
module = getattr(torchvision.models, arch)(weights=None).eval()
for layer in module.modules():
    if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.uniform_(layer.bias, -0.1, 0.1)
torch.save(module.state_dict(), f"{out}/tv.pth")
rng = np.random.default_rng(0)
for size in sizes:
    x = rng.normal(size=(2, 3, size[0], size[1])).astype("float32")
    with torch.no_grad():
        np.savez(f"{out}/{size[0]}x{size[1]}.npz", x=x, logits=module(torch.from_numpy(x)).numpy())
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="check_torchvision.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--python", required=True, help="a Python that imports torchvision")
    parser.add_argument("--model", default="alexnet2012", help="registry name of the port")
    parser.add_argument("--arch", default="alexnet", help="torchvision.models function")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 63, 127, 191, 255])
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_cnns.reference.checkpoints import torch_file_to_keras

    sizes = [[s, s] for s in args.sizes]
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([args.python, "-c", _TORCHVISION_SIDE, args.arch, tmp,
                               json.dumps(sizes)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"check_torchvision.py: the torchvision side failed: "
                             f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"torchvision {versions['torchvision']} (torch {versions['torch']}) "
              f"vs keras {keras.__version__} ({keras.backend.backend()})")
        for height, width in sizes:
            out = Path(tmp) / f"{height}x{width}.keras"
            spec = {"name": args.model, "input_shape": [height, width]}
            torch_file_to_keras(Path(tmp) / "tv.pth", out, spec=spec)
            model = keras.saving.load_model(out, compile=False)
            with np.load(Path(tmp) / f"{height}x{width}.npz") as data:
                x, want = data["x"].transpose(0, 2, 3, 1), data["logits"].astype(np.float64)
            scale = np.abs(want).max()
            eager = np.abs(keras.ops.convert_to_numpy(model(x, training=False)) - want).max()
            graph = np.abs(model.predict(x, verbose=0) - want).max()
            worst = max(worst, eager / scale, graph / scale)
            print(f"{args.arch} {height}x{width}x3: gap eager {eager / scale:.1e}, "
                  f"predict {graph / scale:.1e}")
    print(f"largest gap {worst:.1e} ({'within' if worst <= TOLERANCE else 'ABOVE'} 1e-5)")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
