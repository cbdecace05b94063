"""`python -m keras_cnns COMMAND`: the `keras-cnns` console script."""

import sys

from keras_cnns.commands import main

sys.exit(main())
