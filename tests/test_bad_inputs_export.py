"""The bad-input rows that need a trained export or a real process (slow), and the parts of
issue 13 that are not errors: the note of `--model` beside a config file, the data_dir of
`--dataset` beside one, and `tune.py --epochs N` for every N >= 1.

Each error row asserts what tests/test_bad_inputs.py asserts: exit status, one line of
stderr without a traceback, naming the bad value, and nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import (
    EXPORT_ROWS,
    ROOT,
    assert_one_sentence,
    assert_refused_writing_nothing,
    damaged_copy,
    edit_manifest,
    run_in_process,
    snapshot,
    write_fixtures,
)
from test_manifest_schema import forge_shape


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("bad-input-fixtures"))


# -- rows that need a trained export (slow: one small export, then a copy per row) ---------------
VARIABLES = "variables/variables.data-00000-of-00001"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    import keras
    from test_predict_verify import make_export

    # Seeded: the export must not depend on which tests drew random numbers before it (its
    # int8 accuracy drop, for one, is checked against a threshold).
    keras.utils.set_random_seed(0)
    return make_export(tmp_path_factory.mktemp("export") / "tiny")[1]


def _flip_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _test_images(export_dir: Path):
    with np.load(export_dir / "test_set.npz") as arrays:
        return arrays["images"], arrays["labels"]


def _npz(export_dir, name, images=None, labels=None, **arrays) -> None:
    base_images, base_labels = _test_images(export_dir)
    data = export_dir.parent / "data"
    data.mkdir(exist_ok=True)
    np.savez(data / name, images=base_images if images is None else images(base_images),
             labels=base_labels if labels is None else labels(base_labels), **arrays)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# id: (script, extra args, exit status, says, damage done to the copy {e} before the run)
EXPORT_CASES = {
    "EV_trunc": ("evaluate", [], 1, f"{VARIABLES} does not match its sha256",
                 lambda e: _truncate(e / VARIABLES)),
    "EV_classes": ("evaluate", ["--dataset", "folder", "--data-dir", "{fx}/f_good"], 1,
                   "3 classes", lambda e: None),
    "V_bszero": ("verify", [], 1, "evaluation.batch_size must be a positive integer, got 0",
                 lambda e: edit_manifest(e, lambda m: m["evaluation"].update(batch_size=0))),
    "V_trav": ("verify", [], 1, "'../../etc/hostname', which is not a file name inside the export",
               lambda e: edit_manifest(
                   e, lambda m: m["files"].update({"../../etc/hostname": "0" * 64}))),
    "V_data_small": ("verify", ["--data", "{e}/../data/small.npz"], 1, "holds 3 images",
                     lambda e: _npz(e, "small.npz", lambda x: x[:3], lambda y: y[:3])),
    "V_data_shape": ("verify", ["--data", "{e}/../data/float.npz"], 1,
                     "(images is float32, not uint8)",
                     lambda e: _npz(e, "float.npz", lambda x: x.astype(np.float32))),
    "V_pickle_npz": ("verify", ["--data", "{e}/../data/evil.npz"], 1,
                     "evil.npz is not an .npz with images and labels",
                     lambda e: _npz(e, "evil.npz", lambda x: np.array([x, "x"], dtype=object))),
    "V_extra": ("verify", [], 1, "notes.txt is in the export but not in its manifest",
                lambda e: (e / "notes.txt").write_text("hello\n")),
    "V_deleted": ("verify", [], 1, "variables/variables.index listed in the manifest is missing",
                  lambda e: (e / "variables" / "variables.index").unlink()),
    "V_flip": ("verify", [], 1, f"{VARIABLES} does not match its sha256",
               lambda e: _flip_byte(e / VARIABLES)),
    "V_replaced": ("verify", [], 1, "model.keras does not match its sha256",
                   lambda e: _flip_byte(e / "model.keras")),
    "V_golden": ("verify", [], 1, "Golden probability",
                 lambda e: edit_manifest(
                     e, lambda m: m["golden"]["probabilities"][0].__setitem__(
                         0, m["golden"]["probabilities"][0][0] + 1e-3))),
    "new_verify_fields": ("verify", [], 1, "The manifest's config must be an object, got [1].",
                          lambda e: edit_manifest(e, lambda m: m.update(
                              config=[1], dataset="x", golden={**m["golden"], "indices": "0"}))),
    "V_manifest": ("verify", [], 1, "The test accuracy is 0.123 in the manifest",
                   lambda e: edit_manifest(e, lambda m: m["metrics"].update(
                       test_accuracy=0.123))),
}


def _forge_test_set(export_dir: Path) -> None:
    """V2_m_npz_huge: the stored split's images header claims 10^12 images, its hash updated."""
    from keras_cnns.export import sha256_file

    forge_shape(export_dir / "test_set.npz", "images", (10**12, 16, 16, 1))
    digest = sha256_file(export_dir / "test_set.npz")
    edit_manifest(export_dir, lambda m: m["files"].update({"test_set.npz": digest}))


