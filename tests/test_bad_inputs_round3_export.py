"""Round 3 of the bad-input corpus on a trained export (slow: tests/test_bad_inputs_export.py's
small export, then a damaged copy per row): the GOOD rows end in one sentence and write nothing,
the OK rows (a valid input) exit 0 with the output the row expects. The row ids are accounted
for by tests/test_bad_inputs_round3.py."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import (
    assert_refused_writing_nothing,
    damaged_copy,
    edit_manifest,
    run_in_process,
    snapshot,
)
from test_bad_inputs_export import export  # noqa: F401  (its trained export, a fixture here)


@pytest.mark.slow
def test_round3_a_folder_with_one_unreadable_image_classifies_the_rest(  # PR_badpng_dir
        request, round3_inputs, tmp_path, capsys):
    """An unreadable .png costs only itself: one line names it, exit 1, and the JSON holds the
    readable image."""
    trained = request.getfixturevalue("export")
    output = tmp_path / "o.json"
    argv = [str(trained), str(round3_inputs / "badpng_dir"), "--format", "json", "--output",
            str(output)]
    code, _, err = run_in_process("predict", argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in err, err
    assert len(lines) == 1 and "x.png" in lines[0], err
    paths = [row["path"] for row in json.loads(output.read_text())["predictions"]]
    assert paths == [str(round3_inputs / "badpng_dir" / "ok.png")]



def _set(section: str, key: str | None, value):
    def change(manifest):
        if key is None:
            manifest[section] = value
        elif key == "<first>":
            manifest[section][next(iter(manifest[section]))] = value
        else:
            manifest[section][key] = value
    return lambda e: edit_manifest(e, change)


def _golden_indices(e: Path) -> None:
    edit_manifest(e, lambda m: m["golden"].update(
        indices=[10**12] * len(m["golden"]["indices"])))


def _string_labels(e: Path) -> None:
    with np.load(e / "test_set.npz") as arrays:
        images = arrays["images"]
    np.savez(e.parent / "strlabels.npz", images=images, labels=np.array(["a"] * len(images)))


def _as_dot_keras(e: Path) -> None:
    shutil.copy(e / "model.keras", e.parent / "e.keras")


def _no_tflite_yet(e: Path) -> None:
    (e / "model.tflite").write_bytes(b"")


def _nothing(e: Path) -> None:
    return None


FORMATS = "is not a PNG, JPEG, GIF or BMP file"
EXPORT_DATA = "{e} --to export --class-names {fx}/"
# id: (script, args ({e} the damaged copy, {tmp} its folder, {fx} the round-3 inputs), exit status,
# what the one stderr line says, the damage done to the copy before the run)
EXPORT_CASES = {
    "PR_script_png": ("predict", "{e} {fx}/img/script.png", 1, f"script.png {FORMATS}", _nothing),
    "PR_input_devnull": ("predict", "{e} /dev/zero", 1, f"Image /dev/zero {FORMATS}", _nothing),
    "PR_emptydir": ("predict", "{e} {fx}/emptydir --output {tmp}/o.csv --format csv", 1,
                    "emptydir holds no PNG, JPEG, GIF or BMP images", _nothing),
    "PR_glob_none": ("predict", "{e} '{fx}/img/*.nothing'", 1,
                     "matches no PNG, JPEG, GIF or BMP images", _nothing),
    "PR_dangling": ("predict", "{e} {fx}/img_dangling.png", 1,
                    "img_dangling.png does not exist", _nothing),
    "PR_out_dir": ("predict", "{e} {fx}/img/one.png --output {fx}/emptydir --overwrite", 2,
                   "emptydir is a folder; give a file name", _nothing),
    "PR_out_nodir": ("predict", "{e} {fx}/img/one.png --output {tmp}/gone/o.csv --format csv", 2,
                     "The folder of --output {tmp}/gone/o.csv does not exist", _nothing),
    "PR_after_verify_classes": ("predict", "{e} {fx}/img/one.png", 1,
                                "dataset.class_names must be a list of class names",
                                _set("dataset", "class_names", 10)),
    "PR_after_verify_preproc": ("predict", "{e} {fx}/img/one.png", 1,
                                "The manifest's preprocessing must be an object, got [1, 2].",
                                _set("preprocessing", None, [1, 2])),
    "PR_meannan_export": ("predict", "{e} {fx}/img/one.png", 1,
                          "preprocessing.mean must be a non-empty list of numbers, got [nan]",
                          _set("preprocessing", "mean", [float("nan")])),
    "V2_m_fileslist": ("verify", "{e}", 1, "The manifest's files must be an object, got [",
                       lambda e: edit_manifest(e, lambda m: m.update(files=list(m["files"])))),
    "V2_m_goldenstr": ("verify", "{e}", 1, "The manifest's golden must be an object, got 'abc'.",
                       _set("golden", None, "abc")),
    "V2_m_accstr": ("verify", "{e}", 1,
                    "metrics.test_accuracy must be a number in [0, 1], got '0.1003'.",
                    _set("metrics", "test_accuracy", "0.1003")),
    "V2_m_files_nullhash": ("verify", "{e}", 1, "must be a sha256 (64 hex digits), got None.",
                            _set("files", "<first>", None)),
    "V2_m_golden_idx_big": ("verify", "{e}", 1, "test index 1000000000000", _golden_indices),
    "V2_data_strlabels": ("verify", "{e} --data {tmp}/strlabels.npz", 1,
                          "(labels is <U1, not an integer type)", _string_labels),
    "V2_data_dir": ("verify", "{e} --data {fx}/emptydir", 1,
                    "emptydir is not an .npz with images and labels", _nothing),
    "EV2_folder_cls": ("evaluate", "{e} --dataset folder --data-dir {fx}/cls --confusion "
                       "{tmp}/o.png", 1, "is empty", _nothing),
    "CV2_tflite_keras": ("convert", "{tmp}/e.keras --to tflite", 2,
                         "--to tflite takes an export directory", _as_dot_keras),
    "CV2_tflite_exists": ("convert", "{e} --to tflite", 1, "already has model.tflite",
                          _no_tflite_yet),
    "CV2_export_std0": ("convert", EXPORT_DATA + "names.txt --mean 0.5 --std 0 --output {tmp}/o",
                        2, "--std must be a finite number above 0 and at most 1, got 0", _nothing),
    "CV2_export_cn_count": ("convert", EXPORT_DATA + "names2.txt --mean 0.5 --std 0.2 --output "
                            "{tmp}/o", 1, "10 outputs but 2 class names", _nothing),
    "CV2_tflite_tamper": ("convert", "{e} --to tflite", 1,  # OK at 8f6d44f; the schema now refuses
                          "The manifest's config must be an object, got None.",
                          _set("config", None, None)),
    "CV2_export_mean2": ("convert", EXPORT_DATA + "names.txt --mean 0.5 0.5 --std 0.2 0.2 "
                         "--output {tmp}/o", 1, "mean and std need 1 or 3 values each", _nothing),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(EXPORT_CASES))
def test_round3_bad_export_row_ends_in_one_sentence(row, request, round3_inputs, tmp_path, capsys,
                                                    monkeypatch):
    trained = request.getfixturevalue("export")  # tests/test_bad_inputs_export.py's
    name, args, status, says, damage = EXPORT_CASES[row]
    copy = damaged_copy(trained, damage, tmp_path, monkeypatch)
    fill = {"e": copy, "tmp": tmp_path, "fx": round3_inputs}
    assert_refused_writing_nothing(name, shlex.split(args.format(**fill)), status,
                                   says.format(**fill), [tmp_path, round3_inputs, trained], capsys)


# OK rows: a valid input, handled right. id: (script, args, what stdout holds)
VALID_CASES = {
    "PR_1x1": ("predict", "{e} {fx}/img/one.png", ["one.png"]),
    "PR_wide": ("predict", "{e} {fx}/img/wide.png", ["wide.png"]),
    "PR_tall": ("predict", "{e} {fx}/img/tall.png", ["tall.png"]),
    "PR_cmyk": ("predict", "{e} {fx}/img/cmyk.jpg", ["cmyk.jpg"]),
    "PR_g16_pal_la": ("predict", "{e} {fx}/img/g16.png {fx}/img/pal.png {fx}/img/la.png",
                      ["g16.png", "pal.png", "la.png"]),
    "PR_jpeg_named_png": ("predict", "{e} {fx}/img/realjpeg.png", ["realjpeg.png"]),
    "PR_loopdir": ("predict", "{e} {fx}/loopdir", ["a.png"]),
    "PR_glob_bracket": ("predict", "{e} '{fx}/img/[1].png'", ["[1].png"]),
    "PR_cls_folder": ("predict", "{e} {fx}/cls --format csv", ["cat/a.png", "3/a.png"]),
    "EV2_split_val": ("evaluate", "{e} --split validation --confusion {tmp}/o.png", ["o.png"]),
    "EV2_synthetic": ("evaluate", "{e} --dataset synthetic --confusion {tmp}/o.png", ["o.png"]),
    "TL_no_tflite": ("tflite_latency", "{e} --repeats 3", ["TFLite float32", "TFLite int8"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", sorted(VALID_CASES))
def test_round3_valid_input_on_an_export_is_handled(row, request, round3_inputs, tmp_path, capsys,
                                                    monkeypatch):
    trained = request.getfixturevalue("export")  # tests/test_bad_inputs_export.py's
    name, args, shows = VALID_CASES[row]
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(round3_inputs, trained)
    fill = {"e": trained, "tmp": tmp_path, "fx": round3_inputs}
    code, out, err = run_in_process(name, shlex.split(args.format(**fill)), capsys)
    assert code == 0, err
    assert "Traceback" not in err and "error" not in err, err
    assert all(text in out for text in shows), out
    assert snapshot(round3_inputs, trained) == before
