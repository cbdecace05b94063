"""Profile one training step, ours and the PyTorch reference, op by op.

python scripts/profile_step.py --model NAME --image-size 96
python scripts/profile_step.py --model NAME --image-size 28 --layout cl

NAME is any registered model; see keras_cnns/measure/profiling.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.measure.profiling import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
