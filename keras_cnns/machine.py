"""Facts about this machine: its CPU (model name and the vector ISA classes oneDNN picks
kernels by: exports record both, as a deterministic run is bit-identical only on the same
kernels, and `--mixed-precision auto` reads them) and whether a process still runs here
(run-directory locks and unfinished exports name their process).
"""

from __future__ import annotations

import errno
import os

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


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True
