"""Mean-scale Gaussian conditional: scale table, likelihoods, modes, tables and coded size."""

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdc_jax.entropy.gaussian import (
    SCALE_BOUND,
    SCALE_TABLE,
    GaussianConditional,
    build_gaussian_tables,
    gaussian_likelihood,
    scale_indexes,
)
from jdc_jax.entropy.range_coder import encode


@pytest.fixture(scope="module")
def gaussian_tables():
    return build_gaussian_tables()


def test_scale_table_has_64_log_spaced_scales_from_0_11_to_256():
    assert SCALE_TABLE.shape == (64,) and SCALE_TABLE.dtype == np.float64
    np.testing.assert_allclose([SCALE_TABLE[0], SCALE_TABLE[-1]], [0.11, 256.0], rtol=1e-12)
    ratios = SCALE_TABLE[1:] / SCALE_TABLE[:-1]
    np.testing.assert_allclose(ratios, (256 / 0.11) ** (1 / 63), rtol=1e-12)
    assert SCALE_BOUND == 0.11


def test_scale_index_is_the_first_table_entry_not_below_the_scale():
    table = SCALE_TABLE.astype(np.float32)
    at_entries = table[[0, 7, 63]]
    just_above = np.nextafter(table[[0, 7, 62]], np.float32(np.inf))
    scales = np.concatenate([at_entries, just_above, [0.01, 0.0, 300.0, 1e9]]).astype(np.float32)
    expected = [0, 7, 63, 1, 8, 63, 0, 0, 63, 63]
    np.testing.assert_array_equal(scale_indexes(scales), expected)
    np.testing.assert_array_equal(np.asarray(scale_indexes(jnp.asarray(scales))), expected)


def test_scale_indexes_agree_between_numpy_and_jax():
    scales = np.exp(np.random.default_rng(0).uniform(-3, 6, 5000)).astype(np.float32)
    numpy_indexes = scale_indexes(scales)
    jax_indexes = scale_indexes(jnp.asarray(scales))
    assert isinstance(jax_indexes, jax.Array) and numpy_indexes.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(jax_indexes), numpy_indexes)


@pytest.mark.parametrize("mean", [0.0, 0.3, -2.7])
@pytest.mark.parametrize("scale", [0.05, 0.11, 1.0, 7.5, 200.0])
def test_likelihoods_sum_to_one_over_the_integers(mean, scale):
    integers = jnp.arange(-3000, 3001, dtype=jnp.float32)
    total = np.asarray(gaussian_likelihood(integers, mean, scale), np.float64).sum()
    assert abs(total - 1.0) < 1e-3


def test_likelihood_is_floored_at_1e_minus_9():
    likelihood = gaussian_likelihood(jnp.array([50.0, 0.0]), 0.0, 1.0)
    assert float(likelihood[0]) == np.float32(1e-9)
    assert float(likelihood[1]) == pytest.approx(math.erf(0.5 / math.sqrt(2)), rel=1e-6)


def test_scale_below_the_bound_still_gets_a_gradient_that_raises_it():
    def bits(scale):
        return -jnp.log2(gaussian_likelihood(1.0, 0.0, scale))

    gradient = float(jax.grad(bits)(jnp.float32(0.05)))
    assert math.isfinite(gradient) and gradient < 0


def test_rate_gradients_are_finite_even_far_in_the_tails():
    y = jnp.array([0.0, 3.0, 40.0, -1e4])

    def bits(mean, scale):
        return -jnp.log2(gaussian_likelihood(y, mean, scale)).sum()

    gradients = jax.jit(jax.grad(bits, argnums=(0, 1)))(jnp.full(4, 0.2), jnp.array([0.01, 1.0, 2.0, 5.0]))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in gradients)


def test_round_mode_rounds_around_the_mean_and_uses_the_table_scale():
    y = jnp.array([0.9, -2.2, 5.0])
    mean = jnp.array([0.25, -0.5, 1.0])
    scale = jnp.asarray(np.nextafter(SCALE_TABLE[[10, 20, 30]].astype(np.float32), np.inf))
    y_hat, likelihoods = GaussianConditional()(y, mean, scale, mode="round")
    np.testing.assert_array_equal(np.asarray(y_hat), [1.25, -2.5, 5.0])
    table_scale = SCALE_TABLE[[11, 21, 31]].astype(np.float32)
    np.testing.assert_array_equal(np.asarray(likelihoods),
                                  np.asarray(gaussian_likelihood(y_hat, mean, table_scale)))


