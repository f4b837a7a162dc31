"""bfloat16 compute: the transforms' convolutions run in bfloat16, while GDN normalization, the
entropy parameters and the likelihoods stay float32, and the training loss moves only by
bfloat16 rounding."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

from jdc_jax import train
from jdc_jax.models import build_model, init_params

SHAPE = (1, 64, 64, 3)
# Convolutions that stay float32 in a bfloat16 model: per latent group, the entropy-parameter
# output (1x1 conv to mean and scale) and, with the serial context, the masked context conv.
MODELS = [
    ("jicd", dict(channels=4, latent_channels=4, base_channels=3), 2 * 2),
    ("hyperprior", dict(channels=4, latent_channels=4), 1),
]


def noisy_batch(seed=0):
    """A horizontal ramp with texture, and an AWGN-sigma-25 copy of it (uint8, NHWC)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, SHAPE[2])[None, None, :, None] * np.ones(SHAPE)
    clean = np.clip(ramp + rng.normal(0, 20, SHAPE), 0, 255).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 25, SHAPE), 0, 255).astype(np.uint8)
    return {"clean": clean, "noisy": noisy}


def training_loss(kind, fields, dtype, params, batch):
    model = build_model(kind, **fields, dtype=jnp.dtype(dtype))

    def loss(params, batch, rng):
        return train.loss_fn(params, model, batch, rng, lmbda=0.013, noisy_weight=0.05,
                             target="clean")
    args = (params, batch, jax.random.key(1))
    # XLA's lowest backend optimization level: a one-off evaluation at these tiny shapes would
    # otherwise spend most of its time in the optimizer (same values at every level here).
    compiled = jax.jit(loss).lower(*args).compile(
        compiler_options={"xla_backend_optimization_level": 0})
    return compiled(*args)


def training_output(kind, fields, dtype, params, batch):
    model = build_model(kind, **fields, dtype=jnp.dtype(dtype))
    x = batch["noisy"].astype(np.float32) / 255.0

    def forward(params, x):
        return model.apply({"params": params}, x, train=True, rngs={"noise": jax.random.key(1)})
    return forward, (params, x)


def equations(jaxpr):
    """Every equation of a jaxpr, including those of nested jaxprs (jit, custom_vjp, loops)."""
    for equation in jaxpr.eqns:
        yield equation
        for value in equation.params.values():
            for nested in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(nested, ClosedJaxpr):
                    yield from equations(nested.jaxpr)
                elif isinstance(nested, Jaxpr):
                    yield from equations(nested)


def primitive_dtypes(forward, args):
    """{(primitive name, output dtype name): count} of a traced function."""
    counts = collections.Counter()
    for equation in equations(jax.make_jaxpr(forward)(*args).jaxpr):
        counts[(equation.primitive.name, equation.outvars[0].aval.dtype.name)] += 1
    return counts


@pytest.fixture(scope="module", params=MODELS, ids=[kind for kind, _, _ in MODELS])
def model_and_params(request):
    kind, fields, float32_convs = request.param
    params = init_params(build_model(kind, **fields), jax.random.key(0), SHAPE)
    return kind, fields, float32_convs, params


def test_bfloat16_loss_matches_float32_loss(model_and_params):
    kind, fields, _, params = model_and_params
    batch = noisy_batch()
    loss32, metrics32 = training_loss(kind, fields, "float32", params, batch)
    loss16, metrics16 = training_loss(kind, fields, "bfloat16", params, batch)
    # Measured over 8 parameter/batch seeds at these sizes: the loss (distortion-dominated at
    # initialization) moved by at most 2.0e-3 relative, except one seed whose JICD
    # reconstruction diverges (loss 2e7, 2.4e-2), and the rate by at most 1.0e-2 (rounding of
    # y flips for elements near a half-integer). bfloat16 keeps 8 significand bits (unit
    # roundoff 2^-9 = 2e-3 per operation); the tolerances leave 5x and 3x margins. This seed
    # measured 4e-4 (JICD) and 2e-6 (hyperprior) for the loss.
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=1e-2)
    np.testing.assert_allclose(float(metrics16["bpp"]), float(metrics32["bpp"]), rtol=3e-2)
    # ...and bfloat16 really was used: the rate differs (6e-3 and 6e-3 relative for this seed).
    assert float(metrics16["bpp"]) != float(metrics32["bpp"])


def test_likelihoods_and_outputs_are_float32_in_both_dtypes(model_and_params):
    kind, fields, _, params = model_and_params
    for dtype in ("float32", "bfloat16"):
        forward, args = training_output(kind, fields, dtype, params, noisy_batch())
        out = jax.eval_shape(forward, *args)
        expected_streams = build_model(kind, **fields).streams
        assert sorted(out["likelihoods"]) == sorted(expected_streams)
        assert {name: lik.dtype for name, lik in out["likelihoods"].items()} == {
            name: jnp.float32 for name in expected_streams}
        assert {name: out[name].dtype for name in out if name != "likelihoods"} == {
            name: jnp.float32 for name in build_model(kind, **fields).outputs}


def test_bfloat16_convolutions_leave_gdn_and_entropy_parameters_in_float32(model_and_params):
    kind, fields, float32_convs, params = model_and_params
    counts32 = primitive_dtypes(*training_output(kind, fields, "float32", params, noisy_batch()))
    counts16 = primitive_dtypes(*training_output(kind, fields, "bfloat16", params,
                                                 noisy_batch()))
    total_convs = counts32[("conv_general_dilated", "float32")]
    assert counts16[("conv_general_dilated", "float32")] == float32_convs
    assert counts16[("conv_general_dilated", "bfloat16")] == total_convs - float32_convs
    # GDN's rsqrt and IGDN's sqrt, and the Gaussian CDF's erfc, are float32 only.
    for primitive in ("rsqrt", "sqrt", "erfc"):
        assert counts16[(primitive, "float32")] == counts32[(primitive, "float32")] > 0
        assert counts16[(primitive, "bfloat16")] == 0
