"""The benchmark's arithmetic: medians, ratios and FLOP fractions from the cases' results."""

from types import SimpleNamespace

from keras_cnns.benchmark_report import format_table, summarise

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


def test_failed_cases_are_left_out_not_zeroed():
    report = summarise({"ours_train": [], "torch_cl": [result("torch_cl", 50)]}, ARGS)
    assert "ours_train" not in report["cases"] and report["ratios"] == {}
