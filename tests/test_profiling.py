"""scripts/profile_step.py: both sides traced, op times grouped, the bound computed from them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from extras import require

from keras_cnns.measure.onednn_kernels import parse_exec_lines, per_step, side_by_side
from keras_cnns.measure.profiling import CATEGORIES, summarise, tf_category, torch_category

ROOT = Path(__file__).resolve().parent.parent


def test_ops_fall_into_the_same_categories_on_both_sides():
    assert tf_category("adam_w/Mul_3", "Mul", "adam_w") == "optimizer"
    assert tf_category("gradient_tape/m/conv1/Conv2DBackpropFilter",
                       "_MklNativeConv2DBackpropFilterWithBias", "adam_w") == "conv backward"
    assert tf_category("m/conv1/BiasAdd", "_MklNativeFusedConv2D", "adam_w") == "conv forward"
    assert tf_category("m/fc1/Sigmoid", "_MklNativeFusedMatMul", "adam_w") == "matmul"
    assert tf_category("m/pool1/AvgPool", "_MklNativeAvgPool", "adam_w") == "pooling"
    assert tf_category("m/conv1/Sigmoid", "Sigmoid", "adam_w") == "other ops"
    assert torch_category("aten::convolution_backward") == "conv backward"
    assert torch_category("aten::mkldnn_convolution") == "conv forward"
    assert torch_category("aten::addmm") == "matmul"
    assert torch_category("aten::max_pool2d_with_indices") == "pooling"
    assert torch_category("aten::sigmoid") == "other ops"


def test_bound_is_torch_step_over_our_kernel_time():
    def side(conv, other, step_ms):
        categories = dict.fromkeys(CATEGORIES, 0.0)
        categories.update({"conv forward": conv, "other ops": other})
        return {"categories": categories, "step_ms": step_ms, "flops_forward": 10**6}

    report = summarise(side(4.0, 4.0, 8.0), side(5.0, 5.0, 10.0), "nchw", batch_size=100)
    assert report["ratio"] == 10.0 / 8.0 and report["bound"] == 10.0 / 4.0
    assert report["ours"]["kernel_share"] == 0.5
    # 3 x 1 MFLOP x 100 images in 4 ms of kernels: 75 GFLOP/s.
    assert report["ours"]["kernel_gflop_s"] == pytest.approx(75.0)


CONV = "mb2_ic1oc2_ih8oh6kh3sh1dh0ph0_iw8ow6kw3sw1dw0pw0"
LOG = f"""onednn_verbose,v1,primitive,info,template:operation,engine,primitive,exec_time
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,\
src:f32::blocked:acdb::f0 dst:f32::blocked:acdb::f0,attr-scratchpad:user,alg:d,{CONV},9.5
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,\
src:f32::blocked:acdb::f0 dst:f32::blocked:acdb::f0,attr-scratchpad:user,alg:d,{CONV},0.5
onednn_verbose,1700000000.5,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,\
src:f32::blocked:acdb::f0 dst:f32::blocked:acdb::f0,,alg:d,{CONV},0.25
onednn_verbose,v1,primitive,exec,cpu,pooling,jit:avx2,backward_data,src:f32::blocked:acdb::f0,\
,alg:pooling_max,mb2ic2_ih6oh3,0.125
onednn_verbose,v1,primitive,exec,gpu,convolution,ocl:x,forward_training,,,,{CONV},7.0
"""


def test_onednn_log_grouped_by_kernel_and_shape_without_warmup_calls():
    uses = parse_exec_lines(LOG)  # the info line, and the GPU's, are not CPU executions
    conv = uses[("convolution", "fwd", CONV)]
    assert conv.times_ms == [9.5, 0.5, 0.25] and conv.layouts == {"src acdb, dst acdb"}
    rows = per_step(uses, steps=2, warmup_steps=1)  # 1 of 3 steps warm-up: the 9.5 ms call
    assert rows[0] == {
        "primitive": "convolution", "direction": "fwd", "shape": CONV,
        "impl": "brg_conv_fwd:avx2", "layouts": ["src acdb, dst acdb"],
        "calls_per_step": 1.0, "ms_per_step": 0.375,
    }
    assert rows[1]["direction"] == "bwd data" and rows[1]["calls_per_step"] == 0.5
    theirs = [dict(rows[0], impl="jit:avx2", ms_per_step=0.75)]
    table = side_by_side(rows, theirs)
    assert f"| convolution fwd | `{CONV}` | brg_conv_fwd:avx2 | 0.375 | jit:avx2 | 0.750 |" in table
    assert "| pooling bwd data | `mb2ic2_ih6oh3` | jit:avx2 | 0.062 | - | - |" in table
    assert table.splitlines()[-1] == "| **all oneDNN** | | | 0.438 | | 0.750 |"


def test_constant_input_repeats_the_pipelines_first_batch():
    import numpy as np

    from keras_cnns.commands.profile import build_parser
    from keras_cnns.measure.profiling import _our_training

    args = build_parser().parse_args(["--model", "lenet", "--image-size", "16",
                                      "--batch-size", "8", "--input", "constant"])
    _, stream = _our_training(args, steps=2)
    (first, first_labels), (second, second_labels) = stream.take(2)
    assert first.shape == (8, 16, 16, 1)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_labels, second_labels)


@pytest.mark.slow
def test_profile_script_traces_both_sides(tmp_path):
    require("torch")  # the PyTorch reference's side
    out = tmp_path / "profile.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "profile_step.py"), "--model", "lenet",
         "--image-size", "16", "--steps", "5", "--isa", "avx2", "--kernels",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| conv backward |" in result.stdout and "at most" in result.stdout
    assert "ISA class avx2 (emulated" in result.stdout
    report = json.loads(out.read_text())
    assert report["isa"]["emulated"] == "avx2" and report["isa"]["class"] == "avx2"
    assert len(report["load_average"]) == 3
    for side in ("ours", "torch"):
        categories = report[side]["categories"]
        assert set(categories) == set(CATEGORIES)
        assert categories["conv forward"] > 0 and categories["conv backward"] > 0
        assert categories["optimizer"] > 0 and report[side]["step_ms"] > 0
        kernels = {(row["primitive"], row["direction"]): row for row in report["kernels"][side]}
        conv = kernels[("convolution", "fwd")]  # both frameworks convolve through oneDNN
        assert conv["impl"].endswith("avx2") and conv["ms_per_step"] > 0
    assert "| convolution fwd | `mb128_ic1oc6" in result.stdout
