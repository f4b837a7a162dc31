"""Quantization of latents, and the gradient-preserving lower bound used next to it.

`quantize(x, mode, offset=o)` (Balle et al. 2018, "Variational image compression with a scale
hyperprior"; straight-through rounding as in Theis et al. 2017 and Minnen & Singh 2020):

    "noise": x + u,  u ~ U(-1/2, 1/2)          training proxy of rounding for the rate term
    "round": round(x - o) + o                    evaluation and coding (no gradient)
    "ste":   forward round(x - o) + o,           training decoder input
             gradient d/dx = 1 (straight-through)

`o` broadcasts against `x`: the Gaussian mean, or the per-channel median of a factorized prior.
"noise" ignores it, because uniform noise of width one looks the same around any offset.
Rounding is jnp.round (half to even). Only the encoder rounds: the integer symbols it codes are
exactly round(x - o), and the decoder adds o back, so both ends see the same values.

`lower_bound(x, bound)` is max(x, bound) whose gradient still flows where the bound is active if
the gradient would push x up, back above the bound (Balle et al. 2018); without it a likelihood
or scale stuck at its floor would never receive a gradient again.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# The one gradient-preserving bound of the project (also GDN's reparametrization).
from jdc_jax.layers.bound import lower_bound  # noqa: F401 (re-exported)

QUANTIZATION_MODES = ("noise", "round", "ste")


@functools.partial(jax.jit, static_argnames=("mode",))
def quantize(x, mode: str, *, offset=0.0, rng=None):
    """Quantize `x` (any shape, float) in one of `QUANTIZATION_MODES`; see the module docstring.

    Args:
      x: the continuous latent.
      mode: "noise", "round" or "ste".
      offset: broadcastable to `x`; the value rounding is centred on ("round", "ste").
      rng: a `jax.random` key, required by "noise".

    Returns:
      An array of `x`'s shape and dtype.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; allowed modes: {QUANTIZATION_MODES}")
    x = jnp.asarray(x)
    if mode == "noise":
        if rng is None:
            raise ValueError("quantize(mode='noise') needs an rng key for the uniform noise")
        return x + jax.random.uniform(rng, x.shape, x.dtype, -0.5, 0.5)
    rounded = jnp.round(x - offset) + offset
    if mode == "round":
        return rounded
    # Straight-through: exactly the value of `rounded` (x - x is exactly 0; `x + (rounded - x)`
    # would differ from `rounded` in the last bit), and the gradient of `x`.
    return rounded + (x - jax.lax.stop_gradient(x))
