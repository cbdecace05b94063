"""What the layers learned: filters, feature maps, class evidence and top images, as PNGs and
one offline HTML page (`keras-cnns visualize`).

Usable from a notebook:

    from keras_cnns.measure import layer_views as lv
    subject = lv.load_subject("saved_models/<export>")     # or a .keras file, or a run dir
    x = lv.model_inputs(subject, subject.images[:4])        # uint8 -> the model's float input
    lv.filter_grid(subject.model)                           # [H, W, 3] uint8, one tile a filter
    cams = lv.grad_cam(subject.model, x)                    # [N, h, w] at the last conv's size
    drops = lv.occlusion(subject.model, x)                  # [N, rows, cols] probability drops
    tflite = lv.runtime_probabilities(subject, "tflite")    # uint8 at the model's size -> probs
    drops = lv.occlusion(tflite, lv.at_model_size(subject, subject.images[:4]), fill=lv.GREY)
    lv.visualize("saved_models/<export>", "runs/visualize/x")   # everything, with index.html

The pictures follow Krizhevsky et al. 2012 (Fig. 3, first-layer filters), Zeiler & Fergus 2014
(feature maps, top-activating images, occlusion sensitivity) and Selvaraju et al. 2017
(Grad-CAM); docs/visualize.md says what each shows. Grad-CAM takes its one gradient through the
running Keras backend (`score_gradients`: TensorFlow, JAX or PyTorch); everything else is
forward passes, and occlusion can run on an export's SavedModel, LiteRT or ONNX file instead of
the Keras model (`forward_runtimes`).
Images are drawn with numpy and Pillow at integer scales (nearest neighbour), so every PNG's
size follows from the layer shapes (`grid_shape`).
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from keras_cnns import tile_grids
from keras_cnns.config import ConfigError
from keras_cnns.measure.forward_runtimes import (  # noqa: F401  (the notebook API above)
    BATCH,
    RUNTIMES,
    batched,
    check_runtime,
    probabilities,
    runtime_probabilities,
)
from keras_cnns.measure.layer_subject import (  # noqa: F401  (the notebook API above)
    Subject,
    at_model_size,
    conv_layers,
    displayable,
    load_image_files,
    load_subject,
    model_inputs,
)
from keras_cnns.measure.score_gradients import class_score_gradients
from keras_cnns.tile_grids import (
    IMAGE_SIDE,
    evidence_row,
    feature_grid,
    grid,
    save_png,
)

DEFAULT_UNITS = (0, 1, 2, 3)
GREY = 128  # the uint8 value an occluding patch is filled with
# -- layers ---------------------------------------------------------------------------------------

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


def feature_maps(model, x, layers) -> list[np.ndarray]:
    """The outputs of `layers` for inputs `x`, one [N, h, w, channels] array each."""
    probe = _outputs_model(model, layers)
    got = batched(lambda b: [keras.ops.convert_to_numpy(t) for t in
                              _as_list(probe(b, training=False))], x)
    return got


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def split_at(model, layer) -> tuple[keras.Model, keras.Model]:
    """`model` cut after `layer`: a body from the input to `layer`'s output and a head from that
    output to the model's, so that a gradient can be taken with respect to the activations."""
    return (keras.Model(model.input, layer.output),
            keras.Model(layer.output, model.outputs[0]))


