"""`python scripts/profile_step.py [flags]` is `keras-cnns profile [flags]`.

A shim: the command's body is keras_cnns/commands/profile.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.commands import script  # noqa: E402

if __name__ == "__main__":
    sys.exit(script(__file__))
