"""keras-cnns visualize and keras_cnns.measure.layer_views on a tiny export (16x16, 1 channel).

The PNGs must open, have the size their layer shapes give and not be blank, under TensorFlow
here and under JAX and PyTorch in subprocesses (whose PNGs must equal TensorFlow's); the page
must reference each by a relative path, load nothing remote, and show every image in headless
Chromium. Grad-CAM is recomputed here by running the layers one by one (against torch autograd
and from a converted alexnet2012 export: test_visualize_torch.py). Occlusion is checked on a
hand-set model whose only evidence is one bright square, and on the export's SavedModel,
model.tflite and model.onnx against the Keras model.
"""

from __future__ import annotations

import html
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from bad_inputs import assert_one_sentence, run_in_process, snapshot
from extras import require
from PIL import Image

from keras_cnns.commands import visualize as command
from keras_cnns.machine import backend_env
from keras_cnns.measure import layer_views as lv

ROOT = Path(__file__).resolve().parents[1]
GAP, FILTER_SIDE, IMAGE_SIDE = 2, 48, 96  # the layout the PNG sizes are checked against
OTHER_BACKENDS = ("jax", "torch")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from test_predict_verify import make_export

    return make_export(tmp_path_factory.mktemp("exports") / "tiny")[1]


@pytest.fixture(scope="module")
def drawn(exported, tmp_path_factory):
    output = tmp_path_factory.mktemp("pictures") / "out"
    assert command.main([str(exported), "--output", str(output)]) == 0
    return output


def expected_size(count, tile_h, tile_w, least, cols=None):
    """(height, width) of a grid of `count` tiles, each scaled by a whole factor to >= least."""
    cols = cols or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    scale = max(1, math.ceil(least / min(tile_h, tile_w)))
    return (rows * tile_h * scale + (rows + 1) * GAP, cols * tile_w * scale + (cols + 1) * GAP,
            scale)


