"""Which oneDNN kernels a training step runs, on our side and PyTorch's, and for how long.

    python scripts/profile_step.py --model NAME --image-size 28 --layout cl --kernels

Both TensorFlow and PyTorch run their convolutions (and some pooling, reorders and inner
products) through oneDNN, which logs every primitive it executes when `ONEDNN_VERBOSE=1`:
the primitive kind, the implementation it picked (`brg_conv_fwd:avx2`, `jit:avx2`,
`gemm:jit`, ...), the memory layouts, the problem shape and the milliseconds. Grouping those
lines by kind, direction and shape puts the two frameworks' kernels side by side for the same
problem, which answers "is our convolution slower, or is it a different kernel?" directly,
without a profiler's own overhead inside the kernels. The times are oneDNN's own measurements
around each execution; the log's printing slows the step, not the kernels it times. A
primitive's first calls include oneDNN generating its code, so each side runs warm-up steps
first and their share of every group's calls is left out.
"""

from __future__ import annotations

import collections
import dataclasses

_DIRECTIONS = {
    "forward_training": "fwd",
    "forward_inference": "fwd",
    "backward_data": "bwd data",
    "backward_weights": "bwd weights",
    "backward": "bwd",
}


@dataclasses.dataclass
class KernelUse:
    """One (primitive, direction, shape) of a step: the implementations and time it took."""

    primitive: str
    direction: str
    shape: str
    impls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    layouts: set = dataclasses.field(default_factory=set)
    times_ms: list = dataclasses.field(default_factory=list)


def parse_exec_lines(text: str) -> dict[tuple[str, str, str], KernelUse]:
    """Group the `exec` lines of a `ONEDNN_VERBOSE=1` log by (primitive, direction, shape).

    oneDNN 3.x writes `onednn_verbose,[timestamp,]primitive,exec,cpu,KIND,IMPL,PROP,MEMORY
    DESCRIPTORS,ATTRS,AUX,SHAPE,MS`; older builds omit `primitive,`. Fields are found from the
    `exec` marker, so either form parses.
    """
    uses: dict[tuple[str, str, str], KernelUse] = {}
    for line in text.splitlines():
        if not line.startswith("onednn_verbose"):
            continue
        fields = line.strip().split(",")
        if "exec" not in fields:
            continue
        at = fields.index("exec")
        try:
            engine, kind, impl, prop = fields[at + 1:at + 5]
            shape, ms = fields[-2], float(fields[-1])
        except ValueError:
            continue
        if engine != "cpu":
            continue
        direction = _DIRECTIONS.get(prop, prop)
        key = (kind, direction, shape)
        use = uses.setdefault(key, KernelUse(kind, direction, shape))
        use.impls[impl] += 1
        use.layouts.add(_layouts(fields[at + 5]))
        use.times_ms.append(ms)
    return uses


def _layouts(memory: str) -> str:
    """`src:f32::blocked:acdb::f0 wei:...` -> `src acdb, wei ...` (the tags, not the padding)."""
    parts = []
    for desc in memory.split():
        bits = desc.split(":")
        if len(bits) >= 5:
            parts.append(f"{bits[0]} {bits[4]}")
    return ", ".join(parts)


def per_step(uses: dict, steps: int, warmup_steps: int = 0) -> list[dict]:
    """The grouped uses as JSON-ready rows, milliseconds per step, slowest first.

    The log covered `warmup_steps` and then `steps` steps; each group's first calls, in the
    warm-up's proportion, are left out.
    """
    rows = []
    for use in uses.values():
        skip = round(len(use.times_ms) * warmup_steps / (warmup_steps + steps))
        timed = use.times_ms[skip:]
        rows.append({
            "primitive": use.primitive,
            "direction": use.direction,
            "shape": use.shape,
            "impl": ", ".join(name for name, _ in use.impls.most_common()),
            "layouts": sorted(use.layouts),
            "calls_per_step": len(timed) / steps,
            "ms_per_step": sum(timed) / steps,
        })
    return sorted(rows, key=lambda row: -row["ms_per_step"])


def side_by_side(ours: list[dict], theirs: list[dict], top: int = 16) -> str:
    """A markdown table of both sides' kernels, matched by primitive, direction and shape."""
    def key(row):
        return row["primitive"], row["direction"], row["shape"]

    theirs_by_key = {key(row): row for row in theirs}
    ours_by_key = {key(row): row for row in ours}
    keys = list(dict.fromkeys([key(r) for r in ours] + [key(r) for r in theirs]))
    keys.sort(key=lambda k: -max(ours_by_key.get(k, {}).get("ms_per_step", 0),
                                 theirs_by_key.get(k, {}).get("ms_per_step", 0)))
    lines = [
        "| oneDNN primitive | shape | ours: kernel | ms | PyTorch: kernel | ms |",
        "|---|---|---|---:|---|---:|",
    ]
    for k in keys[:top]:
        cells = []
        for row in (ours_by_key.get(k), theirs_by_key.get(k)):
            cells.append(f"{row['impl']} | {row['ms_per_step']:.3f}" if row else "- | -")
        lines.append(f"| {k[0]} {k[1]} | `{k[2]}` | {cells[0]} | {cells[1]} |")
    total_a = sum(row["ms_per_step"] for row in ours)
    total_b = sum(row["ms_per_step"] for row in theirs)
    lines.append(f"| **all oneDNN** | | | {total_a:.3f} | | {total_b:.3f} |")
    return "\n".join(lines)
