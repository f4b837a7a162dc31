"""Post-training conversion of a float codec model into its integer entropy network.

    network = float_network.float_network(model, params)         # the same layers, in float
    statistics = collect_statistics(model, params, medians, images)  # activation ranges
    integer_model = convert(network, statistics, medians)        # `network.IntegerEntropyModel`

Activations. Each float activation channel c gets the scale s_c = HEADROOM * max|a_c| / A, its
largest calibration value (over the images and positions) mapping to A / HEADROOM, A =
2^(activation_bits - 1) - 1; its integer values are clipped to [-A, A] ([0, A] after ReLU).
z_hat enters as z_hat * 2^Z_FRACTION_BITS (the side symbols shifted, plus the median rounded to
that fixed point), y_hat and the means as y_hat * 2^MEAN_FRACTION_BITS.

Weights, per output channel f of a layer with input scales s_in and output scale s_out: the
weights w' = w * s_in (the input scales folded in) are stored as W = round(w' / u_f) with the
accumulator unit u_f = s_out / D_f and the integer divisor D_f = floor(s_out * W_max / max|w'_f|)
(W_max = 2^(weight_bits - 1) - 1): the largest weight uses between half and all of the weight
range, and the requantization acc / D_f is exact in the choice of D_f (the weights carry all the
rounding). The bias is round(b / u_f). (Should one input step times the largest weight exceed
W_max output steps, D_f is 1 and the weights are clipped to the weight range; calibrated
layers do not come near that.) A head's scale channels are not requantized: their unit
is u_f = max|w'_f| / W_max and their thresholds floor(SCALE_TABLE[t] / u_f); its mean channels
divide to the fixed point 2^-MEAN_FRACTION_BITS like any layer.

Calibration images are the model's training kind of input: `calibration_images` reads a data
source (the built-in photographs by default, or a folder), crops them and adds the model's
noise with the evaluation seeding (`noise.noisy_for_file`). Calibration runs float networks, so
it is done once and its result stored with the model (`python -m jdc_jax.integer calibrate`):
a decoder never recomputes it.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax import checkpoints, data_sources
from jdc_jax.codec import api
from jdc_jax.entropy import gaussian
from jdc_jax.images import as_rgb, image_name, pad_to_multiple, read_image
from jdc_jax.integer import float_network as floats
from jdc_jax.integer.network import (INT32_MAX, SCALE_THRESHOLDS, AccumulatorOverflow,
                                     IntegerEntropyModel, IntegerGroup, IntegerHead,
                                     IntegerLayer)
from jdc_jax.noise.numpy_noise import noisy_for_file, parse_noise_spec

DEFAULT_WEIGHT_BITS = 8
DEFAULT_ACTIVATION_BITS = 12
Z_FRACTION_BITS = 4
MEAN_FRACTION_BITS = 8
HEADROOM = 1.25          # the calibration maximum maps to 1 / HEADROOM of the range
LIMIT_HEADROOM = 2.0     # input clipping: twice the largest calibration |z symbol|, |y_hat|
MAX_DIVISOR = 2**20
PADDING_MULTIPLE = 64


@dataclasses.dataclass
class CalibrationStatistics:
    """Largest |activation| per channel of every layer, over the calibration images.

    hyper: one (features,) array per hyper synthesis layer; groups: stream -> {"context":
    (2C,) or None, "hidden": [(F,), ...]}; z_symbols: largest |side symbol|; latent: largest
    |y_hat| over all groups; images: how many images were seen."""

    hyper: list
    groups: dict
    z_symbols: float = 0.0
    latent: float = 0.0
    images: int = 0

    def update(self, network_activations: list, group_activations: dict, z_symbols, latents):
        def maximum(old, new):
            new = np.asarray(jnp.max(jnp.abs(new), axis=(0, 1, 2)), np.float64)
            return new if old is None else np.maximum(old, new)
        self.hyper = [maximum(old, new) for old, new in
                      zip(self.hyper or [None] * len(network_activations), network_activations)]
        for stream, activations in group_activations.items():
            entry = self.groups.setdefault(stream, {"context": None, "hidden": []})
            if "context" in activations:
                entry["context"] = maximum(entry["context"], activations["context"])
            entry["hidden"] = [maximum(old, new) for old, new in
                               zip(entry["hidden"] or [None] * len(activations["hidden"]),
                                   activations["hidden"])]
        self.z_symbols = max(self.z_symbols, float(np.abs(z_symbols).max(initial=0)))
        self.latent = max([self.latent] + [float(np.abs(y).max(initial=0)) for y in latents])
        self.images += 1


def calibration_images(source: str = "builtin", noise: str | None = None, *, crop: int = 256,
                       limit: int = 0, seed: int = 0) -> list[np.ndarray]:
    """uint8 (H, W, 3) images: the centre crop (at most crop x crop) of each image of a data
    source ("builtin", "folder:PATH" or a folder path), with `noise` (a noise spec, e.g.
    "awgn:25"; None or "none": clean) seeded by the image's name; the first `limit` if > 0.
    A paired source ("paired:NOISY,CLEAN") gives its noisy images as they are (`noise` unused)."""
    if os.path.isdir(source):
        source = f"folder:{source}"
    parsed = data_sources.parse_data_source(source)
    files = data_sources.source_files(parsed)
    # A paired source's noisy half is the model's real input: no noise is added to it.
    paths = files.get("noisy", files["clean"])
    paths = paths[:limit] if limit > 0 else paths
    spec = parse_noise_spec(noise) if noise and "noisy" not in files else None
    images = []
    for path in paths:
        image = read_image(path)
        height, width = image.shape[:2]
        top, left = max(0, (height - crop) // 2), max(0, (width - crop) // 2)
        image = image[top: top + crop, left: left + crop]
        if spec is not None and spec.kind != "none":
            folder = parsed.folders[0] if parsed.folders else os.path.dirname(path)
            image = noisy_for_file(image, image_name(path, folder), spec, seed)
        images.append(image)
    return images


def _quantized_group(network, stream, psi, y, extra):
    """y_hat of one group as the coder quantizes it (`latent_coding`), in float."""
    group = network.groups[stream]
    if group.context_model == "serial":
        return jnp.round(y)
    if group.context_model == "none":
        (mean, _), _ = floats.group_parameters(network, stream, psi, None, extra)
        return jnp.round(y - mean) + mean
    (mean, _), _ = floats.group_parameters(network, stream, psi, jnp.zeros_like(y), extra)
    anchor_latent = jnp.round(y - mean) + mean
    rows, cols = np.indices(y.shape[1:3])
    anchors = jnp.asarray(((rows + cols) % 2 == 0)[None, :, :, None])
    (mean, _), _ = floats.group_parameters(network, stream, psi,
                                           jnp.where(anchors, anchor_latent, 0.0), extra)
    return jnp.where(anchors, anchor_latent, jnp.round(y - mean) + mean)


def collect_statistics(model, params, side_medians, images, network=None
                       ) -> CalibrationStatistics:
    """Activation ranges of the float entropy networks over `images` (uint8 RGB), each padded
    to a multiple of 64 as the codec pads it."""
    network = network or floats.float_network(model, params)
    variables = {"params": params}
    analysis = jax.jit(lambda x: model.apply(variables, x, method=lambda m, x: m.analysis(x)))
    hyper_analysis = jax.jit(lambda y: model.apply(variables, y,
                                                   method=lambda m, y: m.hyper_analysis(y)))
    medians = np.asarray(side_medians, np.float32)
    statistics = CalibrationStatistics([], {})
    for image in images:
        padded = pad_to_multiple(as_rgb(image), PADDING_MULTIPLE)
        y = analysis(jnp.asarray(padded[None], jnp.float32) / 255.0)
        z = np.asarray(hyper_analysis(y))
        symbols = np.round(z - medians)
        activations = floats.hyper_synthesis(network, jnp.asarray(symbols + medians))
        psi = activations[-1]
        group_activations, latents, base = {}, [], None
        offset = 0
        for stream, group in network.groups.items():
            y_group = y[..., offset: offset + group.channels]
            offset += group.channels
            extra = base if stream == "enhancement" else None
            y_hat = _quantized_group(network, stream, psi, y_group, extra)
            _, group_activations[stream] = floats.group_parameters(network, stream, psi, y_hat,
                                                                   extra)
            latents.append(np.asarray(y_hat))
            if stream == "base":
                base = y_hat
        statistics.update(activations, group_activations, symbols, latents)
    return statistics


def _activation_scale(maximum, activation_bits: int) -> np.ndarray:
    """Per-channel scales of a layer's activations. A channel whose calibration maximum is below
    a millionth of the layer's largest is treated as that large (a scale that small would make
    its bias, in accumulator units, overflow); an all-zero layer gets 1 / A."""
    limit = 2 ** (activation_bits - 1) - 1
    maximum = np.asarray(maximum, np.float64)
    maximum = np.maximum(maximum, 1e-6 * maximum.max(initial=0.0))
    return np.where(maximum > 0, HEADROOM * maximum / limit, 1.0 / limit)


def _quantize_weights(kernel, bias, input_scales, output_scales, weight_bits: int):
    """(W, B, D) int64 of one layer (module docstring)."""
    weight_max = 2 ** (weight_bits - 1) - 1
    weights = np.asarray(kernel, np.float64) * np.asarray(input_scales)[None, None, :, None]
    largest = np.abs(weights).max(axis=(0, 1, 2))
    output_scales = np.asarray(output_scales, np.float64)
    divisor = np.floor(output_scales * weight_max / np.where(largest > 0, largest, 1.0))
    divisor = np.clip(np.where(largest > 0, divisor, 1.0), 1, MAX_DIVISOR)
    unit = output_scales / divisor
    return _integer_weights(weights, bias, unit, weight_max) + (divisor.astype(np.int64),)


def _integer_weights(weights, bias, unit, weight_max):
    integer = np.clip(np.round(weights / unit), -weight_max, weight_max).astype(np.int64)
    integer_bias = np.round(np.asarray(bias, np.float64) / unit)
    if np.abs(integer_bias).max(initial=0) > INT32_MAX:
        raise AccumulatorOverflow(f"a bias of {np.abs(integer_bias).max():.3g} accumulator units "
                                  f"would exceed 2^31 - 1 = {INT32_MAX}: use fewer activation or "
                                  f"weight bits")
    return integer, integer_bias.astype(np.int64)


def _integer_layer(layer, input_scales, features_max, weight_bits, activation_bits):
    """(IntegerLayer, its output scales per feature)."""
    limit = 2 ** (activation_bits - 1) - 1
    feature_scales = _activation_scale(features_max, activation_bits)
    output_scales = np.tile(feature_scales, layer.upscale**2)  # channel c is feature c % F
    kernel, bias, divisor = _quantize_weights(layer.kernel, layer.bias, input_scales,
                                              output_scales, weight_bits)
    channels = kernel.shape[-1]
    lower = np.full(channels, 0 if layer.activation == "relu" else -limit)
    integer = IntegerLayer(kernel, bias, divisor, lower, np.full(channels, limit),
                           layer.activation, layer.padding, layer.upscale)
    return integer, feature_scales


def _integer_head(layer, input_scales, predicts_mean, channels, weight_bits, mean_limit):
    weight_max = 2 ** (weight_bits - 1) - 1
    kernel, bias = np.asarray(layer.kernel, np.float64), np.asarray(layer.bias, np.float64)
    parts_kernel, parts_bias = [], []
    mean_divisor = np.ones(channels, np.int64)
    if predicts_mean:
        mean_kernel, mean_bias, mean_divisor = _quantize_weights(
            kernel[..., :channels], bias[:channels], input_scales,
            np.full(channels, 2.0**-MEAN_FRACTION_BITS), weight_bits)
        parts_kernel.append(mean_kernel)
        parts_bias.append(mean_bias)
    weights = kernel[..., -channels:] * np.asarray(input_scales)[None, None, :, None]
    scale_bias = bias[-channels:]
    unit = np.maximum(np.abs(weights).max(axis=(0, 1, 2)) / weight_max,
                      np.abs(scale_bias) / 2**24)
    unit = np.where(unit > 0, unit, 1.0)
    scale_kernel, scale_bias = _integer_weights(weights, scale_bias, unit, weight_max)
    parts_kernel.append(scale_kernel)
    parts_bias.append(scale_bias)
    table = gaussian.SCALE_TABLE.astype(np.float32).astype(np.float64)[:SCALE_THRESHOLDS]
    thresholds = np.clip(np.floor(table[None, :] / unit[:, None]), -INT32_MAX, INT32_MAX)
    return IntegerHead(np.concatenate(parts_kernel, axis=-1), np.concatenate(parts_bias),
                       mean_divisor, mean_limit, thresholds.astype(np.int64), predicts_mean,
                       layer.padding)


def convert(network: floats.FloatNetwork, statistics: CalibrationStatistics, side_medians, *,
            weight_bits: int = DEFAULT_WEIGHT_BITS,
            activation_bits: int = DEFAULT_ACTIVATION_BITS) -> IntegerEntropyModel:
    """The `IntegerEntropyModel` of a float network and its calibration statistics. Raises
    `network.AccumulatorOverflow` when these bits make some accumulator's bound (or a bias)
    exceed int32."""
    if not 2 <= weight_bits <= 16 or not 2 <= activation_bits <= 24:
        raise ValueError(f"weight bits {weight_bits} (2 to 16) or activation bits "
                         f"{activation_bits} (2 to 24) out of range")
    if statistics.images < 1:
        raise ValueError("calibration needs at least one image")
    medians = np.asarray(side_medians, np.float64)
    input_scales = np.full(medians.shape, 2.0**-Z_FRACTION_BITS)
    hyper = []
    for layer, maximum in zip(network.hyper_synthesis, statistics.hyper):
        integer, input_scales = _integer_layer(layer, input_scales, maximum, weight_bits,
                                               activation_bits)
        hyper.append(integer)
    psi_scales = input_scales
    latent_scale = 2.0**-MEAN_FRACTION_BITS
    latent_limit = int(math.ceil(LIMIT_HEADROOM * max(statistics.latent, 1.0) / latent_scale))
    groups = {}
    for stream, group in network.groups.items():
        entry = statistics.groups[stream]
        scales, context = [psi_scales], None
        if group.context is not None:
            context, context_scales = _integer_layer(
                group.context, np.full(group.channels, latent_scale), entry["context"],
                weight_bits, activation_bits)
            scales.append(context_scales)
        scales.append(np.full(group.extra_channels, latent_scale))
        input_scales = np.concatenate(scales)
        hidden = []
        for layer, maximum in zip(group.hidden, entry["hidden"]):
            integer, input_scales = _integer_layer(layer, input_scales, maximum, weight_bits,
                                                   activation_bits)
            hidden.append(integer)
        head = _integer_head(group.head, input_scales, group.predicts_mean, group.channels,
                             weight_bits, latent_limit)
        groups[stream] = IntegerGroup(group.context_model, context, tuple(hidden), head,
                                      group.extra_channels)
    return IntegerEntropyModel(
        z_fraction_bits=Z_FRACTION_BITS,
        z_medians=np.round(medians * 2**Z_FRACTION_BITS).astype(np.int64),
        z_limit=max(8, int(math.ceil(LIMIT_HEADROOM * statistics.z_symbols))),
        hyper_synthesis=tuple(hyper), mean_fraction_bits=MEAN_FRACTION_BITS,
        latent_limit=latent_limit, groups=groups)


def calibrate(model, params, side_medians, images, *, weight_bits: int = DEFAULT_WEIGHT_BITS,
              activation_bits: int = DEFAULT_ACTIVATION_BITS) -> IntegerEntropyModel:
    """`convert(float_network(model, params), collect_statistics(...))` in one call."""
    network = floats.float_network(model, params)
    statistics = collect_statistics(model, params, side_medians, images, network)
    return convert(network, statistics, side_medians, weight_bits=weight_bits,
                   activation_bits=activation_bits)


def calibrate_codec(codec, source: str = "builtin", noise: str | None = None, *,
                    crop: int = 256, limit: int = 0, **bits) -> IntegerEntropyModel:
    """The integer network of a `jdc_jax.codec.Codec`'s model, calibrated on the images of
    `source` with `noise` (default: the codec's training noise, its config's "noise")."""
    if not codec.has_side:
        raise ValueError(f"a {codec.model_kind!r} model has no Gaussian conditional to convert")
    noise = noise if noise is not None else (codec.config or {}).get("noise")
    images = calibration_images(source, noise, crop=crop, limit=limit)
    return calibrate(codec.model, codec.params, codec.side_tables.medians, images, **bits)


def calibrate_checkpoint(path: str | os.PathLike, source: str = "builtin",
                         noise: str | None = None, *, crop: int = 256, limit: int = 0,
                         **bits) -> dict:
    """Calibrates the codec checkpoint at `path` (work directory, checkpoints/ or one step
    directory; the latest step unless a step directory is given) and stores its integer
    network beside that step (`codec.api.INTEGER_ENTROPY_FILE`, written atomically): from then
    on `Codec.from_checkpoint` writes the integer entropy path. Returns a summary (file,
    integer model identifier, largest accumulator bound). ValueError when the checkpoint holds
    no model with a Gaussian conditional."""
    _, step = checkpoints.restore_config(path)  # the step alone: its parameters are read once
    step_directory = checkpoints.resolve_checkpoint_dir(path) / str(step)
    codec = api.Codec.from_checkpoint(step_directory)
    integer = calibrate_codec(codec, source, noise, crop=crop, limit=limit, **bits)
    file = step_directory / api.INTEGER_ENTROPY_FILE
    integer.save(file)
    return {"file": str(file),
            "integer_model_id": api.integer_model_identifier(codec.model_id, integer).hex(),
            "largest_accumulator_bound": max(integer.accumulator_bounds().values()),
            "int32_max": INT32_MAX}
