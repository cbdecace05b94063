"""Did a re-run reproduce an export? `train.py --config EXPORT/manifest.json` asks this.

A verdict is given only for the run the manifest records: when the re-run's resolved config
differs from the manifest's (`--seed 1`, another `--epochs`), `judge` names the fields and gives
no verdict. Guarantees (README, "Reproducibility"):
- `deterministic: true`, on the same hardware and library versions (`environment_differences`
  finds none): bit-identical weights, so the golden probabilities and the test metrics must
  match exactly.
- Otherwise (non-deterministic threads, GPU kernels, several replicas, or another machine or
  TensorFlow/Keras/NumPy version, whose kernels round differently): floating-point sums are
  reordered, so the re-run must land within ACCURACY_TOLERANCE of the recorded test accuracy on
  the same data, and the verdict says why it used the tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_cnns.config import PLACEMENT_FIELDS, with_later_fields

# Two percentage points: on the 359 digits test images that is 7 images either way, well
# outside the spread of reseeded-thread reruns measured here and well inside a broken recipe.
ACCURACY_TOLERANCE = 0.02
# What changes the arithmetic of a deterministic run.
VERSION_KEYS = ("python", "tensorflow", "keras", "keras_backend", "numpy")
HARDWARE_KEYS = ("machine", "cpu_model", "cpu_isa", "cpu_count", "gpus")


def config_differences(recorded: dict, config: dict) -> list[str]:
    """`field (new vs recorded)` for every computing field that differs (a field added since
    either was recorded counts at its "as before" value)."""
    recorded, config = with_later_fields(recorded), with_later_fields(config)
    return [
        f"{key} ({config.get(key)!r} vs {recorded.get(key)!r})"
        for key in sorted(set(recorded) | set(config))
        if key not in PLACEMENT_FIELDS and recorded.get(key) != config.get(key)
    ]


def environment_differences(reference: dict, reproduced: dict) -> list[str]:
    """The library versions and hardware facts in which two manifests differ.

    A run in one batch shard lets TensorFlow's kernels split their work over every usable core
    (more shards pin them to one thread each), so its arithmetic follows the usable cores too.
    """
    keys = HARDWARE_KEYS
    if _shards(reference) == 1 and "usable_cpu_count" in (reference.get("hardware") or {}):
        keys = (*keys, "usable_cpu_count")
    found = []
    for section, names in (("versions", VERSION_KEYS), ("hardware", keys)):
        old, new = reference.get(section) or {}, reproduced.get(section) or {}
        found += [f"{key} {new.get(key)!r} vs {old.get(key)!r}" for key in names
                  if old.get(key) != new.get(key)]
    return found


def _shards(manifest: dict) -> int | None:
    return ((manifest.get("config") or {}).get("batch_shards")
            or (manifest.get("metrics") or {}).get("batch_shards"))


def judge(reference: dict, config: dict, reproduced: dict) -> tuple[int, str]:
    """The exit status and the one-line verdict of a re-run from `reference`'s manifest.

    The batch shards change the arithmetic (`sharding.py`). A manifest records the count its
    run used in its config; one written before that records 0 (automatic), and the count its
    metrics hold is compared instead, and named as the cause when the re-run differs.
    """
    recorded = dict(reference.get("config") or {})
    shards_cause = None
    if not recorded.get("batch_shards"):
        was = (reference.get("metrics") or {}).get("batch_shards")
        now = (reproduced.get("metrics") or {}).get("batch_shards", config.get("batch_shards"))
        config = {key: value for key, value in config.items() if key != "batch_shards"}
        recorded.pop("batch_shards", None)
        if was is not None and now != was:
            shards_cause = (f"the batch shards differ ({now} vs recorded {was}: the automatic "
                            f"count follows the usable cores), which changes the arithmetic; "
                            f"add --batch-shards {was}")
    differences = config_differences(recorded, config)
    if differences:
        return 0, ("not judged: this run's config differs from the manifest's in "
                   + ", ".join(differences) + ".")
    matches, verdict = compare(reference, reproduced)
    if not matches and shards_cause:
        verdict = f"{verdict[:-1]}; {shards_cause}."
    return (0 if matches else 1), verdict


def recorded_manifest(path: str | Path | None) -> dict | None:
    """The file `--config` names, when it is an export's manifest (it has metrics to reproduce)."""
    if not path:
        return None
    try:
        recorded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # RunConfig.from_json has already said what is wrong with it
    is_manifest = isinstance(recorded, dict) and isinstance(recorded.get("metrics"), dict)
    return recorded if is_manifest and "golden" in recorded else None


def compare(reference: dict, reproduced: dict) -> tuple[bool, str]:
    """Compare two export manifests; returns `(matches, one-sentence verdict)`."""
    ref_data, new_data = reference.get("dataset", {}), reproduced.get("dataset", {})
    if ref_data.get("fingerprint") != new_data.get("fingerprint"):
        return False, (
            "not reproduced: the data differ from the recorded data set "
            f"(fingerprint {str(new_data.get('fingerprint'))[:12]} vs "
            f"{str(ref_data.get('fingerprint'))[:12]})."
        )
    ref_acc = reference["metrics"]["test_accuracy"]
    new_acc = reproduced["metrics"]["test_accuracy"]
    deterministic = bool(reference.get("config", {}).get("deterministic"))
    elsewhere = environment_differences(reference, reproduced) if deterministic else []
    if deterministic and not elsewhere:
        ref_probs = np.asarray(reference.get("golden", {}).get("probabilities", []))
        new_probs = np.asarray(reproduced.get("golden", {}).get("probabilities", []))
        same = (
            new_acc == ref_acc
            and reproduced["metrics"]["test_loss"] == reference["metrics"]["test_loss"]
            and ref_probs.shape == new_probs.shape
            and np.array_equal(ref_probs, new_probs)
        )
        if same:
            return (
                True,
                f"reproduced exactly: test accuracy {new_acc:.4f}, golden probabilities equal.",
            )
        return False, (
            f"not reproduced exactly: test accuracy {new_acc:.4f} vs recorded {ref_acc:.4f}, "
            f"largest golden probability gap {_max_gap(ref_probs, new_probs):.2e}."
        )
    gap = abs(new_acc - ref_acc)
    why = ("the recorded run was deterministic, but on other hardware or libraries: "
           + ", ".join(elsewhere)) if elsewhere else "the run was not deterministic"
    if gap <= ACCURACY_TOLERANCE:
        return True, (
            f"reproduced within tolerance: test accuracy {new_acc:.4f} vs recorded {ref_acc:.4f} "
            f"(allowed gap {ACCURACY_TOLERANCE}; {why})."
        )
    return False, (
        f"not reproduced: test accuracy {new_acc:.4f} vs recorded {ref_acc:.4f}, "
        f"a gap above the allowed {ACCURACY_TOLERANCE} ({why})."
    )


def _max_gap(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape or a.size == 0:
        return float("inf")
    return float(np.abs(a - b).max())
