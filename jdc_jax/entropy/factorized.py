"""Deep factorized density for the side latent z (Balle et al. 2018, "Variational image
compression with a scale hyperprior", appendix 6.1; the "entropy bottleneck").

Each channel c has its own monotone CDF, a small network from R to (0, 1):

    c(v) = sigmoid(f_K(...f_1(v))),   f_k(x) = g_k(H_k x + b_k),
    g_k(x) = x + tanh(a_k) * tanh(x)  (k < K),   g_K = identity (the sigmoid is applied last)

with H_k = softplus(raw H_k) >= 0 and tanh(a_k) > -1, so every layer is increasing in its input.
Layer widths are 1 -> filters... -> 1. `logits_cdf(v)` returns the pre-sigmoid value
f_K(...f_1(v)). Initialisation follows the paper's reference code: with s = init_scale ** (1 /
(len(filters) + 1)), softplus(H_k) = 1 / (s * width_out_k), b_k ~ U(-1/2, 1/2), a_k = 0, so the
initial CDF is a logistic of slope 1 / init_scale, i.e. a density about init_scale wide.

The likelihood of a quantized (or noisy) value v is the CDF mass of its unit bin,
P(v) = c(v + 1/2) - c(v - 1/2), evaluated on the logits u = logits_cdf(v + 1/2),
l = logits_cdf(v - 1/2) as |sigmoid(s u) - sigmoid(s l)| with s = -sign(u + l) (s = +1 on a tie):
reversing the sign puts both sigmoids on the tail where they are small, so the difference of two
numbers near one is never taken. Likelihoods are probabilities (bits = -log2 P).

Quantization is centred on the per-channel median: symbol = round(z - median), z_hat = symbol +
median. Medians and the table range quantiles are solved from the CDF itself (bisection on
logits_cdf(v) = target under stop_gradient), not learned, so this model needs no auxiliary loss.
With `stored_medians=True` the medians are a parameter instead, `medians` (C,), read as it is
(no gradient): a model converted from CompressAI keeps the medians its EntropyBottleneck learned
(`quantiles[:, 0, 1]`), so it quantizes exactly where CompressAI does.

Coding tables: `FactorizedPrior.build_tables`, run through `apply` outside jit, e.g.
`FactorizedPrior().apply({"params": side_params}, method=FactorizedPrior.build_tables)`, or
`build_factorized_tables(module, variables)`; in a parent model,
`model.apply(variables, method=lambda m: m.side_prior.build_tables())`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax.entropy.quantization import QUANTIZATION_MODES, lower_bound, quantize
from jdc_jax.entropy.tables import CodingTables, quantize_pmf

# Bracketing doubles a [-1, 1] start up to +-2**40 (any quantile of a trained prior lies well
# inside); 64 halvings then shrink a bracket of width <= 2**41 below 2**-23, the float32 spacing
# near 1, so the result is exact to float32 precision.
_BRACKET_DOUBLINGS = 40
_BISECTION_STEPS = 64


class FactorizedPrior(nn.Module):
    """Per-channel deep factorized density; channels C come from the input's last axis (NHWC).

    Attributes:
      filters: hidden widths of the per-channel CDF network.
      init_scale: width of the initial density (in latent units).
      likelihood_bound: floor of the returned likelihoods (gradient-preserving).
    """

    filters: tuple = (3, 3, 3)
    init_scale: float = 10.0
    likelihood_bound: float = 1e-9
    stored_medians: bool = False

    @nn.compact
    def cdf_parameters(self, channels: int):
        """The raw parameters (matrices, biases, factors), lists of (C, width_out, width_in),
        (C, width_out, 1) and (C, width_out, 1) float32 arrays (created on first use, with the
        `medians` parameter (C,) when `stored_medians`)."""
        widths = (1, *self.filters, 1)
        layer_scale = self.init_scale ** (1.0 / (len(widths) - 1))
        matrices, biases, factors = [], [], []
        for k, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            raw_weight = math.log(math.expm1(1.0 / layer_scale / width_out))
            matrices.append(self.param(f"matrix_{k}", nn.initializers.constant(raw_weight),
                                       (channels, width_out, width_in)))
            biases.append(self.param(f"bias_{k}", _uniform_centred, (channels, width_out, 1)))
            if k < len(widths) - 2:
                factors.append(self.param(f"factor_{k}", nn.initializers.zeros,
                                          (channels, width_out, 1)))
        if self.stored_medians:
            self.param("medians", nn.initializers.zeros, (channels,), jnp.float32)
        return matrices, biases, factors

    def logits_cdf(self, values):
        """Logit of each channel's CDF at `values` (..., C) float; same shape, float32."""
        values = jnp.asarray(values, jnp.float32)
        parameters = self.cdf_parameters(values.shape[-1])
        return _from_channel_rows(_cdf_logits(parameters, _to_channel_rows(values), jnp),
                                  values.shape)

    def inverse_logits_cdf(self, logits):
        """Values v (..., C) with logits_cdf(v) = `logits` (..., C), by bisection; no gradient."""
        logits = jnp.asarray(logits, jnp.float32)
        parameters = self.cdf_parameters(logits.shape[-1])
        return _from_channel_rows(_solve_cdf_logits(parameters, _to_channel_rows(logits)),
                                  logits.shape)

    def medians(self):
        """Per-channel median (C,) float32: the solution of logits_cdf(v) = 0 (or the stored
        medians); no gradient."""
        return self._medians(self.cdf_parameters(self._channels()), self._channels())

    def _medians(self, parameters, channels: int):
        if self.stored_medians:
            return jax.lax.stop_gradient(self.get_variable("params", "medians"))
        return _solve_cdf_logits(parameters, jnp.zeros((channels, 1), jnp.float32))[:, 0]

    def __call__(self, z, *, mode: str):
        """Quantize z (..., C) and return (z_hat, likelihoods), both (..., C) float32.

        mode "noise" (training; draws from the 'noise' rng stream): likelihoods of z + U(-1/2,
        1/2), z_hat = straight-through round(z - median) + median. mode "ste": z_hat the same,
        likelihoods of z_hat. mode "round": z_hat = round(z - median) + median, likelihoods of it.
        """
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"unknown quantization mode {mode!r}; allowed modes: {QUANTIZATION_MODES}")
        z = jnp.asarray(z, jnp.float32)
        parameters = self.cdf_parameters(z.shape[-1])
        medians = self._medians(parameters, z.shape[-1])
        if mode == "noise":
            z_hat = quantize(z, "ste", offset=medians)
            values = quantize(z, "noise", rng=self.make_rng("noise"))
        else:
            z_hat = quantize(z, mode, offset=medians)
            values = z_hat
        likelihoods = _bin_probabilities(parameters, _to_channel_rows(values), jnp)
        likelihoods = lower_bound(likelihoods, self.likelihood_bound)
        return z_hat, _from_channel_rows(likelihoods, z.shape)

    def build_tables(self, precision: int = 16, tail_mass: float = 1e-9) -> CodingTables:
        """One integer table per channel (host, float64); call through `apply`, outside jit.

        Channel c codes symbols s = round(z - median_c) in [floor(q_lo - median_c),
        ceil(q_hi - median_c)], q_lo and q_hi being its tail_mass / 2 and 1 - tail_mass / 2
        quantiles; P(s) = c(median_c + s + 1/2) - c(median_c + s - 1/2) from the float64 CDF
        network, the mass outside goes to the escape bin. The float32 medians are stored in
        the tables, so encoder and decoder centre on the same values.
        """
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        channels = self._channels()
        parameters = self.cdf_parameters(channels)
        # logit(tail_mass / 2) computed in float64; in float32 1 - 5e-10 would round to 1.
        tail_logit = math.log(tail_mass / 2) - math.log1p(-tail_mass / 2)
        targets = jnp.tile(jnp.array([tail_logit, 0.0, -tail_logit], jnp.float32), (channels, 1))
        lower, medians, upper = np.asarray(_solve_cdf_logits(parameters, targets)).T
        if self.stored_medians:
            medians = np.asarray(self._medians(parameters, channels))
        first = np.floor(lower.astype(np.float64) - medians)
        last = np.ceil(upper.astype(np.float64) - medians)
        bins = last - first + 2
        if not np.all(np.isfinite(bins)) or bins.max() > 2 ** precision:
            worst = int(np.nanargmax(np.where(np.isfinite(bins), bins, np.inf)))
            raise ValueError(
                f"channel {worst} needs {bins[worst]} bins for tail_mass {tail_mass}, more than "
                f"{precision}-bit tables hold; the prior is too wide (or untrained)")
        host_parameters = jax.tree.map(lambda p: np.asarray(p, np.float64), parameters)
        rows = []
        for c in range(channels):
            channel_parameters = jax.tree.map(lambda p: p[c:c + 1], host_parameters)
            centres = np.arange(first[c], last[c] + 1) + np.float64(medians[c])
            pmf = _bin_probabilities(channel_parameters, centres[None], np)[0]
            edges = np.array([[centres[0] - 0.5, centres[-1] + 0.5]])
            lower_edge, upper_edge = _cdf_logits(channel_parameters, edges, np)[0]
            tail = _sigmoid(lower_edge, np) + _sigmoid(-upper_edge, np)
            rows.append(quantize_pmf(pmf, tail, precision))
        return CodingTables.from_rows(rows, first.astype(np.int64), precision=precision,
                                      medians=medians)

    def _channels(self) -> int:
        if not self.has_variable("params", "matrix_0"):
            raise ValueError("FactorizedPrior has no parameters yet: initialise it on a latent "
                             "(..., C) first")
        return self.get_variable("params", "matrix_0").shape[0]


