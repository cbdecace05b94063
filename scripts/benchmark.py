"""Benchmark our training path against the PyTorch reference: see keras_cnns/benchmark.py.

python scripts/benchmark.py --model alexnet --image-size 96
python scripts/benchmark.py --model lenet --image-size 28
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