def tile_pixels(array, count, tile_h, tile_w, least, cols=None):
    """The pixels of a grid's tiles, without the gaps between them."""
    _, _, scale = expected_size(count, tile_h, tile_w, least, cols)
    cols = cols or math.ceil(math.sqrt(count))
    side_h, side_w = tile_h * scale, tile_w * scale
    return np.concatenate([
        array[GAP + (i // cols) * (side_h + GAP):][:side_h,
              GAP + (i % cols) * (side_w + GAP):][:, :side_w].reshape(-1, 3)
        for i in range(count)])


def expected_pictures(model, count=4, units=range(4), top=9, pool=None):
    """PNG name -> (tiles, tile height, tile width, least side, columns) for `model`."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    side_h, side_w = model.inputs[0].shape[1:3]
    kh, kw, _, filters = convs[0].kernel.shape
    wanted = {f"filters-{convs[0].name}.png": (filters, kh, kw, FILTER_SIDE, None)}
    for i in range(count):
        wanted[f"evidence-{i}.png"] = (3, side_h, side_w, IMAGE_SIDE, 3)
        for conv in convs:
            _, h, w, channels = conv.output.shape
            wanted[f"features-{i}-{conv.name}.png"] = (channels, h, w, FILTER_SIDE, None)
    for layer in (convs[-1], dense):
        for unit in units:
            wanted[f"top-{layer.name}-unit{unit}.png"] = (min(top, pool or top), side_h, side_w,
                                                         IMAGE_SIDE, None)
    return wanted


def check_pictures(folder: Path, wanted: dict) -> None:
    """Exactly the `wanted` PNGs, each at its size with tiles that are not blank, and a page
    that shows each by a relative path, with its caption, and loads nothing remote."""
    assert {p.name for p in folder.glob("*.png")} == set(wanted)
    for name, (count, h, w, least, cols) in wanted.items():
        with Image.open(folder / name) as image:
            assert image.format == "PNG"
            array = np.asarray(image.convert("RGB"))
        assert array.shape[:2] == expected_size(count, h, w, least, cols)[:2], name
        assert tile_pixels(array, count, h, w, least, cols).std() > 4, f"{name} is blank"

    page = (folder / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(sources) == sorted(wanted)
    for source in sources:
        assert not Path(source).is_absolute() and (folder / source).is_file()
    assert "<script" not in page.lower() and "http" not in page.lower()
    assert page.count("<figcaption>") == len(wanted)
    assert not list(folder.parent.glob(".*tmp*"))  # the working folder went


def test_every_picture_is_drawn_at_its_size_and_not_blank(exported, drawn):
    model = keras.saving.load_model(exported / "model.keras", compile=False)
    check_pictures(drawn, expected_pictures(model))


def test_filters_share_one_scale_and_use_colour_for_three_channels():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 2, name="c")])
    kernel = np.zeros((2, 2, 3, 2), np.float32)
    kernel[..., 0] = 1.0  # the first filter all at the maximum, the second at the minimum
    kernel[0, 0, 0, 1] = -1.0
    model.layers[0].set_weights([kernel, np.zeros(2, np.float32)])
    picture = lv.filter_grid(model)
    scale = math.ceil(FILTER_SIDE / 2)
    first = picture[GAP:GAP + 2 * scale, GAP:GAP + 2 * scale]
    second = picture[GAP:GAP + 2 * scale, 2 * GAP + 2 * scale:][:, :2 * scale]
    assert (first == 255).all()
    # One scale for both: the second's zeros are mid-grey, its -1 black in red only.
    assert tuple(second[-1, -1]) == (128, 128, 128)
    assert tuple(second[0, 0]) == (0, 128, 128)


def test_grad_cam_equals_a_direct_computation(exported):
    subject = lv.load_subject(exported)
    x = lv.model_inputs(subject, subject.images[1:2])
    got = lv.grad_cam(subject.model, x)

    # Layer by layer: the last convolution's output A, then the rest of the net from A.
    model = subject.model
    layers = model.layers[1:]
    last = max(i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D))
    hidden = tf.constant(x)
    for layer in layers[:last + 1]:
        hidden = layer(hidden)
    activations = tf.Variable(hidden)
    with tf.GradientTape() as tape:
        out = activations
        for layer in layers[last + 1:]:
            out = layer(out, training=False)
        score = out[0, int(np.argmax(out[0]))]
    gradients = tape.gradient(score, activations).numpy()[0]
    a = activations.numpy()[0]
    expected = np.maximum((a * gradients.mean(axis=(0, 1))).sum(-1), 0.0)
    assert got.shape == (1, *expected.shape)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)
    assert expected.max() > 0


def square_detector():
    """Class 0's logit is 40 x the mean of max(x - 0.6, 0): only pixels brighter than grey
    (0.5) count; class 1's is a constant 0.5."""
    inputs = keras.Input((16, 16, 1))
    hidden = keras.layers.Conv2D(1, 1, activation="relu", name="bright")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    logits = keras.layers.Dense(2, name="predictions")(pooled)
    model = keras.Model(inputs, logits)
    model.get_layer("bright").set_weights([np.ones((1, 1, 1, 1)), np.array([-0.6])])
    model.get_layer("predictions").set_weights([np.array([[40.0, 0.0]]), np.array([0.0, 0.5])])
    return model


def test_occlusion_is_highest_on_the_discriminative_patch():
    model = square_detector()
    image = np.full((1, 16, 16, 1), 0.5, np.float32)
    image[0, 9:13, 2:6] = 1.0  # the bright square: rows 9-12, columns 2-5
    drops = lv.occlusion(model, image, patch=4, stride=2, fill=0.5)
    starts = lv.occlusion_positions(16, 4, 2)
    assert drops.shape == (1, len(starts), len(starts))
    row, col = np.unravel_index(drops[0].argmax(), drops[0].shape)
    assert starts[row] in (8, 10) and starts[col] == 2  # the grid's cells most on the square
    assert drops[0, row, col] > 0.1
    # Grey over grey changes nothing: far from the square the drop is zero.
    assert abs(drops[0, 0, -1]) < 1e-9
    # Covering everything takes the evidence away.
    whole = lv.occlusion(model, image, patch=16, fill=0.5)
    assert whole.shape == (1, 1, 1) and whole[0, 0, 0] > drops.max() > 0.1


def test_image_files_and_a_keras_file(exported, tmp_path, capsys):
    colour = tmp_path / "colour.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)).save(colour)
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.tile(np.arange(0, 250, 10, dtype=np.uint8), (25, 1))).save(grey)
    loaded = lv.load_image_files([colour, grey], (16, 16, 1))
    assert loaded.shape == (2, 16, 16, 1) and loaded.dtype == np.uint8
    model_file = tmp_path / "tiny.keras"
    shutil.copy(exported / "model.keras", model_file)
    output = tmp_path / "from-file"
    code, out, err = run_in_process("visualize", [str(model_file), "--images", str(colour),
                                                  str(grey), "--output", str(output),
                                                  "--units", "1", "--top", "2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in output.glob("evidence-*.png")) == ["evidence-0.png",
                                                                     "evidence-1.png"]
    assert len(list(output.glob("top-*.png"))) == 2
    assert "colour.png" in (output / "index.html").read_text()
    # --overwrite writes into a non-empty folder; without it the folder is refused.
    code, _, err = run_in_process("visualize", [str(model_file), "--images", str(colour),
                                                "--output", str(output), "--overwrite"], capsys)
    assert code == 0, err


def bad_cases(export: Path, tmp: Path):
    text = tmp / "text.png"
    text.write_text("not an image\n")
    truncated = tmp / "truncated.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    garbage = tmp / "garbage.keras"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    dense_only = tmp / "dense.keras"
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(3)]).save(dense_only)
    full = tmp / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine\n")
    out = str(tmp / "out")
    return [
        ([str(export), "--layers", "nope", "--output", out], 2, "is not a Conv2D layer"),
        ([str(export), "--units", "0", "999", "--output", out], 2, "--units 999 is not a unit"),
        ([str(export), "--units", "-1", "--output", out], 2, "--units must be"),
        ([str(export), "--count", "0", "--output", out], 2, "--count must be"),
        ([str(dense_only), "--images", str(text), "--output", out], 1, "has no Conv2D layer"),
        ([str(export), "--images", str(text), "--output", out], 1, "file that can be decoded"),
        ([str(export), "--images", str(truncated), "--output", out], 1, "file that can be decoded"),
        ([str(export), "--images", str(tmp / "gone.png"), "--output", out], 1,
         "does not exist"),
        ([str(tmp / "missing"), "--output", out], 1, "does not exist"),
        ([str(garbage), "--images", str(text), "--output", out], 1,
         "is not a loadable Keras model"),
        ([str(text), "--output", out], 1, "is not a .keras file"),
        ([str(export / "model.keras"), "--output", out], 2, "give some with --images"),
        ([str(export), "--output", str(export)], 2, "which this command reads"),
        ([str(export), "--output", str(export / "pictures")], 2, "which this command reads"),
        ([str(export), "--images", str(text), "--output", str(text)], 2,
         "which this command reads"),
        ([str(export), "--output", str(full)], 2, "pass --overwrite"),
    ]


