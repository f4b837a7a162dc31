"""Deep factorized prior: initial density, medians, likelihoods, modes, tables and coded size."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdc_jax.entropy.factorized import FactorizedPrior, build_factorized_tables
from jdc_jax.entropy.range_coder import encode

CHANNELS = 4
# Every latent in this file has this NHWC shape, so each jitted function compiles once.
SHAPE = (1, 64, 64, CHANNELS)
POSITIONS = 64 * 64


class Prior:
    """A randomly initialised prior and its jitted entry points."""

    def __init__(self):
        self.module = FactorizedPrior()
        self.variables = jax.jit(functools.partial(self.module.init, mode="round"))(
            jax.random.key(0), jnp.zeros(SHAPE))
        self.round = jax.jit(functools.partial(self.module.apply, self.variables, mode="round"))
        self.logits_cdf = jax.jit(functools.partial(
            self.module.apply, self.variables, method=FactorizedPrior.logits_cdf))
        self.inverse_logits_cdf = jax.jit(functools.partial(
            self.module.apply, self.variables, method=FactorizedPrior.inverse_logits_cdf))
        self.medians = np.asarray(self.module.apply(self.variables,
                                                    method=FactorizedPrior.medians))
        self.noise = jax.jit(self._noise)

    def _noise(self, params, z, key):
        """Noise-mode outputs and the gradients of sum(z_hat) and of the rate."""

        def outputs(params, z):
            z_hat, likelihoods = self.module.apply({"params": params}, z, mode="noise",
                                                   rngs={"noise": key})
            return z_hat.sum(), (z_hat, likelihoods, -jnp.log2(likelihoods).sum())

        (_, (z_hat, likelihoods, bits)), decoder_gradient = jax.value_and_grad(
            outputs, argnums=1, has_aux=True)(params, z)
        rate_gradients = jax.grad(lambda p, v: outputs(p, v)[1][2], argnums=(0, 1))(params, z)
        return z_hat, likelihoods, decoder_gradient, rate_gradients


@pytest.fixture(scope="module")
def prior():
    return Prior()


@pytest.fixture(scope="module")
def tables(prior):
    return build_factorized_tables(prior.module, prior.variables)


def _latent(values):
    """Values (POSITIONS, C) or fewer rows, padded with zeros, as an SHAPE latent."""
    padded = np.zeros((POSITIONS, CHANNELS), np.float32)
    padded[:len(values)] = values
    return jnp.asarray(padded.reshape(SHAPE))


def _rows(latent, count=POSITIONS):
    return np.asarray(latent, np.float64).reshape(POSITIONS, CHANNELS)[:count]


def test_initial_density_is_a_logistic_of_width_init_scale(prior):
    logits = np.asarray(prior.logits_cdf(jnp.array([[-30.0] * CHANNELS, [0.0] * CHANNELS,
                                                    [20.0] * CHANNELS])))
    # With zero factors the network is affine with slope 1 / init_scale.
    np.testing.assert_allclose((logits[2] - logits[1]) / 20.0, 0.1, rtol=1e-5)
    np.testing.assert_allclose((logits[1] - logits[0]) / 30.0, 0.1, rtol=1e-5)


def test_medians_solve_logits_cdf_equal_zero(prior):
    assert prior.medians.shape == (CHANNELS,) and prior.medians.dtype == np.float32
    logits = prior.logits_cdf(jnp.array([prior.medians, prior.medians, prior.medians]))
    assert float(jnp.abs(logits).max()) < 1e-4


def test_density_sums_to_one_over_integers_around_each_median(prior):
    offsets = np.arange(-2000, 2001, dtype=np.float32)[:, None]
    _, likelihoods = prior.round(_latent(prior.medians + offsets))
    totals = _rows(likelihoods, len(offsets)).sum(axis=0)
    np.testing.assert_allclose(totals, 1.0, atol=1e-3)


def test_round_mode_rounds_around_the_channel_median(prior):
    z = 6 * jax.random.normal(jax.random.key(1), SHAPE)
    z_hat, _ = prior.round(z)
    residual = np.asarray(z_hat) - prior.medians
    np.testing.assert_allclose(residual, np.round(residual), atol=1e-5)
    assert np.abs(np.asarray(z_hat) - np.asarray(z)).max() <= 0.5 + 1e-5


def test_noise_mode_decodes_the_straight_through_rounding_and_rates_a_noisy_value(prior):
    z = 6 * jax.random.normal(jax.random.key(2), SHAPE)
    params = prior.variables["params"]
    z_hat, likelihoods, decoder_gradient, _ = prior.noise(params, z, jax.random.key(3))
    _, other_likelihoods, _, _ = prior.noise(params, z, jax.random.key(4))
    round_z_hat, round_likelihoods = prior.round(z)
    # Equal up to the last bits of the medians, which each compiled program solves anew.
    np.testing.assert_allclose(np.asarray(z_hat), np.asarray(round_z_hat), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(decoder_gradient), np.ones(SHAPE))
    # The rated value moves with the noise draw, so the likelihoods differ from draw to draw.
    assert not np.array_equal(np.asarray(likelihoods), np.asarray(other_likelihoods))
    assert not np.array_equal(np.asarray(likelihoods), np.asarray(round_likelihoods))


def test_likelihood_is_floored_at_the_bound(prior):
    _, likelihoods = prior.round(_latent(np.tile(prior.medians + 1e4, (POSITIONS, 1))))
    np.testing.assert_array_equal(np.asarray(likelihoods), np.float32(1e-9))


def test_rate_gradients_are_finite_even_far_from_the_median(prior):
    z = _latent(np.tile([0.0, 3.0, -40.0, 1e4], (POSITIONS // 2, 1)))
    _, _, _, (parameter_gradients, latent_gradient) = prior.noise(
        prior.variables["params"], z, jax.random.key(5))
    leaves = jax.tree.leaves(parameter_gradients) + [latent_gradient]
    assert len(leaves) == 12
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert float(jnp.abs(parameter_gradients["matrix_0"]).sum()) > 0


def test_unknown_mode_raises_value_error(prior):
    with pytest.raises(ValueError, match="allowed modes"):
        prior.module.apply(prior.variables, jnp.zeros((1, CHANNELS)), mode="floor")


def test_medians_of_an_uninitialised_prior_raise_a_clear_error():
    with pytest.raises(ValueError, match="no parameters"):
        FactorizedPrior().apply({"params": {}}, method=FactorizedPrior.medians)


def test_tables_store_the_medians_and_cover_the_tail_quantiles(prior, tables):
    assert tables.num_tables == CHANNELS and tables.precision == 16
    np.testing.assert_array_equal(tables.medians, prior.medians)
    np.testing.assert_array_equal(tables.pmfs.sum(axis=1), 2 ** 16)
    first = tables.offsets.astype(np.float64)
    last = first + tables.lengths - 2
    edges = np.stack([prior.medians + first, prior.medians + last, prior.medians])
    logits = np.asarray(prior.logits_cdf(jnp.asarray(edges, jnp.float32)))
    tail_logit = math.log(0.5e-9) - math.log1p(-0.5e-9)
    assert np.all(logits[0] <= tail_logit + 1e-3) and np.all(logits[1] >= -tail_logit - 1e-3)


def test_too_wide_a_prior_for_the_precision_raises_a_clear_error(prior):
    with pytest.raises(ValueError, match="bins"):
        build_factorized_tables(prior.module, prior.variables, precision=8)


def test_estimated_bits_match_the_coded_size_of_samples_from_the_prior(prior, tables):
    # Draw from the prior's own density by inverting its CDF at uniform probabilities.
    probabilities = np.random.default_rng(0).uniform(size=SHAPE)
    z = prior.inverse_logits_cdf(jnp.asarray(np.log(probabilities) - np.log1p(-probabilities),
                                             jnp.float32))
    _, likelihoods = prior.round(z)
    estimated_bits = -np.log2(np.asarray(likelihoods, np.float64)).sum()
    symbols = np.round(np.asarray(z) - tables.medians).astype(np.int32)
    indexes = np.broadcast_to(np.arange(CHANNELS, dtype=np.int32), symbols.shape)
    coded_bits = 8 * len(encode(symbols, indexes, tables))
    assert estimated_bits > 2 * symbols.size  # a wide density: several bits per symbol
    assert abs(coded_bits - estimated_bits) <= 0.01 * estimated_bits + 64