def _huge_data(export_dir: Path) -> None:
    _npz(export_dir, "huge.npz")
    forge_shape(export_dir.parent / "data" / "huge.npz", "images", (10**12, 16, 16, 1))


def _field(section: str, value):
    return lambda e: edit_manifest(e, lambda m: m.update({section: value}))


# Round 3 (/work/shared/reliability/round3.tsv): a field of the wrong type in the manifest read
# back, and an array header that claims more than its file holds; same id: (...) as above.
FORMAT_99 = "The manifest's format_version must be 2, the format this reader knows, got 99."
HUGE = "is not an .npz with images and labels (the header of images claims [1000000000000, 16, "
ROUND3_CASES = {
    "V2_m_classes_int": ("verify", [], 1, "The manifest's dataset.class_names must be a list of "
                         "class names (strings), got 10.",
                         lambda e: edit_manifest(e, lambda m: m["dataset"].update(
                             class_names=10))),
    "V2_m_cfgnull": ("verify", [], 1, "The manifest's config must be an object, got None.",
                     _field("config", None)),
    "V2_m_preproc_list": ("verify", [], 1, "The manifest's preprocessing must be an object, got "
                          "[1, 2].", _field("preprocessing", [1, 2])),
    "V2_m_fmt9": ("verify", [], 1, FORMAT_99, _field("format_version", 99)),
    "V2_m_npz_huge": ("verify", [], 1, f"test_set.npz {HUGE}", _forge_test_set),
    "V2_data_huge": ("verify", ["--data", "{e}/../data/huge.npz"], 1, f"huge.npz {HUGE}",
                     _huge_data),
    "EV2_fmt99": ("evaluate", ["--confusion", "{e}/../out.png"], 1, FORMAT_99,
                  _field("format_version", 99)),
    "EV2_cfgnull": ("evaluate", ["--confusion", "{e}/../out.png"], 1,
                    "The manifest's config must be an object, got None.", _field("config", None)),
    "EV2_conf_txt": ("evaluate", ["--confusion", "{e}/../out.txt"], 2,
                     "out.txt' must name a PNG file (*.png).", lambda e: None),
}


def test_export_rows_are_listed():
    rows = {*EXPORT_CASES, "CV_lambda_eval", "EV_damage", "V_after_eval"} - {"new_verify_fields"}
    assert rows == set(EXPORT_ROWS)


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(EXPORT_CASES) + sorted(ROUND3_CASES))
def test_bad_export_ends_in_one_sentence_and_writes_nothing(row, export, fixtures, tmp_path,
                                                            capsys, monkeypatch):
    name, extra, status, says, damage = {**EXPORT_CASES, **ROUND3_CASES}[row]
    copy = damaged_copy(export, damage, tmp_path, monkeypatch)
    argv = [str(copy), *(arg.format(e=copy, fx=fixtures) for arg in extra)]
    assert_refused_writing_nothing(name, argv, status, says, [tmp_path, fixtures, export], capsys)


