"""Mean-scale Gaussian conditional (Minnen, Balle & Toderici 2018) and its 64-entry scale table.

A latent element y with predicted mean mu and scale sigma is modelled, after quantization, by the
Gaussian integrated over its unit bin:

    P(y_hat) = Phi((y_hat - mu + 1/2) / s) - Phi((y_hat - mu - 1/2) / s),   s = max(sigma, 0.11)

Phi is the standard normal CDF. Likelihoods are probabilities (rate = -sum log2 P bits).

Coding uses a fixed table of 64 scales, log-spaced in [0.11, 256] (`SCALE_TABLE`): each element
is coded with the integer table of the first entry >= its scale (`scale_indexes`), its symbol
being the integer residual round(y - mu) (so y_hat = symbol + mu). `GaussianConditional` in
"round"/"ste" mode evaluates the likelihood with that table scale, so its rate estimate measures
the model the range coder uses, up to the tables' 16-bit quantization.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.entropy.quantization import QUANTIZATION_MODES, lower_bound, quantize
from jdc_jax.entropy.tables import CodingTables, quantize_pmf

SCALE_BOUND = 0.11
SCALE_TABLE = np.exp(np.linspace(np.log(SCALE_BOUND), np.log(256.0), 64))
# Indexes compare float32 scales against the float32 table, identically in numpy and jax.
_SCALE_TABLE_FLOAT32 = SCALE_TABLE.astype(np.float32)


def scale_indexes(scales):
    """Index (int32, same shape) of the first `SCALE_TABLE` entry >= each scale.

    Scales below 0.11 map to 0, above 256 (or NaN) to 63. Takes numpy or jax arrays and returns
    the same kind; both compare in float32, so they agree exactly.
    """
    xp = jnp if isinstance(scales, jax.Array) else np
    scales = xp.asarray(scales, dtype=xp.float32)
    indexes = xp.searchsorted(xp.asarray(_SCALE_TABLE_FLOAT32), scales, side="left")
    return xp.clip(indexes, 0, len(SCALE_TABLE) - 1).astype(xp.int32)


def table_scales(scales):
    """The float32 `SCALE_TABLE` entry each scale is coded with (jax array, same shape)."""
    return jnp.asarray(_SCALE_TABLE_FLOAT32)[scale_indexes(jnp.asarray(scales))]


@functools.partial(jax.jit, static_argnames=("likelihood_bound",))
def gaussian_likelihood(y_hat, mean, scale, *, likelihood_bound: float = 1e-9):
    """P(y_hat) of the module docstring, float32, floored at `likelihood_bound`.

    Both Phi terms are evaluated on the upper tail of |y_hat - mean| (Phi(-x) = erfc(x/sqrt2)/2),
    where their difference loses no precision. The scale and the likelihood floors are
    gradient-preserving lower bounds. Shapes broadcast.
    """
    y_hat, mean, scale = (jnp.asarray(a, jnp.float32) for a in (y_hat, mean, scale))
    scale = lower_bound(scale, SCALE_BOUND)
    distance = jnp.abs(y_hat - mean)
    upper = _standard_normal_cdf((0.5 - distance) / scale)
    lower = _standard_normal_cdf((-0.5 - distance) / scale)
    return lower_bound(upper - lower, likelihood_bound)


def _standard_normal_cdf(x):
    return 0.5 * jax.scipy.special.erfc(-x / math.sqrt(2.0))


@dataclasses.dataclass(frozen=True)
class GaussianConditional:
    """Quantizes a Gaussian-modelled latent and returns its likelihoods (no parameters).

    `__call__(y, mean, scale, mode=..., rng=...) -> (y_hat, likelihoods)`, all shapes equal
    (or broadcasting to y's):

      "noise": likelihoods of y + U(-1/2, 1/2) under N(mean, scale) (training rate term);
               y_hat = straight-through round(y - mean) + mean (the decoder input).
      "round": y_hat = round(y - mean) + mean; likelihoods of y_hat with the table scale
               `SCALE_TABLE[scale_indexes(scale)]`, i.e. the model the range coder uses.
      "ste":   as "round", but y_hat is straight-through and the table scale passes its
               gradient to `scale` unchanged, so both stay trainable.
    """

    likelihood_bound: float = 1e-9

    def __call__(self, y, mean, scale, *, mode: str, rng=None):
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"unknown quantization mode {mode!r}; allowed modes: {QUANTIZATION_MODES}")
        y = jnp.asarray(y, jnp.float32)
        if mode == "noise":
            noisy = quantize(y, "noise", rng=rng)
            y_hat = quantize(y, "ste", offset=mean)
            return y_hat, gaussian_likelihood(noisy, mean, scale,
                                              likelihood_bound=self.likelihood_bound)
        y_hat = quantize(y, mode, offset=mean)
        coded_scale = table_scales(scale)
        if mode == "ste":
            scale = jnp.asarray(scale, jnp.float32)
            coded_scale = scale + jax.lax.stop_gradient(coded_scale - scale)
        return y_hat, gaussian_likelihood(y_hat, mean, coded_scale,
                                          likelihood_bound=self.likelihood_bound)


def build_gaussian_tables(precision: int = 16, tail_mass: float = 1e-9) -> CodingTables:
    """One integer table per `SCALE_TABLE` entry, computed in float64 on the host.

    Table t codes residuals s = round(y - mean) in [-L_t, L_t], L_t = ceil(sigma_t *
    Phi^-1(1 - tail_mass / 2)), with P(s) = Phi((s + 1/2) / sigma_t) - Phi((s - 1/2) / sigma_t);
    the mass beyond +-(L_t + 1/2) is the escape bin's.
    """
    if not 0 < tail_mass < 1:
        raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
    # Phi^-1(1 - m/2) as -Phi^-1(m/2): 1 - m/2 would round away the tail in float64.
    tail_multiplier = -statistics.NormalDist().inv_cdf(tail_mass / 2)
    rows, offsets = [], []
    for sigma in SCALE_TABLE:
        half_width = math.ceil(sigma * tail_multiplier)
        # Upper tails Q_j = P(X > j + 1/2) for j = 0..L; bins follow by symmetry, without
        # subtracting numbers close to one.
        upper_tails = np.array([0.5 * math.erfc((j + 0.5) / (sigma * math.sqrt(2.0)))
                                for j in range(half_width + 1)])
        positive = upper_tails[:-1] - upper_tails[1:]  # P(s) for s = 1..L
        centre = math.erf(0.5 / (sigma * math.sqrt(2.0)))  # P(0) = 1 - 2 Q_0
        pmf = np.concatenate([positive[::-1], [centre], positive])
        rows.append(quantize_pmf(pmf, 2.0 * upper_tails[-1], precision))
        offsets.append(-half_width)
    return CodingTables.from_rows(rows, offsets, precision=precision)
