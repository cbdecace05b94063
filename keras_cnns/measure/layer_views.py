"""What the layers learned: filters, feature maps, class evidence and top images, as PNGs and
one offline HTML page (`keras-cnns visualize`).

Usable from a notebook:

    from keras_cnns.measure import layer_views as lv
    subject = lv.load_subject("saved_models/<export>")     # or a .keras file, or a run dir
    x = lv.model_inputs(subject, subject.images[:4])        # uint8 -> the model's float input
    lv.filter_grid(subject.model)                           # [H, W, 3] uint8, one tile a filter
    cams = lv.grad_cam(subject.model, x)                    # [N, h, w] at the last conv's size
    drops = lv.occlusion(subject.model, x)                  # [N, rows, cols] probability drops
    lv.visualize("saved_models/<export>", "runs/visualize/x")   # everything, with index.html

The pictures follow Krizhevsky et al. 2012 (Fig. 3, first-layer filters), Zeiler & Fergus 2014
(feature maps, top-activating images, occlusion sensitivity) and Selvaraju et al. 2017
(Grad-CAM); docs/visualize.md says what each shows. Grad-CAM takes its gradients with
tf.GradientTape, so it needs the TensorFlow backend; everything else is forward passes.
Images are drawn with numpy and Pillow at integer scales (nearest neighbour), so every PNG's
size follows from the layer shapes (`grid_shape`).
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_cnns.config import ConfigError
from keras_cnns.data import DataError
from keras_cnns.export import GOLDEN_FILE, MODEL_FILE, ExportError, read_manifest
from keras_cnns.serving.verify_export import INTEGERS, UINT8, load_arrays

GAP = 2  # pixels between tiles, in the background colour
BACKGROUND = 255
FILTER_SIDE = 48  # the least side a filter or feature-map tile is drawn at
IMAGE_SIDE = 96  # the least side an input image tile is drawn at
DEFAULT_UNITS = (0, 1, 2, 3)
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
BATCH = 128


@dataclass
class Subject:
    """A model and what it is looked at with: its preprocessing, stored images and classes."""

    model: keras.Model
    name: str
    mean: list[float]
    std: list[float]
    class_names: list[str]
    images: np.ndarray | None = None  # stored test images, uint8 [N, H, W, 1 or 3]
    labels: np.ndarray | None = None
    reads: list[Path] = field(default_factory=list)  # the paths this reads (never written)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.model.inputs[0].shape[1:])


# -- loading --------------------------------------------------------------------------------------

def load_subject(path: str | Path) -> Subject:
    """An export directory, a `.keras` file, or a run directory (its export), loaded.

    An export brings its preprocessing, class names and stored test images (test_set.npz, or
    golden.npz where the split was too large); a bare `.keras` file brings none of these:
    its inputs are scaled to [0, 1] only and its classes are numbered.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path} does not exist.")
    if not os.access(path, os.R_OK):
        raise ExportError(f"{path} cannot be read.")
    if path.is_file():
        model = _load_model(path)
        channels = _check_model(model, path)[-1]
        classes = int(model.outputs[0].shape[-1])
        return Subject(model, path.stem, [0.0] * channels, [1.0] * channels,
                       [str(i) for i in range(classes)], reads=[path])
    if (path / "config.json").is_file() and not (path / "manifest.json").is_file():
        from keras_cnns.training.run_dir import load_run_config

        export = load_run_config(path).output
        if not export or not (Path(export) / "manifest.json").is_file():
            raise ExportError(f"Run {path} has no export yet ({export or 'no output'} is not "
                              "an export directory).")
        subject = load_subject(export)
        subject.reads.append(path)
        return subject
    if not (path / "manifest.json").is_file():
        raise ExportError(f"{path} is neither an export, a run directory nor a .keras file.")
    from keras_cnns.training.evaluation import check_export_files

    check_export_files(path)
    manifest = read_manifest(path)
    model = _load_model(path / MODEL_FILE)
    _check_model(model, path / MODEL_FILE)
    stored = (manifest.get("evaluation") or {}).get("test_set") or \
        manifest["golden"].get("images_file") or GOLDEN_FILE
    arrays = load_arrays(path / stored, {"images": UINT8, "labels": INTEGERS},
                         "Test images", error=ExportError)
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(labels) != len(images):
        raise ExportError(f"Test images {path / stored} must be uint8 [N, H, W, 1 or 3] with "
                          f"one label each, got {list(images.shape)} and {len(labels)} labels.")
    pre = manifest["preprocessing"]
    return Subject(model, path.resolve().name, [float(m) for m in pre["mean"]],
                   [float(s) for s in pre["std"]], list(manifest["dataset"]["class_names"]),
                   images, labels.astype(np.int64), reads=[path])


