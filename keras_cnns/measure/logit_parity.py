"""The parity report: one model's logits on every backend and runtime, against TensorFlow's.

For each model (a registry model freshly initialised, or a trained `.keras` / export), the same
batch goes through five paths:

    tensorflow   Keras, KERAS_BACKEND=tensorflow   }  each in its own subprocess, loading the
    jax          Keras, KERAS_BACKEND=jax          }  same model.keras; predict_on_batch after
    torch        Keras, KERAS_BACKEND=torch        }  compile() (XLA / jax.jit / eager)
    reference    the PyTorch reference module (keras_cnns.reference), weights ported
    onnx         onnxruntime on model.onnx (keras_cnns.export.onnx_export: uint8 images in, the
                 preprocessing inside the graph)

and the report gives, per path, `max|logits - tf| / max|tf|` over the batch (tf: the
tensorflow path's logits; `keras_cnns.export.scoring.relative_gap`) and the median time of one
forward pass of the batch. The Keras paths and the reference take the preprocessed float
batch; ONNX takes the uint8 images it was made from (so its gap includes ONNX's
preprocessing) and its time includes the preprocessing.

    rows = run(list_models())
    print(format_table(rows))

The backend workers are `keras_worker`, each in a child under its KERAS_BACKEND (`child.run`).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_cnns.export.scoring import relative_gap
from keras_cnns.measure import child

TOLERANCE = 1e-5
KERAS_PATHS = ("tensorflow", "jax", "torch")
PATHS = (*KERAS_PATHS, "reference", "onnx")
LABELS = {
    "tensorflow": "TF backend",
    "jax": "JAX backend",
    "torch": "torch backend",
    "reference": "PyTorch reference",
    "onnx": "ONNX Runtime",
}
# Normalisation of the registry models' random images (any constants do; these are digits-like).
DEFAULT_MEAN, DEFAULT_STD = (0.5,), (0.25,)
WARMUP = 2


def timed(forward: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """`forward()`'s last result and the median of `repeats` timed calls, in milliseconds."""
    for _ in range(WARMUP):
        out = forward()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = forward()
        times.append((time.perf_counter() - start) * 1e3)
    return out, statistics.median(times)


# -- cases: the models and their inputs, written by the TensorFlow parent ------------------------

def _export_stats(path: Path) -> tuple[list, list, np.ndarray | None]:
    from keras_cnns.export import ExportError, read_manifest
    from keras_cnns.serving.verify_export import UINT8, load_arrays

    dataset = read_manifest(path)["dataset"]
    images = None
    for name in ("test_set.npz", "golden.npz"):
        if (path / name).is_file():
            images = load_arrays(path / name, {"images": UINT8}, "The export's",
                                 error=ExportError)["images"]
            break
    return dataset["mean"], dataset["std"], images


def prepare_cases(
    models: Sequence[str] | None = None,
    keras_files: Sequence[str | Path] = (),
    *,
    workdir: str | Path,
    batch_size: int = 64,
    seed: int = 0,
    image_size: int | None = None,
) -> list[dict[str, Any]]:
    """Write each case's `model.keras` and `inputs.npz` (uint8 `images`, float32 `x`) under
    `workdir`; needs the TensorFlow backend (the preprocessing is `keras_cnns.data`'s)."""
    import keras

    from keras_cnns.data import preprocess
    from keras_cnns.models import build_model, get_model_entry

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("The parity report's reference side needs KERAS_BACKEND=tensorflow.")
    if models is None:
        from keras_cnns.models import list_models

        models = list_models()
    workdir = Path(workdir)
    rng = np.random.default_rng(seed)
    sources: list[tuple[str, Any, Any, Any, Any, Path | None]] = []
    for name in models:
        size = image_size or get_model_entry(name).default_image_size
        keras.utils.set_random_seed(seed)
        model = build_model(name, input_shape=(size, size, 1), num_classes=10)
        sources.append((name, model, DEFAULT_MEAN, DEFAULT_STD, None, None))
    for path in map(Path, keras_files):
        if path.is_dir():  # an export: its stats, test images and model.onnx, if any
            model = keras.saving.load_model(path / "model.keras", compile=False)
            mean, std, images = _export_stats(path)
            onnx_file = path / "model.onnx" if (path / "model.onnx").is_file() else None
            sources.append((path.name, model, mean, std, images, onnx_file))
        else:
            model = keras.saving.load_model(path, compile=False)
            sources.append((path.stem, model, DEFAULT_MEAN, DEFAULT_STD, None, None))

    cases, seen = [], set()
    for label, model, mean, std, images, onnx_file in sources:
        while label in seen:
            label += "'"
        seen.add(label)
        height, width, channels = (int(d) for d in model.inputs[0].shape[1:])
        if images is None or len(images) < batch_size:
            images = rng.integers(0, 256, (batch_size, height, width, channels), dtype=np.uint8)
        images = np.ascontiguousarray(images[:batch_size])
        x = preprocess(images, image_size=(height, width), mean=mean, std=std, channels=channels)
        case_dir = workdir / f"case{len(cases)}"
        case_dir.mkdir(parents=True)
        model.save(case_dir / "model.keras")
        if onnx_file is not None:
            shutil.copyfile(onnx_file, case_dir / "model.onnx")
        np.savez(case_dir / "inputs.npz", images=images, x=x.numpy())
        cases.append({
            "model": label,
            "input": f"{height}x{width}x{channels}",
            "dir": str(case_dir),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        })
    return cases


