"""A picture of the training data as the model receives it, for checking a data set by eye.

    source = load_source("fashion_mnist", "/usr/share/datasets/fashion-mnist")
    draw_preview(source, "grid.png", image_size=28, augment="light")

The top panel is the start of the training stream, built by `keras_cnns.data.build_pipeline`
exactly as training builds it (endless, shuffled with the seed, augmented, normalised), with
the normalisation undone for display and each image titled with its class name. Below, a few
training images each appear raw (uint8, at their native size, before the pipeline) beside
several augmented versions: the same pipeline run on that image alone, so each version is one
draw of the policy.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_cnns.data import DataSource, build_pipeline  # noqa: E402


def model_view(source, *, image_size: int, augment: str, seed: int, count: int):
    """`(images in [0, 1] as float32 [count, S, S, C], labels)`: the first `count` images of
    the training stream, normalisation undone."""
    stream = build_pipeline(source, "train", image_size=image_size, batch_size=count,
                            augment=augment, seed=seed, repeat=True, deterministic=True)
    images, labels = next(iter(stream))
    return denormalize(images.numpy(), source.info), labels.numpy()


def augmented_versions(source, index: int, *, image_size: int, augment: str, seed: int,
                       versions: int) -> np.ndarray:
    """`versions` draws of the augmentation on training image `index`, in [0, 1]."""
    images, labels = source.arrays("train")
    repeated = np.repeat(images[index:index + 1], versions, axis=0)
    # Same info (so the same mean and std normalise it), one image many times: each copy gets
    # its own random parameters from the batch's seed.
    single = DataSource(source.info, {"train": (repeated, np.repeat(labels[index], versions))})
    stream = build_pipeline(single, "train", image_size=image_size, batch_size=versions,
                            augment=augment, seed=seed + index, shuffle=False,
                            deterministic=True)
    batch, _ = next(iter(stream))
    return denormalize(batch.numpy(), source.info)


def denormalize(images: np.ndarray, info) -> np.ndarray:
    """Undo the pipeline's `(x - mean) / std` and clip to [0, 1] for display."""
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)
    return np.clip(images * std + mean, 0.0, 1.0)


def _show(axis, image: np.ndarray, title: str, fontsize: float) -> None:
    grey = image.shape[-1] == 1
    axis.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None,
                vmin=0, vmax=1 if image.dtype != np.uint8 else 255, interpolation="nearest")
    axis.set_title(title, fontsize=fontsize, pad=2)
    axis.set_xticks([])
    axis.set_yticks([])


def draw_preview(source, output: str | Path, *, image_size: int | None = None,
                 augment: str = "light", seed: int = 0, rows: int = 4, columns: int = 8,
                 examples: int = 3, versions: int = 6, dpi: int = 80) -> Path:
    """Draw the grid and the raw-versus-augmented strips into the PNG `output`."""
    info = source.info
    size = image_size or info.native_size[0]
    names = info.class_names
    view, labels = model_view(source, image_size=size, augment=augment, seed=seed,
                              count=rows * columns)
    train_images, train_labels = source.arrays("train")
    # One example from each of the first classes, so the strips show different things.
    picks = [int(np.flatnonzero(train_labels == c)[0])
             for c in np.unique(train_labels)[:examples]]

    strip_columns = versions + 1
    grid_columns = max(columns, strip_columns)
    height = (rows + len(picks)) * 1.3 + 0.6
    figure = plt.figure(figsize=(grid_columns * 1.15, height), dpi=dpi)
    # Axes start 0.6 inch below the top: room for the two-line title, no more.
    grid = figure.add_gridspec(rows + len(picks), grid_columns, hspace=0.45, wspace=0.08,
                               top=1 - 0.6 / height, bottom=0.02)
    for i in range(rows * columns):
        _show(figure.add_subplot(grid[i // columns, i % columns]), view[i],
              names[int(labels[i])], 7)
    for row, index in enumerate(picks):
        strip = augmented_versions(source, index, image_size=size, augment=augment,
                                   seed=seed, versions=versions)
        raw = train_images[index]
        _show(figure.add_subplot(grid[rows + row, 0]), raw,
              f"raw {raw.shape[0]}x{raw.shape[1]}: {names[int(train_labels[index])]}", 7)
        for v in range(versions):
            _show(figure.add_subplot(grid[rows + row, v + 1]), strip[v],
                  f"{augment} #{v + 1}", 7)
    figure.suptitle(
        f"{info.name}: training images as the model receives them ({size}x{size}, "
        f"augment={augment}, seed {seed}; normalisation undone)\n"
        f"last {len(picks)} rows: a raw training image, then {versions} augmented versions",
        fontsize=9, y=1 - 0.05 / height, va="top")
    output = Path(output)
    figure.savefig(output, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return output