@pytest.mark.slow
def test_evaluate_leaves_an_export_as_verified(export, tmp_path, capsys, monkeypatch):
    """EV_damage, V_after_eval: evaluate writes its PNG into the current directory, so the
    export verifies afterwards."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(export)
    code, out, err = run_in_process("evaluate", [str(export)], capsys)
    assert (code, err) == (0, "")
    assert snapshot(export) == before
    assert [p.name for p in tmp_path.iterdir()] == ["confusion-tiny-test.png"]
    assert "confusion-tiny-test.png" in out
    code, out, err = run_in_process("verify", [str(export)], capsys)
    assert (code, err) == (0, ""), out
    assert out.rstrip().endswith("PASS")


@pytest.mark.slow
def test_evaluate_refuses_a_model_keras_that_runs_code(export, tmp_path, capsys, monkeypatch):
    """CV_lambda_eval: a Lambda layer is refused by safe_mode, in one sentence (its manifest
    lists it, so the export's hashes pass)."""
    import keras

    from keras_cnns.export import sha256_file

    folder = tmp_path / "s"
    shutil.copytree(export, folder)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    (folder / "model.keras").unlink()
    model.save(folder / "model.keras")
    digest = sha256_file(folder / "model.keras")
    edit_manifest(folder, lambda m: m["files"].update({"model.keras": digest}))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_in_process("evaluate", [str(folder)], capsys)
    assert_one_sentence(code, err, 2, "not a loadable Keras model", "evaluate.py")
    assert snapshot(tmp_path) == before


# -- bad presets (issue 26): `preset --check` on a damaged copy of a preset of the export --------
@pytest.fixture(scope="module")
def preset(export, tmp_path_factory) -> Path:
    from keras_cnns.export.preset import make_preset

    return make_preset(export, tmp_path_factory.mktemp("preset") / "tiny_preset")


def _other_models_config(preset_dir: Path) -> None:
    from test_presets import other_models_config

    other_models_config(preset_dir)


# id: (damage done to the copy, what the one sentence says); exit status 1 for each
PRESET_CASES = {
    "PS_hash": (lambda p: _flip_byte(p / "model.weights.h5"),
                "'s model.weights.h5 does not match its sha256 in metadata.json."),
    "PS_missing": (lambda p: (p / "model.weights.h5").unlink(),
                   " has no model.weights.h5, which its metadata.json lists."),
    "PS_other_config": (_other_models_config, "'s config.json describes the model 'alexnet', "
                        "not the lenet its metadata.json records."),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(PRESET_CASES))
def test_bad_preset_ends_in_one_sentence_and_writes_nothing(row, preset, export, tmp_path,
                                                            capsys, monkeypatch):
    damage, says = PRESET_CASES[row]
    copy = damaged_copy(preset, damage, tmp_path, monkeypatch)
    assert_refused_writing_nothing("preset", ["--check", str(copy)], 1, f"Preset {copy}{says}",
                                   [tmp_path, preset, export], capsys)


# -- a few rows as real processes: native log noise filtered, exit status from the shell ----------
SUBPROCESS_ROWS = [
    ("A17", "train", ["--model", "lenet", "--model-kwargs", "activation=nope"], 2, "'nope'"),
    ("T05", "tune", ["--model", "lenet", "--epochs", "1", "--directory", "{file}/tune"], 2,
     "{file}/tune"),
    ("V_listjson", "verify", ["{fx}/cfg"], 1, "has no manifest.json"),
]


@pytest.mark.slow
@pytest.mark.parametrize("row", SUBPROCESS_ROWS, ids=[row[0] for row in SUBPROCESS_ROWS])
def test_bad_input_in_a_real_process(row, fixtures, tmp_path):
    from keras_cnns.commands.cli import is_native_noise

    _, name, args, status, says = row
    fill = {"fx": fixtures, "file": fixtures / "a_file.txt"}
    before = snapshot(tmp_path, fixtures)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *(a.format(**fill) for a in args)],
        capture_output=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    err = "\n".join(line.decode() for line in result.stderr.splitlines()
                    if not is_native_noise(line))
    assert_one_sentence(result.returncode, err, status, says.format(**fill), f"{name}.py")
    assert snapshot(tmp_path, fixtures) == before