def test_bad_inputs_end_in_one_sentence_and_write_nothing(exported, tmp_path, capsys):
    for argv, code, says in bad_cases(exported, tmp_path):
        before = snapshot(tmp_path, exported)
        got, _, err = run_in_process("visualize", argv, capsys)
        assert_one_sentence(got, err, code, says, "visualize.py")
        assert snapshot(tmp_path, exported) == before, argv


def test_images_that_are_no_uint8_picture_batch_are_one_sentence(exported):
    from keras_cnns.data import DataError

    subject = lv.load_subject(exported)
    for bad, says in [(np.zeros((2, 16, 16, 4), np.uint8), "got uint8 [2, 16, 16, 4]"),
                      (np.zeros((16, 16, 1), np.uint8), "got uint8 [16, 16, 1]"),
                      (np.zeros((1, 16, 16, 1), np.float32), "got float32 [1, 16, 16, 1]")]:
        with pytest.raises(DataError, match=re.escape(says)):
            lv.at_model_size(subject, bad)
    # Another size and channel count are the model's after it, as training would see them.
    colour = np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3), np.uint8)
    assert lv.at_model_size(subject, colour).shape == (2, 16, 16, 1)


# -- other backends: the same pictures ------------------------------------------------------------
@pytest.fixture(scope="module", params=OTHER_BACKENDS)
def backend(request):
    require(request.param)
    return request.param


@pytest.fixture(scope="module")
def drawn_elsewhere(exported, tmp_path_factory):
    """visualize of `exported` under JAX and PyTorch (those installed), two processes at once."""
    root = tmp_path_factory.mktemp("backends")
    running = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "visualize.py"), str(exported),
             "--output", str(root / name)],
            env=backend_env(name, {"JAX_PLATFORMS": "cpu"}), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        for name in OTHER_BACKENDS if importlib.util.find_spec(name) is not None
    }
    done = {name: (proc.communicate(timeout=600)[1], proc.returncode)
            for name, proc in running.items()}
    return root, done


