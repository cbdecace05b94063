"""The benchmark's arithmetic (medians, ratios, FLOP fractions), and the script end to end."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from extras import require

from keras_cnns.measure.isa import (
    cpu_class,
    describe,
    emulated_isa,
    emulation_env,
    parse_onednn_verbose,
)
from keras_cnns.measure.throughput_tables import format_table, summarise
from keras_cnns.models import build_model, get_model_entry, list_models

ROOT = Path(__file__).resolve().parent.parent

ARGS = SimpleNamespace(model="alexnet", image_size=96, batch_size=128, dataset="synthetic",
                       repeats=3)


def result(case, rate, **extra):
    key = "gflop_s" if case == "peak" else "img_s"
    return {"case": case, key: rate, "peak_rss_mb": 1000.0, **extra}


def test_medians_ratios_and_fraction_of_peak():
    runs = {
        "ours_train": [result("ours_train", r, flops_forward=int(1e9)) for r in (90, 100, 300)],
        "torch_cl": [result("torch_cl", r) for r in (50, 80, 40)],
        "torch_nchw": [result("torch_nchw", 100)],
        "pipeline": [result("pipeline", 1000)],
        "peak": [result("peak", 600)],
    }
    report = summarise(runs, ARGS)
    assert report["cases"]["ours_train"]["median"] == 100
    assert report["ratios"]["ours_train / torch_cl"] == 2.0
    assert report["ratios"]["ours_train / torch_nchw"] == 1.0
    assert report["ratios"]["pipeline / ours_train"] == 10.0
    # 100 img/s * 3 GFLOP per training image (forward x 3) over a 600 GFLOP/s peak.
    assert report["cases"]["ours_train"]["of_peak"] == 0.5
    table = format_table(report)
    assert "| ours_train | 100.0 img/s | 90, 100, 300 | 50% |" in table
    assert "ours_train / torch_cl: 2.00x" in table


def test_best_pytorch_and_compile_time_are_reported_apart():
    runs = {
        "ours_train": [result("ours_train", 100)],
        "ours_train_torch": [result("ours_train_torch", 150)],
        "torch_cl": [result("torch_cl", 80)],
        "torch_compile": [result("torch_compile", 125, compile_s=31.5)],
    }
    report = summarise(runs, ARGS)
    assert report["cases"]["torch_compile"]["compile_s"] == 31.5
    # The rate is the steady steps' alone: compile time is not folded into it.
    assert report["cases"]["torch_compile"]["median"] == 125
    assert report["ratios"]["ours_train / best PyTorch (torch_compile)"] == 0.8
    assert report["ratios"]["ours_train_torch / best PyTorch (torch_compile)"] == 1.2
    report["isa"] = {"class": "avx2", "emulated": "avx2", "cpu_isa": ["avx2", "avx512f"],
                     "onednn": {"tensorflow": {"isa": "Intel AVX2", "conv_impl": "brg:avx2"}}}
    table = format_table(report)
    assert "125.0 img/s (+32 s compile)" in table
    assert "ISA class avx2 (emulated on a CPU of class avx512f" in table and "Intel AVX2" in table


VERBOSE = """onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX2
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32
"""


def test_isa_records_parse_onednn_and_name_the_class():
    assert parse_onednn_verbose(VERBOSE) == {
        "isa": "Intel AVX2", "runtime": "threadpool", "conv_impl": "brg_conv_fwd:avx2"}
    assert cpu_class(["avx2", "avx512f", "avx512_bf16"]) == "avx512_bf16"
    assert cpu_class(["avx2"]) == "avx2" and cpu_class([]) == "baseline"
    env = emulation_env("avx2")
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert "--xla_cpu_max_isa=AVX2" in env["XLA_FLAGS"]
    assert emulation_env("native") == {} and emulated_isa(env) == "avx2"
    assert emulated_isa({}) is None
    with pytest.raises(ValueError, match="isa must be one of"):
        emulation_env("sse2")
    line = describe({"class": "avx512f", "emulated": None, "cpu_isa": ["avx2", "avx512f"]})
    assert line.startswith("ISA class avx512f (native")


def test_failed_cases_are_left_out_not_zeroed():
    report = summarise({"ours_train": [], "torch_cl": [result("torch_cl", 50)]}, ARGS)
    assert "ours_train" not in report["cases"] and report["ratios"] == {}


def test_latency_is_the_median_repeats_not_the_last():
    """The docs once quoted 5.44 ms, the last repeat's latency, beside the median rate."""
    runs = {"ours_infer_b1": [result("ours_infer_b1", rate, latency_ms=1000 / rate)
                              for rate in (186, 190, 184)]}
    report = summarise(runs, ARGS)
    assert report["cases"]["ours_infer_b1"]["latency_ms"] == 1000 / 186
    table = format_table(report)
    assert "| ours_infer_b1 | 186.0 img/s (5.38 ms) |" in table
    assert "| median rate (median b1 latency) |" in table


