"""What each layer of a network knows: linear probes, first-layer edge scores, receptive fields.

    fields = receptive_fields(model)                 # layer -> ReceptiveField(size, jump)
    features = pooled_features(model, probed_layers(model), x)
    accuracy = probe_accuracy(features["conv2"], y, test_features["conv2"], test_y)
    scores = orientation_selectivity(first_conv(model).get_weights()[0])   # one per filter

These are the measurements behind `keras-cnns probe` (`probe_study` trains the networks and
writes the report); each works on any built Keras model, whatever its name.

Linear probe (Alain and Bengio, "Understanding intermediate layers using linear classifier
probes", 2016): a logistic regression trained on a layer's activations and scored on held-out
images. Its accuracy says how linearly the layer separates the classes. A convolution's
activations are averaged over the image first (global average pooling), so each probe reads one
number per channel: the probe's input no longer depends on the image or feature-map size, the
whole test fits a two-core budget (flattening AlexNet's first convolution at 64x64 would hand
the probe 21,600 numbers per image), and what it measures is which features a layer has
detected, not where. Alain and Bengio probe flattened maps (and pool the largest ones); pooling
everything loses position, which costs the early, wide layers most, so the probe's accuracy at
the first convolution is a lower bound. The untrained network, probed the same way, is the
control that separates what training added from what the architecture gives for free.

Edge score: the orientation selectivity of a filter's spectrum, 1 - circular variance, the
index Ringach, Shapley and Hawken ("Orientation selectivity in macaque V1: diversity and laminar
dependence", J. Neurosci. 22(13), 2002) compute for V1 cells' orientation tuning, here over a
filter's spatial frequencies instead of a cell's responses: each frequency's power votes for its
orientation on the doubled-angle circle (0 and 180 degrees are one orientation), and the score
is the length of the mean vote. An oriented edge or Gabor puts its power on one line through the
origin and scores near 1; a centre-surround blob or white noise spreads it over every orientation
and scores near 0 (noise: about 1/sqrt of the filter's independent frequencies, so a 5x5 random
filter scores higher than an 11x11 one; compare a layer only with its own random control).
Written here because no library of this project's stack has it: a Gabor fit (the other common
choice) needs a non-linear optimiser per filter and fails on the many filters that are not Gabors.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import keras
import numpy as np

from keras_cnns.measure.layer_subject import conv_layers

# The spectrum is sampled on this many points a side (at least): zero-padding a 5x5 filter
# interpolates its 25-point spectrum, so orientations are not limited to the few that a 5x5
# grid holds. Odd, so that the frequency grid is symmetric about zero.
SPECTRUM_SIZE = 33
PROBE_ITERATIONS = 2000


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """How much of the input one output cell of a layer sees.

    `size` is the side, in input pixels, of the square window that can reach the cell (None:
    the whole input, as for a Dense layer); `jump` is the distance, in input pixels, between
    neighbouring cells of the layer's output (None where the output has no spatial axes).
    """

    size: int | None
    jump: float | None


WHOLE_INPUT = ReceptiveField(None, None)


def receptive_fields(model: keras.Model) -> dict[str, ReceptiveField]:
    """Every layer's theoretical receptive field, from the layers' own configs.

    Walks the graph through `layer.input`: a layer with a kernel or pool window k (dilation d,
    stride s) grows its input's field by (d(k - 1)) x jump and multiplies the jump by s;
    `UpSampling2D` divides the jump; `AdaptiveAveragePooling2D` acts as a pool whose window
    is its widest one; a layer that keeps the spatial size (activation, dropout,
    normalisation) or only moves the border (padding, cropping) keeps the field; anything that
    drops the spatial axes (Flatten, Dense, global pooling) sees the whole input. Branches take
    the widest field among their inputs.
    The field is theoretical: it may exceed the image (its padded border), the size beside it
    in a report says by how much. Raises ValueError for a spatial layer it cannot read.
    """
    produced_by = {id(layer.output): layer.name for layer in model.layers}
    fields: dict[str, ReceptiveField] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            fields[layer.name] = ReceptiveField(1, 1.0)
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        known = [fields[produced_by[id(tensor)]] for tensor in inputs]
        if any(field.jump is None for field in known):
            fields[layer.name] = WHOLE_INPUT
            continue
        widest = max(known, key=lambda field: field.size)
        fields[layer.name] = _grow(layer, widest, inputs[0].shape, layer.output.shape)
    return fields


def _grow(layer, field: ReceptiveField, in_shape, out_shape) -> ReceptiveField:
    if len(out_shape) != 4:
        return WHOLE_INPUT
    config = layer.get_config()
    if isinstance(layer, keras.layers.UpSampling2D):
        return ReceptiveField(field.size, field.jump / _pair(config["size"])[0])
    if isinstance(layer, keras.layers.AdaptiveAveragePooling2D) or "output_size" in config:
        cells, out = int(in_shape[1]), _pair(config["output_size"])[0]
        # PyTorch's (and Keras') adaptive windows: [floor(i n / out), ceil((i + 1) n / out)).
        window = max(math.ceil((i + 1) * cells / out) - (i * cells) // out for i in range(out))
        return ReceptiveField(round(field.size + (window - 1) * field.jump),
                              field.jump * cells / out)
    window = config.get("kernel_size") or config.get("pool_size")
    if window is None:
        # Padding and cropping move the border, not what one cell sees.
        if tuple(in_shape[1:3]) != tuple(out_shape[1:3]) and not isinstance(
                layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
            raise ValueError(f"Layer {layer.name} ({type(layer).__name__}) changes the spatial "
                             "size without a kernel or pool window; its receptive field is "
                             "unknown.")
        return field
    kernel = _pair(window)[0]
    stride = _pair(config.get("strides") or window)[0]
    dilation = _pair(config.get("dilation_rate") or 1)[0]
    return ReceptiveField(round(field.size + dilation * (kernel - 1) * field.jump),
                          field.jump * stride)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def probed_layers(model: keras.Model) -> list[str]:
    """The layers a probe reads: every Conv2D and every Dense layer but the last (the logits),
    in graph order."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    conv = set(map(id, conv_layers(model)))
    hidden = set(map(id, dense[:-1]))
    return [layer.name for layer in model.layers if id(layer) in conv or id(layer) in hidden]


