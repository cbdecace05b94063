"""Which vector ISA a measurement ran on: the CPU's, and the one oneDNN actually dispatched to.

Speeds differ by ISA class far more than by framework (oneDNN and PyTorch pick AVX-512, AVX2
or AMX kernels at run time), so every benchmark and profile records:

- `cpu_isa`: the classes /proc/cpuinfo lists (`keras_cnns.machine.cpu_facts`);
- `emulated`: None on the native ISA, or the class the run was capped to (`--isa avx2`);
- `onednn`: what TensorFlow's and PyTorch's oneDNN report dispatching to under the run's
  environment, read once from `ONEDNN_VERBOSE=1` in child processes (a small convolution each);
- `class`: the class the measurement stands for (the emulated one, else the CPU's best).

Emulating a smaller ISA on a bigger CPU. oneDNN reads `ONEDNN_MAX_CPU_ISA` (TensorFlow 2.21's
bundled oneDNN and torch 2.13's both honour it: their verbose output says `isa:Intel AVX2`
and names `brg_conv_fwd:avx2` / `jit:avx2` kernels), ATen's own vectorised kernels and
TorchInductor's generated C++ read `ATEN_CPU_CAPABILITY`, and XLA:CPU (JAX, TF's jit_compile)
reads `--xla_cpu_max_isa` from `XLA_FLAGS`. TensorFlow's Eigen kernels are compiled for AVX
in the pip wheel whatever the CPU, so they need no cap. With all four set, an AVX-512 host
picks the kernels an AVX2 machine picks; its caches, clocks and memory stay its own, so an
emulated figure is a kernel-choice figure, not a measurement of a specific AVX2 machine.
"""

from __future__ import annotations

import os
import re

from keras_cnns.machine import BackendProcessError, cpu_facts
from keras_cnns.measure import child

EMULATIONS = {
    "avx2": {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "ATEN_CPU_CAPABILITY": "avx2",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
    },
}
ISA_CHOICES = ("native", *EMULATIONS)
# The ISA classes of machine.ISA_CLASSES from best to worst: a CPU's class is its best one.
_RANKED = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")

# The frameworks whose oneDNN a measurement records.
PROBED = ("tensorflow", "torch")


def emulation_env(isa: str | None) -> dict[str, str]:
    """The environment variables that cap every framework to `isa` ({} for native or None).

    `XLA_FLAGS` keeps the flags already in the environment, with the cap appended.
    """
    if isa in (None, "native"):
        return {}
    if isa not in EMULATIONS:
        raise ValueError(f"isa must be one of {', '.join(ISA_CHOICES)}, got {isa!r}.")
    env = dict(EMULATIONS[isa])
    previous = os.environ.get("XLA_FLAGS", "")
    if previous and "xla_cpu_max_isa" not in previous:
        env["XLA_FLAGS"] = previous + " " + env["XLA_FLAGS"]
    return env


def emulated_isa(environ=None) -> str | None:
    """The class this process is capped to by its environment, or None (native)."""
    environ = os.environ if environ is None else environ
    for name, variables in EMULATIONS.items():
        if environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == variables["ONEDNN_MAX_CPU_ISA"]:
            return name
    return None


def cpu_class(isa: list[str]) -> str:
    """The best ISA class in `isa` ("avx2", "avx512f", ...), or "baseline" when none is."""
    return next((name for name in _RANKED if name in isa), "baseline")


def parse_onednn_verbose(text: str) -> dict:
    """`isa` (oneDNN's own words), `runtime` and the first convolution's `conv_impl` from a
    child's `ONEDNN_VERBOSE=1` output."""
    found: dict = {}
    for line in text.splitlines():
        if not line.startswith("onednn_verbose"):
            continue
        match = re.search(r",info,cpu,isa:(.+)$", line)
        if match:
            found.setdefault("isa", match.group(1).strip())
        match = re.search(r",info,cpu,runtime:([^,]+)", line)
        if match:
            found.setdefault("runtime", match.group(1).strip())
        match = re.search(r",exec,cpu,convolution,([^,]+),", line)
        if match:
            found.setdefault("conv_impl", match.group(1))
    return found


def convolve_once(framework: str) -> dict:
    """Child side: one small convolution in `framework`, for oneDNN's log on stdout (TF 2.21
    turns its oneDNN ops on by default on x86); torch adds the ISA ATen's own kernels use."""
    if framework == "tensorflow":
        import tensorflow as tf

        tf.nn.conv2d(tf.random.uniform([4, 16, 16, 8]), tf.random.uniform([3, 3, 8, 16]), 1,
                     "SAME").numpy()
        return {}
    import torch

    torch.nn.Conv2d(8, 16, 3, padding=1)(torch.rand(4, 8, 16, 16))
    return {"aten_capability": torch.backends.cpu.get_cpu_capability()}


def probe_onednn(framework: str, env: dict[str, str], timeout: float = 120) -> dict:
    """What `framework`'s oneDNN dispatches to under `env` (a child process; `error` when it
    failed)."""
    try:
        found, stdout = child.run("isa.convolve_once", {"framework": framework},
                                  env={**env, "ONEDNN_VERBOSE": "1"}, timeout=timeout,
                                  what=f"{framework} oneDNN probe")
    except (BackendProcessError, OSError) as error:
        return {"error": getattr(error, "last_line", str(error))}
    return {**parse_onednn_verbose(stdout), **found}


def isa_facts(isa: str | None = None, *, probe: bool = True) -> dict:
    """The ISA record of a measurement run under `--isa isa` (None or "native": uncapped)."""
    model, present = cpu_facts()
    env = emulation_env(isa)
    emulated = emulated_isa({**os.environ, **env})
    facts = {
        "cpu_model": model,
        "cpu_isa": present,
        "emulated": emulated,
        "class": emulated or cpu_class(present),
        "env": {k: v for k, v in {**os.environ, **env}.items() if k in
                ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "XLA_FLAGS",
                 "TF_ENABLE_ONEDNN_OPTS")},
    }
    if probe:
        facts["onednn"] = {name: probe_onednn(name, env) for name in PROBED}
    return facts


def describe(facts: dict) -> str:
    """One line for a report header: the class, how it was obtained, and oneDNN's own words."""
    how = (f"emulated on a CPU of class {cpu_class(facts['cpu_isa'])}" if facts.get("emulated")
           else "native")
    line = f"ISA class {facts['class']} ({how}; CPU flags: {', '.join(facts['cpu_isa']) or '-'})"
    seen = []
    for name, probe in (facts.get("onednn") or {}).items():
        if probe.get("isa"):
            seen.append(f"{name} oneDNN: {probe['isa']}, {probe.get('conv_impl', '?')}")
        if probe.get("aten_capability"):
            seen.append(f"ATen: {probe['aten_capability']}")
    return line + ("; " + "; ".join(seen) if seen else "")
