"""Benchmark our training path against the PyTorch reference.

python scripts/benchmark.py --model NAME --image-size 96

NAME is any registered model; see keras_cnns/measure/benchmark.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.measure.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