def test_other_backends_draw_the_same_pictures(backend, drawn_elsewhere, exported, drawn):
    """Grad-CAM's gradient comes from the backend's own autodiff (jax.grad, torch.autograd)."""
    root, done = drawn_elsewhere
    stderr, code = done[backend]
    assert code == 0, f"visualize under {backend}:\n{stderr[-3000:]}"
    model = keras.saving.load_model(exported / "model.keras", compile=False)
    check_pictures(root / backend, expected_pictures(model))
    for png in sorted(drawn.glob("*.png")):
        ours = np.asarray(Image.open(root / backend / png.name).convert("RGB"), np.int16)
        tensorflow = np.asarray(Image.open(png).convert("RGB"), np.int16)
        assert np.abs(ours - tensorflow).max() <= 2, f"{png.name} under {backend}"


# -- occlusion on the export's own files ----------------------------------------------------------
@pytest.fixture(scope="module")
def with_runtimes(exported, tmp_path_factory):
    """A copy of the export with model.tflite, and model.onnx where the onnx extra is."""
    from keras_cnns.export import add_onnx, add_tflite

    copy = tmp_path_factory.mktemp("runtimes") / "export"
    shutil.copytree(exported, copy)
    add_tflite(copy)
    if all(importlib.util.find_spec(m) for m in ("onnxruntime", "tf2onnx")):
        add_onnx(copy)
    return copy


@pytest.fixture(scope="module", params=["savedmodel", "tflite", "onnx"])
def runtime(request):
    if request.param == "onnx":
        require("onnxruntime", "tf2onnx")
    return request.param


def test_occlusion_on_the_exports_files_equals_the_keras_models(runtime, with_runtimes):
    subject = lv.load_subject(with_runtimes)
    images = lv.at_model_size(subject, subject.images[:3])
    keras_drops = lv.occlusion(lv.runtime_probabilities(subject, "keras"), images, fill=lv.GREY)
    drops = lv.occlusion(lv.runtime_probabilities(subject, runtime), images, fill=lv.GREY)
    assert np.abs(keras_drops).max() > 1e-3  # the maps say something
    np.testing.assert_allclose(drops, keras_drops, rtol=0, atol=1e-4)


def test_runtime_flag_draws_occlusion_from_that_file(with_runtimes, tmp_path, capsys):
    output = tmp_path / "out"
    code, _, err = run_in_process("visualize", [
        str(with_runtimes), "--runtime", "tflite", "--count", "1", "--units", "0", "--top", "2",
        "--pool", "8", "--output", str(output)], capsys)
    assert code == 0, err
    assert (output / "evidence-0.png").is_file()
    assert "Right: occlusion on model.tflite (LiteRT)" in (output / "index.html").read_text()


# -- the page in a browser ------------------------------------------------------------------------
PROBE = """<script>
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "loaded";
  pre.textContent = [...document.images].map(
    (img) => `${img.getAttribute("src")} ${img.complete} ${img.naturalWidth} ${img.naturalHeight}`
  ).join("\\n");
  document.body.appendChild(pre);
});
</script>"""


def loaded_in_chromium(page: Path, profile: Path) -> list[tuple[str, bool, int, int]]:
    """Each <img> of `page` as headless Chromium has it after loading: src, complete, natural
    width and height (read by PROBE, added to a test-only copy of the page)."""
    browser = shutil.which("chromium")
    if browser is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--dump-dom", "--virtual-time-budget=10000", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="loaded">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium said:\n{proc.stderr[-3000:]}"
    rows = [line.split(" ") for line in html.unescape(found.group(1)).splitlines()]
    return [(src, complete == "true", int(w), int(h)) for src, complete, w, h in rows]


def test_the_page_shows_every_image_in_headless_chromium(drawn, tmp_path):
    page = tmp_path / "page"
    shutil.copytree(drawn, page)
    images = loaded_in_chromium(page / "index.html", tmp_path / "profile")
    assert sorted(src for src, *_ in images) == sorted(p.name for p in drawn.glob("*.png"))
    for src, complete, width, height in images:
        with Image.open(drawn / src) as png:
            assert (complete, width, height) == (True, *png.size), src
