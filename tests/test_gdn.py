"""Tests of GDN / IGDN (jdc_jax.layers.gdn)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdc_jax.layers.gdn import GDN, IGDN, from_reparametrized, lower_bound, to_reparametrized

PEDESTAL = (2.0**-18) ** 2


def _random_activations(shape=(2, 3, 4, 5), scale=3.0, seed=0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _effective_parameters(params, beta_min=1e-6):
    beta = from_reparametrized(params["params"]["beta"], beta_min, PEDESTAL)
    gamma = from_reparametrized(params["params"]["gamma"], 0.0, PEDESTAL)
    return np.asarray(beta), np.asarray(gamma)


@pytest.mark.parametrize(
    "layer, expected",
    [
        (GDN(), lambda x: x / np.sqrt(1.0 + 0.1 * x**2)),
        (IGDN(), lambda x: x * np.sqrt(1.0 + 0.1 * x**2)),
        (GDN(simplified=True), lambda x: x / (1.0 + 0.1 * np.abs(x))),
        (IGDN(simplified=True), lambda x: x * (1.0 + 0.1 * np.abs(x))),
    ],
    ids=["gdn", "igdn", "simplified_gdn", "simplified_igdn"],
)
def test_output_at_init_is_the_per_channel_closed_form(layer, expected):
    x = _random_activations()
    params = layer.init(jax.random.PRNGKey(1), x)
    y = jax.jit(layer.apply)(params, x)
    np.testing.assert_allclose(np.asarray(y), expected(np.asarray(x, np.float64)),
                               rtol=1e-6, atol=1e-6)


def test_init_stores_beta_one_and_gamma_tenth_identity_in_the_reparametrized_domain():
    params = GDN().init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 3)))
    beta, gamma = params["params"]["beta"], params["params"]["gamma"]
    assert beta.shape == (3,) and gamma.shape == (3, 3)
    assert beta.dtype == jnp.float32 and gamma.dtype == jnp.float32
    np.testing.assert_allclose(beta, np.sqrt(1.0 + PEDESTAL), rtol=1e-7)
    expected_gamma = np.where(np.eye(3) > 0, np.sqrt(0.1 + PEDESTAL), 2.0**-18)
    np.testing.assert_allclose(gamma, expected_gamma, rtol=1e-7)


def test_pool_weights_input_channel_j_by_gamma_ij():
    beta = np.array([0.5, 1.0, 2.0])
    gamma = np.array([[0.1, 0.2, 0.0], [0.0, 0.3, 0.4], [0.5, 0.0, 0.6]])
    params = {"params": {"beta": to_reparametrized(jnp.asarray(beta, jnp.float32), PEDESTAL),
                         "gamma": to_reparametrized(jnp.asarray(gamma, jnp.float32), PEDESTAL)}}
    x = _random_activations((2, 4, 3), scale=2.0)
    x64 = np.asarray(x, np.float64)

    y = GDN().apply(params, x)
    expected = x64 / np.sqrt(beta + np.einsum("...j,ij->...i", x64**2, gamma))
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5)

    y_simplified = GDN(simplified=True).apply(params, x)
    expected_simplified = x64 / (beta + np.einsum("...j,ij->...i", np.abs(x64), gamma))
    np.testing.assert_allclose(np.asarray(y_simplified), expected_simplified, rtol=1e-5)


def test_lower_bound_passes_gradient_only_where_x_is_above_bound_or_pushed_up():
    x = jnp.array([0.5, 2.0, 0.5, 1.0])
    y, pullback = jax.vjp(lambda v: lower_bound(v, 1.0), x)
    (grad,) = pullback(jnp.array([1.0, 1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(y), [1.0, 2.0, 1.0, 1.0])
    # Below the bound a positive gradient (descent would lower x further) is blocked, a negative
    # one (descent raises x) passes; at or above the bound everything passes.
    np.testing.assert_array_equal(np.asarray(grad), [0.0, 1.0, -1.0, 1.0])


@pytest.mark.parametrize("optimizer", [optax.sgd(1.0), optax.adam(0.05)], ids=["sgd", "adam"])
@pytest.mark.parametrize("simplified", [False, True])
def test_beta_and_gamma_stay_in_bounds_when_training_pushes_them_negative(optimizer, simplified):
    layer = GDN(simplified=simplified)
    x = _random_activations((4, 3))
    params = layer.init(jax.random.PRNGKey(0), x)
    opt_state = optimizer.init(params)

    def loss(p):
        # Larger outputs need a smaller pool, so descent drives beta and gamma down.
        return -jnp.mean(jnp.square(layer.apply(p, x)))

    @jax.jit
    def step(p, state):
        grads = jax.grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    for _ in range(300):
        params, opt_state = step(params, opt_state)

    beta, gamma = _effective_parameters(params)
    assert np.all(beta >= np.float32(1e-6)), beta
    assert np.all(gamma >= 0.0), gamma
    # The push really reached the bounds (not a vacuous check).
    assert np.max(beta) < 1e-3, beta
    assert np.max(gamma) < 1e-3, gamma
    assert np.all(np.isfinite(np.asarray(loss(params))))


@pytest.mark.parametrize("beta_min", [3e-6, 0.05])
def test_effective_beta_reaches_beta_min_even_where_float32_squaring_rounds_down(beta_min):
    # For these bounds float32(sqrt(beta_min + pedestal))^2 - pedestal lands one ulp below.
    beta = from_reparametrized(jnp.zeros((2,), jnp.float32), beta_min, PEDESTAL)
    assert np.all(np.asarray(beta) >= np.float32(beta_min)), beta
    np.testing.assert_allclose(np.asarray(beta), beta_min, rtol=1e-6)


def test_igdn_with_shared_parameters_inverts_gdn_up_to_the_derived_residual():
    """With a diagonal gamma g and beta b = 1 (the init), per channel

        y = GDN(x) = x / sqrt(1 + a),  a = g x^2
        z = IGDN(y) = y sqrt(1 + g y^2) = x sqrt(1 - (a / (1 + a))^2),

    so z / x = 1 - a^2 / 2 + O(a^4): IGDN(GDN(x)) = x up to |z - x| <= a^2 |x| = g^2 |x|^5.
    """
    x = _random_activations((3, 4, 2), scale=2.0)
    params = GDN().init(jax.random.PRNGKey(0), x)
    round_trip = jax.jit(lambda p, v: IGDN().apply(p, GDN().apply(p, v)))
    z = round_trip(params, x)

    x64 = np.asarray(x, np.float64)
    a = 0.1 * x64**2
    np.testing.assert_allclose(np.asarray(z), x64 * np.sqrt(1.0 - (a / (1.0 + a)) ** 2),
                               rtol=1e-6, atol=1e-6)

    small_x = x / 20.0  # |x| < 0.5: the residual is below 0.01 * 0.5^5 = 3.1e-4
    small_z = round_trip(params, small_x)
    residual = np.abs(np.asarray(small_z, np.float64) - np.asarray(small_x, np.float64))
    bound = 0.1**2 * np.abs(np.asarray(small_x, np.float64)) ** 5 + 1e-7  # + float32 rounding
    assert np.all(residual <= bound)
    assert np.max(residual) < 3.2e-4


@pytest.mark.parametrize("layer", [GDN(), IGDN(), GDN(simplified=True), IGDN(simplified=True)],
                         ids=["gdn", "igdn", "simplified_gdn", "simplified_igdn"])
def test_gradients_are_finite_including_at_zero_input(layer):
    x = _random_activations((2, 3, 3, 4)).at[0, 0, 0].set(0.0).at[1, 2, 2].set(1e4)
    params = layer.init(jax.random.PRNGKey(0), x)
    param_grads, input_grad = jax.jit(jax.grad(lambda p, v: jnp.sum(layer.apply(p, v) ** 2),
                                               argnums=(0, 1)))(params, x)
    for grad in jax.tree_util.tree_leaves((param_grads, input_grad)):
        assert np.all(np.isfinite(np.asarray(grad)))
    assert np.any(np.asarray(param_grads["params"]["gamma"]) != 0.0)


def test_bfloat16_input_is_normalized_in_float32_and_returned_in_bfloat16():
    x = _random_activations((2, 3, 4)).astype(jnp.bfloat16)
    params = GDN().init(jax.random.PRNGKey(0), x)
    y = GDN().apply(params, x)
    assert y.dtype == jnp.bfloat16
    expected = GDN().apply(params, x.astype(jnp.float32)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(expected, np.float32))


def test_non_positive_beta_min_is_rejected():
    with pytest.raises(ValueError, match="beta_min"):
        GDN(beta_min=0.0).init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
