"""What serving_bytes decodes: one encoded JPEG, PNG, GIF or BMP image, inside the graph.

Its header is read first and its declared size checked against the predict command's pixel
limit before a pixel is decoded; `keras_cnns.export.saved_model.bytes_serving_function` then
hands the image to serving_default's own preprocessing.
"""

from __future__ import annotations

# What serving_bytes decodes, by the file's first bytes (as predict, by content, not by name).
BYTES_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
BYTES_INPUT = "image_bytes"
# Header bytes read before decoding: PNG's IHDR ends at 24, BMP's height at 26.
_HEADER_BYTES = 32


def max_pixels() -> int:
    """The most pixels serving_bytes decodes: the predict command's default limit (Pillow's)."""
    from keras_cnns.serving.prediction import DEFAULT_MAX_PIXELS

    return int(DEFAULT_MAX_PIXELS)


def _header_size(tf, data, padded, is_jpeg, is_png, is_gif):
    """int64 `(height, width)` that the header of `data` declares, without decoding a pixel:
    JPEG by `tf.io.extract_jpeg_shape`; PNG (IHDR: big-endian uint32 width, height at 16),
    GIF (logical screen: little-endian uint16 at 6) and BMP (little-endian int32 at 18, the
    fields TensorFlow's BMP decoder reads; a negative height is a top-down image) from
    `padded`, `data` followed by zero bytes, so short input reads zeros, never out of range."""
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8),
                   tf.int64)

    def number(start, length, big_endian=False):
        order = range(length) if big_endian else reversed(range(length))
        value = tf.constant(0, tf.int64)
        for i in order:
            value = value * 256 + head[start + i]
        return value

    def signed32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    png = tf.stack([number(20, 4, True), number(16, 4, True)])
    gif = tf.stack([number(8, 2), number(6, 2)])
    bmp = tf.stack([signed32(number(22, 4)), signed32(number(18, 4))])
    other = tf.where(is_png, png, tf.where(is_gif, gif, bmp))
    return tf.cond(is_jpeg,
                   lambda: tf.io.extract_jpeg_shape(data, output_type=tf.int64)[:2],
                   lambda: other)


def decode_function(limit: int):
    """`(index, data)` -> uint8 `[height, width, 1 or 3]`: one encoded JPEG, PNG, GIF or BMP
    image, decoded only once its header declares at most `limit` pixels (checked again on the
    decoded shape). Anything else raises InvalidArgumentError naming `image_bytes[index]`:
    empty, not one of the formats, over the limit, or damaged (the decoder's own message).
    An alpha channel is dropped (grey + alpha -> grey, RGBA -> RGB), as predict's Pillow
    conversion does; serving_default's preprocessing then converts 1 or 3 channels alike."""
    import tensorflow as tf

    def refuse_unless(condition, *parts):
        return tf.debugging.Assert(condition, [tf.strings.join(
            [p if isinstance(p, str) else tf.strings.as_string(p) for p in parts])])

    def decode(index, data):
        name = tf.strings.join([f"{BYTES_INPUT}[", tf.strings.as_string(index), "]"])
        padded = tf.strings.join([data, tf.constant(b"\0" * _HEADER_BYTES)])
        first = tf.strings.substr(padded, 0, 8)
        is_png = tf.equal(first, b"\x89PNG\r\n\x1a\n")
        is_gif = tf.logical_or(tf.equal(tf.strings.substr(padded, 0, 6), b"GIF87a"),
                               tf.equal(tf.strings.substr(padded, 0, 6), b"GIF89a"))
        is_bmp = tf.equal(tf.strings.substr(padded, 0, 2), b"BM")
        is_jpeg = tf.equal(tf.strings.substr(padded, 0, 3), b"\xff\xd8\xff")
        known = tf.reduce_any(tf.stack([is_png, is_gif, is_bmp, is_jpeg]))
        size = tf.strings.length(data)
        check = refuse_unless(known, "serving_bytes: ", name, " (", size, " bytes) is not a ",
                              ", ".join(BYTES_FORMATS[:-1]), " or ", BYTES_FORMATS[-1],
                              " image")
        with tf.control_dependencies([check]):
            height, width = tf.unstack(_header_size(tf, data, padded, is_jpeg, is_png, is_gif))

        def within(height, width, what):
            pixels = height * width  # each below 2**32 here: no int64 overflow
            return refuse_unless(
                tf.logical_and(pixels <= limit, pixels > 0), "serving_bytes: ", name, what,
                height, "x", width, " pixels; it must have between 1 and ", f"{limit:,}",
                " (larger images are refused as possible decompression bombs)")

        with tf.control_dependencies([within(height, width, ": its header declares ")]):
            image = tf.io.decode_image(data, channels=0, dtype=tf.uint8,
                                       expand_animations=False)
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies([within(shape[0], shape[1], " decodes to ")]):
            keep = tf.where(shape[2] >= 3, 3, 1)
            return tf.ensure_shape(image[:, :, :keep], [None, None, None])

    return decode