def build_factorized_tables(module: FactorizedPrior, variables, *, precision: int = 16,
                            tail_mass: float = 1e-9) -> CodingTables:
    """`module.build_tables` for the prior's own variables ({"params": ...})."""
    return module.apply(variables, precision, tail_mass, method=FactorizedPrior.build_tables)


def _uniform_centred(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -0.5, 0.5)


def _to_channel_rows(values):
    """(..., C) -> (C, N)."""
    return values.reshape(-1, values.shape[-1]).T


def _from_channel_rows(rows, shape):
    """(C, N) -> (..., C) of `shape`."""
    return rows.T.reshape(shape)


def _sigmoid(x, xp):
    # exp(-softplus(-x)): accurate far into the lower tail, where 1 / (1 + exp(-x)) is too.
    return xp.exp(-xp.logaddexp(0.0, -x))


def _cdf_logits(parameters, rows, xp):
    """Logits (C, N) of the channel CDFs at `rows` (C, N); xp is numpy (float64) or jax.numpy."""
    matrices, biases, factors = parameters
    x = rows[:, None, :]
    for k, (matrix, bias) in enumerate(zip(matrices, biases)):
        x = xp.matmul(xp.logaddexp(0.0, matrix), x) + bias
        if k < len(factors):
            x = x + xp.tanh(factors[k]) * xp.tanh(x)
    return x[:, 0, :]