def first_conv(model: keras.Model):
    """The first Conv2D layer, whose filters look at the pixels."""
    layers = conv_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name} has no Conv2D layer.")
    return layers[0]


def pooled_features(model: keras.Model, layers: list[str], x: np.ndarray,
                    batch_size: int = 256) -> dict[str, np.ndarray]:
    """Each of `layers`' activations on the model inputs `x`, in inference mode, a
    convolution's averaged over its spatial axes: layer -> float32 [N, channels]."""
    outputs = []
    for name in layers:
        tensor = model.get_layer(name).output
        if len(tensor.shape) == 4:
            tensor = keras.layers.GlobalAveragePooling2D(name=f"{name}_probe_pool")(tensor)
        outputs.append(tensor)
    reader = keras.Model(model.inputs, outputs, name=f"{model.name}_probe_features")
    values = reader.predict(x, batch_size=batch_size, verbose=0)
    values = values if isinstance(values, (list, tuple)) else [values]
    return {name: np.asarray(value, np.float32) for name, value in zip(layers, values,
                                                                        strict=True)}


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray) -> float:
    """Test accuracy of a multinomial logistic regression fitted on `train_x`.

    Features are standardised on the training images first (a layer of sigmoids and a layer of
    ReLUs then meet the same L2 penalty, scikit-learn's default C = 1), so the score compares
    layers, not their scales. A feature that is constant on the training images (a dead ReLU)
    carries no information and is left at zero.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_ITERATIONS))
    # One BLAS thread: beside TensorFlow's thread pools, a multi-threaded BLAS made each fit
    # 50x slower on 2 cores (75 s instead of 1.5 s for 5,000 x 96 features).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # An unconverged fit after PROBE_ITERATIONS is still a fitted linear probe; its
        # accuracy is what is reported.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(np.asarray(train_x, np.float64), np.asarray(train_y))
    return float(probe.score(np.asarray(test_x, np.float64), np.asarray(test_y)))


def orientation_selectivity(kernel: np.ndarray, size: int = SPECTRUM_SIZE) -> np.ndarray:
    """One edge score in [0, 1] per filter of a Conv2D kernel `[height, width, in, out]`.

    Each filter's mean is removed per input channel (a flat filter has no orientation), its
    power spectrum on a `size` x `size` grid (zero-padded) is summed over the input channels,
    and every frequency inside the Nyquist disc but the zero one votes for its orientation
    theta with its power: score = |sum P exp(2i theta)| / sum P. A filter with no power left
    (constant) scores 0. The score ignores the filter's scale and sign.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"A Conv2D kernel has 4 axes [height, width, in, out], got "
                         f"{list(kernel.shape)}.")
    size = max(size, 2 * max(kernel.shape[:2]) + 1) | 1
    centred = kernel - kernel.mean(axis=(0, 1), keepdims=True)
    spectrum = np.fft.fft2(centred, s=(size, size), axes=(0, 1))
    power = (np.abs(spectrum) ** 2).sum(axis=2)  # [size, size, out]
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.hypot(fx, fy)
    inside = (radius > 0) & (radius <= 0.5)
    votes = np.exp(2j * np.arctan2(fy, fx))[inside]  # [frequencies]
    weights = power[inside]  # [frequencies, out]
    total = weights.sum(axis=0)
    length = np.abs(votes @ weights)
    return np.where(total > 0, length / np.where(total > 0, total, 1.0), 0.0)


def random_filter_scores(layer, count: int = 2000, seed: int = 0) -> np.ndarray:
    """Edge scores of `count` kernels drawn from `layer`'s own kernel initializer, fresh: what
    the layer's filters score before any training (the 95th percentile is the bar an
    "edge-like" trained filter must clear)."""
    height, width, channels, _ = (int(d) for d in layer.kernel.shape)
    initializer = layer.kernel_initializer
    config = initializer.get_config()
    if "seed" in config:  # a fresh, seeded copy: the layer's own draws stay as they were
        initializer = type(initializer).from_config({**config, "seed": seed})
    kernels = keras.ops.convert_to_numpy(initializer((height, width, channels, count)))
    return orientation_selectivity(kernels)
