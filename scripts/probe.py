"""`python scripts/probe.py [flags]` is `keras-cnns probe [flags]`.

A shim: the command's body is keras_cnns/commands/probe.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_cnns.commands import script  # noqa: E402

if __name__ == "__main__":
    sys.exit(script(__file__))
