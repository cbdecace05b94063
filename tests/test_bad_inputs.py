"""The bad-input corpus of issue 13 as a table: every bad input ends in one sentence.

Each row is a command tried as a careless or hostile user would (its id is the row of the
corpus in `shared/reliability/bad-inputs.tsv`, new ones are marked `new`). Every row runs
the script's `main(argv)` in this process and asserts: the exit status (2 for usage and
configuration errors, 1 for data and artefact errors), exactly one line on stderr with no
traceback, that line naming the bad value, and that no file appeared or changed in the scratch
folders, the current directory or the fixtures. A few rows also run as real subprocesses.
Rows of the corpus that are not here are listed in `NOT_IN_TABLE` with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_cnns.data import write_idx

ROOT = Path(__file__).resolve().parent.parent
TSV = Path(os.environ.get("KERAS_CNNS_BAD_INPUTS",
                         ROOT.parent / "shared" / "reliability" / "bad-inputs.tsv"))


# -- the table ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    script: str  # train, tune, evaluate, verify, convert
    args: str  # placeholders: {tmp} scratch, {fx} fixtures, {file} a regular file
    code: int
    says: str  # what the one stderr line must contain (same placeholders)
    setup: str = ""  # a function of SETUPS that prepares {tmp}/s


TRAIN = "--run-dir {tmp}/runs --output {tmp}/out --model lenet "
ONE = TRAIN + "--epochs 1 --warmup-epochs 0 "
TUNE = "--run-dir {tmp}/runs --model lenet --epochs 1 --warmup-epochs 0 --max-trials 1 "

CASES = [
    Case("A01", "train", TRAIN + "--model resnet", 2, "'resnet'"),
    Case("A02", "train", TRAIN + "--foo 1", 2, "--foo 1"),
    Case("A03", "train", TRAIN + "--epochs -1", 2, "got -1"),
    Case("A04", "train", TRAIN + "--epochs 0", 2, "got 0"),
    Case("A05", "train", TRAIN + "--epochs 1000000000000 --warmup-epochs 0", 2, "1000000000000"),
    Case("A06", "train", TRAIN + "--batch-size 0", 2, "batch_size must be at least 1, got 0"),
    Case("A08", "train", TRAIN + "--lr -0.1", 2, "got -0.1"),
    Case("A09", "train", TRAIN + "--lr nan", 2, "got nan"),
    Case("A10", "train", TRAIN + "--lr abc", 2, "'abc'"),
    Case("A11", "train", TRAIN + "--lr inf", 2, "got inf"),
    Case("A12", "train", TRAIN + "--dropout 1.5", 2, "got 1.5"),
    Case("A13", "train", TRAIN + "--width 0", 2, "width must be in (0.0, inf), got 0.0"),
    Case("A14", "train", TRAIN + "--model alexnet --image-size 32", 2, "got 32"),
    Case("A16", "train", TRAIN + "--model-kwargs foo", 2, "'foo'"),
    Case("A17", "train", TRAIN + "--model-kwargs activation=nope", 2, "'nope'"),
    Case("A18", "train", TRAIN + "--model alexnet --model-kwargs pooling=max", 2, "'pooling'"),
    Case("A19", "train", TRAIN + "--strategy nonsense", 2, "'nonsense'"),
    Case("A20", "train", TRAIN + "--mixed-precision nonsense", 2, "'nonsense'"),
    Case("A21", "train", TRAIN + "--optimizer nope", 2, "'nope'"),
    Case("A22", "train", TRAIN + "--seed -1", 2, "got -1"),
    Case("A23", "train", TRAIN + "--label-smoothing 1.0", 2, "got 1.0"),
    Case("A24", "train", TRAIN + "--image-size 0", 2, "got 0"),
    Case("A25", "train", TRAIN + "--model-kwargs num_classes=3", 2, "'num_classes'"),
    Case("A26", "train", TRAIN + "--warmup-epochs 5 --epochs 2", 2, "(5.0)"),
    Case("A27", "train", TRAIN + "--model-kwargs dropout=0.3", 2, "--dropout"),
    Case("A28", "train", TRAIN + "--width -1", 2, "got -1.0"),
    Case("A29", "train", TRAIN + "--epochs 2.5", 2, "'2.5'"),
    Case("A30", "train", ONE + "--strategy multi_worker", 2, "TF_CONFIG"),
    Case("A31", "train", ONE + "--onnx", 2, "--onnx needs", "hide_onnx"),
    Case("A32", "train", ONE + "--resume {tmp}/none", 2, "{tmp}/none"),
    Case("A33", "train", "--model lenet --epochs 1 --warmup-epochs 0 --run-dir {file}/runs", 2,
         "{file}/runs"),
    Case("A34", "train", ONE + "--augment nope", 2, "'nope'"),
    Case("A35", "train", ONE + "--schedule nope", 2, "'nope'"),
    Case("A36", "train", ONE + "--image-size 100000", 2, "image_size 100000"),
    Case("A37", "train", ONE + "--width 100000", 2, "width 100000.0"),
    Case("A38", "train", "--run-dir {tmp}/runs --resume {tmp}/s", 2, "already finished",
         "finished_run"),
    Case("A39", "train", ONE + "--dataset digits --data-dir {fx}/idx_good", 2, "--data-dir"),
    Case("E01", "train", ONE.replace("{tmp}/out", "{tmp}/s"), 2, "{tmp}/s already exists",
         "empty_dir"),
    Case("E03", "train", ONE.replace("{tmp}/out", "{file}/x"), 2, "{file}/x"),
    Case("E03c", "train", ONE.replace("{tmp}/out", "''"), 2, "''"),
    Case("C_act_int", "train", "--config {fx}/cfg/act_int.json", 2, "got 5"),
    Case("C_aug_int", "train", "--config {fx}/cfg/aug_int.json", 2, "got 7"),
    Case("C_best_edit", "train", "--config {fx}/cfg/best_alex.json --epochs 1", 2, "got 28"),
    Case("C_binary", "train", "--config {fx}/cfg/binary.json", 2, "binary.json is not valid"),
    Case("C_booltype", "train", "--config {fx}/cfg/booltype.json", 2, "got True"),
    Case("C_datadir_list", "train", "--config {fx}/cfg/datadir_list.json", 2, "['x']"),
    Case("C_dir", "train", "--config {fx}/cfg", 2, "{fx}/cfg is not valid JSON"),
    Case("C_empty", "train", "--config {fx}/cfg/empty.json", 2, "empty.json is not valid"),
    Case("C_floatint", "train", "--config {fx}/cfg/floatint.json", 2, "got 28.0"),
    Case("C_invalid", "train", "--config {fx}/cfg/invalid.json", 2, "invalid.json is not valid"),
    Case("C_kwlist", "train", "--config {fx}/cfg/kwlist.json", 2, "got [1]"),
    Case("C_list", "train", "--config {fx}/cfg/list.json", 2, "JSON object"),
    Case("C_missing", "train", "--config {fx}/cfg/missing.json", 2, "does not exist"),
    Case("C_model_list", "train", "--config {fx}/cfg/model_list.json", 2, "['lenet']"),
    Case("C_nestedbad", "train", "--config {fx}/cfg/nestedbad.json", 2, "'config'"),
    Case("C_nulldataset", "train", "--config {fx}/cfg/nulldataset.json", 2, "got None"),
    Case("C_rundir_int", "train", "--config {fx}/cfg/rundir_int.json --output {tmp}/o", 2,
         "run_dir (--run-dir) must be a non-empty path, got 5"),
    Case("C_strlr", "train", "--config {fx}/cfg/strlr.json", 2, "got '0.01'"),
    Case("C_unknown", "train", "--config {fx}/cfg/unknown.json", 2, "'colour'"),
    Case("C_wrongtype", "train", "--config {fx}/cfg/wrongtype.json", 2, "got 'ten'"),
    Case("D01", "train", ONE + "--dataset nonexistent_xyz", 1, "'nonexistent_xyz'", "no_tfds"),
    Case("D02", "train", ONE + "--dataset mnist --data-dir {tmp}/gone", 1, "{tmp}/gone"),
    Case("D_count", "train", ONE + "--dataset mnist --data-dir {fx}/idx_count", 1, "(25,)"),
    Case("D_datafile", "train", ONE + "--dataset mnist --data-dir {file}", 1, "is a file"),
    Case("D_gzbomb", "train", ONE + "--dataset mnist --data-dir {fx}/idx_bomb", 1,
         "more data than"),
    Case("new_gzbomb_header", "train", ONE + "--dataset mnist --data-dir {fx}/idx_bomb_header",
         1, "1000000 x 1000000 x 1000"),
    Case("D_huge", "train", ONE + "--dataset mnist --data-dir {fx}/idx_huge", 1,
         "784000000000 bytes"),
    Case("D_magic", "train", ONE + "--dataset mnist --data-dir {fx}/idx_magic", 1, "magic"),
    Case("D_missing", "train", ONE + "--dataset mnist --data-dir {fx}/idx_missing", 1,
         "t10k-labels-idx1-ubyte"),
    Case("D_neg", "train", ONE + "--dataset mnist --data-dir {fx}/idx_neg", 1, "label -1"),
    Case("D_oneclass", "train", ONE + "--dataset mnist --data-dir {fx}/idx_oneclass", 1,
         "only class 0"),
    Case("D_range", "train", ONE + "--dataset mnist --data-dir {fx}/idx_range", 1, "label 200"),
    Case("D_tfds", "train", ONE + "--dataset cifar10", 1, "'cifar10' is not prepared", "no_tfds"),
    Case("D_tfds2", "train", ONE + "--dataset kmnist --data-dir {tmp}/s", 1, "'kmnist'",
         "empty_dir"),
    Case("D_tfds3", "train", ONE + "--dataset mnist/../../etc", 1, "'mnist/../../etc'"),
    Case("D_trunc", "train", ONE + "--dataset mnist --data-dir {fx}/idx_trunc", 1, "truncated"),
    Case("D_trunc_gz", "train", ONE + "--dataset mnist --data-dir {fx}/idx_trunc_gz", 1,
         "damaged or truncated gzip"),
    Case("D_zero", "train", ONE + "--dataset mnist --data-dir {fx}/idx_zero", 1,
         "holds no images"),
    Case("Didx_neg", "train", ONE + "--dataset idx --data-dir {fx}/idx_neg", 1, "label -1"),
    Case("Didx_oneclass", "train", ONE + "--dataset idx --data-dir {fx}/idx_oneclass", 1,
         "only class 0"),
    Case("Didx_range", "train", ONE + "--dataset idx --data-dir {fx}/idx_range", 1,
         "label 200"),
    Case("F_bomb", "train", ONE + "--dataset folder --data-dir {fx}/f_bomb", 1,
         "bomb.png declares 3600000000 pixels"),
    Case("F_corrupt", "train", ONE + "--dataset folder --data-dir {fx}/f_corrupt", 1,
         "cut.png is not a readable"),
    Case("F_empty", "train", ONE + "--dataset folder --data-dir {fx}/f_empty", 1,
         "at least two class"),
    Case("F_emptyclass", "train", ONE + "--dataset folder --data-dir {fx}/f_emptyclass", 1,
         "f_emptyclass/eel holds no PNG"),
    Case("F_loop", "train", ONE + "--dataset folder --data-dir {fx}/f_loop", 1,
         "self.png is a symlink loop"),
    Case("F_loopdir", "train", ONE + "--dataset folder --data-dir {fx}/f_loopdir", 1,
         "f_loopdir/eel is a symlink loop"),
    Case("F_nodir", "train", ONE + "--dataset folder", 1, "--data-dir"),
    Case("F_one", "train", ONE + "--dataset folder --data-dir {fx}/f_one", 1, "at least two"),
    Case("F_text", "train", ONE + "--dataset folder --data-dir {fx}/f_text", 1,
         "notes.png is not a readable"),
    Case("T01", "tune", TUNE + "--tuner nope --directory {tmp}/t", 2, "'nope'"),
    Case("T02", "tune", TUNE + "--max-trials 0 --directory {tmp}/t", 2, "got 0"),
    Case("T02b", "tune", TUNE + "--max-trials -3 --directory {tmp}/t", 2, "got -3"),
    Case("T03", "tune", TUNE + "--space {fx}/space/reversed.json --directory {tmp}/t", 2,
         "[0.5, 0.1]"),
    Case("T04", "tune", TUNE + "--space {fx}/space/w.json --directory {tmp}/s", 2,
         "another search", "other_search"),
    Case("T05", "tune", TUNE + "--directory {file}/tune", 2, "{file}/tune"),
    Case("T06", "tune", TUNE + "--tuner hyperband --directory {tmp}/s", 2,
         "random there, hyperband here", "other_search"),
    Case("T07", "tune", TUNE + "--directory {tmp}/t --model-kwargs activation=nope", 2,
         "'nope'"),
    Case("new_tune_widest", "tune", TUNE + "--space {fx}/space/wide.json --directory {tmp}/t", 2,
         "width 100000.0"),
    Case("new_tune_epochs", "tune", TUNE.replace("--epochs 1", "--epochs 1000000") +
         "--directory {tmp}/t", 2, "got 1000000"),
    *[
        Case(f"TS_{name}", "tune", TUNE + f"--space {{fx}}/space/{name}.json --directory {{tmp}}/t",
             2, says)
        for name, says in [
            ("badaug", "'nope'"), ("badwidth", "got 0"), ("droplog", "got 0.0"),
            ("dupchoice", "[1.0, 1.0]"), ("empty_obj", "tunes nothing"),
            ("emptychoice", "got []"), ("lrzero", "min 0"), ("missing", "missing.json"),
            ("other_hp", "'epochs'"), ("reversed", "[0.5, 0.1]"),
            ("reversed_lr", "[0.05, 0.002]"), ("step0", "got 0"), ("strmin", "got 'a'"),
        ]
    ],
    Case("EV_badjson", "evaluate", "{tmp}/s", 2, "not valid JSON", "fake_export:{"),
    Case("EV_bs", "evaluate", "{tmp}/s --batch-size 0", 2, "got 0", "fake_export"),
    Case("EV_conf", "evaluate", "{tmp}/s --confusion {file}/cm.png", 2, "{file}/cm.png",
         "fake_export"),
    Case("new_ev_inexport", "evaluate", "{tmp}/s --confusion {tmp}/s/sub/cm.png", 2,
         "inside the export", "fake_export"),
    Case("EV_empty", "evaluate", "{tmp}/s", 2, "neither a run directory nor an export",
         "empty_dir"),
    Case("EV_file", "evaluate", "{file}", 2, "neither"),
    Case("EV_halfrun", "evaluate", "{tmp}/s", 2, "no checkpoint", "half_run"),
    Case("EV_listjson", "evaluate", "{tmp}/s", 2, "JSON object", "fake_export:[1]"),
    Case("EV_missing", "evaluate", "{tmp}/gone", 2, "{tmp}/gone does not exist"),
    Case("V_badjson", "verify", "{tmp}/s", 1, "not valid JSON", "fake_export:{"),
    Case("V_listjson", "verify", "{tmp}/s", 1, "JSON object", "fake_export:[1]"),
    Case("V_empty", "verify", "{tmp}/s", 1, "no manifest.json", "empty_dir"),
    Case("V_file", "verify", "{file}", 1, "{file} does not exist"),
    Case("V_missing", "verify", "{tmp}/gone", 1, "{tmp}/gone does not exist"),
    Case("new_verify_usage", "verify", "{tmp}/s --nope", 2, "--nope", "empty_dir"),
    Case("CV_onnxfile", "convert", "{fx}/cfg/list.json --to onnx", 2, "export directory"),
    Case("new_convert_usage", "convert", "{fx}/cfg/list.json --to nope", 2, "'nope'"),
]

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


def test_every_row_of_the_corpus_is_accounted_for():
    ids = [case.id for case in CASES] + EXPORT_ROWS + list(NOT_IN_TABLE)
    assert len(ids) == len(set(ids))
    if not TSV.is_file():
        pytest.skip(f"{TSV} is not on this machine")
    corpus = [line.split("\t")[0] for line in TSV.read_text().splitlines()[1:] if line.strip()]
    assert sorted(set(corpus) - set(ids)) == []


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


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    fx = tmp_path_factory.mktemp("bad-input-fixtures")
    (fx / "a_file.txt").write_text("a regular file\n")
    cfg = fx / "cfg"
    cfg.mkdir()
    for name, values in CONFIGS.items():
        (cfg / name).write_text(json.dumps(values))
    (cfg / "empty.json").write_text("")
    (cfg / "invalid.json").write_text('{"model": "lenet", "epochs": 1,\n}')
    (cfg / "binary.json").write_bytes(b"\xc9\x00\xff\xfe")
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


SETUPS = {"empty_dir": _empty_dir, "fake_export": _fake_export, "half_run": _half_run,
          "finished_run": _finished_run, "other_search": _other_search,
          "hide_onnx": _hide_onnx, "no_tfds": _no_tfds}


# -- running a row --------------------------------------------------------------------------------
@functools.cache
def script(name: str):
    """scripts/<name>.py as a module, without its stderr filter (pytest captures stderr)."""
    import keras_cnns.runner as runner

    quiet = runner.quiet_tensorflow
    runner.quiet_tensorflow = lambda: None
    try:
        spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" /
                                                      f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        runner.quiet_tensorflow = quiet
    return module


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


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_ends_in_one_sentence_and_writes_nothing(case, fixtures, tmp_path, capsys,
                                                           monkeypatch):
    def fill(text):
        return text.format(tmp=tmp_path, fx=fixtures, file=fixtures / "a_file.txt")

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    if case.setup:
        name, _, arg = case.setup.partition(":")
        SETUPS[name](tmp_path, arg, monkeypatch)
    before = snapshot(tmp_path, fixtures)
    code, _, err = run_in_process(case.script, shlex.split(fill(case.args)), capsys)
    assert_one_sentence(code, err, case.code, fill(case.says), f"{case.script}.py")
    assert snapshot(tmp_path, fixtures) == before


# -- rows that need a trained export (slow: one small export, then a copy per row) ---------------
EXPORT_CONFIG = {"model": "lenet", "dataset": "synthetic", "image_size": 16}
VARIABLES = "variables/variables.data-00000-of-00001"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    import keras

    from keras_cnns import export as export_lib
    from keras_cnns.data import build_pipeline, load_source
    from keras_cnns.models import build_model

    source = load_source("synthetic")
    model = build_model("lenet", input_shape=(16, 16, 1), num_classes=10, activation="relu")
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    train = build_pipeline(source, "train", image_size=16, batch_size=100, repeat=True)
    model.fit(train, steps_per_epoch=5, epochs=1, verbose=0, shuffle=False)
    return export_lib.export_model(model, tmp_path_factory.mktemp("export") / "tiny",
                                   config=EXPORT_CONFIG, source=source,
                                   metrics={"test_accuracy": 0.5, "test_loss": 1.5})


def _edit_manifest(export_dir: Path, change) -> None:
    path = export_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


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
                 lambda e: _edit_manifest(e, lambda m: m["evaluation"].update(batch_size=0))),
    "V_trav": ("verify", [], 1, "'../../etc/hostname', which is outside the export",
               lambda e: _edit_manifest(
                   e, lambda m: m["files"].update({"../../etc/hostname": "0" * 64}))),
    "V_data_small": ("verify", ["--data", "{e}/../data/small.npz"], 1, "holds 3 images",
                     lambda e: _npz(e, "small.npz", lambda x: x[:3], lambda y: y[:3])),
    "V_data_shape": ("verify", ["--data", "{e}/../data/float.npz"], 1, "uint8 images",
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
                 lambda e: _edit_manifest(
                     e, lambda m: m["golden"]["probabilities"][0].__setitem__(
                         0, m["golden"]["probabilities"][0][0] + 1e-3))),
    "new_verify_fields": ("verify", [], 1, "golden.indices must be a list of test indices",
                          lambda e: _edit_manifest(e, lambda m: m.update(
                              config=[1], dataset="x", golden={**m["golden"], "indices": "0"}))),
    "V_manifest": ("verify", [], 1, "The test accuracy is 0.123 in the manifest",
                   lambda e: _edit_manifest(e, lambda m: m["metrics"].update(
                       test_accuracy=0.123))),
}


def test_export_rows_are_listed():
    rows = {*EXPORT_CASES, "CV_lambda_eval", "EV_damage", "V_after_eval"} - {"new_verify_fields"}
    assert rows == set(EXPORT_ROWS)


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(EXPORT_CASES))
def test_bad_export_ends_in_one_sentence_and_writes_nothing(row, export, fixtures, tmp_path,
                                                            capsys, monkeypatch):
    name, extra, status, says, damage = EXPORT_CASES[row]
    copy = tmp_path / "e"
    shutil.copytree(export, copy)
    damage(copy)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(tmp_path, fixtures, export)
    argv = [str(copy), *(arg.format(e=copy, fx=fixtures) for arg in extra)]
    code, _, err = run_in_process(name, argv, capsys)
    assert_one_sentence(code, err, status, says, f"{name}.py")
    assert snapshot(tmp_path, fixtures, export) == before


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
def test_evaluate_refuses_a_model_keras_that_runs_code(tmp_path, capsys, monkeypatch):
    """CV_lambda_eval: a Lambda layer is refused by safe_mode, in one sentence."""
    import keras

    folder = tmp_path / "s"
    folder.mkdir()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(folder / "model.keras")
    (folder / "manifest.json").write_text('{"config": {"model": "lenet"}}')
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_in_process("evaluate", [str(folder)], capsys)
    assert_one_sentence(code, err, 2, "not a loadable Keras model", "evaluate.py")
    assert snapshot(tmp_path) == before


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
    from keras_cnns.runner import _NATIVE_NOISE

    _, name, args, status, says = row
    fill = {"fx": fixtures, "file": fixtures / "a_file.txt"}
    before = snapshot(tmp_path, fixtures)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *(a.format(**fill) for a in args)],
        capture_output=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    err = "\n".join(line.decode() for line in result.stderr.splitlines()
                    if not _NATIVE_NOISE.match(line))
    assert_one_sentence(result.returncode, err, status, says.format(**fill), f"{name}.py")
    assert snapshot(tmp_path, fixtures) == before


# -- not errors, but part of the issue -------------------------------------------------------------
def test_another_model_beside_a_config_file_names_the_values_it_drops(tmp_path, capsys):
    """C_best_other: a lenet best.json with --model alexnet trains alexnet's recipe, and says
    which tuned values it drops, in one note line."""
    from keras_cnns.cli import parse_config
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
    from keras_cnns.cli import build_parser, config_from_args
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
