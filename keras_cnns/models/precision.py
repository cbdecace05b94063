"""Mixed precision: which dtype policy a run uses, and setting it."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_cnns.machine import cpu_facts


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX), read on Linux."""
    _, isa = cpu_facts()
    return "avx512_bf16" in isa or "amx_bf16" in isa


def precision_mode(mode: str) -> str:
    """"off", "float16" or "bfloat16": what `mode` means here ("auto" picks the fast one).

    "auto" is float16 on a GPU, bfloat16 on a CPU with native bfloat16 instructions (measured:
    AlexNet@96 trains 1.5x faster than float32 on AVX512_BF16), and float32 otherwise. It is a
    rule of thumb by instruction set, not a measurement for the run's shapes: small images and
    batch shards can train slower in bfloat16 (docs/training.md, "Speed settings", says where
    and how to choose).
    """
    if mode != "auto":
        return mode
    if tf.config.list_physical_devices("GPU"):
        return "float16"
    return "bfloat16" if cpu_has_bfloat16() else "off"


def set_precision(mode: str) -> str:
    """Set the global dtype policy and return its name."""
    mode = precision_mode(mode)
    policy = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mode]
    keras.mixed_precision.set_dtype_policy(policy)
    return policy
