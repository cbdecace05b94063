"""quiet_tensorflow's stderr filter: start-up noise goes, a native warning about the run stays."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_cnns.commands.cli import is_native_noise

ROOT = Path(__file__).resolve().parent.parent

STAMP = b"0000 00:00:1796480217.511915   19664 "

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I" + STAMP + b"port.cc:153] oneDNN custom operations are on.\n",
    b"I" + STAMP + b"cudart_stub.cc:31] Could not find cuda drivers on your machine.\n",
    b"E" + STAMP + b"cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
    b"W" + STAMP + b"py_utils.cc:38] TF-TRT Warning: Could not find TensorRT\n",
    b"W" + STAMP + b"tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n",
    b"W" + STAMP + b"tf_tfl_flatbuffer_helpers.cc:367] Ignored drop_control_dependency.\n",
]
SAID = [
    b"W" + STAMP + b"op_kernel.cc:1857] OP_REQUIRES failed at cast_op.cc:122 : Unimplemented\n",
    b"W" + STAMP + b"allocator.cc:122] Allocation of 4294967296 exceeds 10% of free memory.\n",
    b"W" + STAMP + b"tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format; also 3 ops.\n",
    b"E" + STAMP + b"cuda_dnn.cc:8310] Could not create cudnn handle\n",
    b"train.py: error: The data directory /x does not exist.\n",
    b"Epoch 1/2\n",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_noise_is_dropped(line):
    assert is_native_noise(line)


@pytest.mark.parametrize("line", SAID)
def test_other_native_warnings_and_our_own_lines_stay(line):
    assert not is_native_noise(line)


@pytest.mark.slow
@pytest.mark.parametrize("script, argv, status", [
    ("benchmark", ["--help"], 0), ("train", ["--help"], 0), ("profile_step", ["--help"], 0),
    ("benchmark", ["--repeats", "0"], 2),
])
def test_help_and_usage_errors_print_no_tensorflow_log_lines(script, argv, status):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *argv],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == status, result.stderr[-2000:]
    if status == 0:
        assert result.stdout.startswith(f"usage: {script}.py"), result.stdout[:200]
        assert result.stderr == ""
    else:
        assert result.stderr.splitlines() == [
            f"{script}.py: error: --repeats must be a whole number >= 1, got 0."]
