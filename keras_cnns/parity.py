"""Moved to `keras_cnns.measure.parity`; this alias keeps old imports working until they move."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("keras_cnns.measure.parity")
