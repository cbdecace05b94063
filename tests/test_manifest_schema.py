"""The manifest schema and the array-header check of keras_cnns/serving/verify_export.py, and the
library's readers that apply them (read_manifest, predict's loader, amend's arrays).

Round 3's bad-input classes, without a trained export: each corrupt field type of the schema
(V2_m_classes_int, V2_m_cfgnull, V2_m_preproc_list, V2_m_fmt9 and their kin), and .npz/.npy
headers that claim more bytes than their file holds (V2_m_npz_huge, V2_data_huge) or another
dtype. The rows through the commands, on a real export, are in tests/test_bad_inputs_export.py.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_cnns import export as export_lib
from keras_cnns.export import amend
from keras_cnns.serving import prediction
from keras_cnns.serving import verify_export as verify


def valid_manifest() -> dict:
    """The fields every reader relies on, as a trained export writes them (three classes)."""
    return {
        "format_version": verify.FORMAT_VERSION,
        "config": {"model": "lenet", "epochs": 1},
        "dataset": {"name": "synthetic", "class_names": ["a", "b", "c"], "mean": [0.5],
                    "std": [0.25]},
        "preprocessing": {"image_size": [16, 16], "channels": 1, "mean": [0.5], "std": [0.25]},
        "files": {"saved_model.pb": "0" * 64, "test_set.npz": "f" * 64},
        "golden": {"indices": [0, 4], "probabilities": [[0.25, 0.25, 0.5], [1, 0, 0]],
                   "images_file": None},
        "evaluation": {"batch_size": 256, "label_smoothing": 0.1, "loss_epsilon": 1e-7,
                       "content_sha256": "a" * 64, "test_set": "test_set.npz"},
        "metrics": {"test_accuracy": 0.5, "test_loss": 1.5},
        "versions": {"tensorflow": "2.21"},
    }


def converted_manifest() -> dict:
    manifest = valid_manifest()
    manifest.update(kind="converted", metrics=None, evaluation=None)
    manifest["golden"]["images_file"] = "golden.npz"
    return manifest


def _set(path: str, value):
    """An edit that sets the dotted `path` of a manifest to `value`."""
    *parents, last = path.split(".")

    def edit(manifest):
        for key in parents:
            manifest = manifest[key]
        manifest[last] = value
    return edit


def _delete(path: str):
    def edit(manifest):
        del manifest[path]
    return edit


def _files(table):
    return lambda manifest: manifest.update(files=table)


# id: (edit of a valid manifest, the sentence's words after "The manifest")
CORRUPT = {
    "V2_m_classes_int": (_set("dataset.class_names", 10),
                         "'s dataset.class_names must be a list of class names (strings), got 10."),
    "V2_m_cfgnull": (_set("config", None), "'s config must be an object, got None."),
    "V2_m_preproc_list": (_set("preprocessing", [1, 2]),
                          "'s preprocessing must be an object, got [1, 2]."),
    "V2_m_fmt9": (_set("format_version", 99),
                  "'s format_version must be 2, the format this reader knows, got 99."),
    "format_missing": (_delete("format_version"),
                       " has no format_version; it must be 2, the format this reader knows."),
    "format_string": (_set("format_version", "2"),
                      "'s format_version must be 2, the format this reader knows, got '2'."),
    "config_no_model": (_set("config", {}), " has no config.model; it must be a non-empty string."),
    "files_list": (_files(["saved_model.pb"]),
                   "'s files must be an object, got ['saved_model.pb']."),
    "files_null_hash": (_files({"saved_model.pb": None}),
                        "'s files['saved_model.pb'] must be a sha256 (64 hex digits), got None."),
    "files_outside": (_files({"../x": "0" * 64}),
                      "'s files lists '../x', which is not a file name inside the export."),
    "golden_string": (_set("golden", "abc"), "'s golden must be an object, got 'abc'."),
    "golden_row_short": (_set("golden.probabilities", [[0.5, 0.5, 0.0]]),
                         "'s golden.probabilities has 1 rows for 2 golden.indices."),
    "golden_over_one": (_set("golden.probabilities", [[2, 0, 0], [1, 0, 0]]),
                        "'s golden.probabilities must be a table of probabilities (lists of "
                        "numbers in [0, 1]), got [[2, 0, 0], [1, 0, 0]]."),
    "classes_vs_golden": (_set("dataset.class_names", ["a", "b"]),
                          "'s dataset.class_names names 2 classes, but its golden.probabilities "
                          "give 3 per image."),
    "accuracy_string": (_set("metrics.test_accuracy", "0.5"),
                        "'s metrics.test_accuracy must be a number in [0, 1], got '0.5'."),
    "accuracy_over_one": (_set("metrics.test_accuracy", 1.5),
                          "'s metrics.test_accuracy must be a number in [0, 1], got 1.5."),
    "loss_nan": (_set("metrics.test_loss", float("nan")),
                 "'s metrics.test_loss must be a number >= 0, got nan."),
    "batch_size_bool": (_set("evaluation.batch_size", True),
                        "'s evaluation.batch_size must be a positive integer, got True."),
    "image_size_one": (_set("preprocessing.image_size", [16]),
                       "'s preprocessing.image_size must be [height, width], two positive "
                       "integers, got [16]."),
    "test_set_outside": (_set("evaluation.test_set", "/etc/passwd"),
                         "'s evaluation.test_set must be null or a file name inside the export, "
                         "got '/etc/passwd'."),
    "long_value_cut": (_set("dataset.std", "x" * 500),
                       "'s dataset.std must be a non-empty list of numbers, got '" + "x" * 56
                       + "...."),
}


def _write(folder: Path, manifest) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "saved_model.pb").write_bytes(b"")
    return folder


@pytest.mark.parametrize("maker", [valid_manifest, converted_manifest])
def test_a_manifest_that_meets_the_schema_is_read_alike_by_every_reader(maker, tmp_path):
    export = _write(tmp_path / "e", maker())
    assert verify.read_manifest(export) == export_lib.read_manifest(export) == maker()
    assert prediction.read_class_names(export) == ["a", "b", "c"]


@pytest.mark.parametrize("row", sorted(CORRUPT))
def test_each_corrupt_field_is_named_in_one_sentence_by_every_reader(row, tmp_path):
    edit, words = CORRUPT[row]
    manifest = valid_manifest()
    edit(manifest)
    sentence = "The manifest" + words
    with pytest.raises(verify.VerifyError) as refused:
        verify.check_manifest(manifest)
    assert str(refused.value) == sentence
    export = _write(tmp_path / "e", manifest)
    for read, error in ((verify.read_manifest, verify.VerifyError),
                        (export_lib.read_manifest, export_lib.ExportError),
                        (prediction.read_class_names, prediction.PredictError)):
        with pytest.raises(error) as refused:
            read(export)
        assert str(refused.value) == sentence, read


def test_converted_weights_must_not_claim_scores(tmp_path):
    manifest = converted_manifest()
    manifest["metrics"] = {"test_accuracy": 0.5, "test_loss": 1.0}
    with pytest.raises(verify.VerifyError, match=re.escape(
            "The manifest's metrics must be null (converted weights are not scored), got")):
        verify.check_manifest(manifest)
    manifest = converted_manifest()
    manifest["golden"]["images_file"] = None
    with pytest.raises(verify.VerifyError, match="golden.images_file must be a file name"):
        verify.check_manifest(manifest)


# -- arrays: sized from their headers before numpy allocates them ---------------------------------
def forge_shape(npz: Path, member: str, shape: tuple) -> None:
    """Rewrite the shape in `member`'s .npy header inside `npz`, keeping the data (as
    round3-fixtures/make_fixtures.py makes m_npz_huge and huge.npz)."""
    with zipfile.ZipFile(npz) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    data = contents[f"{member}.npy"]
    length = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + length].decode()
    forged = re.sub(r"'shape': \([^)]*\)", f"'shape': {shape!r}", header).rstrip()
    forged = forged.ljust(length - 1) + "\n"
    assert len(forged) == length
    contents[f"{member}.npy"] = data[:10] + forged.encode() + data[10 + length:]
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in contents.items():
            archive.writestr(name, content)


def _split(path: Path, images=None, labels=None) -> Path:
    np.savez_compressed(path, images=np.zeros((20, 8, 8, 1), np.uint8) if images is None
                        else images, labels=np.arange(20) % 3 if labels is None else labels)
    return path


@pytest.fixture
def no_allocation(monkeypatch):
    """np.load may not run: a refusal must come from the header alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("np.load ran before the header was refused")
    monkeypatch.setattr(np, "load", refuse)