def test_noise_mode_likelihood_is_of_the_noisy_value_and_decoder_input_is_straight_through():
    y = jnp.linspace(-4.0, 4.0, 64)
    mean, scale, key = 0.3 * jnp.ones(64), 2.0 * jnp.ones(64), jax.random.key(5)
    conditional = jax.jit(lambda v: GaussianConditional()(v, mean, scale, mode="noise", rng=key))
    y_hat, likelihoods = conditional(y)
    np.testing.assert_array_equal(np.asarray(y_hat), np.asarray(jnp.round(y - mean) + mean))
    noisy = y + jax.random.uniform(key, y.shape, jnp.float32, -0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(likelihoods),
                                  np.asarray(gaussian_likelihood(noisy, mean, scale)))
    gradient = jax.jit(jax.grad(lambda v: conditional(v)[0].sum()))(y)
    np.testing.assert_array_equal(np.asarray(gradient), np.ones(64))


def test_ste_mode_passes_the_rate_gradient_to_the_scale_and_round_mode_does_not():
    y, mean = jnp.array([1.4, -0.2]), jnp.zeros(2)

    def rate(scale, mode):
        return -jnp.log2(GaussianConditional()(y, mean, scale, mode=mode)[1]).sum()

    scale = jnp.array([0.7, 3.0])
    gradient = jax.jit(jax.grad(rate), static_argnums=1)
    assert bool(jnp.all(gradient(scale, "ste") != 0))
    np.testing.assert_array_equal(np.asarray(gradient(scale, "round")), [0.0, 0.0])


def test_unknown_mode_raises_value_error():
    with pytest.raises(ValueError, match="allowed modes"):
        GaussianConditional()(jnp.zeros(2), jnp.zeros(2), jnp.ones(2), mode="nearest")


def test_tables_cover_the_tail_mass_quantile_of_each_scale(gaussian_tables):
    multiplier = statistics.NormalDist().inv_cdf(1 - 0.5e-9)
    half_widths = np.array([math.ceil(s * multiplier) for s in SCALE_TABLE])
    np.testing.assert_array_equal(gaussian_tables.offsets, -half_widths)
    np.testing.assert_array_equal(gaussian_tables.lengths, 2 * half_widths + 2)
    assert gaussian_tables.precision == 16 and gaussian_tables.medians is None
    assert np.all(gaussian_tables.pmfs.sum(axis=1) == 2 ** 16)


def test_table_counts_follow_the_gaussian_bins(gaussian_tables):
    t = 30
    bins = int(gaussian_tables.lengths[t])
    symbols = gaussian_tables.offsets[t] + np.arange(bins - 1)
    probabilities = np.asarray(gaussian_likelihood(symbols.astype(np.float32), 0.0,
                                                   SCALE_TABLE[t], likelihood_bound=0.0),
                               np.float64)
    # One count per bin, the rest shared in proportion (up to one leftover count).
    expected_counts = 1 + probabilities * (2 ** 16 - bins)
    counts = gaussian_tables.pmfs[t, :bins - 1]
    assert np.abs(counts - expected_counts).max() <= 1.01


def test_estimated_bits_match_the_coded_size(gaussian_tables):
    rng = np.random.default_rng(0)
    count = 20000
    indexes = rng.integers(0, 64, count)
    scale = SCALE_TABLE[indexes].astype(np.float32)
    mean = (5 * rng.standard_normal(count)).astype(np.float32)
    y = (mean + scale * rng.standard_normal(count)).astype(np.float32)
    _, likelihoods = jax.jit(lambda *a: GaussianConditional()(*a, mode="round"))(y, mean, scale)
    estimated_bits = -np.log2(np.asarray(likelihoods, np.float64)).sum()
    symbols = np.round(y - mean).astype(np.int32)
    coded_bits = 8 * len(encode(symbols, scale_indexes(scale), gaussian_tables))
    assert abs(coded_bits - estimated_bits) <= 0.01 * estimated_bits + 64
