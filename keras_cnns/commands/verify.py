"""Verify an export with TensorFlow alone: `keras-cnns verify EXPORT [--data FILE.npz]`.

The body is keras_cnns/serving/verify_export.py, which imports no other module of ours, so that one
file also runs by itself wherever TensorFlow is (scripts/verify.py runs it so).
"""

from keras_cnns.serving import verify_export as verify

PROG = "verify.py"


def main(argv=None, prog: str = PROG) -> int:
    return verify.main(argv, prog=prog)
