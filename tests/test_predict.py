"""scripts/predict.py: folders, globs, formats, class-folder accuracy, per-file failures, and
the bad inputs of /work/shared/reliability/bad-inputs.tsv (rows P_*).

Most cases call the script's `main` in this process (TensorFlow is loaded once); one runs it
as a real command to check the exit status, the stderr filter and that Keras stays unloaded.
"""

import ast
import csv
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from bad_inputs import run_in_process
from PIL import Image
from test_predict_verify import PREDICT, make_export, run

from keras_cnns.serving import prediction

PER_CLASS = 4
CLASSES = ("class_0", "class_1", "class_2")


def png_bytes(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A grey 8-bit PNG written by hand, so its header can claim any size: `rows` is the
    filtered scanline data (a tiny valid stream by default, whatever the size claims)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = rows if rows is not None else zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + \
        chunk(b"IEND", b"")


def real_bomb(side: int) -> bytes:
    """A complete, valid all-black PNG of side x side, small on disk (zeros compress 1000:1)."""
    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte, then the pixels
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return png_bytes(side, side, body)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(pixels).numpy())
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("exports") / "tiny")


@pytest.fixture(scope="module")
def class_folder(exported, tmp_path_factory):
    """`root/<class>/<n>.png` from the test split, and the accuracy serving gives on them."""
    source, export = exported
    root = tmp_path_factory.mktemp("folder")
    images, labels = source.arrays("test")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:PER_CLASS] for c in range(3)])
    for n, index in enumerate(chosen):
        write_png(root / f"class_{labels[index]}" / f"{n:02d}.png", images[index])
    serving = tf.saved_model.load(str(export)).signatures["serving_default"]
    predicted = serving(images=tf.constant(images[chosen]))["classes"].numpy()
    return root, float(np.mean(predicted == labels[chosen]))


def call(*argv, capsys):
    """`(exit status, stdout, stderr)` of the script's main, run in this process."""
    return run_in_process("predict", [str(a) for a in argv], capsys)


def test_class_folder_to_csv_with_accuracy_and_confusion_matrix(exported, class_folder,
                                                                tmp_path, capsys):
    root, expected_accuracy = class_folder
    output = tmp_path / "predictions.csv"
    status, out, err = call(exported[1], root, "--format", "csv", "--output", output,
                            "--top-k", "2", "--batch-size", "5", capsys=capsys)
    assert status == 0 and err == "", err
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert len(rows) == 3 * PER_CLASS
    assert list(rows[0]) == ["path", "true_label", "label_1", "probability_1",
                             "label_2", "probability_2"]
    for row in rows:
        assert Path(row["path"]).parent.name == row["true_label"]
        assert float(row["probability_1"]) >= float(row["probability_2"]) > 0
    accuracy = np.mean([row["label_1"] == row["true_label"] for row in rows])
    assert accuracy == pytest.approx(expected_accuracy)
    lines = out.splitlines()
    assert lines[0].startswith(f"accuracy {expected_accuracy:.4f} ({round(accuracy * 12)} of 12")
    matrix = [[int(cell) for cell in line.split()[2:]] for line in lines[3:]]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == 3 * PER_CLASS
    assert [sum(row) for row in matrix[:3]] == [PER_CLASS] * 3
    assert np.trace(matrix) == round(accuracy * 12)


def test_json_from_a_glob_and_a_file_in_input_order(exported, class_folder, capsys):
    root, _ = class_folder
    single = next((root / "class_2").glob("*.png"))
    status, out, err = call(exported[1], root / "class_1" / "*.png", single, "--format", "json",
                            "--top-k", "20", capsys=capsys)
    assert status == 0 and err == "", err
    document = json.loads(out)
    paths = [p["path"] for p in document["predictions"]]
    assert paths == sorted(map(str, (root / "class_1").glob("*.png"))) + [str(single)]
    for entry in document["predictions"]:
        assert entry["true_label"] is None  # a glob or a file says nothing about the class
        assert len(entry["top_k"]) == 10  # --top-k beyond the classes gives them all
        assert sum(top["probability"] for top in entry["top_k"]) == pytest.approx(1, abs=1e-5)
    assert document["failed"] == [] and "accuracy" not in document


