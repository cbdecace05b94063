"""Facts about this machine: its CPU (model name and the vector ISA classes oneDNN picks
kernels by: exports record both, as a deterministic run is bit-identical only on the same
kernels, and `--mixed-precision auto` reads them), how much memory a process may use (the
pre-flight estimate and the IDX reader's header check), and whether a process still runs here
(run-directory locks and unfinished exports name their process), a one-line description for
reports (`describe_machine`); and the one way a Python child runs under a given Keras backend
(`run_python`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import re
import resource
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ISA_CLASSES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_facts() -> tuple[str | None, list[str]]:
    """`(model name, ISA classes present)` from /proc/cpuinfo; `(None, [])` where it is absent."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            lines = cpuinfo.read().splitlines()
    except OSError:
        return None, []
    model = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1] for line in lines if line.startswith("flags")),
                     "").split())
    return model, [name for name in ISA_CLASSES if name in flags]


def describe_machine() -> str:
    """CPU model, usable cores and OS, e.g. "AMD EPYC 9B14, 2 cores, Linux x86_64"."""
    model = cpu_facts()[0] or platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores, {platform.system()} {platform.machine()}"


def process_usage() -> dict:
    """This process's wall-clock seconds since it started and its peak resident memory (MB):
    what a user's command cost, start-up included (metrics.json records it)."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            seconds = float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        seconds = None
    return {"wall_seconds": None if seconds is None else round(seconds, 1),
            "peak_rss_mb": round(peak_mb)}


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


def machine_memory() -> int | None:
    """Bytes this process may use: physical memory, capped by a cgroup limit or `ulimit -v`."""
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else None


# -- a Python child under a given Keras backend ----------------------------------------------
# Keras picks its backend once per process, from KERAS_BACKEND, so work under another backend
# runs in a child: the TensorFlow-only export writers under torch or JAX, and measurements.
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
_SOURCE_TREE = Path(__file__).resolve().parents[1]
# TensorFlow's native log lines (`I0000 00:00:1.0 ...`), printed before any log level applies.
_NATIVE_LOG_LINE = re.compile(r"[IWEF]\d{4} ")


def backend_env(backend: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `KERAS_BACKEND=backend`, quiet TF logs, and the package
    importable (PYTHONPATH gains the source tree, for checkouts that are not installed)."""
    if backend not in KERAS_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(KERAS_BACKENDS)}, got {backend!r}.")
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_SOURCE_TREE), os.environ.get("PYTHONPATH")])
    )
    env.update(extra or {})
    return env


class BackendProcessError(RuntimeError):
    """A Python child failed; the message ends with its stderr, and `last_line` is the last
    line it said there that is not a TensorFlow log line."""

    def __init__(self, message: str, last_line: str):
        super().__init__(message)
        self.last_line = last_line


def run_python(
    backend: str,
    args: Sequence[str],
    *,
    stdin: str | None = None,
    timeout: float | None = 900,
    extra_env: Mapping[str, str] | None = None,
    what: str = "subprocess",
) -> subprocess.CompletedProcess:
    """Run `python ARGS...` under `backend` and return it; a BackendProcessError if it fails."""
    try:
        proc = subprocess.run(
            [sys.executable, *args], input=stdin, env=backend_env(backend, extra_env),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        why = f"did not finish in {timeout:.0f} s"
        raise BackendProcessError(f"The {what} under KERAS_BACKEND={backend} {why}.",
                                  why) from None
    if proc.returncode != 0:
        said = [line for line in proc.stderr.splitlines()
                if line.strip() and not _NATIVE_LOG_LINE.match(line)]
        tail = (proc.stderr or proc.stdout or "").strip()[-3000:]
        raise BackendProcessError(
            f"The {what} under KERAS_BACKEND={backend} exited with {proc.returncode}:\n{tail}",
            (said or [f"exit status {proc.returncode}"])[-1],
        )
    return proc