def _load_model(path: Path) -> keras.Model:
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # a truncated or foreign file: say which, not how it broke
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{path} is not a loadable Keras model ({first}).") from None


def _check_model(model, path) -> tuple[int, int, int]:
    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else ()
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise ExportError(f"{path} is not an image model with one fixed (height, width, 1 or "
                          f"3) input, it takes {shape}.")
    if not conv_layers(model):
        raise ExportError(f"{path} has no Conv2D layer, so there is nothing to visualize.")
    return tuple(int(d) for d in shape)


def load_image_files(paths, input_shape) -> np.ndarray:
    """Image files decoded with Pillow to the model's channels and resized to its input
    (bilinear): uint8 [N, H, W, C]. A file that is not a readable image is a DataError."""
    height, width, channels = input_shape
    out = []
    for path in map(Path, paths):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise DataError(f"Image {path} does not exist or cannot be read.")
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise DataError(f"Image {path} declares {image.width}x{image.height} "
                                    f"pixels, over the limit of {MAX_PIXELS:,}.")
                image = image.convert("L" if channels == 1 else "RGB")
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except DataError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise DataError(f"Image {path} cannot be decoded and converted to {channels} "
                            f"channel(s) at {height}x{width} ({first}).") from None
        out.append(array.reshape(height, width, channels))
    return np.stack(out)


def model_inputs(subject: Subject, images: np.ndarray) -> np.ndarray:
    """uint8 images, any size, 1 or 3 channels -> the model's float32 input, as training and
    the export's serving_default preprocess them (`keras_cnns.data.preprocess`)."""
    from keras_cnns.data import preprocess

    height, width, channels = subject.input_shape
    x = preprocess(np.asarray(images), image_size=(height, width), mean=subject.mean,
                   std=subject.std, channels=channels)
    return np.asarray(x, dtype=np.float32)


def displayable(subject: Subject, x: np.ndarray) -> np.ndarray:
    """Model inputs back to [0, 1] RGB for drawing (the normalisation undone)."""
    mean = np.asarray(subject.mean, np.float32)
    std = np.asarray(subject.std, np.float32)
    if mean.size != x.shape[-1]:
        mean, std = np.full(x.shape[-1], mean.mean()), np.full(x.shape[-1], std.mean())
    return _rgb(np.clip(x * std + mean, 0.0, 1.0))


# -- layers ---------------------------------------------------------------------------------------

def conv_layers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def first_dense(model):
    return next((layer for layer in model.layers if isinstance(layer, keras.layers.Dense)), None)


def choose_layers(model, names=None) -> list:
    """The Conv2D layers named (default: all), in model order; an unknown name, or a layer that
    is no convolution, is a ConfigError naming the convolutions there are."""
    convs = conv_layers(model)
    if not names:
        return convs
    by_name = {layer.name: layer for layer in convs}
    for name in names:
        if name not in by_name:
            raise ConfigError(f"--layers {name} is not a Conv2D layer of this model; its "
                              f"convolutions are {', '.join(by_name)}.")
    return [layer for layer in convs if layer.name in set(names)]


def check_units(model, units) -> None:
    """Every unit index must exist in the last convolution and in the first Dense layer."""
    sizes = {conv_layers(model)[-1].name: int(conv_layers(model)[-1].output.shape[-1])}
    dense = first_dense(model)
    if dense is not None:
        sizes[dense.name] = int(dense.output.shape[-1])
    for unit in units:
        for name, size in sizes.items():
            if not 0 <= unit < size:
                raise ConfigError(f"--units {unit} is not a unit of layer {name}, which has "
                                  f"{size} (0 to {size - 1}).")


def _outputs_model(model, layers) -> keras.Model:
    return keras.Model(model.input, [layer.output for layer in layers])


