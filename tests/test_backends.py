"""The models run under Keras' JAX and PyTorch backends, with TensorFlow's numbers.

DESIGN.md promises models written in `keras.layers` / `keras.ops` only, so that
they run under every Keras 3 backend. A backend is chosen once per process
(`KERAS_BACKEND`), so each backend gets one subprocess that iterates over
every registered model: it builds the model with the backend's own
initialisation and checks a forward pass, then loads the weights this
(TensorFlow) process saved and checks the logits against TensorFlow's.

Parity metric, as in test_reference_parity.py: `max|logits - tf_logits| / max|tf_logits|`
over the whole batch must not exceed 1e-5 (float32 convolutions in different
libraries differ by about 1e-7 to 3e-6 of the logits' scale).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_cnns.models import build_model, get_model_entry, list_models

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-5
BATCH = 2
NUM_CLASSES = 5


def _sizes(name: str) -> list[int]:
    """The smallest input, the recipe's, and one about 2.4x the smallest.

    For AlexNet these are 63 and 64 (a 1x1 feature map that the model
    replicates before its adaptive pooling) and 151 (a 3x3 map, so pooling
    windows that overlap); for LeNet-5, 12, 28 and 29 (odd, so pooling floors).
    """
    entry = get_model_entry(name)
    smallest = entry.min_image_size
    return sorted({smallest, entry.default_image_size, round(2.4 * smallest)})


# Runs in the subprocess; argv[1] is the case list that the parent wrote.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    from keras_cnns.models import build_model

    cases = json.load(open(sys.argv[1]))
    results = []
    for case in cases:
        shape = (case["size"], case["size"], 1)
        data = np.load(case["arrays"])
        x = data["x"]
        model = build_model(case["name"], input_shape=shape, num_classes=case["classes"],
                            **case["options"])
        # The backend's own initialisation, eagerly.
        own = keras.ops.convert_to_numpy(model(x, training=False))
        model.load_weights(case["weights"])
        eager = keras.ops.convert_to_numpy(model(x, training=False))
        compiled = model.predict(x, verbose=0)  # jax.jit / the torch trainer's predict step
        scale = float(np.abs(data["logits"]).max())
        results.append({
            "name": case["name"], "size": case["size"],
            "shape": list(own.shape),
            "finite": bool(np.isfinite(own).all() and np.isfinite(eager).all()),
            "eager_gap": float(np.abs(eager - data["logits"]).max() / scale),
            "predict_gap": float(np.abs(compiled - data["logits"]).max() / scale),
        })
    print(json.dumps({"backend": keras.backend.backend(), "results": results}))
    """
)


@pytest.fixture(scope="module")
def tf_cases(tmp_path_factory):
    """Weights, inputs and TensorFlow logits for every registered model and size."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"the reference logits come from TensorFlow, not {keras.backend.backend()}")
    root = tmp_path_factory.mktemp("tf_weights")
    rng = np.random.default_rng(0)
    cases = []
    for name in list_models():
        for size in _sizes(name):
            keras.utils.set_random_seed(size)
            options = dict(get_model_entry(name).test_options)
            model = build_model(name, input_shape=(size, size, 1), num_classes=NUM_CLASSES,
                                **options)
            x = rng.uniform(size=(BATCH, size, size, 1)).astype("float32")
            stem = root / f"{name}_{size}"
            model.save_weights(f"{stem}.weights.h5")
            logits = model.predict(x, verbose=0)
            np.savez(f"{stem}.npz", x=x, logits=logits)
            cases.append(
                {
                    "name": name,
                    "size": size,
                    "classes": NUM_CLASSES,
                    "options": options,
                    "weights": f"{stem}.weights.h5",
                    "arrays": f"{stem}.npz",
                }
            )
    case_file = root / "cases.json"
    case_file.write_text(json.dumps(cases))
    return case_file, cases


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_models_under_backend(backend, tf_cases):
    if importlib.util.find_spec(backend) is None:
        message = f"{backend} is not installed (pip install -e '.[{backend}]')"
        if os.environ.get("CI"):  # CI installs every extra: a missing one is a failure there
            pytest.fail(message)
        pytest.skip(message)
    case_file, cases = tf_cases
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # A CPU run is enough, and spares JAX probing for accelerators.
    env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(case_file)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{backend} subprocess failed:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report))  # the gaps, shown by pytest -s or on failure
    assert report["backend"] == backend

    assert [(r["name"], r["size"]) for r in report["results"]] == [
        (c["name"], c["size"]) for c in cases
    ]
    for result in report["results"]:
        where = f"{result['name']} at {result['size']}px under {backend}"
        assert result["shape"] == [BATCH, NUM_CLASSES], where
        assert result["finite"], where
        assert result["eager_gap"] <= RTOL, (where, result)
        assert result["predict_gap"] <= RTOL, (where, result)


@pytest.mark.parametrize("name", ["alexnet", "alexnet2012"])
def test_sizes_cover_edge_cases(name):
    # Keep the AlexNet sizes meaningful if the registry's minimum ever moves.
    from keras_cnns.models.alexnet import alexnet_feature_size

    maps = {alexnet_feature_size(size) for size in _sizes(name)}
    assert 1 in maps and max(maps) >= 3
