"""The `peak` case of `scripts/benchmark.py`: the machine's usable FLOP rate, which the
training cases' "of peak" is measured against."""

from __future__ import annotations

from keras_cnns.measure.torch_cases import time_calls


def peak_case(args) -> dict:
    """The machine's usable peak: the best of a large GEMM and a large 3x3 convolution.

    A 4096^2 GEMM alone understates it on this CPU (MKL and oneDNN's GEMM reach 175-215
    GFLOP/s where oneDNN's convolutions reach 240-280), so the convolution of AlexNet's conv4
    (13x13, 384 -> 384 channels, batch 128, channels-last) is timed too, in TensorFlow and
    PyTorch alike, in the training compute dtype (`--mixed-precision`; float32 by default).
    """
    import numpy as np
    import tensorflow as tf

    from keras_cnns.models.precision import precision_mode

    mode = precision_mode(args.mixed_precision or "off")
    dtype = {"off": "float32", "bfloat16": "bfloat16", "float16": "float16"}[mode]
    n, calls = 4096, 4
    a = tf.cast(tf.constant(np.random.rand(n, n).astype("float32")), dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    conv_flops = 2 * 128 * 13 * 13 * 384 * 9 * 384
    images = tf.cast(tf.random.uniform([128, 13, 13, 384]), dtype)
    kernel = tf.cast(tf.random.uniform([3, 3, 384, 384]), dtype)
    conv = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    rates = {
        "tf_gemm": rate(lambda: matmul(a).numpy(), 2 * n**3, calls),
        "tf_conv": rate(lambda: conv(images).numpy(), conv_flops, calls),
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or dtype == "float16":  # float16 is a GPU mode; this torch runs on the CPU
        return {"gflop_s": max(rates.values()), "by_probe": rates, "dtype": dtype}
    torch_dtype = getattr(torch, dtype)
    b = torch.rand(n, n, dtype=torch_dtype)
    layer = torch.nn.Conv2d(384, 384, 3, padding=1, bias=False).to(
        dtype=torch_dtype, memory_format=torch.channels_last
    )
    x = torch.rand(128, 384, 13, 13, dtype=torch_dtype).contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        rates["torch_gemm"] = rate(lambda: torch.mm(b, b), 2 * n**3, calls)
        rates["torch_conv"] = rate(lambda: layer(x), conv_flops, calls)
    return {"gflop_s": max(rates.values()), "by_probe": rates, "dtype": dtype}


def rate(fn, flops: int, calls: int) -> float:
    """GFLOP/s of `fn` after two warm-up calls."""
    time_calls(fn, 2)
    return flops * calls / time_calls(fn, calls) / 1e9