EXPECT = {"images": verify.UINT8, "labels": verify.INTEGERS}


def test_a_good_split_loads_as_written(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    arrays = verify.load_arrays(_split(tmp_path / "s.npz", images), EXPECT, "--data")
    assert np.array_equal(arrays["images"], images)
    assert np.array_equal(arrays["labels"], np.arange(20) % 3)
    np.save(tmp_path / "one.npy", images)
    assert np.array_equal(verify.load_arrays(tmp_path / "one.npy", {"images": verify.UINT8},
                                             "--data")["images"], images)


@pytest.mark.parametrize("shape, member", [((10**12, 28, 28, 1), "images"),  # 713 TiB
                                           ((21, 8, 8, 1), "images"),  # one image too many
                                           ((10**15,), "labels")])
def test_a_header_claiming_more_than_its_file_holds_is_refused_unread(shape, member, tmp_path,
                                                                      no_allocation):
    path = _split(tmp_path / "huge.npz")
    forge_shape(path, member, shape)
    with pytest.raises(verify.VerifyError) as refused:
        verify.load_arrays(path, EXPECT, "--data")
    claimed = f"{int(np.prod(shape)) * (1 if member == 'images' else 8):,}"
    assert str(refused.value).startswith(
        f"--data {path} is not an .npz with images and labels (the header of {member} claims "
        f"{list(shape)}")
    assert f"{claimed} bytes, over the " in str(refused.value)
    assert "its file holds)." in str(refused.value)


def test_a_header_over_the_stated_cap_is_refused_though_its_file_holds_it(tmp_path,
                                                                          monkeypatch):
    path = _split(tmp_path / "s.npz")
    monkeypatch.setattr(verify, "ARRAY_LIMIT_BYTES", 1000)  # 20 images of 8x8: 1,280 bytes
    with pytest.raises(verify.VerifyError, match=r"1,280 bytes, over the limit of 1,000\)\.$"):
        verify.load_arrays(path, EXPECT, "--data")


@pytest.mark.parametrize("images, labels, says", [
    (np.zeros((20, 8, 8, 1), np.float32), None, "images is float32, not uint8"),
    (None, np.array(["a"] * 20), "labels is <U1, not an integer type"),
    (np.array([np.zeros(3), "x"], dtype=object), None, "images is object, not uint8"),
])
def test_a_dtype_other_than_expected_is_refused_unread(images, labels, says, tmp_path,
                                                       no_allocation):
    path = _split(tmp_path / "s.npz", images, labels)
    with pytest.raises(verify.VerifyError, match=re.escape(f"({says}).")):
        verify.load_arrays(path, EXPECT, "--data")


def test_a_huge_npy_header_is_refused_too(tmp_path, no_allocation):
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 118)
                     + b"{'descr': '|u1', 'fortran_order': False, 'shape': (10000000000000,), }"
                       .ljust(117) + b"\n" + bytes(16))
    with pytest.raises(verify.VerifyError, match=r"is not an \.npy with images \(the header of "
                                                 r"images claims \[10000000000000\] uint8"):
        verify.load_arrays(path, {"images": verify.UINT8}, "--data")


@pytest.mark.parametrize("content, expected, says", [
    (b"PK\x03\x04 cut short", EXPECT, "an .npz with images and labels (it is not a zip archive)."),
    (b"\x93NUMPY\x01\x00\xff", {"images": verify.UINT8},
     "an .npy with images (images has no readable .npy header: "),
])
def test_a_file_that_is_no_array_is_one_sentence(content, expected, says, tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(verify.VerifyError) as refused:
        verify.load_arrays(path, expected, "--data")
    assert f"--data {path} is not {says}" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_library_reads_an_exports_arrays_through_the_same_check(tmp_path, no_allocation):
    """amend (convert --to onnx/tflite) and tflite_latency read the stored split here."""
    export = tmp_path / "e"
    export.mkdir()
    forge_shape(_split(export / "test_set.npz"), "images", (10**12, 28, 28, 1))
    with pytest.raises(export_lib.ExportError, match=r"^The export's .*test_set\.npz is not an "
                                                     r"\.npz with images and labels \(the "
                                                     r"header of images claims"):
        amend.export_images(export, valid_manifest())
