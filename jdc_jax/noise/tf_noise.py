"""The noise models of `numpy_noise`, in stateless TF ops, for the tf.data pipeline.

Each function mirrors its numpy twin (same spec strings, same parameter draws and
distributions; the random streams differ): `synthesize_unclipped_tf` is
`numpy_noise.synthesize_unclipped`, `quantize_8bit_tf` is `quantize_8bit`, `add_noise_tf` is
`add_noise`. Randomness comes from a stateless seed (int64 (2,)), split per purpose.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from jdc_jax.noise import numpy_noise as noise_lib


def split_seed(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    """`count` independent stateless seeds from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _draw_parameter_tf(parameter: noise_lib.Parameter, seed: tf.Tensor) -> tf.Tensor:
    """One float32 draw of a `noise.Choice` or `noise.Interval`."""
    if isinstance(parameter, noise_lib.Interval):
        return tf.random.stateless_uniform([], seed, minval=parameter.low, maxval=parameter.high)
    index = tf.random.stateless_uniform([], seed, minval=0, maxval=len(parameter.values),
                                        dtype=tf.int32)
    return tf.gather(tf.constant(parameter.values, tf.float32), index)


def _inverse_cdf_rows_tf(tables: list[noise_lib.InverseCDF]) -> tuple[tf.Tensor, tf.Tensor]:
    """The tables as rows of (levels, interpolated values), float64 (len(tables), L): shorter
    tables repeat their last entry, which a draw in [0, 1) never reaches."""
    length = max(len(table.levels) for table in tables)

    def padded(row: np.ndarray) -> np.ndarray:
        return np.pad(row, (0, length - len(row)), mode="edge")

    return (tf.constant(np.stack([padded(t.levels) for t in tables]), tf.float64),
            tf.constant(np.stack([padded(t.interpolated_values) for t in tables]), tf.float64))


def _interpolate_rows_tf(levels: tf.Tensor, values: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """Row r: interp(uniform[r], levels[r], values[r]) (piecewise linear), float64 (R,)."""
    upper = tf.clip_by_value(tf.searchsorted(levels, uniform[:, None], side="right")[:, 0],
                             1, levels.shape[1] - 1)
    lower = upper - 1

    def at(table, index):
        return tf.gather(table, index[:, None], batch_dims=1)[:, 0]

    weight = (uniform - at(levels, lower)) / (at(levels, upper) - at(levels, lower))
    return at(values, lower) + weight * (at(values, upper) - at(values, lower))


def _draw_practical_tf(parameters: noise_lib.PracticalNoiseParameters,
                       seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel (a, b), float64 (3,): `noise.PracticalNoiseParameters.sample` in TF.

    All 9 inverse CDFs (channel-major: a, slope, intercept) are interpolated at once; a channel
    whose b <= 0 redraws its three parameters, the others keep theirs."""
    tables = [table for channel in parameters.channels
              for table in (channel.a, channel.slope, channel.intercept)]
    levels, values = _inverse_cdf_rows_tf(tables)
    log_space = tf.constant([table.log_space for table in tables])
    channels = len(parameters.channels)

    def draw(attempt):
        uniform = tf.random.stateless_uniform(
            [len(tables)], tf.random.experimental.stateless_fold_in(seed, attempt),
            dtype=tf.float64)
        drawn = _interpolate_rows_tf(levels, values, uniform)
        a, slope, intercept = tf.unstack(
            tf.reshape(tf.where(log_space, tf.exp(drawn), drawn), [channels, 3]), axis=1)
        return a, slope * a + intercept

    def redraw(attempt, a, b):
        new_a, new_b = draw(attempt + 1)
        rejected = b <= 0
        return attempt + 1, tf.where(rejected, new_a, a), tf.where(rejected, new_b, b)

    a, b = draw(tf.constant(0, tf.int64))
    _, a, b = tf.while_loop(lambda attempt, a, b: tf.reduce_any(b <= 0), redraw,
                            (tf.constant(0, tf.int64), a, b))
    return a, b


def synthesize_unclipped_tf(clean: tf.Tensor, spec: noise_lib.NoiseSpec,
                            seed: tf.Tensor) -> tf.Tensor:
    """`noise.synthesize_unclipped` in TF: float32 (H, W, 3), 8-bit units, before clipping.

    clean: uint8 (H, W, 3); seed: int64 (2,) stateless seed."""
    x = tf.cast(clean, tf.float32)
    if spec.kind == "none":
        return x
    parameter_seed, poisson_seed, normal_seed = split_seed(seed, 3)
    if spec.kind == "awgn":
        sigma = _draw_parameter_tf(spec.sigma, parameter_seed)
        return x + sigma * tf.random.stateless_normal(tf.shape(x), normal_seed)
    if spec.kind == "poisson_gaussian":
        a_seed, b_seed = split_seed(parameter_seed, 2)
        a = _draw_parameter_tf(spec.poisson_scale, a_seed)
        b = _draw_parameter_tf(spec.gaussian_variance, b_seed)
    elif spec.kind == "practical":
        a, b = _draw_practical_tf(spec.practical_parameters(), parameter_seed)
        a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    else:
        raise ValueError(f"unknown noise kind {spec.kind!r}")
    y = x / 255.0
    counts = tf.random.stateless_poisson(tf.shape(y), poisson_seed, lam=tf.maximum(y, 0.0) / a,
                                         dtype=tf.float32)
    z = a * counts + tf.sqrt(b) * tf.random.stateless_normal(tf.shape(y), normal_seed)
    return 255.0 * z


def noise_level_tf(clean: tf.Tensor, noisy: tf.Tensor, spec: noise_lib.NoiseSpec,
                   seed: tf.Tensor) -> tf.Tensor:
    """The noise std (8-bit units, float32 scalar) a noise-level-conditioned denoiser is told:
    for AWGN the sigma drawn by `synthesize_unclipped_tf` with the same seed (the true level,
    before clipping), for other noise the std of noisy - clean."""
    if spec.kind == "awgn":
        return _draw_parameter_tf(spec.sigma, split_seed(seed, 3)[0])
    difference = tf.cast(noisy, tf.float32) - tf.cast(clean, tf.float32)
    return tf.math.reduce_std(difference)


def quantize_8bit_tf(noisy: tf.Tensor) -> tf.Tensor:
    """`noise.quantize_8bit` in TF: clip to [0, 255], round half to even, uint8."""
    return tf.cast(tf.round(tf.clip_by_value(noisy, 0.0, 255.0)), tf.uint8)


def add_noise_tf(clean: tf.Tensor, spec: noise_lib.NoiseSpec, seed: tf.Tensor) -> tf.Tensor:
    """`noise.add_noise` in TF: uint8 (H, W, 3) -> noisy uint8 (H, W, 3)."""
    return quantize_8bit_tf(synthesize_unclipped_tf(clean, spec, seed))
