"""Tables of `scripts/benchmark.py`: medians, ratios, FLOP fractions and the device.

`benchmark.py` beside it runs the cases; this module turns their JSON lines into the report
(written as JSON) and the Markdown table printed at the end.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys

from keras_cnns.machine import cpu_facts

OURS_TRAINING = ("ours_train", "ours_train_unsharded", "ours_train_torch", "ours_train_jax")
TORCH_TRAINING = ("torch_nchw", "torch_cl", "torch_compile")
TRAINING_CASES = OURS_TRAINING + TORCH_TRAINING
# What each repeat measures besides its rate; the report gives their medians.
PER_REPEAT = ("latency_ms", "compile_s", "switches_per_step")


def device_description() -> dict:
    cpu = cpu_facts()[0] or platform.processor() or platform.machine()
    gpus = []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "python": platform.python_version()}


def summarise(runs: dict, args) -> dict:
    summary = {}
    for case, results in runs.items():
        if not results:
            continue
        key = "gflop_s" if case == "peak" else "img_s"
        values = [r[key] for r in results]
        summary[case] = {
            "median": statistics.median(values),
            "runs": values,
            "unit": key,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            **{k: v for k, v in results[-1].items() if k not in (key, "case", "peak_rss_mb")},
        }
        # A measurement beside the rate is a median too, never the last repeat's.
        for measured in PER_REPEAT:
            if all(measured in r for r in results):
                summary[case][measured] = statistics.median(r[measured] for r in results)
    ours = summary.get("ours_train", {}).get("median")
    ratios = {}
    for base in ("torch_cl", "torch_nchw", "torch_compile"):
        if ours and base in summary:
            ratios[f"ours_train / {base}"] = ours / summary[base]["median"]
    # The goal: our path against the fastest way PyTorch trains the reference here.
    torch_best = max((summary[c]["median"], c) for c in TORCH_TRAINING if c in summary) if any(
        c in summary for c in TORCH_TRAINING) else None
    if torch_best:
        for case in OURS_TRAINING:
            if case in summary:
                ratios[f"{case} / best PyTorch ({torch_best[1]})"] = (
                    summary[case]["median"] / torch_best[0])
    if ours and "ours_train_unsharded" in summary:
        ratios["ours_train / ours_train_unsharded"] = (
            ours / summary["ours_train_unsharded"]["median"])
    if ours and "pipeline" in summary:
        ratios["pipeline / ours_train"] = summary["pipeline"]["median"] / ours
    flops = next((s.get("flops_forward") for s in summary.values() if s.get("flops_forward")), None)
    peak = summary.get("peak", {}).get("median")
    if flops and peak:
        for case in TRAINING_CASES:
            if case in summary:
                achieved = summary[case]["median"] * 3 * flops / 1e9
                summary[case]["gflop_s"] = achieved
                summary[case]["of_peak"] = achieved / peak
    return {
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "dataset": args.dataset,
        "repeats": args.repeats,
        "device": device_description(),
        "training_gflop_per_image": 3 * flops / 1e9 if flops else None,
        "cases": summary,
        "ratios": ratios,
    }


def format_table(report: dict) -> str:
    lines = [
        f"{report['model']} @ {report['image_size']}px, batch {report['batch_size']}, "
        f"{report['dataset']} data, median of {report['repeats']} interleaved repeats",
        f"device: {report['device']['cpu']} ({report['device']['cores']} cores)"
        + (f", GPUs: {', '.join(report['device']['gpus'])}" if report["device"]["gpus"] else ""),
    ]
    if report.get("isa"):
        from keras_cnns.measure.isa import describe

        lines.append(describe(report["isa"]))
    if report.get("load_average"):
        lines.append("load average at the end: " + " ".join(map(str, report["load_average"])))
    lines += [
        "",
        "| case | median rate (median b1 latency) | runs | of peak | peak RSS "
        "| context switches per step |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for case, stats in report["cases"].items():
        unit = "GFLOP/s" if stats["unit"] == "gflop_s" else "img/s"
        runs = ", ".join(f"{v:,.0f}" for v in stats["runs"])
        median = f"{stats['median']:,.1f} {unit}"
        if "latency_ms" in stats and case.endswith("b1"):
            median += f" ({stats['latency_ms']:.2f} ms)"
        if "compile_s" in stats:
            median += f" (+{stats['compile_s']:.0f} s compile)"
        peak = f"{stats['of_peak']:.0%}" if "of_peak" in stats else ""
        switches = (f"{stats['switches_per_step']:,.1f}" if "switches_per_step" in stats
                    else "")
        lines.append(f"| {case} | {median} | {runs} | {peak} | {stats['peak_rss_mb']:,.0f} MB "
                     f"| {switches} |")
    lines.append("")
    for name, value in report["ratios"].items():
        lines.append(f"{name}: {value:.2f}x")
    for case, reasons in report.get("failed", {}).items():
        lines.append(f"{case}: {len(reasons)} of {report['repeats']} runs failed ({reasons[-1]})")
    if report.get("training_gflop_per_image"):
        lines.append(f"training cost: {report['training_gflop_per_image']:.3f} GFLOP per image")
    return "\n".join(lines)