def _bin_probabilities(parameters, rows, xp):
    """Unit-bin masses c(v + 1/2) - c(v - 1/2) at `rows` (C, N), with the tail reversed."""
    count = rows.shape[1]
    logits = _cdf_logits(parameters, xp.concatenate([rows - 0.5, rows + 0.5], axis=1), xp)
    lower, upper = logits[:, :count], logits[:, count:]
    sign = xp.where(lower + upper > 0, -1.0, 1.0)
    return xp.abs(_sigmoid(sign * upper, xp) - _sigmoid(sign * lower, xp))


@jax.jit
def _solve_cdf_logits(parameters, targets):
    """float32 values (C, N) where the CDF logits equal `targets` (C, N): bracket, then bisect.

    The CDF is strictly increasing, so the bracket [lo, hi] with logit(lo) <= target <=
    logit(hi) shrinks to the unique solution.
    """
    parameters = jax.lax.stop_gradient(parameters)
    targets = jax.lax.stop_gradient(jnp.asarray(targets, jnp.float32))

    def logits(values):
        return _cdf_logits(parameters, values, jnp)

    def widen(_, bracket):
        lo, hi = bracket
        return (jnp.where(logits(lo) > targets, 2 * lo, lo),
                jnp.where(logits(hi) < targets, 2 * hi, hi))

    def halve(_, bracket):
        lo, hi = bracket
        middle = 0.5 * (lo + hi)
        above = logits(middle) > targets
        return jnp.where(above, lo, middle), jnp.where(above, middle, hi)

    start = (-jnp.ones_like(targets), jnp.ones_like(targets))
    bracket = jax.lax.fori_loop(0, _BRACKET_DOUBLINGS, widen, start)
    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, bracket)
    return 0.5 * (lo + hi)
