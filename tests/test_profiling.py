"""scripts/profile_step.py: both sides traced, op times grouped, the bound computed from them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from extras import require

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


@pytest.mark.slow
def test_profile_script_traces_both_sides(tmp_path):
    require("torch")  # the PyTorch reference's side
    out = tmp_path / "profile.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "profile_step.py"), "--model", "lenet",
         "--image-size", "16", "--steps", "5", "--isa", "avx2", "--json", str(out)],
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
