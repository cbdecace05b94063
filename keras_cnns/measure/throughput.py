"""Side-by-side speed of our training path and the PyTorch reference, on this machine.

    report = benchmark(settings)     # settings: the flags of `keras-cnns benchmark`
    report["failed"]                 # {case: the last line each failed run said}

Every case runs in a fresh child process (`run_case`, started by `child.run`), and the
cases are interleaved, A B C A B C ..., so that the drift of a shared machine falls on every
case alike; the table reports medians and their ratios. The cases:

- `ours_train`: what `train.py` runs. The model, optimizer, loss and compile settings come
  from `build_for_training` and the batches from the trainer's own input pipeline
  (`load_data`), timed through `fit` with `steps_per_epoch`, after a warm-up epoch.
- `ours_train_unsharded`: the same with `batch_shards` 1, each batch in one piece on
  TensorFlow's default threads (the trainer's default before batch shards,
  `keras_cnns/training/sharding.py`).
- `ours_train_torch`, `ours_train_jax`: the same `fit`, model and pipeline under Keras' torch
  backend (PyTorch's kernels) and JAX backend (XLA:CPU, `jit_compile` on, as JAX needs it).
- `torch_nchw`, `torch_cl`, `torch_compile`: the PyTorch reference modules trained with the
  same optimizer and hyperparameters, in the seed's NCHW layout, in channels_last, and in
  channels_last under `torch.compile` (its compile time reported apart: `compile_s`), on an
  in-memory batch (`torch_cases.py`).
- `ours_infer_b128`, `ours_infer_b1`: forward passes of the same model (batch 128 throughput,
  batch 1 latency), and `torch_infer_b128` for comparison.
- `pipeline`: the training input pipeline alone (decode, resize, augment, batch).
- `peak`: the best FLOP rate of a large GEMM or convolution, what FLOP fractions are measured
  against.

`--isa avx2` runs every case with oneDNN, ATen, inductor and XLA capped to AVX2 (`isa.py`), so
an AVX-512 host picks an AVX2 machine's kernels; the report records the CPU's ISA classes and
what oneDNN dispatched to in TensorFlow and PyTorch either way.

Training FLOPs are counted from the model's layers (2 * MACs per forward pass, times 3 for
forward plus both backward products), so "of peak" is achieved FLOP/s over the `peak` case's.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from types import SimpleNamespace

from keras_cnns.machine import BackendProcessError
from keras_cnns.measure import child
from keras_cnns.measure.isa import describe, emulation_env, isa_facts
from keras_cnns.measure.peak import peak_case
from keras_cnns.measure.throughput_tables import (
    device_description,
    format_table,
    summarise,
)
from keras_cnns.measure.torch_cases import case_torch, context_switches, time_calls

# Cases that run our path under another Keras backend: the KERAS_BACKEND of their child.
BACKEND_CASES = {"ours_train_torch": "torch", "ours_train_jax": "jax"}

CASES = (
    "ours_train",
    "ours_train_unsharded",
    "ours_train_torch",
    "ours_train_jax",
    "torch_nchw",
    "torch_cl",
    "torch_compile",
    "pipeline",
    "ours_infer_b128",
    "ours_infer_b1",
    "torch_infer_b128",
    "peak",
)


# -- child side: one case, one JSON line --------------------------------------------------------
def benchmark_config(args):
    """The RunConfig a benchmark case trains with: the recipe plus the command's overrides."""
    from keras_cnns.config import RunConfig

    fields = dict(
        model=args.model,
        dataset=args.dataset,
        data_dir=getattr(args, "data_dir", None),
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=100,
        run_dir="/nonexistent",
        strategy="default",
    )
    for name in ("jit_compile", "steps_per_execution", "mixed_precision", "augment",
                 "batch_shards"):
        if getattr(args, name, None) is not None:
            fields[name] = getattr(args, name)
    if getattr(args, "case", None) == "ours_train_unsharded":
        fields["batch_shards"] = 1
    return RunConfig(**fields).resolve()


def _case_ours(args, case):
    import tensorflow as tf

    from keras_cnns.training import sharding
    from keras_cnns.training.trainer import build_for_training, load_data, set_precision

    config = benchmark_config(args)
    # The trainer's shards and threads; inference keeps TensorFlow's own.
    shards = sharding.prepare(config) if case.startswith("ours_train") else 1
    precision = set_precision(config.mixed_precision)
    source, train_ds, _, _ = load_data(config)
    strategy = tf.distribute.get_strategy()
    model, _ = build_for_training(config, source.info, args.steps, strategy, shards=shards)
    result = {"flops_forward": forward_flops(model), "precision": precision}
    if case == "pipeline":
        iterator = iter(train_ds)
        next(iterator)
        start = time.perf_counter()
        for _ in range(args.steps * 5):
            next(iterator)
        result["img_s"] = args.steps * 5 * config.batch_size / (time.perf_counter() - start)
        return result
    if case.startswith("ours_infer"):
        batch = 1 if case.endswith("b1") else config.batch_size
        images = next(iter(train_ds))[0][:batch]
        forward = tf.function(lambda x: model(x, training=False), jit_compile=config.jit_compile)
        calls = args.steps * (20 if batch == 1 else 2)
        time_calls(lambda: forward(images).numpy(), 3)
        seconds = time_calls(lambda: forward(images).numpy(), calls)
        result.update(img_s=calls * batch / seconds, latency_ms=1000 * seconds / calls)
        return result

    switches = []
    seconds = statistics.median(timed_epochs(model, train_ds, args.steps, args.epochs,
                                             switches))
    import keras

    result.update(
        img_s=args.steps * config.batch_size / seconds,
        switches_per_step=sum(switches) / (args.steps * args.epochs),
        backend=keras.backend.backend(),
        jit_compile=config.jit_compile,
        optimizer=config.optimizer,
        steps_per_execution=model.steps_per_execution,
        batch_shards=getattr(model, "batch_shards", 1),
    )
    return result