def test_a_failed_case_fails_the_command_and_no_empty_report_is_written(tmp_path, monkeypatch):
    from keras_cnns.commands import benchmark as command
    from keras_cnns.machine import BackendProcessError
    from keras_cnns.measure import throughput

    def run(function, kwargs, **_):
        case = kwargs["settings"]["case"]
        if case == "torch_cl":
            raise BackendProcessError("The torch_cl case failed.", "No module named 'torch'")
        return result(case, 100.0), ""

    monkeypatch.setattr(throughput.child, "run", run)
    monkeypatch.setattr(throughput, "isa_facts", lambda isa: {
        "class": "avx2", "emulated": None, "cpu_isa": ["avx2"]})
    argv = ["--model", "lenet", "--image-size", "28", "--steps", "1", "--repeats", "2"]
    with pytest.raises(SystemExit) as refused:
        command.main([*argv, "--cases", "pipeline,torch_cl", "--json", str(tmp_path / "a.json")])
    assert "torch_cl failed (torch_cl: No module named 'torch')" in str(refused.value.code)
    report = json.loads((tmp_path / "a.json").read_text())
    assert set(report["cases"]) == {"pipeline"}
    assert report["failed"] == {"torch_cl": ["No module named 'torch'"] * 2}
    assert "torch_cl: 2 of 2 runs failed" in report["table"]
    with pytest.raises(SystemExit, match="every case failed"):
        command.main([*argv, "--cases", "torch_cl", "--json", str(tmp_path / "b.json")])
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_benchmark_script_runs_every_kind_of_case(tmp_path):
    require("torch")  # the torch_nchw case
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--model", "lenet",
         "--image-size", "16", "--steps", "3", "--epochs", "1", "--repeats", "1",
         "--cases", "ours_train,torch_nchw,torch_compile,pipeline,ours_infer_b1,peak",
         "--isa", "avx2", "--json", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    cases = report["cases"]
    assert set(cases) == {"ours_train", "torch_nchw", "torch_compile", "pipeline",
                          "ours_infer_b1", "peak"}
    # The ISA record: the CPU's classes, the cap, and what both oneDNNs then dispatched to.
    isa = report["isa"]
    assert isa["emulated"] == "avx2" and isa["class"] == "avx2" and "cpu_isa" in isa
    if "avx2" in isa["cpu_isa"]:
        assert "AVX2" in isa["onednn"]["tensorflow"]["isa"]
        assert "AVX2" in isa["onednn"]["torch"]["isa"]
    assert cases["torch_nchw"]["aten_capability"] in ("AVX2", "DEFAULT")
    assert cases["torch_compile"]["compile_s"] > 0 and cases["torch_compile"]["median"] > 0
    assert "ISA class avx2" in report["table"] and "s compile)" in report["table"]
    assert cases["peak"]["median"] > 0 and set(cases["peak"]["by_probe"]) >= {"tf_gemm", "tf_conv"}
    assert 0 < cases["ours_train"]["of_peak"] < 1 and cases["ours_train"]["precision"] == "float32"
    assert "| ours_train |" in report["table"]


@pytest.mark.parametrize("name", list_models())
def test_steps_per_epoch_come_from_flops_not_names(name):
    from keras_cnns.measure.throughput import EPOCH_FLOPS, MIN_STEPS, default_steps, forward_flops

    size = get_model_entry(name).default_image_size
    steps = default_steps(name, size, 128)
    flops = 3 * forward_flops(build_model(name, input_shape=(size, size, 1), num_classes=10))
    assert steps == min(150, max(MIN_STEPS, round(EPOCH_FLOPS / (flops * 128))))
    # The former hand-set defaults, now derived: the seed's AlexNet at 96 px, LeNet at 28.
    assert default_steps("alexnet", 96, 128) == 10 and default_steps("lenet", 28, 128) == 150