# -- the paths ------------------------------------------------------------------------------------

def keras_worker(cases: list[dict], repeats: int) -> list[dict]:
    """Run every case under this process's Keras backend; writes `<dir>/<backend>.npy`."""
    import keras

    backend = keras.backend.backend()
    results = []
    for case in cases:
        case_dir = Path(case["dir"])
        model = keras.saving.load_model(case_dir / "model.keras", compile=False)
        model.compile()  # default jit_compile: XLA on TF, jax.jit on JAX, eager on torch
        with np.load(case_dir / "inputs.npz") as data:
            x = data["x"]
        logits, ms = timed(lambda model=model, x=x: model.predict_on_batch(x), repeats)
        np.save(case_dir / f"{backend}.npy", keras.ops.convert_to_numpy(logits))
        results.append({"dir": case["dir"], "ms": ms, "jit_compile": bool(model.jit_compile)})
    return results


def run_keras_backend(backend: str, cases: list[dict], repeats: int) -> list[dict]:
    results, _ = child.run("logit_parity.keras_worker", {"cases": cases, "repeats": repeats},
                           backend=backend, timeout=900, what="parity worker")
    return results


def reference_path(case: dict, repeats: int) -> tuple[np.ndarray, float]:
    import keras
    import torch

    from keras_cnns.reference import reference_for

    case_dir = Path(case["dir"])
    module = reference_for(keras.saving.load_model(case_dir / "model.keras", compile=False))
    with np.load(case_dir / "inputs.npz") as data:
        x = data["x"]

    def forward():
        with torch.inference_mode():
            return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()

    return timed(forward, repeats)


def onnx_path(case: dict, repeats: int) -> tuple[np.ndarray, float]:
    import keras

    from keras_cnns.export import onnx_export

    case_dir = Path(case["dir"])
    onnx_file = case_dir / "model.onnx"
    if not onnx_file.exists():
        model = keras.saving.load_model(case_dir / "model.keras", compile=False)
        onnx_export.write_onnx(model, onnx_file, mean=case["mean"], std=case["std"])
    sess = onnx_export.session(onnx_file)
    with np.load(case_dir / "inputs.npz") as data:
        images = data["images"]
    out, ms = timed(lambda: sess.run(["logits"], {"images": images})[0], repeats)
    return out, ms


