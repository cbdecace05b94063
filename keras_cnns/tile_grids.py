"""Arrays drawn as pictures: tiles in a grid, colour maps, overlays.

Pure numpy (and Pillow and matplotlib's colour maps): no model, no TensorFlow, so both
`keras-cnns visualize` (`measure.layer_views`) and training's TensorBoard filter images
(`training.filter_images`) draw with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

GAP = 2  # pixels between tiles, in the background colour
BACKGROUND = 255
FILTER_SIDE = 48  # the least side a filter or feature-map tile is drawn at
IMAGE_SIDE = 96  # the least side an input image tile is drawn at


def rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def colormap(values: np.ndarray, name: str) -> np.ndarray:
    """[..., ] values in [0, 1] -> [..., 3] RGB in [0, 1] through matplotlib's colour map."""
    import matplotlib

    return matplotlib.colormaps[name](np.clip(values, 0.0, 1.0))[..., :3]


def grid_shape(count: int, tile_h: int, tile_w: int, *, least: int, cols: int | None = None):
    """(rows, cols, scale, height, width) of the grid `grid` draws for `count` tiles."""
    cols = cols or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    scale = max(1, math.ceil(least / min(tile_h, tile_w)))
    height = rows * tile_h * scale + (rows + 1) * GAP
    width = cols * tile_w * scale + (cols + 1) * GAP
    return rows, cols, scale, height, width


def grid(tiles, *, least: int, cols: int | None = None) -> np.ndarray:
    """RGB tiles [n, h, w, 3] in [0, 1] -> one uint8 image, each tile scaled up by a whole
    factor to at least `least` pixels a side, GAP pixels of background between them."""
    tiles = np.asarray(tiles, np.float64)
    count, tile_h, tile_w = tiles.shape[:3]
    rows, cols, scale, height, width = grid_shape(count, tile_h, tile_w, least=least, cols=cols)
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    big = np.repeat(np.repeat(tiles, scale, axis=1), scale, axis=2)
    big = np.round(np.clip(big, 0.0, 1.0) * 255).astype(np.uint8)
    for i, tile in enumerate(big):
        top = GAP + (i // cols) * (tile_h * scale + GAP)
        left = GAP + (i % cols) * (tile_w * scale + GAP)
        canvas[top:top + tile_h * scale, left:left + tile_w * scale] = tile
    return canvas


def filter_grid(kernel) -> np.ndarray:
    """A convolution kernel [kh, kw, in, out] as a grid of its `out` filters, every filter
    scaled by the one min/max over all of them (so they compare): colour for 3 input channels,
    grey (the mean over the channels) for any other count."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[2] != 3:
        kernel = kernel.mean(axis=2, keepdims=True)
    low, high = kernel.min(), kernel.max()
    scaled = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
    return grid(rgb(np.moveaxis(scaled, -1, 0)), least=FILTER_SIDE)


def feature_grid(maps: np.ndarray) -> np.ndarray:
    """One image's feature maps [h, w, channels] as a grid, all channels by one scale from the
    layer's least to its greatest value for this image (a silent channel stays dark)."""
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    return grid(colormap(np.moveaxis(scaled, -1, 0), "viridis"), least=FILTER_SIDE)


def resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w] -> [height, width], bilinear (half-pixel centres, as tf.image.resize)."""
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float64)


def evidence_row(image: np.ndarray, cam: np.ndarray, drops: np.ndarray) -> np.ndarray:
    """Input | Grad-CAM over it | occlusion drops over it, for one image ([H, W, 3] in [0, 1];
    cam at its layer's size; drops per pixel, [H, W])."""
    height, width = image.shape[:2]
    heat = resize(cam, height, width)
    heat = heat / heat.max() if heat.max() > 0 else heat
    spread = np.abs(drops).max()
    signed = 0.5 + 0.5 * drops / spread if spread > 0 else np.full(drops.shape, 0.5)
    tiles = [image, 0.5 * image + 0.5 * colormap(heat, "jet"),
             0.5 * image + 0.5 * colormap(signed, "coolwarm")]
    return grid(tiles, least=IMAGE_SIDE, cols=3)


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")