def timed_epochs(model, dataset, steps: int, epochs: int,
                 switches: list[int] | None = None) -> list[float]:
    """Seconds of `epochs` epochs of `fit`, after one more that traces and compiles (and, in
    `switches`, each timed epoch's context switches).

    Epoch callbacks time the steps alone: `fit`'s start-up (making the iterator) is outside.
    """
    import keras

    times, counts = [], []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.switches = time.perf_counter(), context_switches()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            counts.append(context_switches() - self.switches)

    model.fit(dataset, epochs=1 + epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=[EpochTimer()])
    if switches is not None:
        switches.extend(counts[1:])
    return times[1:]


def forward_flops(model) -> int:
    """2 * multiply-adds of one image's forward pass through the conv and dense layers."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, filters = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            total += 2 * height * width * filters * kernel_h * kernel_w * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


# Steps per timed epoch: about this many training FLOPs (10 steps of AlexNet at 96 px, batch
# 128), within [MIN_STEPS, max_steps] so that small models still time many steps.
EPOCH_FLOPS = 1.2e12
MIN_STEPS = 10


def default_steps(model: str, image_size: int, batch_size: int, max_steps: int = 150) -> int:
    """Steps per timed epoch for a registry model, from its training FLOPs (not its name)."""
    from keras_cnns.models import build_model

    net = build_model(model, input_shape=(image_size, image_size, 1), num_classes=10)
    step_flops = 3 * forward_flops(net) * batch_size
    return int(min(max_steps, max(MIN_STEPS, round(EPOCH_FLOPS / step_flops))))


def check_settings(args) -> None:
    """Refuse, in one sentence, settings our cases cannot run (the RunConfig they train with,
    its data source, its batch shards) before any case starts; here and in the profile."""
    from keras_cnns.data.sources import check_source
    from keras_cnns.preflight import check_run
    from keras_cnns.training.sharding import resolve_shards

    config = benchmark_config(args)
    check_run(config, write_places=False)
    check_source(config.dataset, config.data_dir)
    resolve_shards(config, "default", has_gpu=False)


def run_case(settings: dict) -> dict:
    """Child side: one case of `settings` (the benchmark's, with `case`), timed."""
    args = SimpleNamespace(**settings)
    if args.case == "peak":
        result = peak_case(args)
    elif args.case.startswith("torch"):
        result = case_torch(args, args.case, benchmark_config(args))
    else:
        result = _case_ours(args, args.case)
    result["case"] = args.case
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# -- parent side: interleave and collect (the tables: throughput_tables.py) --------------------
def benchmark(args) -> dict:
    """Run `args.cases` (comma-separated names of CASES) `args.repeats` times, interleaved,
    each in a child of its own, and print their progress; the report, with its `table`.

    `args` holds the flags of `keras-cnns benchmark`; `args.steps` None: `default_steps`.
    """
    if args.steps is None:
        args.steps = default_steps(args.model, args.image_size, args.batch_size)
    print(f"benchmarking {args.model} @ {args.image_size}px on {device_description()['cpu']}",
          flush=True)
    facts = isa_facts(args.isa)
    print(describe(facts), flush=True)
    report = run_all(args)
    report["isa"] = facts
    report["load_average"] = _load_average()
    report["table"] = format_table(report)
    return report


def run_all(args) -> dict:
    cases = [c for c in args.cases.split(",") if c]
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    failed: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for case in cases:
            # Without jax.jit, Keras on JAX runs op by op.
            jit_compile = True if case == "ours_train_jax" else args.jit_compile
            try:
                result, _ = child.run(
                    "throughput.run_case",
                    {"settings": {**vars(args), "case": case, "jit_compile": jit_compile}},
                    backend=BACKEND_CASES.get(case, "tensorflow"),
                    env=emulation_env(args.isa), what=f"{case} case",
                )
            except BackendProcessError as error:
                print(f"  {case}: failed ({error.last_line})", file=sys.stderr, flush=True)
                failed.setdefault(case, []).append(error.last_line)
                continue
            runs[case].append(result)
            rate = result.get("img_s", result.get("gflop_s"))
            extra = (f" (compile {result['compile_s']:.1f} s)" if "compile_s" in result
                     else "")
            print(f"  repeat {repeat + 1}/{args.repeats} {case:>17}: {rate:,.1f}{extra}",
                  flush=True)
    return {**summarise(runs, args), "failed": failed}


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages at the end of the run (a shared machine's noise)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