def test_unreadable_and_oversized_files_cost_only_themselves(exported, class_folder, tmp_path,
                                                             capsys):
    root = tmp_path / "mixed"
    shutil.copytree(class_folder[0], root)
    good = write_png(root / "class_0" / "sub" / "deep.png", np.full((30, 20, 3), 90, np.uint8))
    bad = {
        "cut.png": (root / "class_0" / "cut.png", "is not a PNG, JPEG, GIF or BMP file"),
        "text.png": (root / "class_1" / "text.png", "is not a PNG, JPEG, GIF or BMP file"),
        "bomb.png": (root / "class_2" / "bomb.png", "decompression bomb"),
        "empty.jpg": (root / "empty.jpg", "is not a PNG, JPEG, GIF or BMP file"),
    }
    bad["cut.png"][0].write_bytes(next((root / "class_0").glob("0*.png")).read_bytes()[:60])
    bad["text.png"][0].write_text("not an image\n")
    bad["bomb.png"][0].write_bytes(png_bytes(60000, 60000))
    bad["empty.jpg"][0].write_bytes(b"")
    (root / "class_1" / "notes.txt").write_text("ignored: not an image name\n")
    status, out, err = call(exported[1], root, capsys=capsys)
    assert status == 1
    errors = err.splitlines()
    assert len(errors) == len(bad), err
    for path, message in bad.values():
        (line,) = [line for line in errors if f"predict.py: error: Image {path} " in line]
        assert message in line, line
    assert "60000x60000 pixels" in err
    blocks = [line for line in out.splitlines() if not line.startswith(" ")]
    assert f"{good}  (class folder class_0)" in blocks
    assert blocks[3 * PER_CLASS + 1].startswith("accuracy ")
    # the 12 class-folder images and deep.png, a class_0 image one folder further down
    assert f"of {3 * PER_CLASS + 1} images in class folders" in blocks[3 * PER_CLASS + 1]


def test_pixel_limit_is_checked_on_the_header(exported, tmp_path, capsys):
    image = write_png(tmp_path / "twenty.png", np.zeros((20, 20, 1), np.uint8))
    status, out, err = call(exported[1], image, "--max-pixels", "399", capsys=capsys)
    assert status == 1 and out == ""
    assert err == (f"predict.py: error: Image {image} is 20x20 pixels, over the limit of 399: "
                   "refused as a possible decompression bomb (--max-pixels raises the limit).\n")
    status, out, err = call(exported[1], image, "--max-pixels", "400", capsys=capsys)
    assert status == 0 and out.startswith(f"{image}\n"), err


def test_collecting_survives_link_loops_and_names_inputs_without_images(tmp_path):
    root = tmp_path / "data"
    good = write_png(root / "class_0" / "a.png", np.zeros((5, 5, 1), np.uint8))
    (root / "class_0" / "loop.png").symlink_to(root / "class_0" / "loop.png")
    (root / "class_1").mkdir()
    (root / "class_1" / "here").symlink_to(".")  # a folder link to its own folder
    (root / "class_2").symlink_to(root / "class_2")  # a "class folder" linking to itself
    (tmp_path / "empty").mkdir()
    inputs = [root, tmp_path / "empty", tmp_path / "none-*.png", tmp_path / "absent.png", good]
    items, problems = prediction.collect_images(inputs, list(CLASSES))
    assert items == [prediction.Item(good, 0), prediction.Item(root / "class_0" / "loop.png", 0)]
    assert problems == [
        f"Folder {tmp_path / 'empty'} holds no PNG, JPEG, GIF or BMP images.",
        f"Pattern {tmp_path / 'none-*.png'} matches no PNG, JPEG, GIF or BMP images.",
        f"Image {tmp_path / 'absent.png'} does not exist.",
    ]
    with pytest.raises(prediction.ImageError, match="loop.png is not a PNG, JPEG, GIF or BMP"):
        prediction.read_image(items[1].path)


@pytest.mark.slow
def test_command_classifies_a_folder_without_loading_keras(exported, class_folder, tmp_path):
    root, expected_accuracy = class_folder
    result = run(PREDICT, exported[1], root, "--format", "csv", watch=True)
    assert result.returncode == 0, result.stderr
    *table, loaded = result.stdout.splitlines()
    assert len(list(csv.DictReader(table))) == 3 * PER_CLASS
    modules = ast.literal_eval(loaded.removeprefix("LOADED "))
    assert "keras_cnns.serving.prediction" in modules
    assert not [name for name in modules if name.split(".")[0] == "keras"], modules
    # With the CSV on stdout, the accuracy goes to stderr, where it cannot break a parser.
    assert result.stderr.startswith(f"accuracy {expected_accuracy:.4f}"), result.stderr


# --- The predict rows of /work/shared/reliability/bad-inputs.tsv -------------------------
# Each ends with a non-zero exit and one stderr sentence naming the bad value, with no
# traceback and nothing written. P_dirimg passed the probe folder, which predict now reads;
# its bad-folder case today is a folder without images.