def run(
    models: Sequence[str] | None = None,
    keras_files: Sequence[str | Path] = (),
    *,
    paths: Sequence[str] = PATHS,
    batch_size: int = 64,
    repeats: int = 10,
    seed: int = 0,
    image_size: int | None = None,
    workdir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """The report's rows: one per case and path, with `gap` (None where the path failed; its
    `error` then says why) and `ms`. Needs the TensorFlow backend in this process."""
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"Unknown parity paths {unknown}; the paths are {', '.join(PATHS)}.")
    if "tensorflow" not in paths:
        paths = ("tensorflow", *paths)  # the reference logits
    log = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="keras_cnns-parity-") as tmp:
        work = Path(workdir or tmp)
        log(f"preparing {len(models or ()) or 'every registered'} model(s) and "
            f"{len(keras_files)} file(s), batch {batch_size}")
        cases = prepare_cases(models, keras_files, workdir=work, batch_size=batch_size,
                              seed=seed, image_size=image_size)
        results: dict[tuple[str, str], dict] = {}
        for backend in (p for p in PATHS if p in paths and p in KERAS_PATHS):
            log(f"running the {LABELS[backend]} in a subprocess")
            try:
                for item in run_keras_backend(backend, cases, repeats):
                    results[item["dir"], backend] = {"ms": item["ms"],
                                                     "jit_compile": item["jit_compile"]}
            except Exception as error:  # a missing backend is a row that says so
                for case in cases:
                    results[case["dir"], backend] = {"error": _one_line(error)}
        for path, function in (("reference", reference_path), ("onnx", onnx_path)):
            if path not in paths:
                continue
            log(f"running the {LABELS[path]}")
            for case in cases:
                try:
                    logits, ms = function(case, repeats)
                except Exception as error:
                    results[case["dir"], path] = {"error": _one_line(error)}
                    continue
                np.save(Path(case["dir"]) / f"{path}.npy", logits)
                results[case["dir"], path] = {"ms": ms}

        rows = []
        for case in cases:
            tf_file = Path(case["dir"]) / "tensorflow.npy"
            tf_logits = np.load(tf_file) if tf_file.exists() else None
            for path in (p for p in PATHS if p in paths):
                result = dict(results.get((case["dir"], path), {"error": "not run"}))
                logits_file = Path(case["dir"]) / f"{path}.npy"
                if tf_logits is not None and logits_file.exists() and "error" not in result:
                    result["gap"] = relative_gap(np.load(logits_file), tf_logits)
                elif "error" not in result:
                    result["error"] = "no TensorFlow logits to compare with"
                rows.append({"model": case["model"], "input": case["input"], "path": path,
                             "label": LABELS[path], "batch": batch_size,
                             "gap": result.get("gap"), "ms": result.get("ms"),
                             "jit_compile": result.get("jit_compile"),
                             "error": result.get("error")})
    return rows


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    last = text[-1] if text else ""
    return f"{type(error).__name__}: {last}"[:300]


def passed(rows: Sequence[dict], tolerance: float = TOLERANCE) -> bool:
    return bool(rows) and all(r["gap"] is not None and r["gap"] <= tolerance for r in rows)


def format_table(rows: Sequence[dict], tolerance: float = TOLERANCE) -> str:
    """The report as a Markdown table, with a heading line and a verdict line."""
    batch = rows[0]["batch"] if rows else 0
    lines = [
        f"Logit parity against the TF backend: gap = max|logits - tf| / max|tf| over a batch "
        f"of {batch}; ms = median time of one forward pass of that batch (Keras: "
        "predict_on_batch after compile(): XLA on TF, jax.jit on JAX, eager on torch; "
        "ONNX: uint8 images in, preprocessing included).",
        "",
        "| model | input | path | gap vs TF | ms / batch |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows:
        if row["gap"] is None:
            gap_text, ms_text = f"failed: {row['error']}", "-"
        else:
            mark = "" if row["gap"] <= tolerance else " (over)"
            gap_text = f"{row['gap']:.1e}{mark}"
            ms_text = f"{row['ms']:.2f}" if row["ms"] is not None else "-"
        lines.append(f"| {row['model']} | {row['input']} | {row['label']} | {gap_text} "
                     f"| {ms_text} |")
    worst = max((r["gap"] for r in rows if r["gap"] is not None), default=math.nan)
    verdict = (
        f"All {len(rows)} gaps are at most {tolerance:.0e} (largest {worst:.1e})."
        if passed(rows, tolerance)
        else f"FAILED: not every gap is at most {tolerance:.0e} (largest {worst:.1e})."
    )
    return "\n".join([*lines, "", verdict])
