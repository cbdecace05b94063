"""Tune a model's hyperparameters: `python scripts/tune.py --model NAME`.

The command's body is keras_cnns/commands/tune.py, which an installed copy also runs as
`python -m keras_cnns.tune` or `keras-cnns-tune` (README, "Install").
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.runner import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from keras_cnns.commands.tune import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
