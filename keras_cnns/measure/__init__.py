"""Measurement tools: how fast and how exactly the models run, against other frameworks.

- `parity`: one model's logits on the TF, JAX and torch backends, the PyTorch reference and
  ONNX Runtime, against Keras on TensorFlow (`scripts/parity.py`).
- `backends`: the current Keras backend, and Python subprocesses that run another.
- `benchmark`, `benchmark_report`: interleaved training and inference speed of our path
  beside the PyTorch reference, and its tables (`scripts/benchmark.py`).
- `torch_cases`: the PyTorch reference's benchmark cases, eager and under torch.compile.
- `isa`: the CPU's ISA classes, what oneDNN dispatched to, and `--isa avx2` emulation.
- `profiling`: where a training step's time goes, op by op (`scripts/profile_step.py`).

Every tool takes model names from the registry (`keras_cnns.models.list_models()`) and derives
its per-model settings from the built model (FLOPs, input size), so a newly registered
architecture is measured without editing this folder.
"""
