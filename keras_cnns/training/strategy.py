"""Pick the tf.distribute strategy a run trains under.

`auto`: MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else
MirroredStrategy over every local GPU when there is at least one, else the
default (single-device) strategy. `mirrored` without GPUs mirrors over every
logical CPU device, which is how tests exercise the mirrored path on a CPU.

tf.distribute applies to the TensorFlow Keras backend only: under `KERAS_BACKEND=jax` or
`torch`, every request gets `SingleDevice` (no strategy scope, no tf.distribute call), and
`backend_note` says so.
"""

from __future__ import annotations

import contextlib
import json
import os

import keras
import tensorflow as tf

from keras_cnns.config import ConfigError


def _has_cluster() -> bool:
    try:
        spec = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        raise ConfigError("TF_CONFIG is set but is not valid JSON.") from None
    return bool(spec.get("cluster"))


def strategy_kind(requested: str = "auto") -> str:
    """What `requested` means on this machine: default, mirrored or multi_worker."""
    if requested != "auto":
        if requested == "multi_worker" and not _has_cluster():
            raise ConfigError("The multi_worker strategy needs TF_CONFIG to describe the cluster.")
        return requested
    if _has_cluster():
        return "multi_worker"
    if tf.config.list_physical_devices("GPU"):
        return "mirrored"
    return "default"


class SingleDevice:
    """The default strategy's part that the trainer uses, for backends without tf.distribute."""

    num_replicas_in_sync = 1
    cluster_resolver = None

    def scope(self):
        return contextlib.nullcontext()


def backend_note(requested: str = "auto", jit_compile: bool = False) -> str | None:
    """One sentence on what a non-TensorFlow Keras backend changes for a run; None on TF."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return None
    ignored = f" (--strategy {requested} ignored)" if requested not in ("auto", "default") else ""
    jit = " and without torch.compile (jit_compile off)" if backend == "torch" else ""
    jit = jit if jit_compile else ""
    return (
        f"Keras backend {backend}: training with the default (single-device) strategy{ignored}"
        f"{jit}; tf.distribute strategies need KERAS_BACKEND=tensorflow."
    )


def make_strategy(requested: str = "auto") -> tuple[tf.distribute.Strategy, str]:
    """Return `(strategy, kind)` for the requested strategy name."""
    if keras.backend.backend() != "tensorflow":
        return SingleDevice(), "default"
    kind = strategy_kind(requested)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(), kind
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices), kind
    return tf.distribute.get_strategy(), kind


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes run directories and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch; a global batch that does not divide is a ConfigError."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(
            f"The global batch size {batch_size} does not divide across {replicas} replicas; "
            f"use a multiple of {replicas}."
        )
    return batch_size // replicas
