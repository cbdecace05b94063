"""serving_bytes: encoded JPEG, PNG, GIF or BMP images in, serving_default's outputs out."""

import io
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_predict_verify import make_export

from keras_cnns import export as export_lib
from keras_cnns.export import encoded_images, saved_model
from keras_cnns.export.converted import export_converted
from keras_cnns.models import build_model
from keras_cnns.serving import verify_export as verify_lib
from keras_cnns.serving.prediction import DEFAULT_MAX_PIXELS

OUTPUTS = {"probabilities", "classes", "labels"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("exports") / "tiny")[1]


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring `width` x `height`, and no pixels."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body
            + struct.pack(">I", zlib.crc32(body)))


def pillow(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, fmt)
    return buffer.getvalue()


def png(pixels) -> bytes:
    return tf.io.encode_png(pixels).numpy()


def test_serving_bytes_takes_a_string_batch_named_for_tf_serving(loaded):
    signature = loaded.signatures["serving_bytes"]
    ((name, spec),) = signature.structured_input_signature[1].items()
    assert name == spec.name == "image_bytes"  # TF Serving's REST API: {"b64": ...} -> *_bytes
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    assert set(signature.structured_outputs) == OUTPUTS
    assert set(loaded.signatures) == {"serving_default", "serving_bytes", "serve"}


def test_the_stored_test_images_as_png_give_exactly_the_uint8_outputs(exported, loaded):
    with np.load(exported / "test_set.npz") as stored:
        images = stored["images"]
    got = loaded.signatures["serving_bytes"](
        image_bytes=tf.constant([png(image) for image in images]))
    want = loaded.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_array_equal(got["classes"].numpy(), want["classes"].numpy())
    np.testing.assert_allclose(got["probabilities"].numpy(), want["probabilities"].numpy(),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["labels"].numpy(), want["labels"].numpy())


def _formats():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (23, 9, 3), dtype=np.uint8)
    grey_alpha = rng.integers(0, 256, (12, 30, 2), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 11, 4), dtype=np.uint8)
    return {  # the bytes, and the uint8 pixels serving_default gets for them (alpha dropped)
        "grey+alpha png": (png(grey_alpha), grey_alpha[..., :1]),
        "rgba png": (png(rgba), rgba[..., :3]),
        "rgb png": (png(rgb), rgb),
        "bmp": (pillow(rgb, "BMP"), rgb),
        "jpeg": (tf.io.encode_jpeg(rgb).numpy(), None),
        "gif": (pillow(rgb, "GIF"), None),
    }


def test_every_format_is_serving_defaults_preprocessing_of_its_pixels(loaded):
    for fmt, (data, pixels) in _formats().items():
        if pixels is None:  # lossy: the decoder's own pixels
            pixels = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        got = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data, data]))
        want = loaded.signatures["serving_default"](images=tf.constant(np.stack([pixels] * 2)))
        np.testing.assert_array_equal(got["probabilities"].numpy(),
                                      want["probabilities"].numpy(), err_msg=fmt)


@pytest.mark.parametrize("bad, says", [
    (b"certainly not an image", r"image_bytes\[1\] \(22 bytes\) is not a JPEG, PNG, GIF or BMP"),
    (b"", r"image_bytes\[1\] \(0 bytes\) is not a JPEG, PNG, GIF or BMP"),
    ("truncated", "PNG"),
    (png_header(60000, 60000), r"image_bytes\[1\]: its header declares 60000x60000 pixels; "
                               f"it must have between 1 and {DEFAULT_MAX_PIXELS:,}"),
], ids=["corrupt", "empty", "truncated png", "60000x60000 png header"])
def test_a_bad_string_fails_its_call_and_the_next_call_works(loaded, bad, says):
    signature = loaded.signatures["serving_bytes"]
    good = png(np.full((16, 16, 1), 200, np.uint8))
    if bad == "truncated":
        whole = png(np.random.default_rng(0).integers(0, 256, (16, 16, 1), dtype=np.uint8))
        bad = whole[:len(whole) // 2]
    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        signature(image_bytes=tf.constant([good, bad]))
    out = signature(image_bytes=tf.constant([good]))
    assert out["classes"].shape == (1,) and out["labels"].dtype == tf.string


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "bmp"])
def test_each_formats_header_is_read_before_decoding(fmt):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = tf.io.encode_jpeg(pixels).numpy() if fmt == "jpeg" else pillow(pixels, fmt.upper())
    decode = tf.function(encoded_images.decode_function(599), autograph=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="its header declares 20x30 pixels; it must have between 1 and 599"):
        decode(tf.constant(0, tf.int64), tf.constant(data))
    decoded = tf.function(encoded_images.decode_function(600), autograph=False)(
        tf.constant(0, tf.int64), tf.constant(data))
    assert decoded.shape == (20, 30, 3)


def test_the_manifest_records_serving_bytes_and_verify_checks_it(exported, tmp_path):
    manifest = export_lib.read_manifest(exported)
    record = manifest["signatures"]["serving_bytes"]
    assert record["input"] == "image_bytes" and record["max_pixels"] == DEFAULT_MAX_PIXELS
    assert record["formats"] == ["JPEG", "PNG", "GIF", "BMP"]
    lines = verify_lib.verify(exported)
    assert any(line.startswith("  ok    bytes     16 golden images as PNG") for line in lines)

    copy = shutil.copytree(exported, tmp_path / "copy")

    def with_input(name):
        edited = json.loads(json.dumps(manifest))
        edited["signatures"]["serving_bytes"]["input"] = name
        (copy / "manifest.json").write_text(json.dumps(edited))

    with_input("photo_bytes")
    with pytest.raises(verify_lib.VerifyError,
                       match="serving_bytes takes image_bytes string, not the string input "
                             "photo_bytes"):
        verify_lib.verify(copy)
    with_input("photo")
    with pytest.raises(verify_lib.VerifyError,
                       match=r"signatures.serving_bytes.input must be a signature input name "
                             "ending in _bytes"):
        verify_lib.verify(copy)


def test_converted_exports_have_serving_bytes_too(tmp_path):
    model = build_model("lenet", input_shape=(16, 16, 3), num_classes=3, activation="relu")
    path = export_converted(model, tmp_path / "converted", mean=[0.5] * 3,
                            std=[0.25] * 3, class_names=["a", "b", "c"])
    assert "serving_bytes" in export_lib.read_manifest(path)["signatures"]
    assert any(line.startswith("  ok    bytes") for line in verify_lib.verify(path))


def test_the_saved_model_is_the_same_bytes_whatever_was_traced_before(tmp_path):
    """tf.map_fn's loop names unused inputs by a process-wide counter; they are renumbered."""
    model = build_model("lenet", input_shape=(16, 16, 1), num_classes=10, activation="relu")
    write = dict(mean=[0.5], std=[0.25], class_names=[str(i) for i in range(10)])
    saved_model.write_saved_model(model, tmp_path / "a", **write)
    tf.function(lambda x: tf.map_fn(tf.abs, x))(tf.constant([1.0]))
    saved_model.write_saved_model(model, tmp_path / "b", **write)
    for name in ("saved_model.pb", "fingerprint.pb"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
