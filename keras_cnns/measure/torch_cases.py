"""The PyTorch cases of `scripts/benchmark.py`: the reference trained eager or compiled.

- `torch_nchw`: the seed's code, eager, NCHW;
- `torch_cl`: eager, channels_last (PyTorch's advice for CPU convolutions);
- `torch_compile`: channels_last under `torch.compile` (inductor), what a speed-minded
  PyTorch user runs. The first steps compile; `compile_s` reports them apart from the rate.
- `torch_infer_b128`: forward passes, channels_last, for the inference comparison.

All train the same step (`keras_cnns.reference.torch_training`): the recipe's optimizer and loss on
one in-memory batch.
"""

from __future__ import annotations

import resource
import statistics
import time


def time_calls(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def context_switches() -> int:
    """Voluntary and involuntary context switches of this process so far, all threads: a
    thread pool that sleeps and wakes around every kernel shows here (`getrusage`)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def case_torch(args, case: str, config) -> dict:
    import torch

    from keras_cnns.reference.torch_training import reference_setup, reference_training_step

    setup = reference_setup(config, channels_last=case != "torch_nchw")
    info = {"threads": torch.get_num_threads(), "precision": setup.precision,
            "aten_capability": torch.backends.cpu.get_cpu_capability()}
    if case == "torch_infer_b128":
        setup.model.eval()
        with torch.no_grad(), setup.autocast():
            time_calls(lambda: setup.model(setup.images), 3)
            calls = args.steps * 2
            seconds = time_calls(lambda: setup.model(setup.images), calls)
        return {"img_s": calls * config.batch_size / seconds, **info}
    compiled = case == "torch_compile"
    step = reference_training_step(setup, config, compiled=compiled)
    # Warm-up: 3 steps. Compiled, the first one traces and compiles the forward and backward
    # graphs and the optimizer step (a second compile can follow on the next call, when
    # AdamW's state exists); everything above the steady step time is compile time.
    warmup = [time_calls(step, 1) for _ in range(3)]
    before = context_switches()
    times = [time_calls(step, args.steps) for _ in range(args.epochs)]
    switches = (context_switches() - before) / (args.steps * args.epochs)
    step_s = statistics.median(times) / args.steps
    result = {"img_s": config.batch_size / step_s, "switches_per_step": switches, **info}
    if compiled:
        import torch._inductor.config as inductor

        from keras_cnns.reference.torch_training import COMPILE_OPTIONS

        result.update(compile_s=sum(warmup) - 3 * step_s, compile_options=COMPILE_OPTIONS,
                      inductor_cpp_compiler=inductor.cpp.cxx[-1] if inductor.cpp.cxx else None)
    return result
