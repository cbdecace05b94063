"""Measurement libraries: how fast and how exactly the models run, against other frameworks.

- `logit_parity`: one model's logits on the TF, JAX and torch backends, the PyTorch reference
  and ONNX Runtime, against Keras on TensorFlow (`keras-cnns parity`).
- `throughput`, `throughput_tables`: interleaved training and inference speed of our path
  beside the PyTorch reference, and its tables (`keras-cnns benchmark`); `torch_cases` and
  `peak`: its PyTorch cases and the machine's usable FLOP rate.
- `profiling`, `onednn_kernels`: where a training step's time goes, op by op, and the oneDNN
  kernels each side ran (`keras-cnns profile`).
- `litert_latency`: an export's size, accuracy and latency, SavedModel vs LiteRT
  (`keras-cnns tflite-latency`).
- `layer_views`: what a trained model's layers respond to: first-layer filters, feature maps,
  Grad-CAM, occlusion and the images that excite chosen units (`keras-cnns visualize`);
  `layer_subject` loads what it looks at (`keras_cnns.tile_grids` draws the arrays),
  `score_gradients` takes Grad-CAM's gradient on each backend, `forward_runtimes` runs the
  export's SavedModel, LiteRT or ONNX file forward.
- `layer_probes`, `probe_plan`, `probe_study`, `probe_report`: "edges, then parts, then
  categories" measured: linear probes per layer, first-layer edge scores, receptive fields
  (`keras-cnns probe`).
- `isa`: the CPU's ISA classes, what oneDNN dispatched to, and `--isa avx2` emulation.
- `child`: the one way these run a measurement in a fresh process (another Keras backend, an
  ISA cap, nothing warm carried over).

Every tool takes model names from the registry (`keras_cnns.models.list_models()`) and derives
its per-model settings from the built model (FLOPs, input size), so a newly registered
architecture is measured without editing this folder. The commands (flags, usage errors,
printing the report) live in `keras_cnns/commands/`.
"""
