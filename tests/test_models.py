"""Codec models: shapes, likelihood ranges, the base/enhancement independence, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdc_jax.models import build_model
from jdc_jax.models.registry import init_params
from jdc_jax.models.losses import rate_distortion_loss, stream_bits

TINY = dict(channels=8, latent_channels=8)


def _init(model, x):
    return {"params": init_params(model, jax.random.key(0), x.shape)}


@pytest.fixture(scope="module")
def jicd_tiny():
    model = build_model("jicd", **TINY, base_channels=5)
    return model, _init(model, jnp.zeros((1, 64, 64, 3)))


MODELS = [
    ("hyperprior", dict(TINY)),
    ("testolina", dict(TINY, context_model="checkerboard")),
    ("codec", dict(TINY)),
    ("jicd", dict(TINY, base_channels=6, context_model="none")),
]


@pytest.mark.parametrize("kind,fields", MODELS)
def test_outputs_have_input_shape_and_likelihoods_in_unit_interval(kind, fields):
    model = build_model(kind, **fields)
    variables = _init(model, jnp.zeros((1, 64, 64, 3)))
    # training mode at batch 3, evaluation mode at batch 1, non-square in both
    for train, (batch, height, width) in ((True, (3, 128, 64)), (False, (1, 64, 128))):
        x = jax.random.uniform(jax.random.key(2), (batch, height, width, 3))
        out = model.apply(variables, x, train=train, rngs={"noise": jax.random.key(3)})
        for name in model.outputs:
            assert out[name].shape == (batch, height, width, 3)
        assert tuple(out["likelihoods"]) == model.streams
        for lik in out["likelihoods"].values():
            lik = np.asarray(lik)
            assert lik.min() > 0.0 and lik.max() <= 1.0
        assert out["likelihoods"]["side"].shape == (batch, height // 64, width // 64, 8)


def test_jicd_streams_have_base_and_enhancement_widths(jicd_tiny):
    model, variables = jicd_tiny
    x = jnp.full((1, 64, 64, 3), 0.5)
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
    assert out["denoised"].shape == out["noisy_reconstruction"].shape == (1, 64, 64, 3)
    assert out["likelihoods"]["base"].shape == (1, 4, 4, 5)
    assert out["likelihoods"]["enhancement"].shape == (1, 4, 4, 3)


@pytest.mark.parametrize("context_model", ["serial", "checkerboard", "none"])
def test_base_outputs_unchanged_when_enhancement_latent_is_perturbed(context_model):
    model = build_model("jicd", **TINY, base_channels=5, context_model=context_model)
    x = jax.random.uniform(jax.random.key(4), (1, 64, 64, 3))
    variables = _init(model, x)
    y = model.apply(variables, x, method=model.analysis)
    z = model.apply(variables, y, method=model.hyper_analysis)
    perturbed = y.at[..., 5:].add(7.0 * jax.random.normal(jax.random.key(5), y[..., 5:].shape))
    run = jax.jit(lambda y_: model.apply(variables, y_, z, method=model.model_latent))
    a, b = run(y), run(perturbed)
    np.testing.assert_array_equal(a["denoised"], b["denoised"])
    np.testing.assert_array_equal(a["likelihoods"]["base"], b["likelihoods"]["base"])
    np.testing.assert_array_equal(a["likelihoods"]["side"], b["likelihoods"]["side"])
    assert float(jnp.max(jnp.abs(a["noisy_reconstruction"] - b["noisy_reconstruction"]))) > 1e-3
    assert not np.array_equal(a["likelihoods"]["enhancement"], b["likelihoods"]["enhancement"])


def test_base_layer_gradient_ignores_enhancement_channels(jicd_tiny):
    """The denoised output and base rate have exactly zero gradient w.r.t. enhancement y."""
    model, variables = jicd_tiny
    x = jax.random.uniform(jax.random.key(6), (1, 64, 64, 3))
    y = model.apply(variables, x, method=model.analysis)
    z = model.apply(variables, y, method=model.hyper_analysis)

    def base_objective(y_):
        out = model.apply(variables, y_, z, train=True, method=model.model_latent,
                          rngs={"noise": jax.random.key(7)})
        return jnp.sum(out["denoised"]) + jnp.sum(jnp.log(out["likelihoods"]["base"]))

    grad = jax.jit(jax.grad(base_objective))(y + 0.3)
    assert float(jnp.max(jnp.abs(grad[..., 5:]))) == 0.0
    assert float(jnp.max(jnp.abs(grad[..., :5]))) > 0.0


def test_jicd_rejects_a_split_without_enhancement_channels():
    model = build_model("jicd", **TINY, base_channels=8)
    with pytest.raises(ValueError, match="base_channels"):
        _init(model, jnp.zeros((1, 64, 64, 3)))


def test_loss_decreases_over_50_adam_steps_on_a_fixed_batch():
    model = build_model("jicd", channels=16, latent_channels=16, base_channels=12,
                        context_model="serial")
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (2, 64, 64, 3)).astype(np.float32)
    clean = np.cumsum(clean, axis=2) / np.arange(1, 65)[None, None, :, None]  # smooth content
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    params = _init(model, noisy)["params"]
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            out = model.apply({"params": p}, noisy, train=True, rngs={"noise": key})
            return rate_distortion_loss(out, {"denoised": clean, "noisy_reconstruction": noisy},
                                        lmbda=0.0130)[0]
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(50):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, (first, last)


def test_stream_bits_are_minus_log2_likelihoods():
    bits = stream_bits({"base": jnp.full((2, 3, 3, 1), 0.25)})
    np.testing.assert_allclose(np.asarray(bits["base"]), [18.0, 18.0])


def test_jicd_loss_weighs_denoising_and_noisy_reconstruction():
    clean = jnp.zeros((1, 4, 4, 3))
    noisy = jnp.full((1, 4, 4, 3), 0.1)
    out = {"denoised": jnp.full((1, 4, 4, 3), 0.2), "noisy_reconstruction": noisy + 0.3,
           "likelihoods": {"side": jnp.full((1, 1, 1, 1), 0.5)}}
    loss, metrics = rate_distortion_loss(out, {"denoised": clean, "noisy_reconstruction": noisy},
                                         lmbda=0.01, noisy_weight=0.05)
    expected = 1.0 / 16 + 0.01 * 255 ** 2 * (0.95 * 0.04 + 0.05 * 0.09)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["bpp_side"]) == pytest.approx(1 / 16)
