"""Where a training step's time goes, op by op, in our path and in the PyTorch reference.

    report = profile(settings)       # settings: the flags of `keras-cnns profile`
    print(format_report(report))

Each side runs in its own child process (`run_side`, started by `child.run`):

- `ours`: `train.py`'s model, optimizer and input pipeline (as `scripts/benchmark.py` builds
  them), one epoch traced with the TensorFlow profiler. This side runs with one inter-op
  thread (`TF_NUM_INTEROP_THREADS=1`) so that op times add up to the step instead of
  overlapping; its untraced step time is measured with that setting too (`benchmark.py`
  measures the trainer's threads). "framework" is the executor's time between ops. It
  trains each batch in one piece (`--batch-shards 1`), so its kernels have PyTorch's shapes;
  `--batch-shards N` profiles the trainer's sharded step, whose op times add up over N cores.
- `torch`: the reference module with the same optimizer, traced with `torch.profiler` (self
  time per aten op; PyTorch runs its ops one after another). "framework" is what the
  untraced step spends outside aten ops: Python, autograd, dispatch.

Op times are grouped into the same categories on both sides; "kernels" are convolutions and
matrix products, the FLOPs of the model. `kernel GFLOP/s` is the training FLOPs of a step over
the kernel time: how close those kernels run to the machine's peak (`benchmark.py`'s `peak`).
Dividing PyTorch's untraced step by our kernel time bounds the speed-up any amount of
framework work on our side could buy without faster kernels.

`--isa avx2` caps both sides to AVX2 kernels (`isa.py`); the report's header and JSON record
the CPU's ISA classes and what each side's oneDNN dispatched to.

`--kernels` runs each side once more with `ONEDNN_VERBOSE=1` and puts the oneDNN kernels the
two frameworks picked side by side, shape by shape, with oneDNN's own times
(`onednn_kernels.py`).
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from keras_cnns.machine import BackendProcessError
from keras_cnns.measure import child
from keras_cnns.measure.isa import describe, emulation_env, isa_facts
from keras_cnns.measure.onednn_kernels import parse_exec_lines, per_step, side_by_side
from keras_cnns.measure.throughput import (
    benchmark_config,
    default_steps,
    forward_flops,
    timed_epochs,
)

CATEGORIES = (
    "conv forward",
    "conv backward",
    "matmul",
    "pooling",
    "optimizer",
    "other ops",
    "framework",
)


def tf_category(op_name: str, op_type: str, optimizer_scope: str) -> str:
    """The category of one TensorFlow op, from its type and its name scope."""
    if op_name.split("/")[0] == optimizer_scope:
        return "optimizer"
    if "Conv2DBackprop" in op_type:
        return "conv backward"
    if "Conv2D" in op_type:
        return "conv forward"
    if "MatMul" in op_type:
        return "matmul"
    if "Pool" in op_type:
        return "pooling"
    return "other ops"


def torch_category(op_name: str) -> str:
    """The category of one aten op (optimizer time is taken from its own record)."""
    if op_name in ("aten::convolution_backward", "aten::mkldnn_convolution_backward"):
        return "conv backward"
    if op_name in ("aten::mkldnn_convolution", "aten::_convolution", "aten::conv2d"):
        return "conv forward"
    if op_name in ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul"):
        return "matmul"
    if "pool" in op_name:
        return "pooling"
    return "other ops"


def optimizer_scope(optimizer) -> str:
    """The name scope of the optimizer's ops: its class name in snake case (AdamW: adam_w)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", type(optimizer).__name__)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def parse_tf_trace(logdir: str, steps: int, optimizer_scope: str) -> dict:
    """Milliseconds per step by category from a TensorFlow profiler trace (XPlane)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    totals = collections.Counter()
    by_op = collections.Counter()
    executor = 0
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the step's executor threads
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if name == "ExecutorState::Process":
                    executor += event.duration_ps
                elif ":" in name and not name.startswith(("ExecutorState", "ThreadpoolListener")):
                    full, op_type = name.rsplit(":", 1)
                    scoped = full.split("StatefulPartitionedCall/")[-1]
                    totals[tf_category(scoped, op_type, optimizer_scope)] += event.duration_ps
                    by_op[f"{scoped} ({op_type})"] += event.duration_ps
    ops = sum(totals.values())
    # ExecutorState::Process spans the ops it runs; what is left is scheduling.
    totals["framework"] = max(executor - ops, 0)
    to_ms = 1e-9 / steps
    return {
        "categories": {k: totals[k] * to_ms for k in CATEGORIES},
        "top_ops": [(name, ps * to_ms) for name, ps in by_op.most_common(12)],
    }


def _our_training(args, steps: int):
    """Our model, compiled for `steps` steps, and its training stream, as `benchmark.py` builds
    them; `--input constant`: the stream's first batch, repeated (what the PyTorch side trains
    on), so that no input pipeline shares the cores."""
    import tensorflow as tf

    from keras_cnns.training import sharding
    from keras_cnns.training.trainer import build_for_training, load_data, set_precision

    config = benchmark_config(args)
    shards = sharding.prepare(config)
    set_precision(config.mixed_precision)
    source, train_ds, _, _ = load_data(config)
    if args.input == "constant":
        train_ds = tf.data.Dataset.from_tensors(next(iter(train_ds))).repeat()
    model, _ = build_for_training(config, source.info, steps, tf.distribute.get_strategy(),
                                  shards=shards)
    return model, train_ds


def _profile_ours(args) -> dict:
    import tensorflow as tf

    model, train_ds = _our_training(args, args.steps)
    (seconds,) = timed_epochs(model, train_ds, args.steps, epochs=1)  # untraced
    step_ms = 1000 * seconds / args.steps
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(train_ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
        tf.profiler.experimental.stop()
        result = parse_tf_trace(logdir, args.steps, optimizer_scope(model.optimizer))
    return {**result, "step_ms": step_ms, "flops_forward": forward_flops(model)}


KERNEL_WARMUP_STEPS = 5


def _kernels_ours(args) -> dict:
    """Run warm-up and `args.steps` steps of our training (oneDNN's log, turned on in the
    environment, records them)."""
    steps = KERNEL_WARMUP_STEPS + args.steps
    model, train_ds = _our_training(args, steps)
    model.fit(train_ds, epochs=1, steps_per_epoch=steps, verbose=0)
    # fit runs whole compiled calls: an epoch may be a few steps longer than asked.
    calls = -(-steps // model.steps_per_execution)
    return {"steps_run": calls * model.steps_per_execution - KERNEL_WARMUP_STEPS}


def _kernels_torch(args) -> dict:
    from keras_cnns.reference.torch_training import reference_setup, reference_training_step

    config = benchmark_config(args)
    step = reference_training_step(reference_setup(config, args.layout == "cl"), config)
    for _ in range(KERNEL_WARMUP_STEPS + args.steps):
        step()
    return {"steps_run": args.steps}


def _profile_torch(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from keras_cnns.reference.torch_training import reference_setup, reference_training_step

    config = benchmark_config(args)
    step = reference_training_step(reference_setup(config, args.layout == "cl"), config)
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_ms = 1000 * (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    totals = collections.Counter()
    by_op = collections.Counter()
    optimizer_us = 0.0
    for event in prof.key_averages():
        if event.key.startswith("Optimizer.step"):
            optimizer_us += event.cpu_time_total
        elif event.key.startswith("aten::") or event.key.startswith("mkldnn"):
            totals[torch_category(event.key)] += event.self_cpu_time_total
            by_op[event.key] += event.self_cpu_time_total
    # The optimizer's aten ops were counted as "other ops" too: move them.
    totals["other ops"] = max(totals["other ops"] - optimizer_us, 0.0)
    totals["optimizer"] = optimizer_us
    to_ms = 1e-3 / args.steps
    categories = {k: totals[k] * to_ms for k in CATEGORIES}
    categories["framework"] = max(step_ms - sum(categories.values()), 0.0)
    return {
        "categories": categories,
        "top_ops": [(name, us * to_ms) for name, us in by_op.most_common(12)],
        "step_ms": step_ms,
        "threads": torch.get_num_threads(),
    }


def run_side(settings: dict, side: str, kernels: bool) -> dict:
    """Child side: profile `side` ("ours" or "torch") with `settings` (the profile's), or with
    `kernels` just run its steps for oneDNN's log."""
    args = SimpleNamespace(**settings)
    if kernels:
        return _kernels_ours(args) if side == "ours" else _kernels_torch(args)
    return _profile_ours(args) if side == "ours" else _profile_torch(args)


# -- parent side ------------------------------------------------------------------------------
class ProfileSideError(RuntimeError):
    """One side's child failed; the message says which and the last line it said."""


def profile(args) -> dict:
    """Profile both sides, each in a child of its own (with `args.kernels`, once more each
    under oneDNN's log), printing what is measured; the report for `format_report`.

    `args` holds the flags of `keras-cnns profile`; `args.steps` None: from the model's FLOPs.
    """
    if args.steps is None:
        args.steps = default_steps(args.model, args.image_size, args.batch_size, max_steps=100)
    source = "one batch, repeated" if args.input == "constant" else "train.py's input pipeline"
    print(f"profiling {args.model} @ {args.image_size}px, {args.steps} steps per side; "
          f"our input: {source}", flush=True)
    facts = isa_facts(args.isa)
    print(describe(facts), flush=True)
    ours, theirs = _run_side(args, "ours"), _run_side(args, "torch")
    report = summarise(ours, theirs, args.layout, args.batch_size)
    report["isa"] = facts
    report["input"] = args.input
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.kernels:
        report["kernels"] = {side: _run_side(args, side, kernels=True)
                             for side in ("ours", "torch")}
    return report


def _run_side(args, side: str, kernels: bool = False) -> dict:
    env = emulation_env(args.isa)
    if side == "ours":
        env["TF_NUM_INTEROP_THREADS"] = "1"  # serial ops: their times add up to the step
    if kernels:
        env["ONEDNN_VERBOSE"] = "1"
    try:
        result, stdout = child.run(
            "profiling.run_side", {"settings": vars(args), "side": side, "kernels": kernels},
            env=env, what=f"{side} side",
        )
    except BackendProcessError as error:
        raise ProfileSideError(f"the {side} side failed: {error.last_line}") from None
    if kernels:
        return per_step(parse_exec_lines(stdout), result["steps_run"], KERNEL_WARMUP_STEPS)
    return result


def format_report(report: dict) -> str:
    ours, theirs = report["ours"], report["torch"]
    layout = "channels_last" if report["layout"] == "cl" else "NCHW"
    lines = [
        f"| category (ms per step) | ours | share | PyTorch {layout} | share |",
        "|---|---:|---:|---:|---:|",
    ]
    ours_total = sum(ours["categories"].values())
    torch_total = sum(theirs["categories"].values())
    for name in CATEGORIES:
        a, b = ours["categories"][name], theirs["categories"][name]
        lines.append(
            f"| {name} | {a:.2f} | {a / ours_total:.0%} | {b:.2f} | {b / torch_total:.0%} |"
        )
    lines.append(f"| **traced total** | {ours_total:.2f} | | {torch_total:.2f} | |")
    lines.append(f"| **step, untraced** | {ours['step_ms']:.2f} | | {theirs['step_ms']:.2f} | |")
    lines.append("")
    for side in ("ours", "torch"):
        stats = report[side]
        lines.append(
            f"{side}: kernels (conv + matmul) {stats['kernel_ms']:.2f} ms per step, "
            f"{stats['kernel_share']:.0%} of the traced step, "
            f"{stats['kernel_gflop_s']:.0f} GFLOP/s inside them"
        )
    lines.append(
        f"untraced step ratio (PyTorch / ours): {report['ratio']:.2f}x; "
        f"with zero framework cost on our side, at most {report['bound']:.2f}x "
        f"(PyTorch's step over our kernel time)"
    )
    lines.append(f"load average at the end: {' '.join(map(str, report['load_average']))}")
    for title, side in (("\nslowest ops, ours:", ours), ("slowest ops, PyTorch:", theirs)):
        lines.append(title)
        lines += [f"  {ms:8.2f} ms  {name}" for name, ms in side["top_ops"]]
    if "kernels" in report:
        lines.append("\noneDNN kernels, ms per step (oneDNN's own times):")
        lines.append(side_by_side(report["kernels"]["ours"], report["kernels"]["torch"]))
    return "\n".join(lines)


def summarise(ours: dict, theirs: dict, layout: str, batch_size: int) -> dict:
    flops_step = 3 * ours["flops_forward"] * batch_size
    for stats in (ours, theirs):
        cats = stats["categories"]
        stats["kernel_ms"] = cats["conv forward"] + cats["conv backward"] + cats["matmul"]
        stats["kernel_share"] = stats["kernel_ms"] / sum(cats.values())
        stats["kernel_gflop_s"] = flops_step / (stats["kernel_ms"] * 1e6)
    return {
        "layout": layout,
        "ours": ours,
        "torch": theirs,
        "ratio": theirs["step_ms"] / ours["step_ms"],
        "bound": theirs["step_ms"] / ours["kernel_ms"],
    }