def _batched(function, x):
    parts = [function(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]
    return np.concatenate([np.asarray(p) for p in parts])


def probabilities(model, x) -> np.ndarray:
    """Class probabilities of `x`: the softmax of the logits (or the output itself, when the
    model ends in a softmax)."""
    out = _batched(lambda b: keras.ops.convert_to_numpy(model(b, training=False)), x)
    if getattr(model.layers[-1], "activation", None) is keras.activations.softmax:
        return out.astype(np.float64)
    out = out.astype(np.float64) - out.max(-1, keepdims=True)
    return np.exp(out) / np.exp(out).sum(-1, keepdims=True)


def feature_maps(model, x, layers) -> list[np.ndarray]:
    """The outputs of `layers` for inputs `x`, one [N, h, w, channels] array each."""
    probe = _outputs_model(model, layers)
    got = _batched(lambda b: [keras.ops.convert_to_numpy(t) for t in
                              _as_list(probe(b, training=False))], x)
    return got


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def grad_cam(model, x, layer=None, classes=None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at `layer` (default: the last convolution): per image,
    ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of d(class score)/dA^k, the score
    being the pre-softmax output of `classes` (default: each image's predicted class).
    Returns [N, h, w] at the layer's resolution, not normalised."""
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ConfigError("Grad-CAM takes its gradients with tf.GradientTape; run it with "
                          "KERAS_BACKEND=tensorflow.")
    layer = layer or conv_layers(model)[-1]
    probe = keras.Model(model.input, [layer.output, model.outputs[0]])
    x = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        activations, out = probe(x, training=False)
        if classes is None:
            classes = tf.argmax(out, axis=-1)
        score = tf.gather(out, tf.cast(classes, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(score, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    return cam.numpy()


def occlusion_positions(side: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, side - patch + 1, stride))
    return starts if starts[-1] == side - patch else [*starts, side - patch]


def occlusion(model, x, *, patch: int | None = None, stride: int | None = None, fill=0.0,
              classes=None) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014), forward passes only: a `patch`-square of
    `fill` (the model-input value of grey) slides over each image by `stride`; each cell is
    how much the probability of `classes` (default: the predicted class of the unoccluded
    image) drops with the patch there. Returns [N, rows, cols]."""
    x = np.asarray(x, np.float32)
    height, width = x.shape[1:3]
    patch = patch or max(1, min(height, width) // 4)
    stride = stride or max(1, patch // 2)
    rows = occlusion_positions(height, min(patch, height), stride)
    cols = occlusion_positions(width, min(patch, width), stride)
    base = probabilities(model, x)
    classes = base.argmax(-1) if classes is None else np.asarray(classes)
    fill = np.broadcast_to(np.asarray(fill, np.float32), (x.shape[-1],))
    maps = np.zeros((len(x), len(rows), len(cols)))
    for n, image in enumerate(x):
        copies = np.repeat(image[None], len(rows) * len(cols), axis=0)
        for k, (top, left) in enumerate((r, c) for r in rows for c in cols):
            copies[k, top:top + patch, left:left + patch] = fill
        occluded = probabilities(model, copies)[:, classes[n]]
        maps[n] = (base[n, classes[n]] - occluded).reshape(len(rows), len(cols))
    return maps


def occlusion_pixels(drops, side_h: int, side_w: int, patch: int, stride: int) -> np.ndarray:
    """The coarse occlusion map spread back over the image: each pixel the mean drop of the
    patches that covered it. [N, H, W]."""
    rows = occlusion_positions(side_h, patch, stride)
    cols = occlusion_positions(side_w, patch, stride)
    total = np.zeros((len(drops), side_h, side_w))
    count = np.zeros((side_h, side_w))
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            total[:, top:top + patch, left:left + patch] += drops[:, i, j, None, None]
            count[top:top + patch, left:left + patch] += 1
    return total / np.maximum(count, 1)


def top_images(activations: np.ndarray, unit: int, k: int) -> np.ndarray:
    """Indices of the `k` images whose activation of `unit` is highest (a convolution's unit
    by its spatial maximum), highest first; ties keep the images' order."""
    values = activations[..., unit]
    if values.ndim > 1:
        values = values.reshape(len(values), -1).max(-1)
    return np.argsort(-values, kind="stable")[:k]


# -- drawing --------------------------------------------------------------------------------------

def _rgb(x: np.ndarray) -> np.ndarray:
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


def filter_grid(model, layer=None) -> np.ndarray:
    """The first convolution's filters as a grid, every filter scaled by the one min/max over
    all of them (so they compare): colour for 3 input channels, grey for 1."""
    layer = layer or conv_layers(model)[0]
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)  # [kh, kw, in, out]
    if kernel.shape[2] not in (1, 3):
        kernel = kernel.mean(axis=2, keepdims=True)
    low, high = kernel.min(), kernel.max()
    scaled = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
    tiles = _rgb(np.moveaxis(scaled, -1, 0))
    return grid(tiles, least=FILTER_SIDE)


def feature_grid(maps: np.ndarray) -> np.ndarray:
    """One image's feature maps [h, w, channels] as a grid, all channels by one scale from the
    layer's least to its greatest value for this image (a silent channel stays dark)."""
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    return grid(colormap(np.moveaxis(scaled, -1, 0), "viridis"), least=FILTER_SIDE)


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w] -> [height, width], bilinear (half-pixel centres, as tf.image.resize)."""
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float64)


def evidence_row(image: np.ndarray, cam: np.ndarray, drops: np.ndarray) -> np.ndarray:
    """Input | Grad-CAM over it | occlusion drops over it, for one image ([H, W, 3] in [0, 1];
    cam at its layer's size; drops per pixel, [H, W])."""
    height, width = image.shape[:2]
    heat = _resize(cam, height, width)
    heat = heat / heat.max() if heat.max() > 0 else heat
    spread = np.abs(drops).max()
    signed = 0.5 + 0.5 * drops / spread if spread > 0 else np.full(drops.shape, 0.5)
    tiles = [image, 0.5 * image + 0.5 * colormap(heat, "jet"),
             0.5 * image + 0.5 * colormap(signed, "coolwarm")]
    return grid(tiles, least=IMAGE_SIDE, cols=3)


def save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")


# -- the whole page -------------------------------------------------------------------------------

@dataclass
class Figure:
    file: str
    caption: str


def render(subject: Subject, folder: str | Path, *, images: np.ndarray | None = None,
           image_names: list[str] | None = None, count: int = 4, layers=None,
           units=DEFAULT_UNITS, top: int = 9, pool: int = 1000) -> dict[str, list[Figure]]:
    """Write every PNG and index.html into `folder` (which must exist); return the figures by
    section. `images` (uint8, any size) are the images looked at; default the first `count`
    stored test images. The top images of each unit come from the first `pool` stored ones
    (or from `images`, for a model with none stored)."""
    folder = Path(folder)
    model = subject.model
    chosen = choose_layers(model, layers)
    check_units(model, units)
    if images is None:
        if subject.images is None:
            raise ConfigError("A .keras file stores no test images; give some with --images.")
        images = subject.images[:count]
        image_names = [f"test image {i}" + _label(subject, i) for i in range(len(images))]
    image_names = image_names or [f"image {i}" for i in range(len(images))]
    x = model_inputs(subject, images)
    shown = displayable(subject, x)
    sections: dict[str, list[Figure]] = {"filters": [], "features": [], "evidence": [],
                                         "top": []}

    first = conv_layers(model)[0]
    name = f"filters-{_slug(first.name)}.png"
    save_png(filter_grid(model, first), folder / name)
    kernel = tuple(first.kernel.shape)
    sections["filters"].append(Figure(name, (
        f"Layer {first.name}: its {kernel[-1]} filters of {kernel[0]}x{kernel[1]} over "
        f"{kernel[2]} input channel(s), all scaled by one minimum and maximum "
        "(mid-grey is the middle of that range, not necessarily zero).")))

    for layer, maps in zip(chosen, feature_maps(model, x, chosen), strict=True):
        for i, per_image in enumerate(maps):
            name = f"features-{i}-{_slug(layer.name)}.png"
            save_png(feature_grid(per_image), folder / name)
            sections["features"].append(Figure(name, (
                f"{image_names[i]}: the {per_image.shape[-1]} feature maps of {layer.name} "
                f"({per_image.shape[0]}x{per_image.shape[1]}), one colour scale for all, "
                f"from {per_image.min():.3g} (dark) to {per_image.max():.3g} (yellow).")))

    probs = probabilities(model, x)
    predicted = probs.argmax(-1)
    cams = grad_cam(model, x, classes=predicted)
    height, width, channels = subject.input_shape
    patch = max(1, min(height, width) // 4)
    stride = max(1, patch // 2)
    grey = _grey(subject, channels)
    drops = occlusion(model, x, patch=patch, stride=stride, fill=grey, classes=predicted)
    spread = occlusion_pixels(drops, height, width, patch, stride)
    last = conv_layers(model)[-1]
    for i in range(len(x)):
        name = f"evidence-{i}.png"
        save_png(evidence_row(shown[i], cams[i], spread[i]), folder / name)
        cls = predicted[i]
        sections["evidence"].append(Figure(name, (
            f"{image_names[i]}, predicted {subject.class_names[cls]} (p = {probs[i, cls]:.3f}). "
            f"Left: the input. Middle: Grad-CAM of that class on {last.name} "
            f"({cams.shape[1]}x{cams.shape[2]}, red = most evidence). Right: occlusion, a grey "
            f"{patch}x{patch} patch slid by {stride}: red where covering the image lowers the "
            f"class's probability (most: {drops[i].max():.3f}), blue where it raises it.")))

    if subject.images is not None:
        pool_images = subject.images[:pool]
        pool_names = [f"test image {i}" for i in range(len(pool_images))]
    else:
        pool_images, pool_names = images, image_names
    pool_x = model_inputs(subject, pool_images)
    pool_shown = displayable(subject, pool_x)
    watched = [last] + ([first_dense(model)] if first_dense(model) is not None else [])
    for layer, acts in zip(watched, feature_maps(model, pool_x, watched), strict=True):
        for unit in units:
            best = top_images(acts, unit, top)
            name = f"top-{_slug(layer.name)}-unit{unit}.png"
            save_png(grid(pool_shown[best], least=IMAGE_SIDE), folder / name)
            how = "spatial maximum" if acts.ndim == 4 else "activation"
            values = acts[..., unit].reshape(len(acts), -1).max(-1)[best]
            sections["top"].append(Figure(name, (
                f"Unit {unit} of {layer.name}: the {len(best)} of {len(pool_images)} images with "
                f"the highest {how} ({values[0]:.3g} to {values[-1]:.3g}), row by row: "
                + ", ".join(pool_names[j] for j in best) + ".")))

    write_html(folder / "index.html", subject, sections)
    return sections


def _label(subject: Subject, i: int) -> str:
    if subject.labels is None:
        return ""
    return f" (class {subject.class_names[int(subject.labels[i])]})"


def _grey(subject: Subject, channels: int) -> np.ndarray:
    mean = np.resize(np.asarray(subject.mean, np.float32), channels)
    std = np.resize(np.asarray(subject.std, np.float32), channels)
    return (0.5 - mean) / std


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]", "_", text)


SECTION_TITLES = {
    "filters": ("First-layer filters", "Krizhevsky et al. 2012, Fig. 3"),
    "features": ("Feature maps of every chosen convolution", "Zeiler & Fergus 2014"),
    "evidence": ("Class evidence: Grad-CAM and occlusion",
                 "Selvaraju et al. 2017; Zeiler & Fergus 2014, Sec. 4.2"),
    "top": ("Images that excite a unit most", "Zeiler & Fergus 2014"),
}


def write_html(path: Path, subject: Subject, sections: dict[str, list[Figure]]) -> None:
    """One page, no scripts, no remote fonts: each PNG by its relative name, with caption."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>What the layers learned: {html.escape(subject.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
        "figure{display:inline-block;vertical-align:top;margin:.5em;max-width:560px}"
        "img{image-rendering:pixelated;max-width:100%}figcaption{font-size:.85em}</style>",
        "</head>", "<body>", f"<h1>What the layers learned: {html.escape(subject.name)}</h1>",
        "<p>Model inputs as the model sees them (normalisation undone). "
        "See docs/visualize.md for what each picture shows.</p>",
    ]
    for key, figures in sections.items():
        title, reference = SECTION_TITLES[key]
        parts.append(f"<h2>{html.escape(title)}</h2><p><i>{html.escape(reference)}</i></p>")
        for figure in figures:
            parts.append(f'<figure><img src="{html.escape(figure.file)}" '
                         f'alt="{html.escape(figure.file)}"><figcaption>'
                         f"{html.escape(figure.caption)}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def visualize(path: str | Path, output: str | Path, *, image_files=None, overwrite=False,
              **options) -> dict[str, list[Figure]]:
    """Load `path` (export, `.keras` file or run directory), draw everything into `output`.

    The files are drawn in a temporary sibling folder and moved in only when all are done, so
    a failure leaves `output` as it was. An existing non-empty `output` is refused unless
    `overwrite` (then its files of the same names are replaced, others kept).
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConfigError(f"--output {output} exists and is not empty; pass --overwrite.")
    subject = load_subject(path)
    images = names = None
    if image_files:
        images = load_image_files(image_files, subject.input_shape)
        names = [Path(p).name for p in image_files]
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        sections = render(subject, work, images=images, image_names=names, **options)
        if not output.exists():
            work.rename(output)
        else:
            for item in sorted(work.iterdir()):
                os.replace(item, output / item.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sections
