"""What the bad-input tables share: fixtures, the corpus index, and how a row is run.

Used by tests/test_bad_inputs.py (the table), tests/test_bad_inputs_export.py (the rows that
need a trained export or a real process) and tests/test_bad_inputs_round3.py (round 3). The
corpus is `shared/reliability/bad-inputs.tsv` (issue 13); `NOT_IN_TABLE` says why a row of it
is not a row here.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import shlex
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from keras_cnns.data import write_idx

ROOT = Path(__file__).resolve().parent.parent
TSV = Path(os.environ.get("KERAS_CNNS_BAD_INPUTS",
                         ROOT.parent / "shared" / "reliability" / "bad-inputs.tsv"))

# Rows of the corpus that this table does not hold, and why.
NOT_IN_TABLE = {
    **dict.fromkeys(
        ["A07", "A07b", "A40", "D00", "base", "verify_base", "C1", "C2", "C3", "C4", "T00",
         "EV_ok", "B1d", "B3_s3_verify", "B3_s5_verify", "V_before_eval"],
        "a good input that trains or passes (tests/test_training.py, test_predict_verify.py)",
    ),
    **dict.fromkeys(
        ["B1a", "B1b", "B1c", "B2a", "B2b", "B2c", "B3_s3", "B3_s3_rerun", "B3_s4", "B3_s5",
         "B3_s5_rerun", "B3a", "B3b", "B4a", "B6_K", "B6_R", "B6_R2", "B6_U", "B6_U12", "B7_K",
         "B7_R", "E02", "E03b", "B5a", "B5b"],
        "kills, resume (tune.py too), full disk, exports after a run: issue 12 (the lead's)",
    ),
    **dict.fromkeys(
        ["P_1v3", "P_badexport", "P_bomb", "P_bomb2", "P_dirimg", "P_flip", "P_grey",
         "P_missing", "P_noexport", "P_realbomb", "P_rgb", "P_rgba", "P_text", "P_topk",
         "P_topk_big", "P_trunc", "P_zero"],
        "scripts/predict.py: its owner's table",
    ),
    **dict.fromkeys(
        ["CV_lambda", "CV_missing", "CV_onnx", "CV_pickle", "CV_pickle2", "CV_random"],
        "convert.py conversions with torch and onnx installed: tests/test_convert.py",
    ),
    "F_mixed": "mixed-size folders now train (resized to the common size): test_data_sources",
    "F_mixed2": "mixed-size folders now train (resized to the common size): test_data_sources",
    "C_best_other": "not an error: a note names the dropped values (test below)",
}
# Rows that need a trained export; they run in test_rows_on_a_real_export (slow).
EXPORT_ROWS = ["EV_trunc", "EV_damage", "V_after_eval", "EV_classes", "CV_lambda_eval",
               "V_bszero", "V_trav", "V_data_small", "V_data_shape", "V_pickle_npz", "V_extra",
               "V_deleted", "V_flip", "V_replaced", "V_golden", "V_manifest"]


# -- fixtures: small, written once per session ----------------------------------------------------
CONFIGS = {
    "act_int.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0,
                     "model_kwargs": {"activation": 5}},
    "aug_int.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "augment": 7},
    "best_alex.json": {"model": "alexnet", "image_size": 28, "epochs": 1, "warmup_epochs": 0},
    "booltype.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "batch_size": True},
    "datadir_list.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "data_dir": ["x"]},
    "floatint.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "image_size": 28.0},
    "kwlist.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "model_kwargs": [1]},
    "list.json": [1, 2, 3],
    "model_list.json": {"model": ["lenet"]},
    "nestedbad.json": {"config": [1], "model": "lenet"},
    "nulldataset.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "dataset": None},
    "rundir_int.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "run_dir": 5},
    "seed_huge.json": {"model": "lenet", "epochs": 1, "seed": 2**64},
    "strlr.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "lr": "0.01"},
    "unknown.json": {"model": "lenet", "epochs": 1, "warmup_epochs": 0, "colour": "blue"},
    "wrongtype.json": {"model": "lenet", "epochs": "ten"},
}
SPACES = {
    "badaug": {"augment": {"choices": ["nope"]}},
    "badwidth": {"width": {"choices": [0, -1]}},
    "droplog": {"width": {"choices": [1.0]},
                "dropout": {"min": 0.0, "max": 0.5, "sampling": "log"}},
    "dupchoice": {"width": {"choices": [1.0, 1.0]}},
    "empty_obj": {},
    "emptychoice": {"dropout": {"min": 0.0, "max": 0.5}, "width": {"choices": []},
                    "lr": {"min": 0.002, "max": 0.05}},
    "lrzero": {"lr": {"min": 0, "max": 0.1}},
    "other_hp": {"epochs": {"choices": [1, 2]}},
    "reversed": {"dropout": {"min": 0.5, "max": 0.1}, "width": {"choices": [1.0]},
                 "lr": {"min": 0.002, "max": 0.05}},
    "reversed_lr": {"lr": {"min": 0.05, "max": 0.002, "sampling": "log"}},
    "step0": {"dropout": {"min": 0.0, "max": 0.5, "step": 0}},
    "strmin": {"dropout": {"min": "a", "max": 0.5}},
    "w": {"width": {"choices": [0.5, 1.0]}},
    "wide": {"width": {"choices": [1.0, 100000.0]}},
}
GRIDS = {
    "selfscale": {"name": "g1", "seeds": 1, "defaults": {"dataset": "digits", "epochs": 1},
                  "cells": [{"name": "a", "model": "lenet", "data_scale_of": "a",
                             "train_fraction": 0.5}]},
    "nanbudget": {"name": "g4", "seeds": 1, "seed_budget_minutes": float("nan"),
                  "defaults": {"epochs": 1}, "cells": [{"name": "a", "model": "lenet"}]},
}
IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def idx_set(root: Path, train_labels=None, test_labels=None) -> Path:
    """Four raw IDX files of 8x8 images: 30 train and 10 test, labels 0-9 unless given."""
    rng = np.random.default_rng(0)
    train_labels = np.arange(30) % 10 if train_labels is None else np.asarray(train_labels)
    test_labels = np.arange(10) if test_labels is None else np.asarray(test_labels)
    root.mkdir(parents=True)
    write_idx(root / IMAGES, rng.integers(0, 256, (len(train_labels), 8, 8), np.uint8))
    write_idx(root / LABELS, train_labels.astype(train_labels.dtype if
                                                 train_labels.dtype == np.int8 else np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 8, 8), np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", test_labels.astype(np.uint8))
    return root


def png_folders(root: Path, classes=("cat", "dog", "eel"), per_class=12) -> Path:
    rng = np.random.default_rng(1)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8), "L").save(
                root / name / f"img_{i}.png")
    root.mkdir(parents=True, exist_ok=True)
    return root


def png_bomb(path: Path, width=60000, height=60000) -> None:
    """A PNG whose header declares width x height pixels, with a one-pixel IDAT."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def write_fixtures(fx: Path) -> Path:
    """Every data, config and space fixture of the table under `fx`; about 0.3 s."""
    (fx / "a_file.txt").write_text("a regular file\n")
    cfg = fx / "cfg"
    cfg.mkdir()
    for name, values in CONFIGS.items():
        (cfg / name).write_text(json.dumps(values))
    (cfg / "empty.json").write_text("")
    (cfg / "invalid.json").write_text('{"model": "lenet", "epochs": 1,\n}')
    (cfg / "binary.json").write_bytes(b"\xc9\x00\xff\xfe")
    (fx / "grid").mkdir()
    for name, values in GRIDS.items():
        (fx / "grid" / f"{name}.json").write_text(json.dumps(values))  # NaN as JSON's NaN
    (fx / "names_dup.txt").write_text("a\n" * 10)
    (fx / "results_bad.json").write_text(json.dumps(
        {"runs": [{"status": "finished", "config": {}, "test_accuracy": 1.5}]}))
    (fx / "space").mkdir()
    for name, values in SPACES.items():
        (fx / "space" / f"{name}.json").write_text(json.dumps(values))

    idx_set(fx / "idx_good")
    good = (fx / "idx_good" / IMAGES).read_bytes()
    (idx_set(fx / "idx_trunc") / IMAGES).write_bytes(good[: len(good) // 2])
    gz = gzip.compress(good)
    (idx_set(fx / "idx_trunc_gz") / IMAGES).unlink()
    (fx / "idx_trunc_gz" / (IMAGES + ".gz")).write_bytes(gz[: len(gz) // 2])
    (idx_set(fx / "idx_magic") / IMAGES).write_bytes(b"\x00\x00\x07\x03" + good[4:])
    huge = struct.pack(">BBBBIII", 0, 0, 8, 3, 10**9, 28, 28) + bytes(100)
    (idx_set(fx / "idx_huge") / IMAGES).write_bytes(huge)
    write_idx(idx_set(fx / "idx_count") / LABELS, (np.arange(25) % 10).astype(np.uint8))
    idx_set(fx / "idx_range", train_labels=[200] + [i % 10 for i in range(29)])
    idx_set(fx / "idx_neg", train_labels=np.array([-1] + [i % 10 for i in range(29)], np.int8))
    idx_set(fx / "idx_oneclass", train_labels=np.zeros(30), test_labels=np.zeros(10))
    (idx_set(fx / "idx_missing") / "t10k-labels-idx1-ubyte").unlink()
    write_idx(idx_set(fx / "idx_zero") / IMAGES, np.zeros((0, 8, 8), np.uint8))
    write_idx(fx / "idx_zero" / LABELS, np.zeros(0, np.uint8))
    # Valid header and data, then 20 MB of zeros: a small .gz that inflates far past it.
    bomb = gzip.compress(good + bytes(20 << 20), compresslevel=1)
    (idx_set(fx / "idx_bomb") / IMAGES).unlink()
    (fx / "idx_bomb" / (IMAGES + ".gz")).write_bytes(bomb)
    claim = struct.pack(">BBBBIII", 0, 0, 8, 3, 10**6, 10**6, 1000) + bytes(1000)
    (idx_set(fx / "idx_bomb_header") / IMAGES).unlink()
    (fx / "idx_bomb_header" / (IMAGES + ".gz")).write_bytes(gzip.compress(claim))

    png_folders(fx / "f_good")
    (fx / "f_empty").mkdir()
    png_folders(fx / "f_one", classes=("cat",))
    cut = png_folders(fx / "f_corrupt") / "cat" / "cut.png"
    cut.write_bytes((fx / "f_good" / "cat" / "img_0.png").read_bytes()[:60])
    (png_folders(fx / "f_text") / "cat" / "notes.png").write_text("not an image\n")
    os.symlink("self.png", png_folders(fx / "f_loop") / "cat" / "self.png")
    os.symlink(".", fx / "f_loop" / "dog" / "here")
    os.symlink("eel", png_folders(fx / "f_loopdir", classes=("cat", "dog")) / "eel")
    png_bomb(png_folders(fx / "f_bomb") / "cat" / "bomb.png")
    png_folders(fx / "f_emptyclass", classes=("cat", "dog"))
    (fx / "f_emptyclass" / "eel").mkdir()
    return fx


# -- what some rows find in {tmp}/s ----------------------------------------------------------------
def _empty_dir(tmp, arg, monkeypatch):
    (tmp / "s").mkdir()


def _fake_export(tmp, manifest, monkeypatch):
    (tmp / "s").mkdir()
    (tmp / "s" / "manifest.json").write_text(manifest or '{"config": {"model": "lenet"}}')
    (tmp / "s" / "model.keras").write_bytes(b"")


def _half_run(tmp, arg, monkeypatch):
    from keras_cnns.config import RunConfig

    (tmp / "s").mkdir()
    RunConfig(model="lenet").resolve().to_json(tmp / "s" / "config.json")


def _finished_run(tmp, arg, monkeypatch):
    _half_run(tmp, arg, monkeypatch)
    (tmp / "s" / "identity.txt").write_text("x\n")
    (tmp / "s" / "metrics.json").write_text("{}\n")


def _other_search(tmp, arg, monkeypatch):
    (tmp / "s").mkdir()
    (tmp / "s" / "search.json").write_text('{"tuner": "random", "space": {}, "config": {}}\n')


def _hide_onnx(tmp, arg, monkeypatch):
    for name in ("onnxruntime", "onnx", "tf2onnx"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, find_spec says so


def _no_tfds(tmp, arg, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp / "tfds-data"))


# visualize's rows: a small model, image files and an export, written once per process.
_VISUALIZE_INPUTS: list[Path] = []


def visualize_inputs() -> Path:
    """A folder of conv.keras (LeNet, 16x16 grey, 3 classes), dense.keras (no convolution),
    grey.png, lab.tif (a TIFF, a format predict does not read) and export/ (conv.keras as a
    converted export); about 5 s, once per process."""
    if not _VISUALIZE_INPUTS:
        import atexit
        import tempfile

        import keras

        from keras_cnns.export.converted import export_converted
        from keras_cnns.models import build_model

        root = Path(tempfile.mkdtemp(prefix="visualize-inputs-"))
        atexit.register(shutil.rmtree, root, True)
        keras.utils.set_random_seed(0)
        model = build_model("lenet", input_shape=(16, 16, 1), num_classes=3, activation="relu")
        model.save(root / "conv.keras")
        keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(3)]).save(root / "dense.keras")
        Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(root / "grey.png")
        Image.new("LAB", (16, 16), (50, 10, 10)).save(root / "lab.tif")
        export_converted(model, root / "export", mean=[0.5], std=[0.25],
                         class_names=["a", "b", "c"])
        _VISUALIZE_INPUTS.append(root)
    return _VISUALIZE_INPUTS[0]


def _visualize(tmp, arg, monkeypatch):
    shutil.copytree(visualize_inputs(), tmp / "s")
    if arg == "tamper":  # one byte of model.keras flipped, the manifest left as it was
        keras_file = tmp / "s" / "export" / "model.keras"
        data = bytearray(keras_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        keras_file.write_bytes(bytes(data))


SETUPS = {"empty_dir": _empty_dir, "fake_export": _fake_export, "half_run": _half_run,
          "finished_run": _finished_run, "other_search": _other_search,
          "hide_onnx": _hide_onnx, "no_tfds": _no_tfds, "visualize": _visualize}


# -- running a row --------------------------------------------------------------------------------
def script(name: str):
    """The command module behind scripts/<name>.py; its `main` reports as `<name>.py`."""
    from keras_cnns.commands import SCRIPT_NAMES

    command = SCRIPT_NAMES.get(name, name)
    return importlib.import_module(f"keras_cnns.commands.{command.replace('-', '_')}")


def snapshot(*roots: Path) -> dict:
    """Every path under `roots` with its type, size and modification time (not a directory's:
    probing a folder for write access adds and removes a file there)."""
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                is_dir = os.path.isdir(path) and not os.path.islink(path)
                state[path] = (info.st_mode, None if is_dir else (info.st_size, info.st_mtime_ns))
    return state


def run_in_process(script_name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = script(script_name).main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_sentence(code, err, expected_code, says, prog):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == expected_code, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert says in lines[0], (says, lines[0])


def assert_refused_writing_nothing(script_name, argv, code, says, roots, capsys) -> None:
    """`script_name`'s main(argv) ends in one sentence saying `says`, exit status `code`, and
    nothing under `roots` appears or changes."""
    before = snapshot(*roots)
    got, _, err = run_in_process(script_name, argv, capsys)
    assert_one_sentence(got, err, code, says, f"{script_name}.py")
    assert snapshot(*roots) == before


def run_case(case, fill, tmp_path: Path, roots, capsys, monkeypatch) -> None:
    """Run the table row `case` (a `Case` of tests/test_bad_inputs.py; `fill` puts the paths
    into its placeholders) from an empty current directory, without a cluster's variables."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    if case.setup:
        name, _, arg = case.setup.partition(":")
        SETUPS[name](tmp_path, arg, monkeypatch)
    assert_refused_writing_nothing(case.script, shlex.split(fill(case.args)), case.code,
                                   fill(case.says), [tmp_path, *roots], capsys)


# -- damaged copies of a trained export -----------------------------------------------------------
def edit_manifest(export_dir: Path, change) -> None:
    path = export_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def damaged_copy(export: Path, damage, tmp_path: Path, monkeypatch) -> Path:
    """A copy of `export` at `tmp_path/e` with `damage(copy)` done to it, run from an empty
    current directory (`tmp_path/cwd`) so that a file written there is seen."""
    copy = tmp_path / "e"
    shutil.copytree(export, copy)
    damage(copy)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return copy
