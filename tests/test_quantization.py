"""Quantization modes and the gradient-preserving lower bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdc_jax.entropy.quantization import lower_bound, quantize


def test_unknown_mode_raises_value_error_naming_the_allowed_modes():
    with pytest.raises(ValueError, match="noise.*round.*ste"):
        quantize(jnp.zeros(3), "floor")


def test_noise_mode_needs_an_rng_key():
    with pytest.raises(ValueError, match="rng"):
        quantize(jnp.zeros(3), "noise")


def test_noise_mode_stays_within_half_a_bin_and_spreads_over_it():
    x = jnp.linspace(-3.0, 3.0, 4096)
    noise = np.asarray(quantize(x, "noise", rng=jax.random.key(0)) - x)
    assert np.abs(noise).max() <= 0.5
    # U(-1/2, 1/2) has standard deviation 1/sqrt(12) = 0.2887.
    assert abs(noise.std() - 12 ** -0.5) < 0.01


def test_round_mode_rounds_around_the_offset():
    x = jnp.array([0.2, 0.7, -1.2, 3.9])
    rounded = quantize(x, "round", offset=0.5)
    np.testing.assert_array_equal(np.asarray(rounded), [0.5, 0.5, -1.5, 3.5])


def test_offset_broadcasts_per_channel():
    x = jnp.array([[0.3, 0.3], [1.6, 1.6]])
    rounded = quantize(x, "round", offset=jnp.array([0.0, 0.25]))
    np.testing.assert_array_equal(np.asarray(rounded), [[0.0, 0.25], [2.0, 1.25]])


def test_ste_forward_equals_round_and_its_gradient_is_one():
    x = jnp.array([0.2, 0.7, -1.2, 3.9])
    offset = jnp.array([0.1, -0.3, 0.0, 0.45])
    np.testing.assert_array_equal(np.asarray(quantize(x, "ste", offset=offset)),
                                  np.asarray(quantize(x, "round", offset=offset)))
    gradient = jax.grad(lambda v: quantize(v, "ste", offset=offset).sum())(x)
    np.testing.assert_array_equal(np.asarray(gradient), np.ones(4))


def test_round_mode_has_no_gradient():
    gradient = jax.grad(lambda v: quantize(v, "round").sum())(jnp.array([0.2, 1.7]))
    np.testing.assert_array_equal(np.asarray(gradient), [0.0, 0.0])


def test_lower_bound_clips_values_and_passes_only_gradients_that_raise_them():
    x = jnp.array([0.05, 0.5])
    np.testing.assert_allclose(np.asarray(lower_bound(x, 0.1)), [0.1, 0.5])
    # d/dx of sum(bound(x)) is +1: descending would lower the clipped value further, so blocked.
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: lower_bound(v, 0.1).sum())(x)),
                                  [0.0, 1.0])
    # d/dx of -sum(bound(x)) is -1: descending raises the clipped value, so it passes.
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: -lower_bound(v, 0.1).sum())(x)),
                                  [-1.0, -1.0])