def grad_cam(model, x, layer=None, classes=None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) at `layer` (default: the last convolution): per image,
    ReLU(sum_k alpha_k A^k) with alpha_k the spatial mean of d(class score)/dA^k, the score
    being the pre-softmax output of `classes` (default: each image's predicted class).
    Returns [N, h, w] at the layer's resolution, not normalised.

    The gradient is the running backend's own (`score_gradients`: TensorFlow, JAX or PyTorch);
    the rest is this one formula in numpy.
    """
    body, head = split_at(model, layer or conv_layers(model)[-1])
    x = np.asarray(x, np.float32)
    chosen = None if classes is None else np.asarray(classes, np.int64)
    cams = []
    for start in range(0, len(x), BATCH):
        activations = body(x[start:start + BATCH], training=False)
        if chosen is None:
            logits = keras.ops.convert_to_numpy(head(activations, training=False))
            wanted = logits.argmax(-1)
        else:
            wanted = chosen[start:start + BATCH]
        gradients = class_score_gradients(head, activations, wanted).astype(np.float64)
        values = keras.ops.convert_to_numpy(activations).astype(np.float64)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        cams.append(np.maximum((weights * values).sum(-1), 0.0))
    return np.concatenate(cams)


def occlusion_positions(side: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, side - patch + 1, stride))
    return starts if starts[-1] == side - patch else [*starts, side - patch]


def occlusion(predict, x, *, patch: int | None = None, stride: int | None = None, fill=0.0,
              classes=None) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014), forward passes only: a `patch`-square of
    `fill` slides over each image by `stride`; each cell is how much the probability of
    `classes` (default: the predicted class of the unoccluded image) drops with the patch there.
    Returns [N, rows, cols].

    `predict` is a Keras model (its outputs made probabilities by `probabilities`) or any
    callable from a batch of images to probabilities [N, classes], such as an export's
    SavedModel, LiteRT or ONNX file on uint8 images (`forward_runtimes.runtime_probabilities`);
    `x` and `fill` are in the space it takes.
    """
    if isinstance(predict, keras.Model):
        predict = functools.partial(probabilities, predict)
    x = np.asarray(x)
    height, width = x.shape[1:3]
    patch = patch or max(1, min(height, width) // 4)
    stride = stride or max(1, patch // 2)
    rows = occlusion_positions(height, min(patch, height), stride)
    cols = occlusion_positions(width, min(patch, width), stride)
    base = np.asarray(predict(x), np.float64)
    classes = base.argmax(-1) if classes is None else np.asarray(classes)
    fill = np.broadcast_to(np.asarray(fill, x.dtype), (x.shape[-1],))
    maps = np.zeros((len(x), len(rows), len(cols)))
    for n, image in enumerate(x):
        copies = np.repeat(image[None], len(rows) * len(cols), axis=0)
        for k, (top, left) in enumerate((r, c) for r in rows for c in cols):
            copies[k, top:top + patch, left:left + patch] = fill
        occluded = np.asarray(predict(copies), np.float64)[:, classes[n]]
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

def filter_grid(model, layer=None) -> np.ndarray:
    """The first convolution's filters (or `layer`'s) as `tile_grids.filter_grid` draws them."""
    layer = layer or conv_layers(model)[0]
    return tile_grids.filter_grid(keras.ops.convert_to_numpy(layer.kernel))


# -- the whole page -------------------------------------------------------------------------------

@dataclass
class Figure:
    file: str
    caption: str


def render(subject: Subject, folder: str | Path, *, images: np.ndarray | None = None,
           image_names: list[str] | None = None, count: int = 4, layers=None,
           units=DEFAULT_UNITS, top: int = 9, pool: int = 1000,
           runtime: str = "keras") -> dict[str, list[Figure]]:
    """Write every PNG and index.html into `folder` (which must exist); return the figures by
    section. `images` (uint8 [N, H, W, 1 or 3], any size) are the images looked at; default
    the first `count` stored test images. The top images of each unit come from the first
    `pool` stored ones (or from `images`, for a model with none stored). Occlusion runs on
    `runtime` (`forward_runtimes.RUNTIMES`); everything else on the Keras model."""
    folder = Path(folder)
    model = subject.model
    chosen = choose_layers(model, layers)
    check_units(model, units)
    predict = runtime_probabilities(subject, runtime)
    if images is None:
        if subject.images is None:
            raise ConfigError("A .keras file stores no test images; give some with --images.")
        images = subject.images[:count]
        image_names = [f"{subject.stored} {i}" + _label(subject, i) for i in range(len(images))]
    image_names = image_names or [f"image {i}" for i in range(len(images))]
    images = at_model_size(subject, images)
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
    drops = occlusion(predict, images, patch=patch, stride=stride, fill=GREY, classes=predicted)
    spread = occlusion_pixels(drops, height, width, patch, stride)
    last = conv_layers(model)[-1]
    for i in range(len(x)):
        name = f"evidence-{i}.png"
        save_png(evidence_row(shown[i], cams[i], spread[i]), folder / name)
        cls = predicted[i]
        sections["evidence"].append(Figure(name, (
            f"{image_names[i]}, predicted {subject.class_names[cls]} (p = {probs[i, cls]:.3f}). "
            f"Left: the input. Middle: Grad-CAM of that class on {last.name} "
            f"({cams.shape[1]}x{cams.shape[2]}, red = most evidence). Right: occlusion on "
            f"{RUNTIMES[runtime]}, a grey ({GREY}) {patch}x{patch} patch slid by {stride}: red "
            f"where covering the image lowers the "
            f"class's probability (most: {drops[i].max():.3f}), blue where it raises it.")))

    if subject.images is not None:
        pool_images = subject.images[:pool]
        pool_names = [f"{subject.stored} {i}" for i in range(len(pool_images))]
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
    choose_layers(subject.model, options.get("layers"))  # every refusal before a folder is made
    check_units(subject.model, options.get("units", DEFAULT_UNITS))
    check_runtime(subject, options.get("runtime", "keras"))
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
