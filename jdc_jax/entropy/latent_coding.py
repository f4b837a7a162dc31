"""How a Gaussian-modelled latent becomes integer symbols and table indexes, and back.

This one module is shared by the forward pass (rate estimate) and the bitstream code, so the
estimated and the coded rate measure the same thing, and decoded latents equal the forward pass.

Quantization (per element, with hyper/context parameters `mean`, `scale`):

    o     = mean if round_around_mean else 0         # the quantization offset
    y_hat = round(y - o) + o                           # decoder input
    c     = round(mean - o),  frac = (mean - o) - c    # integer centre and its fractional part
    symbol = round(y_hat - o) - c                      # int32, coded with table `index`
    index  = scale_index(scale) * OFFSET_BINS + offset_bin(frac)

Rounding around the mean (Minnen et al. 2018 / CompressAI practice) needs the mean before the
element is quantized. That holds for the hyperprior-only and checkerboard models, but not for the
serial context model, whose mean depends on already quantized neighbours. There y_hat = round(y)
(offset 0), so the parallel forward pass and the serial decoder agree exactly; the fractional mean
is then kept in the coding model by OFFSET_BINS tables per scale (mean offsets -1/2, -7/16, ...,
1/2), instead of being ignored.

Tables: `build_latent_tables()` makes one integer table per (scale, offset bin), 64 * 17 in all,
from `gaussian.SCALE_TABLE` (64 log-spaced scales in [0.11, 256]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr, ndtri

from jdc_jax.entropy import gaussian
from jdc_jax.entropy.quantization import quantize
from jdc_jax.entropy.tables import CodingTables, quantize_pmf

OFFSET_BINS = 17
NUM_TABLES = len(gaussian.SCALE_TABLE) * OFFSET_BINS


def rounds_around_mean(context_model: str) -> bool:
    """Whether a latent group with this context model is rounded around its mean: all but the
    serial context, whose mean depends on already quantized neighbours (module docstring).
    The one place this rule lives; the model and the coder both ask it."""
    return context_model != "serial"


def quantization_offset(mean, round_around_mean: bool):
    return mean if round_around_mean else jnp.zeros_like(mean)


def quantize_latent(y, mean, *, round_around_mean: bool, mode: str, rng=None):
    """The decoder input y_hat. mode: "round" (eval), "ste" (training: rounded forward,
    identity gradient) or "noise" (training: y + U(-1/2, 1/2))."""
    return quantize(y, mode, offset=quantization_offset(mean, round_around_mean), rng=rng)


def offset_bins(frac):
    """Bin of a fractional mean offset in [-1/2, 1/2] (int32)."""
    xp = jnp if isinstance(frac, jax.Array) else np
    bins = xp.round((frac + 0.5) * (OFFSET_BINS - 1))
    return xp.clip(bins, 0, OFFSET_BINS - 1).astype(xp.int32)


def _centre(mean, round_around_mean: bool):
    xp = jnp if isinstance(mean, jax.Array) else np
    offset = mean if round_around_mean else xp.zeros_like(mean)
    centre = xp.round(mean - offset)
    return offset, centre, (mean - offset) - centre


def latent_symbols(y_hat, mean, scale, *, round_around_mean: bool):
    """(symbols, indexes), both int32, of a quantized latent y_hat."""
    xp = jnp if isinstance(y_hat, jax.Array) else np
    offset, centre, frac = _centre(mean, round_around_mean)
    symbols = xp.round(y_hat - offset) - centre
    indexes = gaussian.scale_indexes(scale) * OFFSET_BINS + offset_bins(frac)
    return symbols.astype(xp.int32), indexes.astype(xp.int32)


def latent_from_symbols(symbols, mean, *, round_around_mean: bool):
    """Inverse of `latent_symbols`: y_hat from decoded integer symbols."""
    offset, centre, _ = _centre(mean, round_around_mean)
    return symbols.astype(mean.dtype) + centre + offset


def coded_likelihood(y_hat, mean, scale, *, round_around_mean: bool, likelihood_bound=1e-9):
    """The probability the range coder's table model gives y_hat (before 16-bit quantization).

    Uses the table scale and the binned mean offset, so -log2 of it is the coded size up to the
    tables' integer precision."""
    offset, centre, frac = _centre(mean, round_around_mean)
    residual = jnp.round(y_hat - offset) - centre
    table_offset = offset_bins(frac).astype(jnp.float32) / (OFFSET_BINS - 1) - 0.5
    table_scale = jnp.asarray(gaussian.SCALE_TABLE, jnp.float32)[gaussian.scale_indexes(scale)]
    return gaussian.gaussian_likelihood(residual, table_offset, table_scale,
                                        likelihood_bound=likelihood_bound)


def latent_likelihood(y, y_hat, mean, scale, *, round_around_mean: bool, train: bool, rng=None):
    """Likelihood for the rate term: of y + U(-1/2, 1/2) under N(mean, scale) in training, and the
    coder's own model of y_hat in evaluation."""
    if train:
        noisy = y + jax.random.uniform(rng, y.shape, jnp.float32, -0.5, 0.5)
        return gaussian.gaussian_likelihood(noisy, mean, scale)
    return coded_likelihood(y_hat, mean, scale, round_around_mean=round_around_mean)


