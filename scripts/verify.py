"""A shim: `python scripts/verify.py EXPORT` runs `keras-cnns verify EXPORT`.

keras_cnns/serving/verify_export.py stands alone (TensorFlow and numpy only), so it runs from its
path here without importing keras_cnns or Keras.
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    verify = runpy.run_path(str(Path(__file__).resolve().parent.parent / "keras_cnns" /
                                "serving" / "verify_export.py"))
    verify["quiet_native_logs"]()
    sys.exit(verify["main"](prog="verify.py"))
