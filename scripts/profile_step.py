"""Profile one training step, ours and the PyTorch reference, op by op: see keras_cnns/profiling.py.

python scripts/profile_step.py --model alexnet --image-size 96
python scripts/profile_step.py --model lenet --image-size 28 --layout cl
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.profiling import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