def build_latent_tables(precision: int = 16, tail_mass: float = 1e-9) -> CodingTables:
    """Integer tables for every (scale, mean-offset) pair, in float64 on the host.

    Table t = s * OFFSET_BINS + b models symbols r (integers) with
    P(r) = Phi((r + 1/2 - d_b) / sigma_s) - Phi((r - 1/2 - d_b) / sigma_s), d_b = b / 16 - 1/2,
    over r in [-L_s - 1, L_s + 1], L_s = ceil(sigma_s * Phi^-1(1 - tail_mass / 2)); the mass
    outside goes to the escape bin."""
    multiplier = -ndtri(tail_mass / 2)
    pmfs, offsets = [], []
    for sigma in gaussian.SCALE_TABLE:
        half = int(np.ceil(sigma * multiplier)) + 1
        support = np.arange(-half, half + 1, dtype=np.float64)
        for b in range(OFFSET_BINS):
            shift = b / (OFFSET_BINS - 1) - 0.5
            upper = ndtr((support + 0.5 - shift) / sigma)
            lower = ndtr((support - 0.5 - shift) / sigma)
            pmf = upper - lower
            pmfs.append(quantize_pmf(pmf, max(1.0 - pmf.sum(), 0.0), precision))
            offsets.append(-half)
    return CodingTables.from_rows(pmfs, offsets, precision=precision)


# ----------------------------------------------------------------- the integer entropy path
#
# With the integer networks of `jdc_jax.integer` the entropy parameters arrive as integers: the
# mean in fixed point, M = mean * 2^k (k = `fraction_bits`), and the scale index itself. The
# rules above then read, in integers only (the decoder never touches a float):
#
#   round around the mean: centre = 0, offset bin = OFFSET_BINS // 2 (the mean's fraction is in
#                          y_hat itself),  y_hat * 2^k = symbol * 2^k + M
#   serial (y_hat = round(y)): centre = floor((M + 2^(k-1)) / 2^k), F = M - centre * 2^k,
#                          offset bin = floor(((OFFSET_BINS - 1) (F + 2^(k-1)) + 2^(k-1)) / 2^k),
#                          y_hat * 2^k = (symbol + centre) * 2^k
#   index = scale_index * OFFSET_BINS + offset bin
#
# y_hat is kept in the same fixed point (int64 here; `fixed_to_float` for the synthesis, exact
# below 2^24 / 2^k in magnitude). Only the encoder rounds a float: its y into a symbol.


def _integer_centre(mean_fixed, fraction_bits: int, round_around_mean: bool):
    """(centre, offset bin), int64 and int32 numpy arrays, of fixed-point means."""
    mean_fixed = np.asarray(mean_fixed, np.int64)
    if round_around_mean:
        return (np.zeros_like(mean_fixed),
                np.full(mean_fixed.shape, OFFSET_BINS // 2, np.int32))
    half = np.int64(1) << (fraction_bits - 1)
    centre = (mean_fixed + half) >> fraction_bits
    fraction = mean_fixed - (centre << fraction_bits)
    bins = ((OFFSET_BINS - 1) * (fraction + half) + half) >> fraction_bits
    return centre, np.clip(bins, 0, OFFSET_BINS - 1).astype(np.int32)


def integer_indexes(mean_fixed, scale_index, *, round_around_mean: bool,
                    fraction_bits: int) -> np.ndarray:
    """Table indexes (int32) from fixed-point means and integer scale indexes."""
    _, bins = _integer_centre(mean_fixed, fraction_bits, round_around_mean)
    return (np.asarray(scale_index, np.int32) * OFFSET_BINS + bins).astype(np.int32)


def integer_symbols(y, mean_fixed, *, round_around_mean: bool, fraction_bits: int) -> np.ndarray:
    """The encoder's int32 symbols of a latent y (float) under fixed-point means."""
    y = np.asarray(y, np.float64)
    if round_around_mean:
        mean = np.asarray(mean_fixed, np.float64) / 2.0**fraction_bits
        return np.round(y - mean).astype(np.int32)
    centre, _ = _integer_centre(mean_fixed, fraction_bits, round_around_mean)
    return (np.round(y).astype(np.int64) - centre).astype(np.int32)


def integer_latent_from_symbols(symbols, mean_fixed, *, round_around_mean: bool,
                                fraction_bits: int) -> np.ndarray:
    """y_hat * 2^k (int64) from decoded symbols and fixed-point means."""
    centre, _ = _integer_centre(mean_fixed, fraction_bits, round_around_mean)
    symbols = np.asarray(symbols, np.int64)
    if round_around_mean:
        return (symbols << fraction_bits) + np.asarray(mean_fixed, np.int64)
    return (symbols + centre) << fraction_bits


def fixed_to_float(fixed, fraction_bits: int) -> np.ndarray:
    """float32 y_hat of a fixed-point latent (the synthesis input)."""
    return (np.asarray(fixed, np.float64) / 2.0**fraction_bits).astype(np.float32)