def _flip_variables(export: Path) -> Path:
    data = next((export / "variables").glob("variables.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    return export


def _truncate_variables(export: Path) -> Path:
    data = next((export / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    return export


def _broken_manifest(export: Path) -> Path:
    (export / "manifest.json").write_text('{"dataset": {}}')
    return export


def _file(name: str, content):
    """A maker of `folder/name` holding `content()` (made lazily: the real bomb takes time)."""
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content())
        return folder / name
    return make


GREY = _file("grey.png", lambda: tf.io.encode_png(np.full((9, 9, 1), 7, np.uint8)).numpy())


def _pillow_file(name: str, image_format: str):
    """A maker of a 16x16 RGB image saved by Pillow in `image_format`."""
    def content() -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, format=image_format)
        return buffer.getvalue()
    return _file(name, content)


# id: (export damage or None, the image argument's maker, extra flags, exit status, the words
# the sentence must hold; "{image}" / "{export}" stand for the paths).
BAD_INPUTS = {
    "P_badexport": (_broken_manifest, GREY, (), 1,
                    "The manifest has no format_version; it must be 2"),
    "P_bomb": (None, _file("bomb.png", lambda: png_bytes(60000, 60000)), (), 1,
               "Image {image} is 60000x60000 pixels, over the limit"),
    "P_bomb2": (None, _file("bomb2.png", lambda: png_bytes(12000, 12000)), (), 1,
                "Image {image} is 12000x12000 pixels, over the limit"),
    "P_dirimg": (None, lambda folder: folder, (), 1,
                 "Folder {image} holds no PNG, JPEG, GIF or BMP images."),
    "P_flip": (_flip_variables, GREY, (), 1, "The SavedModel in {export} cannot be loaded"),
    "P_missing": (None, lambda folder: folder / "absent.png", (), 1,
                  "Image {image} does not exist."),
    "P_noexport": ("missing", GREY, (), 1, "Export {export} does not exist."),
    "P_realbomb": (None, _file("realbomb.png", lambda: real_bomb(10000)), (), 1,
                   "Image {image} is 10000x10000 pixels, over the limit"),
    "P_text": (None, _file("notes.txt", lambda: b"some notes\n"), (), 1,
               "Image {image} is not a PNG, JPEG, GIF or BMP file"),
    "P_topk": (None, GREY, ("--top-k", "0"), 2, "--top-k must be a whole number >= 1, got 0."),
    # Decodable by Pillow, but not among the formats predict.py documents.
    "PR_webp": (None, _pillow_file("pic.webp", "WEBP"), (), 1,
                "Image {image} is not a PNG, JPEG, GIF or BMP file"),
    "PR_tif": (None, _pillow_file("pic.tif", "TIFF"), (), 1,
               "Image {image} is not a PNG, JPEG, GIF or BMP file"),
    "PR_tif_named_png": (None, _pillow_file("tiff.png", "TIFF"), (), 1,
                         "Image {image} is not a PNG, JPEG, GIF or BMP file"),
    "P_trunc": (_truncate_variables, GREY, (), 1, "The SavedModel in {export} cannot be loaded"),
    "P_zero": (None, _file("empty.png", lambda: b""), (), 1,
               "Image {image} is not a PNG, JPEG, GIF or BMP file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_in_one_sentence_and_writes_nothing(case, exported, tmp_path, capsys,
                                                           monkeypatch):
    damage, make_image, flags, expected_status, words = BAD_INPUTS[case]
    export = tmp_path / "export"
    if damage is None:
        export = exported[1]
    elif damage != "missing":
        damage(shutil.copytree(exported[1], export))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image = make_image(inputs)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    output = work / "out.csv"
    status, out, err = call(export, image, *flags, "--format", "csv", "--output", output,
                            capsys=capsys)
    assert status == expected_status
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("predict.py: error: ")
    assert words.format(image=image, export=export) in err, err
    assert out == "" and list(work.iterdir()) == []


@pytest.mark.parametrize("target", ["image", "inside export"])
def test_output_is_never_an_input(target, exported, tmp_path, capsys):
    """PR_out_is_input: --overwrite replaces an earlier table, never an image or the export."""
    image = GREY(tmp_path)
    output = image if target == "image" else exported[1] / "table.txt"
    before = {path: path.read_bytes() for path in [image, *exported[1].rglob("*")]
              if path.is_file()}
    status, out, err = call(exported[1], image, "--overwrite", "--output", output,
                            capsys=capsys)
    assert (status, out) == (2, "")
    assert err == (f"predict.py: error: --output {output} would write into "
                   f"{image if target == 'image' else exported[1]}, which this command reads; "
                   "choose another path.\n")
    assert {path: path.read_bytes() for path in [image, *exported[1].rglob("*")]
            if path.is_file()} == before