# -- not errors, but part of the issue -------------------------------------------------------------
def test_another_model_beside_a_config_file_names_the_values_it_drops(tmp_path, capsys):
    """C_best_other: a lenet best.json with --model alexnet trains alexnet's recipe, and says
    which tuned values it drops, in one note line."""
    from keras_cnns.commands.flags import parse_config
    from keras_cnns.config import RunConfig
    from keras_cnns.models import get_model_entry

    best = tmp_path / "best.json"
    RunConfig(model="lenet", lr=0.0123, width=1.5, model_kwargs={"activation": "relu"}
              ).resolve().to_json(best)
    config, _ = parse_config(["--config", str(best), "--model", "alexnet"], prog="train.py")
    note = capsys.readouterr().err.splitlines()
    assert len(note) == 1 and note[0].startswith("train.py: note: --model alexnet replaces ")
    assert all(value in note[0] for value in ("lr=0.0123", "width=1.5", "activation=relu"))
    assert config.lr == get_model_entry("alexnet").recipe["lr"]
    parse_config(["--config", str(best), "--seed", "3"], prog="train.py")
    assert capsys.readouterr().err == ""


def test_another_dataset_beside_a_config_file_does_not_inherit_its_data_dir(tmp_path, fixtures):
    """A39's other road: a manifest of an IDX run retrained on digits records no data_dir."""
    from keras_cnns.commands.flags import build_parser, config_from_args
    from keras_cnns.config import RunConfig

    path = tmp_path / "idx.json"
    RunConfig(model="lenet", dataset="mnist", data_dir=str(fixtures / "idx_good")).to_json(path)
    args = build_parser().parse_args(["--config", str(path), "--dataset", "digits"])
    assert config_from_args(args).data_dir is None
    args = build_parser().parse_args(["--config", str(path)])
    assert config_from_args(args).data_dir == str(fixtures / "idx_good")


@pytest.mark.parametrize("epochs, expected", [(1, 0.075), (2, 0.15), (3, 0.225), (4, 3), (10, 3)])
def test_trials_shorter_than_the_warmup_scale_it(epochs, expected):
    from keras_cnns.config import RunConfig
    from keras_cnns.tuning.search import trial_warmup

    training = RunConfig(model="lenet", epochs=40, warmup_epochs=3).resolve()
    assert trial_warmup(training, epochs) == expected
    RunConfig(model="lenet", epochs=epochs, warmup_epochs=trial_warmup(training, epochs))


@pytest.mark.slow
def test_tune_runs_one_epoch_trials_and_records_their_warmup(tmp_path, capsys, monkeypatch):
    """`tune.py --epochs 1` with a one-epoch warmup: each trial warms up for 1/40 epoch (in
    search.json), and best.json keeps the training run's epochs and warmup."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    argv = ["--model", "lenet", "--dataset", "synthetic", "--image-size", "16", "--epochs", "1",
            "--max-trials", "1", "--directory", str(tmp_path / "t")]
    code, out, err = run_in_process("tune", argv, capsys)
    assert code == 0, err
    assert "warms up for 0.025 epochs" in out
    assert json.loads((tmp_path / "t" / "search.json").read_text())["config"][
        "warmup_epochs"] == 0.025
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    best = best.get("config", best)
    assert (best["epochs"], best["warmup_epochs"]) == (40, 1)
