"""The reference trained the way the seed's PyTorch code would train it, for speed comparisons.

`scripts/benchmark.py` and `scripts/profile_step.py` time this step against ours: the same
architecture, optimizer and hyperparameters as a `RunConfig`, one in-memory batch (no input
pipeline), eager PyTorch, NCHW as the seed writes it or channels_last, or the same step under
`torch.compile` (TorchInductor: the module's forward and backward become generated C++ around
oneDNN's convolutions, and the optimizer step one fused loop), what a speed-minded PyTorch
user runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from keras_cnns.reference.twins import build_reference

# torch.compile's settings for the compiled step: inductor's defaults ("default" mode; the
# step's shapes never change, so dynamic shapes are off).
COMPILE_OPTIONS = {"backend": "inductor", "mode": "default", "dynamic": False}


@dataclass
class ReferenceSetup:
    model: torch.nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    autocast: Callable[[], Any]  # a context manager factory: autocast or nothing
    precision: str  # "off", "float16" or "bfloat16"


def reference_setup(config, channels_last: bool) -> ReferenceSetup:
    """The reference module for `config` and a random batch of its shape."""
    from keras_cnns.data import load_source
    from keras_cnns.models.precision import precision_mode

    precision = precision_mode(config.mixed_precision)
    # Like for like: under mixed precision the reference runs under torch's autocast.
    if precision == "off":
        autocast = contextlib.nullcontext
    else:
        def autocast():
            return torch.autocast("cpu", dtype=getattr(torch, precision))
    info = load_source(config.dataset, config.data_dir).info
    channels, size = info.channels, config.image_size
    model = build_reference(
        config.model,
        input_shape=(size, size, channels),
        num_classes=info.num_classes,
        **config.model_options(),
    )
    images = torch.rand(config.batch_size, channels, size, size)
    labels = torch.randint(0, info.num_classes, (config.batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    return ReferenceSetup(model, images, labels, autocast, precision)


def reference_training_step(setup: ReferenceSetup, config, *,
                            compiled: bool = False) -> Callable[[], None]:
    """One training step with the recipe's optimizer and loss, as a closure.

    `compiled=True` compiles the module (`torch.compile`, inductor; forward and, through
    AOTAutograd, backward) and the optimizer's step, as PyTorch's tutorials on compiling a
    training loop do; the arithmetic is the same AdamW. The first calls compile (tens of
    seconds on a CPU): callers time them apart from the steady steps.
    """
    model = setup.model
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    forward, update = model, optimizer.step
    if compiled:
        forward = torch.compile(model, **COMPILE_OPTIONS)
        update = torch.compile(optimizer.step, **COMPILE_OPTIONS)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with setup.autocast():
            logits = forward(setup.images)
        loss_fn(logits.float(), setup.labels).backward()
        update()

    return step
